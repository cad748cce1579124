//! Slack Socket Mode under a dropping socket, on both databases: an action whose
//! acknowledgement was lost with the socket is sent again on the new one and done
//! once; envelopes sent while no socket is open wait and are done once the bot is
//! back; the lifecycle goes on to the end. (The lifecycle tests in `tests/slack.rs`
//! run over Socket Mode as well.)

mod common;

use common::slack::{INTAKE, RISK, SECURITY, assess_inputs, click, click_and_submit, file};
use common::{App, TestDb, uid};
use waiver::domain::State;
use waiver::store::Outcome;

fn socket(app: &App) -> &waiver::fakes::slack::socket::FakeSocket {
    app.ws.socket().expect("over Socket Mode")
}

both!(
    a_dropped_socket_loses_nothing_and_repeats_nothing,
    |db: TestDb| async move {
        let app = App::spawn_socket(db).await;
        assert!(
            app.ws
                .post_raw(
                    "/slack/commands",
                    "application/x-www-form-urlencoded",
                    b"x=1".to_vec(),
                    &[]
                )
                .await
                .status
                == 404,
            "no Slack route over HTTP without a signing secret"
        );
        let id = file(&app, "Socket summaries").await;
        let reference = id.to_string();
        app.until("the intake card", |f| !f.messages(INTAKE).is_empty())
            .await;

        // Noah's click is done, but its acknowledgement is lost with the socket:
        // Slack sends the envelope again on the new socket, and it is done once.
        socket(&app).drop_next_ack();
        let card = app.message(INTAKE, &reference);
        click(&app, "noah.fischer", &card, "complete").await;
        assert_eq!(socket(&app).redelivered(), 1, "sent again after the drop");
        assert_eq!(socket(&app).accepted(), 2, "the bot reconnected");
        let r = app.request(id).await;
        assert_eq!(r.state, State::InAssessment);
        assert_eq!(r.reviews.len(), 1, "one verdict");
        let audit = app.store().audit_of(id).await.unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.outcome == Outcome::Refused)
                .count(),
            0,
            "the second delivery was not an attempt: {audit:#?}"
        );
        app.drained().await;
        assert!(
            app.fake().ephemerals(&uid("noah.fischer")).is_empty(),
            "Noah was told nothing about a refusal"
        );

        // Every socket drops; the next click waits for the bot to reconnect.
        app.until("assessment cards", |f| {
            !f.messages(RISK).is_empty() && !f.messages(SECURITY).is_empty()
        })
        .await;
        socket(&app).drop_connections();
        let reply = click_and_submit(
            &app,
            "omar.haddad",
            &app.message(RISK, &reference),
            "assess",
            &assess_inputs("1", "2"),
        )
        .await;
        assert_eq!((reply.status, reply.body.as_str()), (200, ""));
        assert!(socket(&app).accepted() >= 3);
        let reply = click_and_submit(
            &app,
            "tomas.novak",
            &app.message(SECURITY, &reference),
            "assess",
            &assess_inputs("2", "2"),
        )
        .await;
        assert_eq!((reply.status, reply.body.as_str()), (200, ""));
        let r = app.request(id).await;
        assert_eq!(r.state, State::AwaitingDecision);
        assert_eq!(r.assessments.len(), 2, "each assessment once");
        assert!(app.store().verify_audit().await.unwrap().is_ok());
        app.stop().await;
    }
);

both!(
    the_metrics_count_socket_mode_acknowledgements,
    |db: TestDb| async move {
        let app = App::spawn_socket(db).await;
        file(&app, "Counted").await;
        let text = app.service().scrape_metrics().await.unwrap();
        let count = |kind: &str| {
            let series = format!("waiver_ack_seconds_count{{platform=\"slack\",kind=\"{kind}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("no {series} in {text}"))
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(count("command"), 1.0);
        assert_eq!(count("interaction"), 1.0);
        app.stop().await;
    }
);

//! The neutral engine's guarantees that no single surface shows: backpressure on the
//! writer, graceful shutdown waiting for work started after an acknowledgement,
//! refused thread replies in the audit trail, and the read side the register and the
//! metrics use. Both databases.

mod common;

use std::time::Duration;

use common::flow::{Flow, approve, day};
use common::{App, TestDb, fast_delivery, p, uid};
use serde_json::json;
use sqlx::Connection;
use waiver::domain::{ConditionSpec, State};
use waiver::fakes::slack::Fault;
use waiver::service::Submitted;
use waiver::store::Outcome;

async fn readyz(app: &App) -> (u16, String) {
    let resp = reqwest::get(format!(
        "http://{}/readyz",
        app.running.as_ref().unwrap().addr
    ))
    .await
    .expect("GET /readyz");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

both!(
    a_full_write_queue_makes_callers_wait_and_readyz_says_so,
    |db: TestDb| async move {
        sqlx::any::install_default_drivers();
        let app = App::spawn_with(
            db,
            waiver::app::Options {
                delivery: fast_delivery(),
                no_scheduler: true,
                writer_queue: Some(1),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(readyz(&app).await, (200, "ready".into()));
        // Someone else holds the database's write lock: the writer's next commit waits.
        let mut blocker = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
        let lock = if app.db.backend == "sqlite" {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN; LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE"
        };
        sqlx::raw_sql(lock).execute(&mut blocker).await.unwrap();
        let filings: Vec<_> = (0..3)
            .map(|i| {
                let svc = app.service().clone();
                let mut form = common::form();
                form.title = format!("Queued filing {i}");
                let now = app.now();
                tokio::spawn(async move { svc.submit(&p("james.carter"), &form, None, now).await })
            })
            .collect();
        // One change is being written, one waits in the queue, the third waits to get
        // into it: the service says it is busy.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = readyz(&app).await;
            if status == 503 {
                assert_eq!(body, "busy: 1 changes are waiting to be written");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never busy: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            filings.iter().all(|f| !f.is_finished()),
            "callers wait while the queue is full"
        );
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut blocker)
            .await
            .unwrap();
        blocker.close().await.unwrap();
        for f in filings {
            let filed = f.await.unwrap().unwrap();
            assert!(matches!(filed, Submitted::Filed(_)), "{filed:?}");
        }
        // Ready again once the backlog drains (the filings' deliveries record their
        // outcomes through the same queue, so it may hold one of those for a moment).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = readyz(&app).await;
            if status == 200 {
                assert_eq!(body, "ready");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never ready again: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let filed = app
            .store()
            .requests_by(&p("james.carter"), 10)
            .await
            .unwrap();
        assert_eq!(filed.len(), 3, "nothing acknowledged was lost");
        app.stop().await;
    }
);

both!(
    graceful_shutdown_waits_for_a_modal_being_opened,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        app.fake()
            .fail_next("views.open", Fault::Hang(Duration::from_millis(400)));
        let reply = app.ws.command(&uid("james.carter"), "").await;
        assert_eq!(reply.status, 200);
        app.until("views.open was called", |f| {
            !f.calls_to("views.open").is_empty()
        })
        .await;
        let mut app = app;
        app.running.take().unwrap().stop().await;
        let calls = app.fake().calls_to("views.open");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].status, 200, "answered before the server stopped");
        assert_eq!(app.fake().views_opened().len(), 1);
    }
);

both!(
    a_thread_reply_from_an_unknown_workspace_is_audited_once_and_changes_nothing,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let svc = app.service();
        let Submitted::Filed(r) = svc
            .submit(&p("james.carter"), &common::form(), None, app.now())
            .await
            .unwrap()
        else {
            panic!("not filed")
        };
        app.until("the intake card", |f| !f.messages("C0AIXINTAKE").is_empty())
            .await;
        let card = app.message("C0AIXINTAKE", &r.id.to_string());
        let event = json!({
            "token": "legacy",
            "team_id": "T0OTHER",
            "api_app_id": "A0WAIVER",
            "type": "event_callback",
            "event_id": "Ev0FOREIGN",
            "event_time": app.clock.unix_seconds(),
            "event": {
                "type": "message", "channel": "C0AIXINTAKE", "user": "U0STRANGER",
                "text": "Approve it, I say", "ts": "1.000200", "thread_ts": card.ts,
                "channel_type": "channel", "event_ts": "1.000200"
            }
        })
        .to_string()
        .into_bytes();
        for _ in 0..2 {
            let reply = app
                .ws
                .post("/slack/events", "application/json", event.clone())
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        let after = app.request(r.id).await;
        assert!(
            after.comments.is_empty(),
            "no comment from a foreign workspace"
        );
        let refused: Vec<_> = app
            .store()
            .audit_of(r.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == Outcome::Refused)
            .map(|e| (e.actor, e.action, e.details["reason"].clone()))
            .collect();
        assert_eq!(
            refused,
            vec![(
                "slack:T0OTHER:U0STRANGER".to_string(),
                "comment".to_string(),
                json!("Workspace T0OTHER is not configured for Waiver.")
            )],
            "audited once for two deliveries"
        );
        app.stop().await;
    }
);

both!(
    a_condition_owner_who_does_not_monitor_sees_the_condition_in_pending,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = Flow::file(svc.clone()).await;
        flow.assessed(1, 2).await;
        let r = flow
            .act(
                "carlos.mendes",
                approve(vec![ConditionSpec {
                    text: "Enable SSO".into(),
                    owner: p("kenji.watanabe"),
                    due: day("2026-12-15"),
                }]),
            )
            .await;
        assert_eq!(r.state, State::Approved);
        let now = common::now();
        let kenji = svc.tasks(&p("kenji.watanabe"), now).await.unwrap();
        assert_eq!(
            kenji
                .items
                .iter()
                .map(|(r, t)| (r.id, t.clone()))
                .collect::<Vec<_>>(),
            vec![(flow.id, waiver::domain::Task::MarkDone(1))]
        );
        let marcus = svc.tasks(&p("marcus.webb"), now).await.unwrap();
        assert_eq!(marcus.items.len(), 1, "the monitoring owner too");
        let olivia = svc.tasks(&p("olivia.brown"), now).await.unwrap();
        assert!(olivia.items.is_empty());
    }
);

both!(
    the_overview_counts_states_and_lists_what_expires_and_is_overdue,
    |db: TestDb| async move {
        let svc = db.service().await;
        let granted = Flow::file(svc.clone()).await;
        granted.assessed(1, 2).await;
        granted
            .act(
                "carlos.mendes",
                approve(vec![ConditionSpec {
                    text: "Enable SSO".into(),
                    owner: p("kenji.watanabe"),
                    due: day("2026-12-15"),
                }]),
            )
            .await;
        Flow::file(svc.clone()).await;
        Flow::file(svc.clone()).await;
        let now = common::now();
        let o = svc.overview(now, 200, 50).await.unwrap();
        assert_eq!(
            o.by_state,
            vec![(State::Submitted, 2), (State::Approved, 1)]
        );
        // Approved until 2027-03-31 (expires 2027-04-01T00:00Z): 128 days away.
        assert_eq!(
            o.expiring.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![granted.id]
        );
        assert!(
            svc.overview(now, 100, 50)
                .await
                .unwrap()
                .expiring
                .is_empty()
        );
        assert!(o.overdue_conditions.is_empty(), "not yet due");
        let later = svc
            .overview(
                waiver::domain::Timestamp::parse_rfc3339("2026-12-16T09:00:00Z").unwrap(),
                30,
                50,
            )
            .await
            .unwrap();
        assert_eq!(later.overdue_conditions.len(), 1);
        assert_eq!(later.overdue_conditions[0].request, granted.id);
        assert_eq!(later.overdue_conditions[0].owner, p("kenji.watanabe"));
        assert!(later.suspended.is_empty() && later.reassessment.is_empty());
    }
);

both!(
    the_timeline_comes_from_recorded_events,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = Flow::file(svc.clone()).await;
        flow.assessed(1, 2).await;
        let kinds: Vec<(String, Option<String>)> = svc
            .timeline(flow.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.by.map(|p| p.to_string())))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("submitted".into(), Some("james.carter".into())),
                ("marked_complete".into(), Some("noah.fischer".into())),
                ("assessed".into(), Some("omar.haddad".into())),
                ("assessed".into(), Some("tomas.novak".into())),
            ]
        );
    }
);

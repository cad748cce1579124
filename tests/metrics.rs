//! `GET /metrics` after real traffic: a Slack lifecycle, refusals, delivery faults,
//! a sweep, and Teams activities, on both databases. Every figure is checked against
//! what happened (and, where the database knows it, against the database).

mod common;

use std::collections::HashMap;

use common::slack::{INTAKE, click, file};
use common::teams::{TeamsApp, member};
use common::{App, TestDb, uid};
use waiver::fakes::slack::Fault;

const TOKEN: &str = "metrics-token-0123456789";

fn client() -> reqwest::Client {
    waiver::chat::install_tls_provider();
    reqwest::Client::new()
}

/// Scrapes `addr`'s metrics with the token; every sample as `series → value`.
async fn scrape(addr: std::net::SocketAddr, token: Option<&str>) -> HashMap<String, f64> {
    let mut req = client().get(format!("http://{addr}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| {
        let mut names: Vec<&String> = m.keys().collect();
        names.sort();
        panic!("no {series} in:\n{names:#?}")
    })
}

both!(
    after_a_lifecycle_and_delivery_faults_the_metrics_say_what_happened,
    |db: TestDb| async move {
        let app = App::spawn_editing(
            db,
            waiver::app::Options {
                delivery: common::fast_delivery(),
                no_scheduler: true,
                ..Default::default()
            },
            std::sync::Arc::new(|c| {
                c.metrics_token = Some(waiver::config::Secret::new(TOKEN));
            }),
        )
        .await;
        let addr = app.running.as_ref().unwrap().addr;

        // The token is asked for, and a wrong one refused.
        for auth in [None, Some("wrong-token-0123456789")] {
            let mut req = client().get(format!("http://{addr}/metrics"));
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401);
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }

        // One whole lifecycle through Slack: 1 command, 9 interactions.
        let first = common::slack::approve_with_conditions_then_mark_done(&app).await;

        // A forged request.
        let body = app.ws.command_body(&uid("james.carter"), "", "t-1");
        let ts = app.fake().clock().unix_seconds();
        let reply = app
            .ws
            .post_raw(
                "/slack/commands",
                "application/x-www-form-urlencoded",
                body,
                &[
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", format!("v0={}", "0".repeat(64))),
                ],
            )
            .await;
        assert_eq!(reply.status, 401);

        // A 503 on the next post: retried, and looked for before posting again.
        app.fake()
            .fail_next("chat.postMessage", Fault::ServerError(503));
        let second = file(&app, "Second").await;
        app.until("the second intake card", |f| {
            f.messages(INTAKE).iter().any(|m| {
                waiver::fakes::slack::workspace::describe(&m.blocks).contains(&second.to_string())
            })
        })
        .await;
        // James may not mark his own request complete: refused, told, audited.
        let card = app.message(INTAKE, &second.to_string());
        click(&app, "james.carter", &card, "complete").await;

        app.drained().await;
        // The intake channel is gone: the third request's card is parked.
        app.fake().fail_channel(INTAKE, "channel_not_found");
        let third = file(&app, "Third").await;
        app.drained().await;
        let sweep = app.service().sweep(app.now(), false).await.unwrap();

        let m = scrape(addr, Some(TOKEN)).await;
        // Requests and acknowledgements, per route and kind (the 2 filings add 2
        // commands and 2 submissions; the refused click is 1 more interaction).
        assert_eq!(
            get(
                &m,
                r#"waiver_http_requests_total{route="/slack/commands",status="200"}"#
            ),
            3.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_http_requests_total{route="/slack/commands",status="401"}"#
            ),
            1.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_http_requests_total{route="/slack/interactions",status="200"}"#
            ),
            12.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_ack_seconds_count{platform="slack",kind="command"}"#
            ),
            4.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_ack_seconds_count{platform="slack",kind="interaction"}"#
            ),
            12.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_ack_seconds_bucket{platform="slack",kind="interaction",le="+Inf"}"#
            ),
            12.0
        );
        assert!(
            get(
                &m,
                r#"waiver_ack_seconds_sum{platform="slack",kind="interaction"}"#
            ) > 0.0
        );
        // Refusals by reason.
        assert_eq!(
            get(
                &m,
                r#"waiver_refusals_total{platform="slack",reason="bad_signature"}"#
            ),
            1.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_refusals_total{platform="slack",reason="not_a_member"}"#
            ),
            1.0
        );
        // The writer.
        assert!(get(&m, "waiver_commits_total") >= 10.0);
        assert_eq!(get(&m, "waiver_conflicts_total"), 0.0);
        assert_eq!(get(&m, "waiver_writer_queue_depth"), 0.0);
        assert_eq!(
            get(&m, "waiver_writer_queue_capacity"),
            waiver::store::DEFAULT_WRITER_QUEUE as f64
        );
        // Delivery: every sent row was counted once; the 503 was retried after a
        // search for the interrupted post; the lost channel parked one card.
        let counts: HashMap<String, i64> = app
            .store()
            .outbox_counts()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            get(
                &m,
                r#"waiver_deliveries_total{platform="slack",outcome="sent"}"#
            ),
            counts["sent"] as f64
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_delivery_retries_total{platform="slack",error="http_503"}"#
            ),
            1.0
        );
        // (Once per later attempt while the row is in doubt.)
        assert!(
            get(
                &m,
                r#"waiver_in_doubt_lookups_total{platform="slack",outcome="not_found"}"#
            ) >= 1.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_parked_total{platform="slack",error="channel_not_found"}"#
            ),
            1.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_outbox_messages{platform="slack",status="parked"}"#
            ),
            1.0
        );
        assert_eq!(get(&m, "waiver_outbox_oldest_pending_seconds"), 0.0);
        // The sweep and its digests.
        assert_eq!(get(&m, r#"waiver_sweeps_total{outcome="ok"}"#), 1.0);
        assert_eq!(get(&m, "waiver_sweep_seconds_count"), 1.0);
        assert_eq!(
            get(&m, "waiver_digests_sent_total"),
            sweep.digests.len() as f64
        );
        assert_eq!(
            get(&m, "waiver_reminders_sent_total"),
            sweep.reminders.len() as f64
        );
        // Exceptions by state, as the database has them.
        for (state, n) in app.store().counts_by_state().await.unwrap() {
            assert_eq!(
                get(
                    &m,
                    &format!("waiver_exceptions{{state=\"{}\"}}", state.as_str())
                ),
                n as f64,
                "{state:?}"
            );
        }
        assert_eq!(get(&m, r#"waiver_exceptions{state="active"}"#), 1.0);
        assert!(first != second && second != third);
        app.stop().await;
    }
);

both!(
    teams_activities_tokens_and_keys_are_counted,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let installs = common::teams::teams_channels().len() as f64;
        let reply = app
            .tenant
            .say(&member("james.carter"), "ai-exception help")
            .await;
        assert_eq!(reply.status, 200);
        app.until("the help answer", |f| {
            f.conversation(&format!("a:chat-{}", member("james.carter").aad_object_id))
                .len()
                == 1
        })
        .await;
        // Unsigned: refused before anything is read.
        let reply = app.tenant.post_raw(None, b"{}".to_vec()).await;
        assert_eq!(reply.status, 401);
        let m = scrape(app.running.as_ref().unwrap().addr, None).await;
        assert_eq!(
            get(
                &m,
                r#"waiver_ack_seconds_count{platform="teams",kind="update"}"#
            ),
            installs
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_ack_seconds_count{platform="teams",kind="message"}"#
            ),
            1.0
        );
        assert_eq!(
            get(
                &m,
                r#"waiver_refusals_total{platform="teams",reason="missing_token"}"#
            ),
            1.0
        );
        // Keys fetched once and cached; one token for every post.
        assert_eq!(
            get(&m, r#"waiver_teams_jwks_refreshes_total{outcome="ok"}"#),
            1.0
        );
        assert_eq!(
            get(&m, r#"waiver_teams_token_refreshes_total{outcome="ok"}"#),
            1.0
        );
        // Refused before its kind was read.
        assert_eq!(
            get(
                &m,
                r#"waiver_ack_seconds_count{platform="teams",kind="activity"}"#
            ),
            1.0
        );
        app.stop().await;
    }
);

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_proxy_s_is_kept() {
    let app = App::spawn(TestDb::sqlite().await).await;
    let url = format!("http://{}/healthz", app.running.as_ref().unwrap().addr);
    let r = client()
        .get(&url)
        .header("x-request-id", "proxy-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "proxy-7f3a");
    let r = client().get(&url).send().await.unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 16, "{made}");
    assert!(made.chars().all(|c| c.is_ascii_hexdigit()), "{made}");
    app.stop().await;
}

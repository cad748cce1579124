//! The chaos run, short form (on both databases): whole Slack lifecycles, one after
//! another, while the fake Slack answers 5xx, 429 with `Retry-After`, and slow answers
//! that outlast the call timeout (posts in doubt), and the server is killed and
//! restarted twice with posts in flight. Afterwards every acknowledged action is in
//! the database, the audit trail verifies, every expected card was posted exactly
//! once and shows its request's final state with no live button, and every DM was
//! sent once. `WAIVER_CHAOS_LIFECYCLES` sets how many lifecycles (default 6; the long
//! form is `WAIVER_CHAOS_LIFECYCLES=2000 cargo test --release --test chaos`).

mod common;

use std::time::Duration;

use common::slack::{APPROVALS, INTAKE, RISK, SECURITY, file, has_buttons, is_about, mentions};
use common::{App, TestDb, fast_delivery, uid};
use waiver::domain::State;
use waiver::fakes::slack::Fault;
use waiver::fakes::slack::workspace::describe;

fn lifecycles() -> usize {
    std::env::var("WAIVER_CHAOS_LIFECYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6)
}

/// Bot messages in `channel` that are `reference`'s.
fn posts(app: &App, channel: &str, reference: &str) -> Vec<waiver::fakes::slack::Message> {
    app.fake()
        .messages(channel)
        .into_iter()
        .filter(|m| is_about(m, reference))
        .collect()
}

both!(
    lifecycles_under_faults_and_crashes_lose_nothing_and_post_everything_once,
    |db: TestDb| async move {
        // A crashed worker's claims expire after the lease; messages to the same
        // conversation wait for it (they go in order), so it is short here.
        let options = || waiver::app::Options {
            delivery: waiver::delivery::DeliveryConfig {
                lease: Duration::from_secs(2),
                ..fast_delivery()
            },
            no_scheduler: true,
            ..Default::default()
        };
        let mut app = App::spawn_with(db, options()).await;
        let n = lifecycles();
        let mut done = Vec::new();
        let mut crashed = Vec::new();
        for i in 0..n {
            // A fault on the next call of each kind, in turn.
            let fake = app.fake();
            match i % 4 {
                0 => fake.fail_next("chat.postMessage", Fault::ServerError(503)),
                1 => fake.fail_next("chat.update", Fault::ServerError(500)),
                2 => fake.fail_next(
                    "chat.postMessage",
                    Fault::RateLimited {
                        retry_after_secs: 1,
                    },
                ),
                _ => fake.fail_next("chat.postMessage", Fault::Hang(Duration::from_millis(700))),
            }
            // Twice: a request is filed, its first post hangs past the timeout, and
            // the server is killed with the post in flight (Slack applies it anyway).
            if i == n / 3 || i == 2 * n / 3 {
                app.fake()
                    .fail_next("chat.postMessage", Fault::Hang(Duration::from_millis(800)));
                let id = file(&app, "Filed just before a crash").await;
                app.crash_and_restart(options()).await;
                crashed.push(id);
            }
            done.push(common::slack::approve_with_conditions_then_mark_done(&app).await);
        }
        app.drained().await;

        // Every acknowledged action is in the database; the trail verifies.
        assert!(app.store().verify_audit().await.unwrap().is_ok());
        for id in &done {
            let r = app.request(*id).await;
            assert_eq!(r.state, State::Active, "{id}");
            assert_eq!(r.reviews.len(), 1, "{id}: one completeness verdict");
            assert_eq!(r.assessments.len(), 2, "{id}: each assessment once");
            assert_eq!(r.votes.len(), 1, "{id}: one vote");
        }
        for id in &crashed {
            assert_eq!(app.request(*id).await.state, State::Submitted, "{id}");
            let reference = id.to_string();
            app.until("the crashed request's card", |f| {
                mentions(f, INTAKE, &reference)
            })
            .await;
        }
        app.drained().await;
        // Every card exactly once, in its final state, with no live button on a
        // decided request; every DM once.
        for id in &done {
            let reference = id.to_string();
            for channel in [INTAKE, RISK, SECURITY, APPROVALS] {
                let cards = posts(&app, channel, &reference);
                assert_eq!(cards.len(), 1, "{reference} in {channel}: {cards:#?}");
                assert!(
                    !has_buttons(&cards[0]),
                    "{reference} in {channel} has a live button: {}",
                    describe(&cards[0].blocks)
                );
            }
            assert!(
                describe(&posts(&app, APPROVALS, &reference)[0].blocks).contains("Approved by")
            );
            let active: Vec<_> = app
                .fake()
                .dms(&uid("james.carter"))
                .into_iter()
                .filter(|m| {
                    let d = describe(&m.blocks);
                    d.contains(&reference) && d.contains("is now active")
                })
                .collect();
            assert_eq!(active.len(), 1, "{reference}: told once it is active");
        }
        for id in &crashed {
            let reference = id.to_string();
            let cards = posts(&app, INTAKE, &reference);
            assert_eq!(cards.len(), 1, "{reference}: posted once across the crash");
            assert!(has_buttons(&cards[0]), "still waiting for its review");
        }
        // Nothing is left undelivered.
        assert!(app.store().undelivered(100).await.unwrap().is_empty());
        app.stop().await;
    }
);

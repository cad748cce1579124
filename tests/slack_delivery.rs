//! Delivery under faults: rate limits, bursts of 5xx, permanent errors, crashes.
//! Every message the bot committed to send arrives exactly once.

mod common;

use std::time::{Duration, Instant};

use common::{App, TestDb, fast_delivery, uid};
use waiver::app::Options;
use waiver::fakes::slack::Fault;
use waiver::fakes::slack::workspace::describe;

const INTAKE: &str = "C0AIXINTAKE";

async fn file(app: &App) -> waiver::domain::RequestId {
    let waiver::service::Submitted::Filed(r) = app
        .service()
        .submit(&common::p("james.carter"), &common::form(), None, app.now())
        .await
        .unwrap()
    else {
        panic!("not filed")
    };
    r.id
}

/// Bot messages in a conversation that carry the given outbox-posted card.
fn cards_for(app: &App, channel: &str, reference: &str) -> usize {
    app.fake()
        .messages(channel)
        .iter()
        .filter(|m| m.user.is_none() && describe(&m.blocks).contains(reference))
        .count()
}

both!(
    rate_limits_are_waited_out_with_retry_after,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        app.fake().fail_next(
            "chat.postMessage",
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        );
        let started = Instant::now();
        let id = file(&app).await;
        app.drained().await;
        let posts = app.fake().calls_to("chat.postMessage");
        assert_eq!(posts[0].status, 429, "the first post was rate limited");
        assert!(
            posts[1..].iter().all(|c| c.status == 200),
            "then everything went through"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "waited for Retry-After"
        );
        // The rate-limited conversation got its message once.
        let first_target = posts[0].body["channel"].as_str().unwrap().to_string();
        let conversation = app.fake().dm_channel(&first_target).unwrap_or(first_target);
        let count = app
            .fake()
            .messages(&conversation)
            .iter()
            .filter(|m| m.user.is_none())
            .count();
        let expected = app
            .store()
            .outbox()
            .await
            .unwrap()
            .iter()
            .filter(|r| {
                let t = r.outgoing.to.target();
                t == conversation || t == format!("@{}", posts[0].body["channel"].as_str().unwrap())
            })
            .filter(|r| r.outgoing.card.is_none() || !r.outgoing.card.as_ref().unwrap().is_empty())
            .count();
        assert!(
            count >= 1 && count <= expected,
            "{count} messages for {expected} outbox rows"
        );
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 1);
        app.stop().await;
    }
);

both!(
    bursts_of_5xx_back_off_and_deliver_once,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        for _ in 0..4 {
            app.fake()
                .fail_next("chat.postMessage", Fault::ServerError(503));
        }
        let id = file(&app).await;
        app.drained().await;
        let statuses: Vec<u16> = app
            .fake()
            .calls_to("chat.postMessage")
            .iter()
            .map(|c| c.status)
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 503).count(),
            4,
            "{statuses:?}"
        );
        assert_eq!(
            cards_for(&app, INTAKE, &id.to_string()),
            1,
            "the card was posted exactly once"
        );
        let james = uid("james.carter");
        let dm = app.fake().dms(&james);
        assert_eq!(
            dm.len(),
            2,
            "receipt and routing plan, once each: {:#?}",
            dm.iter().map(|m| describe(&m.blocks)).collect::<Vec<_>>()
        );
        // A 5xx may have been processed: before re-posting, Waiver looked for the message.
        assert!(!app.fake().calls_to("conversations.history").is_empty());
        let counts = app.store().outbox_counts().await.unwrap();
        assert!(counts.iter().all(|(s, _)| s == "sent"), "{counts:?}");
        app.stop().await;
    }
);

both!(
    permanent_errors_are_parked_and_audited_without_blocking_others,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        app.fake().fail_channel(INTAKE, "channel_not_found");
        let id = file(&app).await;
        app.drained().await;
        let rows = app.store().outbox().await.unwrap();
        let parked: Vec<_> = rows
            .iter()
            .filter(|r| r.status == waiver::store::OutboxStatus::Parked)
            .collect();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].outgoing.to.target(), INTAKE);
        assert_eq!(parked[0].last_error.as_deref(), Some("channel_not_found"));
        assert_eq!(
            app.fake()
                .calls_to("chat.postMessage")
                .iter()
                .filter(|c| c.body["channel"] == INTAKE)
                .count(),
            1,
            "not retried"
        );
        assert_eq!(
            app.fake().dms(&uid("james.carter")).len(),
            2,
            "other messages still delivered"
        );
        let audit = app.store().audit_of(id).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "deliver"
            && e.outcome == waiver::store::Outcome::Parked
            && e.details["error"] == "channel_not_found"));
        assert!(app.store().verify_audit().await.unwrap().is_ok());
        app.stop().await;
    }
);

both!(
    parked_messages_are_listed_for_operators_and_sent_again_once_fixed,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        app.fake().fail_channel(INTAKE, "not_in_channel");
        let id = file(&app).await;
        app.drained().await;
        let rows = app.store().undelivered(100).await.unwrap();
        assert_eq!(rows.len(), 1, "only the parked card is undelivered");
        let report = waiver::delivery::undelivered_report(&rows, app.now());
        assert!(
            report.starts_with("1 message(s) not delivered: 0 pending, 1 parked\n"),
            "{report}"
        );
        let line = format!(
            "#{} Slack {INTAKE} — {id} card {:?}, filed {}, 1 attempt(s), parked (send again with `waiver outbox retry`): not_in_channel",
            rows[0].id,
            rows[0].outgoing.message.summary,
            rows[0].created_at.minute()
        );
        assert!(report.contains(&line), "{report}\nwanted {line}");
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 0);

        // The operator invites the bot and sends it again: posted once, audited.
        app.fake().heal_channel(INTAKE);
        let again = app
            .store()
            .requeue_parked(None, "operator:test", app.now())
            .await
            .unwrap();
        assert_eq!(again, vec![rows[0].id]);
        app.drained().await;
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 1);
        assert!(app.store().undelivered(100).await.unwrap().is_empty());
        let audit = app.store().audit_of(id).await.unwrap();
        assert!(
            audit.iter().any(|e| e.action == "requeue"
                && e.actor == "operator:test"
                && e.details["last_error"] == "not_in_channel"),
            "{audit:#?}"
        );
        // A message that is not parked (now sent) is not sent a second time.
        let twice = app
            .store()
            .requeue_parked(Some(vec![rows[0].id]), "operator:test", app.now())
            .await
            .unwrap();
        assert!(twice.is_empty());
        assert!(app.store().verify_audit().await.unwrap().is_ok());
        app.stop().await;
    }
);

both!(
    a_parked_card_message_overtaken_by_a_newer_one_is_not_sent_again,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        app.fake().fail_channel(INTAKE, "not_in_channel");
        let id = file(&app).await;
        app.drained().await;
        // Fixed before the next change: the card's newer message posts the card as it
        // is now.
        app.fake().heal_channel(INTAKE);
        let v = app.service().request(id).await.unwrap().unwrap().version();
        app.service()
            .act(
                waiver::service::Attempt::new(
                    waiver::domain::Actor::Person(common::p("noah.fischer")),
                    id,
                    v,
                    waiver::domain::Action::MarkComplete,
                ),
                app.now(),
            )
            .await
            .unwrap();
        app.drained().await;
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 1);
        let posted = app.fake().calls_to("chat.postMessage").len();
        // The old parked message would show the card's old state: not sent again.
        let again = app
            .store()
            .requeue_parked(None, "operator:test", app.now())
            .await
            .unwrap();
        assert!(again.is_empty(), "{again:?}");
        app.drained().await;
        assert_eq!(app.fake().calls_to("chat.postMessage").len(), posted);
        assert!(app.store().undelivered(100).await.unwrap().is_empty());
        app.stop().await;
    }
);

both!(
    a_crash_between_commit_and_delivery_loses_nothing_and_duplicates_nothing,
    |db: TestDb| async move {
        // The server commits state and queues messages, then dies before delivering.
        let mut app = App::spawn_with(
            db,
            Options {
                delivery: fast_delivery(),
                no_delivery: true,
                no_scheduler: true,
                ..Default::default()
            },
        )
        .await;
        let id = file(&app).await;
        let card_rows = app.store().outbox().await.unwrap().len();
        assert!(card_rows >= 3);
        assert!(
            app.fake().calls_to("chat.postMessage").is_empty(),
            "nothing sent before the crash"
        );
        app.crash_and_restart(Options {
            delivery: fast_delivery(),
            no_scheduler: true,
            ..Default::default()
        })
        .await;
        app.drained().await;
        let posts = app.fake().calls_to("chat.postMessage");
        assert_eq!(
            posts.len(),
            card_rows,
            "each queued message delivered exactly once"
        );
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 1);
        // The restarted server keeps working: the card still updates in place.
        let card = app.message(INTAKE, &id.to_string());
        app.ws
            .click(&uid("noah.fischer"), &card, "complete")
            .await
            .unwrap();
        app.until("card closed in place", |f| {
            f.messages(INTAKE).iter().any(|m| m.edits >= 1)
        })
        .await;
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 1);
        app.stop().await;
    }
);

both!(
    a_crash_after_slack_accepted_a_post_does_not_post_it_twice,
    |db: TestDb| async move {
        // Slack accepts the post but the answer never reaches Waiver, which then crashes.
        let delivery = waiver::delivery::DeliveryConfig {
            lease: Duration::from_millis(300),
            call_timeout: Duration::from_millis(200),
            ..fast_delivery()
        };
        let mut app = App::spawn_with(
            db,
            Options {
                delivery: delivery.clone(),
                ..Default::default()
            },
        )
        .await;
        // Filing queues three messages (intake card, receipt, routing plan): all three
        // are accepted by Slack but answered only after Waiver has died.
        for _ in 0..3 {
            app.fake()
                .fail_next("chat.postMessage", Fault::Hang(Duration::from_millis(150)));
        }
        let id = file(&app).await;
        app.until("Slack received the posts", |f| {
            f.calls_to("chat.postMessage").len() == 3
        })
        .await;
        app.crash_and_restart(Options {
            delivery,
            ..Default::default()
        })
        .await;
        // Slack finishes processing what it accepted; Waiver restarts and recovers.
        app.until("the accepted post landed", |f| {
            f.messages(INTAKE).len() + f.dms(&uid("james.carter")).len() >= 1
        })
        .await;
        app.drained().await;
        assert_eq!(
            cards_for(&app, INTAKE, &id.to_string()),
            1,
            "not posted twice"
        );
        assert_eq!(
            app.fake().dms(&uid("james.carter")).len(),
            2,
            "receipt and plan once each"
        );
        let rows = app.store().outbox().await.unwrap();
        assert!(
            rows.iter()
                .all(|r| r.status == waiver::store::OutboxStatus::Sent),
            "{rows:#?}"
        );
        app.stop().await;
    }
);

both!(
    an_attempt_longer_than_its_lease_keeps_its_claim,
    |db: TestDb| async move {
        // A 400 ms lease, renewed every 100 ms while the attempt runs; the post
        // answers after 2 s (within the call timeout). Unrenewed, the claim would run
        // out and the worker would start a second attempt while the first is still
        // waiting (on Teams, which cannot look a post up, a second post).
        let app = App::spawn_with(
            db,
            Options {
                delivery: waiver::delivery::DeliveryConfig {
                    lease: Duration::from_millis(400),
                    call_timeout: Duration::from_secs(10),
                    ..fast_delivery()
                },
                no_scheduler: true,
                ..Default::default()
            },
        )
        .await;
        app.fake()
            .fail_next("chat.postMessage", Fault::Hang(Duration::from_secs(2)));
        let id = file(&app).await;
        app.drained().await;
        assert_eq!(cards_for(&app, INTAKE, &id.to_string()), 1, "the card once");
        assert_eq!(
            app.fake().dms(&uid("james.carter")).len(),
            2,
            "receipt and plan once each"
        );
        let rows = app.store().outbox().await.unwrap();
        assert!(
            rows.iter()
                .all(|r| r.status == waiver::store::OutboxStatus::Sent
                    && r.attempts == 1
                    && r.lease_until.is_none()),
            "each sent at its first attempt: {rows:#?}"
        );
        app.stop().await;
    }
);

both!(
    a_slow_call_holds_up_only_its_own_conversation,
    |db: TestDb| async move {
        let app = App::spawn_with(
            db,
            Options {
                delivery: waiver::delivery::DeliveryConfig {
                    call_timeout: Duration::from_secs(10),
                    ..fast_delivery()
                },
                no_scheduler: true,
                ..Default::default()
            },
        )
        .await;
        let first = file(&app).await;
        app.drained().await;
        // The next post answers only after 5 s (within the call timeout): one of the
        // second request's (its card or James' receipt).
        app.fake()
            .fail_next("chat.postMessage", Fault::Hang(Duration::from_secs(5)));
        file(&app).await;
        let in_flight = |f: &waiver::fakes::slack::FakeSlack| {
            f.calls_to("chat.postMessage").iter().any(|c| c.status == 0)
        };
        app.until("a post in flight", in_flight).await;
        // Meanwhile the first request is completed: its assessment cards go to other
        // channels, and arrive while the slow post is still unanswered.
        let svc = app.service();
        let seen = svc.request(first).await.unwrap().unwrap().version();
        let attempt = waiver::service::Attempt::new(
            waiver::domain::Actor::Person(common::p("noah.fischer")),
            first,
            seen,
            waiver::domain::Action::MarkComplete,
        );
        svc.act(attempt, app.now()).await.unwrap();
        let reference = first.to_string();
        app.until("the assessment cards", |f| {
            ["C0AIXRISK", "C0AIXSECURITY"].iter().all(|c| {
                f.messages(c)
                    .iter()
                    .any(|m| describe(&m.blocks).contains(&reference))
            })
        })
        .await;
        assert!(in_flight(app.fake()), "the slow post is still unanswered");
        app.drained().await;
        app.stop().await;
    }
);

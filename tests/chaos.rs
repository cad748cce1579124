//! The chaos run, short form (on both databases): whole lifecycles, one after another,
//! through Slack and through Teams, while the fakes answer 5xx, 429 with
//! `Retry-After`, 412 (Teams) and slow answers within and past the call timeout, and
//! the server is killed and restarted with deliveries pending and in flight; then the
//! expiry reminders at each lead time under faults and a crash. Afterwards every
//! acknowledged action is in the database, the audit trail verifies, every expected
//! card was posted exactly once and shows its request's final state with no live
//! button, every DM and reminder digest was sent once (on Teams, the one post in
//! flight at a crash may show twice, every copy refreshed to the same card). Also the
//! real binary, SIGKILLed, on SQLite and as two PostgreSQL replicas (one killed with a
//! post in flight, which the other takes over once the claim runs out).
//! `WAIVER_CHAOS_LIFECYCLES` sets how many lifecycles each test runs (default 6); the
//! long form, 2,000 lifecycles, is
//! `WAIVER_CHAOS_LIFECYCLES=500 cargo test --release --test chaos lifecycles_under -- --nocapture`.

mod common;

use std::time::Duration;

use common::slack::{APPROVALS, INTAKE, RISK, SECURITY, file, has_buttons, is_about, mentions};
use common::teams::{
    TeamsApp, approve_with_conditions_then_mark_done, channel, chat_of, execute, member, post_in,
    state_of,
};
use common::{App, TestDb, fast_delivery, uid};
use waiver::domain::{RequestId, State};
use waiver::fakes::slack::Fault;
use waiver::fakes::slack::workspace::describe;
use waiver::fakes::teams::tenant::{action_data, describe as card_text};

/// `WAIVER_CHAOS_LIFECYCLES`, or each test's own short-form count.
fn lifecycles(short: usize) -> usize {
    std::env::var("WAIVER_CHAOS_LIFECYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(short)
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
        let n = lifecycles(6);
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
        check(&app, &done, &crashed).await;
        expiry_reminders_under_faults_and_a_crash(&mut app, &done, options()).await;
        app.stop().await;
    }
);

/// The sweep at each expiry lead time of the `done` requests (30, 7 and 1 days
/// before), each run twice, with a fault on the digests' posts and the server
/// crashed and restarted right after the second sweep: every reminder reaches the
/// owner and the requester exactly once. (The sweeps run at instants ahead of the
/// server's clock, as `waiver sweep --at` does; an interrupted digest was once posted
/// twice because its lookup searched from the sweep's instant, not from when it was
/// sent.)
async fn expiry_reminders_under_faults_and_a_crash(
    app: &mut App,
    done: &[RequestId],
    options: waiver::app::Options,
) {
    let leads = lead_instants(app.store(), done).await;
    let mut options = Some(options);
    for (k, (days, at)) in leads.into_iter().enumerate() {
        inject(app, k);
        let report = app.service().sweep(at, false).await.unwrap();
        for id in done {
            assert!(
                report.reminders.iter().any(|(r, _, _)| r == &Some(*id)),
                "{id}: reminded {days} days before it expires"
            );
        }
        if k == 1 {
            app.crash_and_restart(options.take().unwrap()).await;
        }
        let again = app.service().sweep(at, false).await.unwrap();
        assert!(again.reminders.is_empty(), "{:?}", again.reminders);
    }
    app.drained().await;
    // One digest per person per lead time, each naming every request once.
    for person in ["james.carter", "marcus.webb"] {
        let digests: Vec<String> = app
            .fake()
            .dms(&uid(person))
            .into_iter()
            .map(|m| describe(&m.blocks))
            .filter(|d| d.contains("Renew it to keep using it"))
            .collect();
        assert_eq!(digests.len(), 3, "{person}: {digests:#?}");
        for (digest, left) in digests.iter().zip(["29 days", "6 days", "24 hours"]) {
            let items = |id: &RequestId| {
                digest
                    .matches(&format!("{id} \"Coding assistant\" expires in {left}"))
                    .count()
            };
            digest_lists(digest, done, waiver::chat::plan::DIGEST_ITEMS, items);
        }
    }
    assert!(app.store().undelivered(100).await.unwrap().is_empty());
}

/// After the run: every acknowledged action is in the database and the trail
/// verifies; every card was posted exactly once, in its final state, with no live
/// button on a decided request; every DM once; the crashed requests' cards once;
/// nothing left undelivered.
async fn check(app: &App, done: &[RequestId], crashed: &[RequestId]) {
    app.drained().await;

    // Every acknowledged action is in the database; the trail verifies.
    assert!(app.store().verify_audit().await.unwrap().is_ok());
    for id in done {
        let r = app.request(*id).await;
        assert_eq!(r.state, State::Active, "{id}");
        assert_eq!(r.reviews.len(), 1, "{id}: one completeness verdict");
        assert_eq!(r.assessments.len(), 2, "{id}: each assessment once");
        assert_eq!(r.votes.len(), 1, "{id}: one vote");
    }
    for id in crashed {
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
    for id in done {
        let reference = id.to_string();
        for channel in [INTAKE, RISK, SECURITY, APPROVALS] {
            let cards = posts(app, channel, &reference);
            assert_eq!(cards.len(), 1, "{reference} in {channel}: {cards:#?}");
            assert!(
                !has_buttons(&cards[0]),
                "{reference} in {channel} has a live button: {}",
                describe(&cards[0].blocks)
            );
        }
        assert!(describe(&posts(app, APPROVALS, &reference)[0].blocks).contains("Approved by"));
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
    for id in crashed {
        let reference = id.to_string();
        let cards = posts(app, INTAKE, &reference);
        assert_eq!(cards.len(), 1, "{reference}: posted once across the crash");
        assert!(has_buttons(&cards[0]), "still waiting for its review");
        let receipts: Vec<_> = app
            .fake()
            .dms(&uid("james.carter"))
            .into_iter()
            .filter(|m| describe(&m.blocks).contains(&format!("{reference} was filed")))
            .collect();
        assert_eq!(
            receipts.len(),
            1,
            "{reference}: its receipt once across the crash"
        );
    }
    // Nothing is left undelivered.
    assert!(app.store().undelivered(100).await.unwrap().is_empty());
}

/// `waiver audit verify`, the binary an auditor runs, on the run's database.
fn audit_verify_passes(app: &App) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_waiver"));
    for var in waiver::config::VARIABLES {
        command.env_remove(var);
    }
    let out = command
        .args(["audit", "verify"])
        .env("WAIVER_DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "waiver audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fault on the next call of a kind, in turn: 503 (in doubt: the next attempt
/// waits twice the call timeout, 20 s, then looks for the post first), 429 with
/// `Retry-After`, a slow answer, a 429 on an update.
fn inject(app: &App, i: usize) {
    let fake = app.fake();
    match i % 4 {
        0 => fake.fail_next("chat.postMessage", Fault::ServerError(503)),
        1 => fake.fail_next(
            "chat.postMessage",
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ),
        2 => fake.fail_next("chat.postMessage", Fault::Hang(Duration::from_millis(1500))),
        _ => fake.fail_next(
            "chat.update",
            Fault::RateLimited {
                retry_after_secs: 2,
            },
        ),
    }
}

/// The real `waiver serve` on SQLite, SIGKILLed twice while a post hangs in flight
/// (Slack applies it after the kill) and started again on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_sigkilled_twice_with_posts_in_flight_loses_and_repeats_nothing() {
    let db = common::TestDb::sqlite().await;
    let mut app = App::spawn_processes(db, 1).await;
    let n = lifecycles(3).max(3);
    let (mut done, mut crashed) = (Vec::new(), Vec::new());
    for i in 0..n {
        inject(&app, i);
        if i == n / 3 || i == 2 * n / 3 {
            let posts_before = app.fake().calls_to("chat.postMessage").len();
            app.fake()
                .fail_next("chat.postMessage", Fault::Hang(Duration::from_secs(3)));
            let id = file(&app, "Filed just before a SIGKILL").await;
            app.until("a post in flight", |f| {
                f.calls_to("chat.postMessage").len() > posts_before
            })
            .await;
            app.kill_and_restart(0).await;
            crashed.push(id);
        }
        done.push(common::slack::approve_with_conditions_then_mark_done(&app).await);
    }
    check(&app, &done, &crashed).await;
    audit_verify_passes(&app);
    app.stop().await;
}

/// Two real `waiver serve` replicas on one PostgreSQL database, requests spread over
/// both; one is SIGKILLed mid-run and the other carries on alone, then is SIGKILLed
/// and restarted itself. Last, the one left is SIGKILLed with a post in flight
/// (Slack applies it after the kill) and the first, started again, takes the post
/// over once the dead replica's claim runs out (a lease, 20 s, after the kill: a live
/// replica renews its claims), finds it in the channel and does not post it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_replicas_on_postgres_one_sigkilled_the_other_carries_on() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    let mut app = App::spawn_processes(db, 2).await;
    let n = lifecycles(4).max(4);
    let mut done = Vec::new();
    let mut alive = [true, true];
    let first = app.replica_addr(0).unwrap();
    for i in 0..n {
        // Between lifecycles, once all is delivered (a claim held by the killed
        // replica would hold its conversation up for the lease).
        if i == n / 2 {
            app.drained().await;
            app.kill(0);
            alive[0] = false;
        }
        if i == n - 1 {
            app.drained().await;
            app.kill_and_restart(1).await;
        }
        let replica = if alive[i % 2] { i % 2 } else { 1 };
        app.use_replica(replica);
        inject(&app, i);
        done.push(common::slack::approve_with_conditions_then_mark_done(&app).await);
    }
    // Replica 1 alone holds the claim of the post that hangs when it is killed.
    app.drained().await;
    let posts_before = app.fake().calls_to("chat.postMessage").len();
    app.fake()
        .fail_next("chat.postMessage", Fault::Hang(Duration::from_secs(3)));
    app.use_replica(1);
    let id = file(&app, "Filed just before its replica was SIGKILLed").await;
    app.until("a post in flight", |f| {
        f.calls_to("chat.postMessage").len() > posts_before
    })
    .await;
    app.kill(1);
    app.restart(0, first).await;
    app.use_replica(0);
    // The dead replica's claim runs out a lease (20 s) after the kill, and replica 0
    // takes the message over.
    app.patience = Duration::from_secs(60);
    check(&app, &done, &[id]).await;
    // The hung post was taken over: a second attempt, which found it in the
    // conversation (the card and receipt are there once, as `check` saw).
    let rows = app.store().outbox().await.unwrap();
    let taken_over = rows
        .iter()
        .filter(|r| r.outgoing.request == Some(id) && r.attempts == 2);
    assert_eq!(taken_over.count(), 1, "{rows:#?}");
    assert!(!app.fake().calls_to("conversations.history").is_empty());
    audit_verify_passes(&app);
    app.stop().await;
}

/// The Teams half: a fault on the next Bot Connector call of a kind, in turn: 429
/// with `Retry-After`, 412 (Teams busy with the conversation), 503 and 500 (not
/// applied; in doubt), a slow post within the call timeout, and a slow update past it
/// (applied late; updating in place again is harmless).
fn inject_teams(app: &TeamsApp, i: usize) {
    use waiver::fakes::teams::Fault;
    let fake = app.fake();
    match i % 6 {
        0 => fake.fail_next(
            "post",
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ),
        1 => fake.fail_next("post", Fault::Status(412)),
        2 => fake.fail_next("post", Fault::Status(503)),
        3 => fake.fail_next("update", Fault::Status(500)),
        4 => fake.fail_next("post", Fault::Hang(Duration::from_millis(150))),
        _ => fake.fail_next("update", Fault::Hang(Duration::from_millis(1300))),
    }
}

/// Whether a Teams card still offers a workflow action.
fn live(activity: &serde_json::Value) -> bool {
    [
        "Complete",
        "Send back…",
        "Assess…",
        "Approve…",
        "Reject…",
        "Mark 1 done",
    ]
    .iter()
    .any(|t| action_data(activity, t).is_some())
}

/// Waits until no delivery is in flight and none is about to start: every pending
/// message has had an attempt recorded (a failed one waits for its retry), none is
/// held by an attempt, and no retry is due within a second. A crash straight after
/// then finds nothing in flight (a retry that began first would be a post in flight at
/// the crash, which Teams may show twice). Messages to `except` are left out (a card
/// update meant to be in flight).
async fn settled(app: &TeamsApp, except: Option<&str>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = app.now().millis();
        let rows = app.store().outbox().await.unwrap();
        let quiet = rows
            .iter()
            .filter(|r| r.status == waiver::store::OutboxStatus::Pending)
            .filter(|r| Some(r.outgoing.to.target().as_str()) != except)
            .all(|r| {
                r.last_error.is_some()
                    && r.lease_until.is_none_or(|l| l.millis() < now)
                    && r.next_attempt_at.millis() > now + 1000
            });
        if quiet {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a delivery never ended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

both!(
    teams_lifecycles_under_faults_and_crashes_lose_nothing_and_post_everything_once,
    |db: TestDb| async move {
        use waiver::fakes::teams::Fault;
        let options = || waiver::app::Options {
            // A call timeout of a second: the slow answers within it stay within it
            // on a loaded machine (a Teams post that outlasts it may land twice).
            delivery: waiver::delivery::DeliveryConfig {
                lease: Duration::from_secs(3),
                call_timeout: Duration::from_secs(1),
                ..common::teams::options().delivery
            },
            ..common::teams::options()
        };
        let mut app = TeamsApp::spawn_with(db, options(), &[]).await;
        let n = lifecycles(6).max(6);
        let (mut done, mut crashed) = (Vec::new(), Vec::new());
        let mut in_flight = None;
        for i in 0..n {
            inject_teams(&app, i);
            if i == n / 3 {
                // Filed; its card and receipt fail with 503 and wait to be tried again
                // when the server dies; the restarted one's first token request fails.
                let form = common::teams::intake_form(&app).await;
                app.drained().await;
                app.fake().fail_next("post", Fault::Status(503));
                app.fake().fail_next("post", Fault::Status(503));
                let id = common::teams::file_in(&app, &form, "Filed just before a crash").await;
                app.until("both posts refused", |f| {
                    f.calls_of("post")
                        .iter()
                        .filter(|c| c.status == 503)
                        .count()
                        >= 2
                })
                .await;
                settled(&app, None).await;
                app.fake().fail_next("token", Fault::Status(503));
                app.crash_and_restart(options()).await;
                crashed.push(id);
            }
            if i == n / 2 {
                // Filed; its first post hangs and is in flight at the crash, applied by
                // Teams afterwards. The Bot Connector cannot be asked whether it
                // landed, so the restarted server posts it again: the one case where
                // Teams may show a message twice. Then it is completed.
                let form = common::teams::intake_form(&app).await;
                app.drained().await;
                app.fake()
                    .fail_next("post", Fault::Hang(Duration::from_millis(2500)));
                let id = common::teams::file_in(&app, &form, "Posted during a crash").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                app.crash_and_restart(options()).await;
                let card = post_in(&app, &channel("ai-intake"), &format!("{id} · ")).await;
                execute(&app, "noah.fischer", &card.activity, "Complete").await;
                in_flight = Some(id);
            }
            if i == 2 * n / 3 {
                // Completed: the intake card's update hangs past the call timeout and is
                // in flight at the crash (Teams applies it anyway); the posts it brings
                // are refused, so none of them has landed unrecorded.
                let id = common::teams::file(&app, "Completed just before a crash").await;
                let reference = id.to_string();
                let card = post_in(&app, &channel("ai-intake"), &reference).await;
                app.drained().await;
                app.fake()
                    .fail_next("update", Fault::Hang(Duration::from_millis(2500)));
                for _ in 0..6 {
                    app.fake().fail_next("post", Fault::Status(503));
                }
                execute(&app, "noah.fischer", &card.activity, "Complete").await;
                app.until("the assessment posts refused", |f| {
                    f.calls_of("post")
                        .iter()
                        .filter(|c| c.status == 503)
                        .count()
                        >= 4
                })
                .await;
                settled(&app, Some(&channel("ai-intake"))).await;
                app.crash_and_restart(options()).await;
                crashed.push(id);
            }
            let title = format!("Lifecycle {i}");
            done.push(approve_with_conditions_then_mark_done(&app, &title).await);
        }
        app.drained().await;

        // Every acknowledged action is in the database; the trail verifies.
        assert!(app.store().verify_audit().await.unwrap().is_ok());
        for id in &done {
            let r = app.store().load(*id).await.unwrap().unwrap();
            assert_eq!(r.state, State::Active, "{id}");
            assert_eq!(r.reviews.len(), 1, "{id}: one completeness verdict");
            assert_eq!(r.assessments.len(), 2, "{id}: each assessment once");
            assert_eq!(r.votes.len(), 1, "{id}: one vote");
        }
        // The post in flight at the crash: there once or twice. Every copy, viewed,
        // shows the request as it now stands (the card's refresh action), with no
        // live button for the completeness review it is past.
        let in_flight = in_flight.unwrap();
        let (heading, receipt) = (format!("{in_flight} · "), format!("{in_flight} was filed"));
        let mut messages: std::collections::BTreeMap<(String, String), Vec<_>> = Default::default();
        for conversation in app.fake().conversations() {
            for p in app.fake().conversation(&conversation) {
                let text = card_text(&p.activity);
                if text.starts_with(&heading) || text.contains(&receipt) {
                    let first = text.lines().next().unwrap_or_default().to_string();
                    messages
                        .entry((conversation.clone(), first))
                        .or_default()
                        .push(p);
                }
            }
        }
        let twice: Vec<_> = messages.iter().filter(|(_, p)| p.len() > 1).collect();
        assert!(
            messages.values().all(|p| p.len() <= 2) && twice.len() == 1,
            "only the post in flight, once or twice: {:#?}",
            messages
                .iter()
                .map(|(k, p)| (k, p.len()))
                .collect::<Vec<_>>()
        );
        eprintln!(
            "the post in flight at the crash, shown twice: {:?}",
            twice[0].0
        );
        let viewer = |conversation: &str| {
            ["james.carter", "marcus.webb"]
                .into_iter()
                .find(|who| chat_of(&app, who).as_deref() == Some(conversation))
                .unwrap_or("noah.fischer")
        };
        // Every copy, viewed, shows the same: the message as it now stands.
        for ((conversation, _), copies) in &messages {
            let mut shown = Vec::new();
            for copy in copies {
                let seen = app.tenant.view(&member(viewer(conversation)), copy).await;
                shown.push(card_text(&seen));
            }
            shown.dedup();
            assert_eq!(shown.len(), 1, "{conversation}: {shown:#?}");
        }
        let copies = &messages[&(
            channel("ai-intake"),
            format!("{heading}Posted during a crash"),
        )];
        for copy in copies {
            let shown = app.tenant.view(&member("noah.fischer"), copy).await;
            assert!(!live(&shown), "{}", card_text(&shown));
            assert!(card_text(&shown).contains("Marked complete by Noah Fischer"));
        }
        for role in ["risk", "security"] {
            app.until("the assessment card", |_| {
                app.posts(&channel(role), &format!("{in_flight} · ")).len() == 1
            })
            .await;
        }
        let (filed, completed) = (crashed[0], crashed[1]);
        assert_eq!(state_of(&app, filed).await, State::Submitted);
        assert_eq!(state_of(&app, completed).await, State::InAssessment);
        // Every card exactly once, in its final state; every DM once.
        let once = |conversation: &str, needle: &str| {
            let found = app.posts(conversation, needle);
            let shown: Vec<String> = found.iter().map(|p| card_text(&p.activity)).collect();
            assert_eq!(found.len(), 1, "{needle} in {conversation}: {shown:#?}");
            found.into_iter().next().unwrap()
        };
        for id in &done {
            let reference = id.to_string();
            // A card opens with its request's reference and title.
            let heading = format!("{reference} · ");
            for role in ["ai-intake", "risk", "security", "department-heads"] {
                let card = once(&channel(role), &heading);
                assert!(
                    !live(&card.activity),
                    "{reference} in {role} has a live button: {}",
                    card_text(&card.activity)
                );
            }
            let decided = once(&channel("department-heads"), &heading);
            assert!(card_text(&decided.activity).contains("Approved by Carlos Mendes"));
            let james = chat_of(&app, "james.carter").unwrap();
            once(&james, &format!("{reference} was filed"));
            let active: Vec<_> = app
                .posts(&james, &reference)
                .into_iter()
                .filter(|p| card_text(&p.activity).contains("is now active"))
                .collect();
            assert_eq!(active.len(), 1, "{reference}: told once it is active");
            let marcus = chat_of(&app, "marcus.webb").unwrap();
            let checklist = once(&marcus, &format!("{reference} · conditions to complete"));
            assert!(!live(&checklist.activity), "the checklist is done");
        }
        let card = once(&channel("ai-intake"), &format!("{filed} · "));
        assert!(live(&card.activity), "still waiting for its review");
        let card = once(&channel("ai-intake"), &format!("{completed} · "));
        assert!(!live(&card.activity), "closed in place across the crash");
        for role in ["risk", "security"] {
            let card = once(&channel(role), &format!("{completed} · "));
            assert!(live(&card.activity), "{role} has yet to assess");
        }
        teams_expiry_reminders_under_faults_and_a_crash(&mut app, &done, options()).await;
        // Nothing is left undelivered, and every fault was met.
        assert!(app.store().undelivered(100).await.unwrap().is_empty());
        let calls = app.fake().calls();
        for (kind, status) in [
            ("post", 429),
            ("post", 412),
            ("post", 503),
            ("update", 500),
            ("token", 503),
        ] {
            assert!(
                calls.iter().any(|c| c.kind == kind && c.status == status),
                "no {kind} answered {status}"
            );
        }
        app.stop().await;
    }
);

/// The Teams half of [`expiry_reminders_under_faults_and_a_crash`]: the digests of
/// the second lead time are refused (503) and wait for their retry when the server
/// crashes (a Teams post in flight at a crash cannot be looked up afterwards).
async fn teams_expiry_reminders_under_faults_and_a_crash(
    app: &mut TeamsApp,
    done: &[RequestId],
    options: waiver::app::Options,
) {
    use waiver::fakes::teams::Fault;
    let leads = lead_instants(app.store(), done).await;
    let mut options = Some(options);
    for (k, (days, at)) in leads.into_iter().enumerate() {
        inject_teams(app, k);
        if k == 1 {
            app.fake().fail_next("post", Fault::Status(503));
            app.fake().fail_next("post", Fault::Status(503));
        }
        let report = app.service().sweep(at, false).await.unwrap();
        for id in done {
            assert!(
                report.reminders.iter().any(|(r, _, _)| r == &Some(*id)),
                "{id}: reminded {days} days before it expires"
            );
        }
        if k == 1 {
            settled(app, None).await;
            app.crash_and_restart(options.take().unwrap()).await;
        }
        let again = app.service().sweep(at, false).await.unwrap();
        assert!(again.reminders.is_empty(), "{:?}", again.reminders);
    }
    app.drained().await;
    // One digest per person per lead time, each naming every request once.
    for person in ["james.carter", "marcus.webb"] {
        let chat = chat_of(app, person).unwrap();
        let digests: Vec<String> = app
            .posts(&chat, "Renew it to keep using it")
            .iter()
            .map(|p| card_text(&p.activity))
            .collect();
        assert_eq!(digests.len(), 3, "{person}: {digests:#?}");
        for (digest, left) in digests.iter().zip(["29 days", "6 days", "24 hours"]) {
            assert!(digest.contains(&format!("expires in {left}")), "{digest}");
            let items = |id: &RequestId| digest.matches(&format!("{id} \"")).count();
            digest_lists(digest, done, waiver::chat::teams::cards::DIGEST_PAGE, items);
        }
    }
}

/// The expiry lead times (30, 7 and 1 days) of the `done` requests, a minute after
/// each has passed for the last of them to expire: (days, instant).
async fn lead_instants(
    store: &waiver::store::Store,
    done: &[RequestId],
) -> Vec<(i64, waiver::domain::Timestamp)> {
    let mut expiry = 0;
    for id in done {
        let r = store.load(*id).await.unwrap().unwrap();
        expiry = expiry.max(r.grant.unwrap().expires_at.millis());
    }
    [30, 7, 1]
        .into_iter()
        .map(|days| {
            let at = expiry - days * 86_400_000 + 60_000;
            (days, waiver::domain::Timestamp::from_millis(at))
        })
        .collect()
}

/// A digest of `done`'s reminders: headed with how many there are, listing each
/// request at most once, and every one of them when they are few (at most `shown`
/// are listed in full).
fn digest_lists(
    digest: &str,
    done: &[RequestId],
    shown: usize,
    items: impl Fn(&RequestId) -> usize,
) {
    let n = done.len();
    let heading = if n == 1 {
        "Reminder".to_string()
    } else {
        format!("{n} reminders")
    };
    assert!(
        digest.lines().next() == Some(heading.as_str())
            || digest.starts_with(&format!("# {heading}\n")),
        "{digest}"
    );
    let listed: usize = done
        .iter()
        .map(|id| {
            let times = items(id);
            assert!(times <= 1, "{id} listed {times} times: {digest}");
            times
        })
        .sum();
    // Slack fits fewer in a message's 50 blocks than `shown`; at least ten always.
    if n <= 10 {
        assert_eq!(listed, n, "{digest}");
    } else {
        assert!((10..=shown).contains(&listed), "{listed} listed: {digest}");
    }
}

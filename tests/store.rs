//! The storage contract: every behaviour runs on SQLite and on PostgreSQL.

mod common;

use common::flow::{Flow, approve, day, feedback};
use common::{TestDb, form, now, p};
use waiver::domain::{Action, Actor, ConditionSpec, State, Timestamp};
use waiver::service::{Acted, Attempt};
use waiver::store::{Change, Outcome, StoreError};

both!(
    a_request_round_trips_with_every_record,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.act(
            "noah.fischer",
            Action::SendBack {
                questions: "Which repos?".into(),
            },
        )
        .await;
        let mut input = form();
        input.scope_systems = "all repositories".into();
        let content = Box::new(
            waiver::domain::RequestContent::parse(&input, flow.svc.governance(), now().date())
                .unwrap(),
        );
        flow.act(
            "james.carter",
            Action::Update {
                content,
                note: Some("All repos".into()),
            },
        )
        .await;
        flow.assessed(3, 3).await;
        flow.act("julia.schmidt", feedback()).await;
        flow.act("kenji.watanabe", feedback()).await;
        let cond = ConditionSpec {
            text: "Enable SSO".into(),
            owner: p("kenji.watanabe"),
            due: day("2026-12-15"),
        };
        let in_memory = flow.act("hannah.berg", approve(vec![cond])).await;
        assert_eq!(in_memory.state, State::Approved);
        let loaded = flow.request().await;
        assert_eq!(
            loaded, in_memory,
            "{}: load returns exactly what was committed",
            db.backend
        );
        assert_eq!(loaded.versions.len(), 2);
        assert_eq!(loaded.reviews.len(), 2);
        assert_eq!(loaded.assessments.len(), 2);
        assert_eq!(loaded.comments.len(), 2);
        assert_eq!(loaded.votes.len(), 1);
        assert_eq!(loaded.conditions.len(), 1);
        let after = flow
            .act("kenji.watanabe", Action::CompleteCondition { condition: 1 })
            .await;
        assert_eq!(after.state, State::Active);
        assert_eq!(flow.request().await, after);
        let decisions = db.opened().decisions(flow.id).await.unwrap();
        assert_eq!(decisions.len(), 1);
        assert_eq!(
            decisions[0].governance_hash,
            flow.svc.governance().hash.as_str()
        );
        assert_eq!(decisions[0].policy_version, "2026.2");
        assert_eq!(
            decisions[0].snapshot["version"], 2,
            "the snapshot shows the version decided on"
        );
        assert_eq!(
            decisions[0].snapshot["content"]["scope_systems"],
            "all repositories"
        );
    }
);

both!(references_are_sequential, |db: TestDb| async move {
    let svc = db.service().await;
    let a = Flow::file(svc.clone()).await;
    let b = Flow::file(svc.clone()).await;
    assert_eq!(a.id.to_string(), "AIX-0001");
    assert_eq!(b.id.to_string(), "AIX-0002");
});

both!(
    two_concurrent_approvals_of_the_same_version_one_wins,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.assessed(4, 4).await; // high tier: board + CISO
        flow.act("julia.schmidt", feedback()).await;
        flow.act("kenji.watanabe", feedback()).await;
        let before = flow.request().await;
        let gov = flow.svc.governance().clone();
        let a = before
            .apply(
                &Actor::Person(p("hannah.berg")),
                before.version(),
                approve(vec![]),
                &gov,
                now(),
            )
            .unwrap();
        let b = before
            .apply(
                &Actor::Person(p("william.hughes")),
                before.version(),
                approve(vec![]),
                &gov,
                now(),
            )
            .unwrap();
        let audit = |who: &str| waiver::store::AuditRecord {
            at: now(),
            actor: who.into(),
            request: Some(before.id),
            action: "approve".into(),
            outcome: Outcome::Applied,
            details: serde_json::json!({}),
        };
        let store = db.opened();
        let (ra, rb) = tokio::join!(
            store.commit(
                &before,
                &a.request,
                Change {
                    event: &a.event,
                    audit: audit("hannah.berg"),
                    outbox: vec![],
                    idempotency_key: None,
                    scheduling: Default::default(),
                }
            ),
            store.commit(
                &before,
                &b.request,
                Change {
                    event: &b.event,
                    audit: audit("william.hughes"),
                    outbox: vec![],
                    idempotency_key: None,
                    scheduling: Default::default(),
                }
            ),
        );
        let wins = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(wins, 1, "{}: exactly one commit wins", db.backend);
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(matches!(loser, Err(StoreError::Conflict)), "{loser:?}");
        let stored = flow.request().await;
        assert_eq!(stored.votes.len(), 1, "the losing vote left nothing behind");
        assert_eq!(stored.revision, before.revision + 1);
    }
);

both!(
    the_service_retries_contended_votes_and_refuses_double_clicks,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.assessed(4, 4).await;
        flow.act("julia.schmidt", feedback()).await;
        flow.act("kenji.watanabe", feedback()).await;
        let v = flow.request().await.version();
        let act = |who: &'static str| {
            let svc = flow.svc.clone();
            let id = flow.id;
            async move {
                svc.act(
                    Attempt::new(Actor::Person(p(who)), id, v, approve(vec![])),
                    now(),
                )
                .await
                .unwrap()
            }
        };
        // Two roles approving at once both land (the second re-reads and re-decides) ...
        let (a, b) = tokio::join!(act("hannah.berg"), act("rachel.green"));
        assert!(
            matches!(a, Acted::Applied { .. }) && matches!(b, Acted::Applied { .. }),
            "{a:?} {b:?}"
        );
        assert_eq!(flow.request().await.state, State::Active);
        // ... while a double click is one vote and one refusal.
        let flow = Flow::file(flow.svc.clone()).await;
        flow.assessed(1, 2).await;
        let v = flow.request().await.version();
        let act = |who: &'static str| {
            let svc = flow.svc.clone();
            let id = flow.id;
            async move {
                svc.act(
                    Attempt::new(Actor::Person(p(who)), id, v, approve(vec![])),
                    now(),
                )
                .await
                .unwrap()
            }
        };
        let (a, b) = tokio::join!(act("carlos.mendes"), act("carlos.mendes"));
        let applied = [&a, &b]
            .iter()
            .filter(|x| matches!(x, Acted::Applied { .. }))
            .count();
        assert_eq!(applied, 1, "{a:?} {b:?}");
        assert!([&a, &b].iter().any(|x| matches!(x, Acted::Refused { .. })));
        assert_eq!(flow.request().await.votes.len(), 1);
    }
);

both!(
    refusals_are_audited_and_change_nothing,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        let before = flow.request().await;
        let r = flow
            .svc
            .act(
                Attempt::new(
                    Actor::Person(p("james.carter")),
                    flow.id,
                    1,
                    Action::MarkComplete,
                ),
                now(),
            )
            .await
            .unwrap();
        assert!(matches!(r, Acted::Refused { .. }));
        assert_eq!(flow.request().await, before);
        let audit = db.opened().audit_of(flow.id).await.unwrap();
        let last = audit.last().unwrap();
        assert_eq!(last.outcome, Outcome::Refused);
        assert_eq!(last.actor, "james.carter");
        assert!(
            last.details["reason"]
                .as_str()
                .unwrap()
                .contains("AI intake desk")
        );
    }
);

both!(
    an_idempotency_key_is_processed_once,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        let key = Some("slack-event:Ev123".to_string());
        let first = flow
            .svc
            .act(
                Attempt::new(
                    Actor::Person(p("olivia.brown")),
                    flow.id,
                    1,
                    Action::Comment { text: "hi".into() },
                )
                .idempotent(key.clone().unwrap()),
                now(),
            )
            .await
            .unwrap();
        assert!(matches!(first, Acted::Applied { .. }));
        let again = flow
            .svc
            .act(
                Attempt::new(
                    Actor::Person(p("olivia.brown")),
                    flow.id,
                    1,
                    Action::Comment { text: "hi".into() },
                )
                .idempotent(key.clone().unwrap()),
                now(),
            )
            .await
            .unwrap();
        assert!(matches!(again, Acted::Duplicate));
        assert_eq!(flow.request().await.comments.len(), 1);
        assert!(
            db.opened()
                .claim_idempotency_key("other", now())
                .await
                .unwrap()
        );
        assert!(
            !db.opened()
                .claim_idempotency_key("other", now())
                .await
                .unwrap()
        );
    }
);

both!(
    state_audit_and_outbox_commit_together_or_not_at_all,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        assert!(
            !db.opened().outbox().await.unwrap().is_empty(),
            "filing told the requester"
        );
        let before = flow.request().await;
        let gov = flow.svc.governance().clone();
        let t = before
            .apply(
                &Actor::Person(p("noah.fischer")),
                1,
                Action::MarkComplete,
                &gov,
                now(),
            )
            .unwrap();
        let ctx = waiver::chat::plan::Context {
            gov: &gov,
            platforms: &[waiver::message::Platform::Slack],
            similar: &[],
        };
        let message = waiver::chat::plan::plan(&ctx, Some(&before), &t.request, &t.event);
        assert!(!message.is_empty());
        // Someone else moves the request on first: our transition is now stale.
        let other = before
            .apply(
                &Actor::Person(p("lucia.romero")),
                1,
                Action::SendBack {
                    questions: "Scope?".into(),
                },
                &gov,
                now(),
            )
            .unwrap();
        let audit = |who: &str, action: &str| waiver::store::AuditRecord {
            at: now(),
            actor: who.into(),
            request: Some(flow.id),
            action: action.into(),
            outcome: Outcome::Applied,
            details: serde_json::json!({}),
        };
        db.opened()
            .commit(
                &before,
                &other.request,
                Change {
                    event: &other.event,
                    audit: audit("lucia.romero", "send_back"),
                    outbox: vec![],
                    idempotency_key: None,
                    scheduling: Default::default(),
                },
            )
            .await
            .unwrap();
        let outbox_before = db.opened().outbox().await.unwrap().len();
        let audit_before = db.opened().audit_of(flow.id).await.unwrap().len();
        let stored = flow.request().await;
        let result = db
            .opened()
            .commit(
                &before,
                &t.request,
                Change {
                    event: &t.event,
                    audit: waiver::store::AuditRecord {
                        at: now(),
                        actor: "noah.fischer".into(),
                        request: Some(flow.id),
                        action: "mark_complete".into(),
                        outcome: Outcome::Applied,
                        details: serde_json::json!({}),
                    },
                    outbox: message,
                    idempotency_key: Some("k1".into()),
                    scheduling: Default::default(),
                },
            )
            .await;
        assert!(matches!(result, Err(StoreError::Conflict)));
        assert_eq!(
            db.opened().outbox().await.unwrap().len(),
            outbox_before,
            "no outbox rows"
        );
        assert_eq!(
            db.opened().audit_of(flow.id).await.unwrap().len(),
            audit_before,
            "no audit entry"
        );
        assert_eq!(flow.request().await, stored);
        assert!(
            db.opened()
                .claim_idempotency_key("k1", now())
                .await
                .unwrap(),
            "key rolled back"
        );
    }
);

both!(
    the_audit_chain_verifies_and_names_the_first_altered_entry,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.assessed(1, 2).await;
        flow.act("carlos.mendes", approve(vec![])).await;
        flow.act(
            "raj.patel",
            Action::Revoke {
                reason: "Vendor breach".into(),
            },
        )
        .await;
        let report = db
            .opened()
            .verify_audit()
            .await
            .unwrap()
            .expect("intact after a full lifecycle");
        assert_eq!(report.entries, 6);

        db.opened()
            .execute_raw("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
            .await
            .unwrap();
        let broken = db.opened().verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");
        assert!(broken.reason.contains("column"), "{broken}");
        db.opened()
            .execute_raw("UPDATE audit SET actor = 'omar.haddad' WHERE seq = 3")
            .await
            .unwrap();
        assert!(
            db.opened().verify_audit().await.unwrap().is_ok(),
            "restored"
        );

        db.opened()
            .execute_raw(
                "UPDATE audit SET entry = replace(entry, 'carlos.mendes', 'mallory') WHERE seq = 5",
            )
            .await
            .unwrap();
        let broken = db.opened().verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 5, "{broken}");
        assert!(broken.reason.contains("hash"), "{broken}");
    }
);

both!(
    deleted_audit_entries_are_detected,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.assessed(1, 2).await;
        db.opened()
            .execute_raw("DELETE FROM audit WHERE seq = 2")
            .await
            .unwrap();
        let broken = db.opened().verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");
        assert!(broken.reason.contains("missing"), "{broken}");
    }
);

both!(
    a_truncated_audit_tail_is_detected,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.assessed(1, 2).await;
        db.opened()
            .execute_raw("DELETE FROM audit WHERE seq = 4")
            .await
            .unwrap();
        let broken = db.opened().verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 4, "{broken}");
        assert!(broken.reason.contains("removed from the end"), "{broken}");
    }
);

both!(
    verifying_while_entries_are_appended_finds_the_chain_intact,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        // A running server appends while an auditor verifies: never a tampered tail.
        let (svc, id) = (flow.svc.clone(), flow.id);
        let writer = tokio::spawn(async move {
            for i in 0..60 {
                let comment = Action::Comment {
                    text: format!("note {i}"),
                };
                let attempt = Attempt::new(Actor::Person(p("james.carter")), id, 1, comment);
                svc.act(attempt, now()).await.unwrap();
            }
        });
        while !writer.is_finished() {
            let verified = db.opened().verify_audit().await.unwrap();
            assert!(verified.is_ok(), "{verified:?}");
        }
        writer.await.unwrap();
        let report = db.opened().verify_audit().await.unwrap().unwrap();
        assert_eq!(report.entries, 61);
    }
);

both!(
    an_audit_entry_past_the_head_is_detected,
    |db: TestDb| async move {
        let flow = Flow::file(db.service().await).await;
        flow.assessed(1, 2).await;
        // The head is put back one entry, as if entry 4 had been inserted behind it.
        db.opened()
            .execute_raw(
                "UPDATE audit_head SET seq = seq - 1, \
                 hash = (SELECT prev_hash FROM audit WHERE audit.seq = audit_head.seq)",
            )
            .await
            .unwrap();
        let broken = db.opened().verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 4, "{broken}");
        assert!(
            broken.reason.contains("without moving the head"),
            "{broken}"
        );
    }
);

both!(
    migrations_are_idempotent_and_queries_find_requests,
    |db: TestDb| async move {
        let svc = db.service().await;
        db.opened().migrate().await.unwrap();
        let flow = Flow::file(svc.clone()).await;
        flow.assessed(1, 2).await;
        flow.act("carlos.mendes", approve(vec![])).await;
        let second = Flow::file(svc.clone()).await;
        let mine = db
            .opened()
            .requests_by(&p("james.carter"), 10)
            .await
            .unwrap();
        assert_eq!(
            mine.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![second.id, flow.id]
        );
        let owned = db.opened().owned_by(&p("marcus.webb"), 10).await.unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(
            owned[0].expires_at,
            Some(Timestamp::parse_rfc3339("2027-04-01T00:00:00Z").unwrap())
        );
        let similar = db
            .opened()
            .similar(&second.request().await, 5)
            .await
            .unwrap();
        assert_eq!(
            similar.iter().map(|s| (s.id, s.state)).collect::<Vec<_>>(),
            vec![(flow.id, State::Active)]
        );
        let waiting = db
            .opened()
            .in_states(&[State::Submitted], 10)
            .await
            .unwrap();
        assert_eq!(
            waiting.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![second.id]
        );
        let changed = db.opened().changed_since(Some(now())).await.unwrap();
        assert_eq!(changed, vec![flow.id, second.id]);
    }
);

both!(
    concurrent_changes_keep_one_transaction_semantics,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = Flow::file(svc.clone()).await;
        // Forty people comment on one request at once: every comment lands (conflicts are
        // retried from a fresh read), each exactly once.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (svc, id) = (svc.clone(), flow.id);
            tasks.push(tokio::spawn(async move {
                let action = Action::Comment {
                    text: format!("comment {i}"),
                };
                let attempt = Attempt::new(Actor::Person(p("olivia.brown")), id, 1, action)
                    .idempotent(format!("ev-{i}"));
                svc.act(attempt, now()).await.unwrap()
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Acted::Applied { .. }));
        }
        let r = flow.request().await;
        assert_eq!(r.comments.len(), 40);
        assert_eq!(r.revision, 40, "one revision per comment");
        // The same delivery twenty times at once: processed once.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (svc, id) = (svc.clone(), flow.id);
            tasks.push(tokio::spawn(async move {
                let action = Action::Comment {
                    text: "retry".into(),
                };
                let attempt = Attempt::new(Actor::Person(p("olivia.brown")), id, 1, action)
                    .idempotent("ev-same");
                svc.act(attempt, now()).await.unwrap()
            }));
        }
        let mut applied = 0;
        for t in tasks {
            match t.await.unwrap() {
                Acted::Applied { .. } => applied += 1,
                Acted::Duplicate => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(applied, 1);
        // Thirty filings at once get thirty consecutive references.
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move { Flow::file(svc).await.id.get() }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort();
        assert_eq!(ids, (2..=31).collect::<Vec<_>>());
        let report = db
            .opened()
            .verify_audit()
            .await
            .unwrap()
            .expect("chain intact");
        assert_eq!(report.entries, 1 + 40 + 1 + 30);
    }
);

/// The migration's backfill of `request_events` from the audit trail, as the
/// backend's migration file states it.
fn events_backfill(backend: &str) -> &'static str {
    let migration = match backend {
        "sqlite" => include_str!("../migrations/sqlite/0006_surfaces.sql"),
        _ => include_str!("../migrations/postgres/0006_surfaces.sql"),
    };
    let start = migration
        .find("INSERT INTO request_events")
        .expect("the migration backfills events");
    let end = start + migration[start..].find(';').expect("the statement ends");
    &migration[start..=end]
}

both!(
    recorded_events_backfill_from_the_audit_trail_as_the_writer_records_them,
    |db: TestDb| async move {
        let svc = db.service().await;
        // One request sent back, updated, assessed and approved; one rejected.
        let granted = Flow::file(svc.clone()).await;
        granted
            .act(
                "noah.fischer",
                Action::SendBack {
                    questions: "Which repos?".into(),
                },
            )
            .await;
        let content = Box::new(
            waiver::domain::RequestContent::parse(&form(), svc.governance(), now().date()).unwrap(),
        );
        granted
            .act(
                "james.carter",
                Action::Update {
                    content,
                    note: None,
                },
            )
            .await;
        granted.assessed(1, 2).await;
        granted.act("carlos.mendes", approve(vec![])).await;
        let rejected = Flow::file(svc.clone()).await;
        rejected.assessed(1, 2).await;
        rejected
            .act(
                "carlos.mendes",
                Action::Reject {
                    reason: "Not needed".into(),
                },
            )
            .await;
        let store = db.opened();
        let live = (
            store.events_of(granted.id).await.unwrap(),
            store.events_of(rejected.id).await.unwrap(),
        );
        let kinds =
            |e: &[waiver::store::EventRecord]| e.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
        assert_eq!(
            kinds(&live.0),
            [
                "submitted",
                "sent_back",
                "updated",
                "marked_complete",
                "assessed",
                "assessed",
                "approved"
            ]
        );
        assert_eq!(kinds(&live.1).last().map(String::as_str), Some("rejected"));
        // A database migrated from before the table existed gets the same rows.
        store
            .execute_raw("DELETE FROM request_events")
            .await
            .unwrap();
        store
            .execute_raw(events_backfill(db.backend))
            .await
            .unwrap();
        let backfilled = (
            store.events_of(granted.id).await.unwrap(),
            store.events_of(rejected.id).await.unwrap(),
        );
        assert_eq!(backfilled, live);
    }
);

//! Step 7 on both databases: time moves only through `sweep(now)`, never by sleeping.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::flow::{Flow, approve, day, feedback};
use common::{SHIPPED, TestDb, now, p, uid};
use waiver::domain::{
    Action, Actor, AttestationAnswer, ConditionSpec, RequestId, State, Terms, Timestamp,
};
use waiver::governance;
use waiver::message::{Address, Outgoing, Section};
use waiver::service::{Acted, Attempt, Service, Submitted, SweepReport};
use waiver::store::ReminderStatus;

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn ms(t: Timestamp, delta: i64) -> Timestamp {
    Timestamp::from_millis(t.millis() + delta)
}

/// A message's sections with a digest's items laid out in place.
fn flat(sections: &[Section]) -> Vec<&Section> {
    sections
        .iter()
        .flat_map(|s| match s {
            Section::Items { items, .. } => items.iter().flatten().collect(),
            other => vec![other],
        })
        .collect()
}

/// The digests a sweep queued: address target → the items' texts.
fn digests(report: &SweepReport) -> HashMap<String, Vec<String>> {
    report
        .digests
        .iter()
        .map(|d| {
            let texts = flat(&d.message.sections)
                .into_iter()
                .filter_map(|s| match s {
                    Section::Text { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect();
            (d.to.target(), texts)
        })
        .collect()
}

fn buttons(report: &SweepReport, target: &str) -> Vec<String> {
    report
        .digests
        .iter()
        .filter(|d| d.to.target() == target)
        .flat_map(|d| flat(&d.message.sections))
        .filter_map(|s| match s {
            Section::Actions { buttons } => Some(buttons.iter().map(|b| b.label.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

fn dm(person: &str) -> String {
    format!("@{}", uid(person))
}

/// Medium tier (ai-governance-lead approves; review every 90 days), one condition for
/// kenji.watanabe due 2026-12-15, valid until 2027-08-01 (expires 2027-08-02T00:00Z).
async fn approved(svc: Service) -> Flow {
    let flow = Flow::file(svc).await;
    flow.assessed(3, 3).await;
    flow.act("julia.schmidt", feedback()).await;
    flow.act("kenji.watanabe", feedback()).await;
    let mut action = approve(vec![ConditionSpec {
        text: "Enable SSO".into(),
        owner: p("kenji.watanabe"),
        due: day("2026-12-15"),
    }]);
    if let Action::Approve { terms, .. } = &mut action {
        *terms = Terms {
            expiry: day("2027-08-01"),
            ..terms.clone()
        };
    }
    let r = flow.act("hannah.berg", action).await;
    assert_eq!(r.state, State::Approved);
    flow
}

/// `who` acts on the flow's current version at `t`.
async fn act_at(flow: &Flow, who: &str, action: Action, t: Timestamp) {
    let seen = flow.request().await.version();
    let acted = flow
        .svc
        .act(
            Attempt::new(Actor::Person(p(who)), flow.id, seen, action),
            t,
        )
        .await
        .unwrap();
    assert!(matches!(acted, Acted::Applied { .. }), "{who}: {acted:?}");
}

/// Kenji marks the SSO condition done at `t`: active from then (its start has passed).
async fn sso_done(flow: &Flow, t: Timestamp) {
    act_at(
        flow,
        "kenji.watanabe",
        Action::CompleteCondition { condition: 1 },
        t,
    )
    .await;
}

fn still_needed(note: &str) -> Action {
    Action::Attest {
        answer: AttestationAnswer::StillNeeded,
        note: note.into(),
    }
}

async fn sweep(svc: &Service, t: &str) -> SweepReport {
    svc.sweep(at(t), false).await.unwrap()
}

fn nothing(report: &SweepReport) -> bool {
    report.transitions.is_empty() && report.reminders.is_empty() && report.digests.is_empty()
}

both!(
    stage_sla_reminds_at_half_then_escalates_once,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = Flow::file(svc.clone()).await; // filed 2026-11-24T10:00Z, SLA 24 h
        let intake = svc
            .governance()
            .role(&waiver::governance::RoleId::new("ai-intake"))
            .and_then(|r| r.channels.slack.clone())
            .unwrap();
        assert!(nothing(&sweep(&svc, "2026-11-24T21:59:59Z").await));

        let half = sweep(&svc, "2026-11-24T22:00:00Z").await;
        let d = digests(&half);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[&intake][0].contains("AIX-0001") && d[&intake][0].contains("due by"));
        assert!(nothing(&sweep(&svc, "2026-11-24T22:00:00Z").await), "once");
        assert!(nothing(&sweep(&svc, "2026-11-25T09:00:00Z").await));

        let over = sweep(&svc, "2026-11-25T10:00:00Z").await;
        let d = digests(&over);
        assert!(d[&intake][0].contains("overdue"), "{d:?}");
        let lead = svc
            .governance()
            .role(&waiver::governance::RoleId::new("ai-governance-lead"))
            .and_then(|r| r.channels.slack.clone())
            .unwrap();
        assert!(d[&lead][0].starts_with("Escalation: AIX-0001"), "{d:?}");
        assert!(nothing(&sweep(&svc, "2026-11-26T10:00:00Z").await), "once");

        // Acting ends the stage: the next stage has its own clock.
        flow.act("noah.fischer", Action::MarkComplete).await;
        let audit = db.opened().audit_of(flow.id).await.unwrap();
        assert!(!audit.is_empty());
        let reminders = db.opened().reminders(Some(flow.id)).await.unwrap();
        assert_eq!(reminders.len(), 3);
        assert!(reminders.iter().all(|r| r.status == ReminderStatus::Sent));
    }
);

both!(
    conditions_review_and_expiry_happen_on_time_and_once,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = approved(svc.clone()).await;
        let kenji = dm("kenji.watanabe");
        let marcus = dm("marcus.webb");
        let james = dm("james.carter");

        // Condition due on its date, overdue the day after (owner + approvers).
        assert!(nothing(&sweep(&svc, "2026-12-14T23:59:59Z").await));
        let due = sweep(&svc, "2026-12-15T00:00:00Z").await;
        assert!(digests(&due)[&kenji][0].contains("condition 1 \"Enable SSO\" is due today"));
        assert_eq!(buttons(&due, &kenji), ["Mark 1 done"]);
        assert!(nothing(&sweep(&svc, "2026-12-15T12:00:00Z").await));
        let over = sweep(&svc, "2026-12-16T00:00:00Z").await;
        let d = digests(&over);
        assert!(d[&kenji][0].contains("is overdue"), "{d:?}");
        assert!(
            d.values()
                .flatten()
                .any(|t| t.starts_with("Escalation: AIX-0001")
                    && t.contains("(owner Kenji Watanabe)")),
            "{d:?}"
        );
        assert!(nothing(&sweep(&svc, "2026-12-16T00:00:00Z").await));

        // Marking it done activates the exception (its start has passed).
        sso_done(&flow, at("2026-12-16T09:00:00Z")).await;
        assert_eq!(flow.request().await.state, State::Active);

        // Review due on the tier's cadence (90 days after the decision).
        let review_at = flow.request().await.grant.unwrap().next_review_at.unwrap();
        assert_eq!(review_at, at("2027-02-22T10:00:00Z"));
        assert!(nothing(&svc.sweep(ms(review_at, -1), false).await.unwrap()));
        let review = svc.sweep(review_at, false).await.unwrap();
        assert_eq!(review.transitions, vec![(flow.id, "mark_review_due")]);
        assert_eq!(flow.request().await.state, State::ReviewDue);
        assert_eq!(
            buttons(&review, &marcus),
            ["Still needed", "Changed…", "No longer needed"]
        );
        assert!(nothing(&svc.sweep(review_at, false).await.unwrap()));

        // Still needed: the next review moves on by the cadence from the attestation.
        let attested = at("2027-02-23T09:00:00Z");
        act_at(&flow, "marcus.webb", still_needed(""), attested).await;
        let r = flow.request().await;
        assert_eq!(r.state, State::Active);
        assert_eq!(
            r.grant.as_ref().unwrap().next_review_at,
            Some(attested.plus_days(90))
        );
        assert!(nothing(&sweep(&svc, "2027-05-24T08:59:59Z").await));
        let second = sweep(&svc, "2027-05-24T09:00:00Z").await;
        assert_eq!(second.transitions, vec![(flow.id, "mark_review_due")]);
        act_at(
            &flow,
            "marcus.webb",
            still_needed("still used"),
            at("2027-05-24T10:00:00Z"),
        )
        .await;

        // Expiry reminders at 30, 7 and 1 days, to the owner and the requester.
        let expires = r.grant.as_ref().unwrap().expires_at;
        assert_eq!(expires, at("2027-08-02T00:00:00Z"));
        for (when, days) in [
            ("2027-07-03T00:00:00Z", "30 days"),
            ("2027-07-26T00:00:00Z", "7 days"),
            ("2027-08-01T00:00:00Z", "1 day,"),
        ] {
            assert!(nothing(&svc.sweep(ms(at(when), -1), false).await.unwrap()));
            let lead = sweep(&svc, when).await;
            let d = digests(&lead);
            assert!(
                d[&marcus][0].contains(&format!("expires in {days}")),
                "{d:?}"
            );
            assert!(
                d[&james][0].contains(&format!("expires in {days}")),
                "{d:?}"
            );
            assert_eq!(buttons(&lead, &marcus), ["Renew…"]);
            assert!(nothing(&sweep(&svc, when).await), "once");
        }

        // Expiry at the exact instant, not a millisecond before.
        assert!(nothing(&svc.sweep(ms(expires, -1), false).await.unwrap()));
        assert_eq!(flow.request().await.state, State::Active);
        let expiry = svc.sweep(expires, false).await.unwrap();
        assert_eq!(expiry.transitions, vec![(flow.id, "expire")]);
        let r = flow.request().await;
        assert_eq!(r.state, State::Expired);
        assert_eq!(r.closure.as_ref().unwrap().at, expires);
        let d = digests(&expiry);
        assert!(d[&marcus][0].contains("has expired"), "{d:?}");
        assert!(d[&james][0].contains("has expired"), "{d:?}");
        // The affected department's channel is told, and the checklist card updated.
        let outbox = db.opened().outbox().await.unwrap();
        let announced = outbox.iter().any(|o| {
            let m: &Outgoing = &o.outgoing;
            matches!(m.to, Address::Channel { .. })
                && m.card.is_none()
                && m.message
                    .summary
                    .contains("has expired and may no longer be used")
        });
        assert!(announced);
        assert!(nothing(
            &svc.sweep(expires.plus_days(400), false).await.unwrap()
        ));
        assert!(db.opened().verify_audit().await.unwrap().is_ok());
    }
);

both!(
    an_overdue_condition_suspends_the_exception_until_it_is_done,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = approved(svc.clone()).await; // SSO due 2026-12-15, grace 7 days
        let kenji = dm("kenji.watanabe");
        let marcus = dm("marcus.webb");
        let james = dm("james.carter");
        sweep(&svc, "2026-12-16T00:00:00Z").await; // due and overdue reminders
        assert!(nothing(&sweep(&svc, "2026-12-22T23:59:59Z").await));

        let suspended = sweep(&svc, "2026-12-23T00:00:00Z").await;
        assert_eq!(suspended.transitions, vec![(flow.id, "suspend")]);
        let r = flow.request().await;
        assert_eq!(r.state, State::Suspended);
        assert_eq!(r.stage_since, at("2026-12-23T00:00:00Z"));
        let d = digests(&suspended);
        for who in [&kenji, &marcus, &james] {
            assert!(
                d[who].iter().any(|t| t.contains("AIX-0001")
                    && t.contains("is suspended: condition 1 (Enable SSO) was due 2026-12-15")),
                "{who}: {d:?}"
            );
        }
        assert!(nothing(&sweep(&svc, "2026-12-23T00:00:00Z").await), "once");
        assert!(nothing(&sweep(&svc, "2026-12-23T12:00:00Z").await));
        let outbox = db.opened().outbox().await.unwrap();
        let announced = |text: &str| {
            outbox.iter().any(|o| {
                matches!(o.outgoing.to, Address::Channel { .. })
                    && o.outgoing.card.is_none()
                    && o.outgoing.message.summary.contains(text)
            })
        };
        assert!(announced("is suspended and may not be used"));
        // The owner's checklist says why, and still has the Mark done button.
        let checklist = outbox
            .iter()
            .rev()
            .find(|o| {
                o.outgoing
                    .card
                    .as_deref()
                    .is_some_and(|k| k.contains("checklist"))
            })
            .expect("a checklist card");
        let json = serde_json::to_string(&checklist.outgoing.message).unwrap();
        assert!(
            json.contains(
                "Suspended since 2026-12-23 00:00 UTC: may not be used until condition 1 \
                 (Enable SSO, due 2026-12-15) is done"
            ),
            "{json}"
        );
        assert!(json.contains("Mark 1 done"), "{json}");

        // Doing the condition lifts the suspension; with nothing else open it is active.
        sso_done(&flow, at("2026-12-24T09:00:00Z")).await;
        let r = flow.request().await;
        assert_eq!(r.state, State::Active);
        let outbox = db.opened().outbox().await.unwrap();
        assert!(outbox.iter().any(|o| {
            matches!(o.outgoing.to, Address::Channel { .. })
                && o.outgoing
                    .message
                    .summary
                    .contains("is no longer suspended: condition 1 is done. It is active again.")
        }));
        let audit = db.opened().audit_of(flow.id).await.unwrap();
        let suspensions: Vec<_> = audit.iter().filter(|e| e.action == "suspend").collect();
        assert_eq!(suspensions.len(), 1);
        assert_eq!(suspensions[0].details["to"], "suspended");
        assert!(db.opened().verify_audit().await.unwrap().is_ok());
    }
);

both!(
    a_grace_period_turned_on_later_suspends_exceptions_already_overdue,
    |db: TestDb| async move {
        // Governance without suspension: the overdue condition is only reminded.
        let lenient = SHIPPED.replacen("suspend_after_overdue_days = 7\n", "", 1);
        assert_ne!(lenient, SHIPPED);
        let gov = Arc::new(governance::parse(&lenient).unwrap());
        let before = Service::new(db.store().await, gov, waiver::clock::Clock::System);
        let flow = approved(before.clone()).await;
        sweep(&before, "2026-12-16T00:00:00Z").await;
        assert!(nothing(&sweep(&before, "2027-01-20T00:00:00Z").await));
        assert_eq!(flow.request().await.state, State::Approved);

        // The file now suspends after 7 days: loading it makes the exception due, and
        // the next sweep suspends it at once (it is long past the grace).
        let after = db.service().await;
        let t = at("2027-01-20T00:00:00Z");
        after.reassess_policies(t, false).await.unwrap();
        let report = after.sweep(t, false).await.unwrap();
        assert_eq!(report.transitions, vec![(flow.id, "suspend")]);
        assert_eq!(flow.request().await.state, State::Suspended);
    }
);

both!(
    a_changed_attestation_sends_it_back_to_assessment_and_says_so,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = approved(svc.clone()).await;
        sso_done(&flow, at("2026-12-01T09:00:00Z")).await;
        let review_at = flow.request().await.grant.unwrap().next_review_at.unwrap();
        svc.sweep(review_at, false).await.unwrap();
        act_at(
            &flow,
            "marcus.webb",
            Action::Attest {
                answer: AttestationAnswer::Changed,
                note: "Now also used on customer tickets.".into(),
            },
            ms(review_at, 3_600_000),
        )
        .await;
        let r = flow.request().await;
        assert_eq!(r.state, State::ReassessmentRequired);
        assert_eq!(r.versions.len(), 2, "history kept");
        let outbox = db.opened().outbox().await.unwrap();
        for person in ["james.carter", "marcus.webb"] {
            let to = dm(person);
            assert!(
                outbox.iter().any(|o| o.outgoing.to.target() == to
                    && o.outgoing.message.summary
                        == "AIX-0001 \"Use an LLM coding assistant\" goes back to assessment: \
                            Marcus Webb attested that its use has changed. It stays in force \
                            until a new decision or its expiry."),
                "{person} told"
            );
        }
    }
);

both!(
    catch_up_after_downtime_reminds_once_in_one_digest,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = approved(svc.clone()).await;
        sso_done(&flow, now()).await;
        // No sweep ran for eight months: the review fell due and all three expiry
        // lead times passed.
        let report = sweep(&svc, "2027-08-01T12:00:00Z").await;
        assert_eq!(report.transitions, vec![(flow.id, "mark_review_due")]);
        let marcus = dm("marcus.webb");
        let d = digests(&report);
        let items = &d[&marcus];
        assert_eq!(items.len(), 2, "one review, one expiry reminder: {items:?}");
        assert!(items.iter().any(|t| t.contains("periodic review")));
        // Counted from the sweep, twelve hours before the expiry instant.
        assert!(
            items
                .iter()
                .any(|t| t.contains("expires in 12 hours, at 2027-08-02 00:00 UTC")),
            "{items:?}"
        );
        assert_eq!(
            report
                .digests
                .iter()
                .filter(|x| x.to.target() == marcus)
                .count(),
            1,
            "one message per recipient"
        );
        assert_eq!(report.skipped, 4, "30- and 7-day reminders, for two people");
        assert!(nothing(&sweep(&svc, "2027-08-01T12:00:01Z").await));
    }
);

both!(
    a_catch_up_reminder_counts_the_time_left_from_when_it_is_sent,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = approved(svc.clone()).await;
        sso_done(&flow, now()).await;
        // The 30-day lead passed while no sweep ran; the 7-day lead is still ahead:
        // the 30-day reminder goes out late, and says how long is really left.
        let report = sweep(&svc, "2027-07-25T21:21:00Z").await;
        let items = &digests(&report)[&dm("marcus.webb")];
        let expiry: Vec<&String> = items.iter().filter(|t| t.contains("expires")).collect();
        assert_eq!(expiry.len(), 1, "one expiry reminder: {items:?}");
        assert!(
            expiry[0].contains("expires in 7 days, at 2027-08-02 00:00 UTC"),
            "{expiry:?}"
        );
    }
);

both!(
    a_renewal_is_a_linked_request_that_is_reviewed_again,
    |db: TestDb| async move {
        let svc = db.service().await;
        let flow = approved(svc.clone()).await;
        let renewal = match svc
            .submit(&p("james.carter"), &common::form(), Some(flow.id), now())
            .await
            .unwrap()
        {
            Submitted::Filed(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(renewal.renews, Some(flow.id));
        assert_eq!(renewal.state, State::Submitted, "the full review again");
        assert!(renewal.grant.is_none());
        let outbox = db.opened().outbox().await.unwrap();
        assert!(
            outbox.iter().any(|o| o
                .outgoing
                .card
                .as_deref()
                .is_some_and(|k| k.starts_with(&format!("{}/completeness", renewal.id)))),
            "its completeness card is posted"
        );
        // Someone unrelated cannot renew it.
        let refused = svc
            .submit(&p("lucia.romero"), &common::form(), Some(flow.id), now())
            .await
            .unwrap();
        assert!(matches!(refused, Submitted::Refused(_)));
    }
);

both!(
    a_policy_version_bump_moves_exactly_the_affected_exceptions,
    |db: TestDb| async move {
        let svc = db.service().await;
        let a = approved(svc.clone()).await; // aiup 2026.2, approved
        let b = approved(svc.clone()).await;
        let pending = Flow::file(svc.clone()).await; // aiup, not yet decided
        let withdrawn = Flow::file(svc.clone()).await;
        withdrawn
            .act(
                "james.carter",
                Action::Withdraw {
                    reason: "not needed".into(),
                },
            )
            .await;
        assert!(
            svc.reassess_policies(now(), false)
                .await
                .unwrap()
                .is_empty()
        );

        let bumped = SHIPPED.replacen("version = \"2026.2\"", "version = \"2027.1\"", 1);
        assert_ne!(bumped, SHIPPED);
        let gov = Arc::new(governance::parse(&bumped).unwrap());
        let svc2 = Service::new(db.store().await, gov, waiver::clock::Clock::System);
        let preview = svc2.reassess_policies(now(), true).await.unwrap();
        assert_eq!(preview, vec![a.id, b.id]);
        assert_eq!(a.request().await.state, State::Approved, "dry run");
        let moved = svc2.reassess_policies(now(), false).await.unwrap();
        assert_eq!(moved, vec![a.id, b.id]);
        for f in [&a, &b] {
            let r = f.request().await;
            assert_eq!(r.state, State::ReassessmentRequired);
            assert_eq!(r.content().policy_version, "2027.1");
            assert_eq!(r.versions.len(), 2, "history kept");
        }
        assert_eq!(pending.request().await.state, State::Submitted);
        assert_eq!(withdrawn.request().await.state, State::Withdrawn);
        // Assessors are asked again; the owner hears in a digest.
        let outbox = db.opened().outbox().await.unwrap();
        let assess_cards = outbox
            .iter()
            .filter(|o| {
                o.outgoing.card.as_deref().is_some_and(|k| {
                    k.starts_with(&format!("{}/assess/", a.id)) && k.contains("/v2@")
                })
            })
            .count();
        assert!(assess_cards >= 2, "risk and security asked again");
        let marcus = dm("marcus.webb");
        let told = db
            .opened()
            .reminders(Some(a.id))
            .await
            .unwrap()
            .into_iter()
            .any(|r| r.target == marcus && r.summary.contains("needs reassessment"));
        assert!(told);
        // Loading the file again changes nothing more.
        assert!(
            svc2.reassess_policies(now(), false)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

both!(
    two_replicas_sweeping_the_same_due_set_act_once,
    |db: TestDb| async move {
        let one = db.service().await;
        let two = Service::new(
            db.store().await,
            one.governance().clone(),
            waiver::clock::Clock::System,
        );
        let mut ids: Vec<RequestId> = Vec::new();
        for _ in 0..6 {
            let f = approved(one.clone()).await;
            ids.push(f.id);
        }
        for _ in 0..10 {
            ids.push(Flow::file(one.clone()).await.id);
        }
        // Both replicas sweep the same instants concurrently: SLA reminders and
        // escalations for the pending ones, condition reminders, suspension, expiry.
        let mut sent: Vec<String> = Vec::new();
        let mut transitions: Vec<(RequestId, &'static str)> = Vec::new();
        for t in [
            "2026-11-24T22:00:00Z",
            "2026-11-26T00:00:00Z",
            "2026-12-15T00:00:00Z",
            "2026-12-16T00:00:00Z",
            "2027-07-03T00:00:00Z",
            "2027-08-02T00:00:00Z",
        ] {
            let (a, b) = tokio::join!(one.sweep(at(t), false), two.sweep(at(t), false));
            for r in [a.unwrap(), b.unwrap()] {
                transitions.extend(r.transitions);
                for d in r.digests {
                    sent.extend(d.keys);
                }
            }
        }
        let mut unique = sent.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), sent.len(), "no reminder sent twice");
        let stored = db.opened().reminders(None).await.unwrap();
        let queued_or_sent = stored
            .iter()
            .filter(|r| r.status != ReminderStatus::Skipped)
            .count();
        assert_eq!(sent.len(), queued_or_sent, "every reminder sent, once");
        assert!(stored.iter().all(|r| r.status != ReminderStatus::Queued));
        // The open conditions suspended each approved exception (the shipped grace is
        // 7 days), then each expired: once each, across both replicas.
        transitions.sort();
        let mut expected: Vec<(RequestId, &'static str)> = ids[..6]
            .iter()
            .flat_map(|id| [(*id, "expire"), (*id, "suspend")])
            .collect();
        expected.sort();
        assert_eq!(transitions, expected);
        let audits = db.opened().audit_of(ids[0]).await.unwrap();
        assert_eq!(
            audits
                .iter()
                .filter(|e| e.action == "expire" && e.outcome == waiver::store::Outcome::Applied)
                .count(),
            1
        );
        assert!(db.opened().verify_audit().await.unwrap().is_ok());
    }
);

both!(a_dry_run_changes_nothing, |db: TestDb| async move {
    let svc = db.service().await;
    let flow = approved(svc.clone()).await;
    let outbox = db.opened().outbox().await.unwrap().len();
    let dry = svc.sweep(at("2027-08-02T00:00:00Z"), true).await.unwrap();
    assert_eq!(dry.transitions, vec![(flow.id, "expire")]);
    assert!(dry.render().contains("would apply expire"));
    assert_eq!(flow.request().await.state, State::Approved);
    assert_eq!(db.opened().outbox().await.unwrap().len(), outbox);
    assert!(db.opened().reminders(None).await.unwrap().is_empty());
});

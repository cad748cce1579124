//! The workflow through Microsoft Teams: the real server on 127.0.0.1:0, the fake
//! token issuer and Bot Connector, every activity signed as the Bot Framework signs
//! it, on both databases. Assertions are on what people see: the cards and dialogs.

mod common;

use common::TestDb;
use common::teams::*;
use serde_json::{Value, json};
use waiver::domain::State;
use waiver::fakes::teams::tenant::{action_data, describe};

both!(
    help_and_list_answer_in_the_personal_chat,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let james = member("james.carter");
        let reply = app
            .tenant
            .say(&james, "<at>Waiver</at> ai-exception help")
            .await;
        assert_eq!(reply.status, 200);
        let help = last_reply(&app, "james.carter", "ai-exception list").await;
        let text = describe(&help);
        assert!(text.contains("ai-exception status AIX-0042"), "{text}");
        assert!(
            !text.contains("/ai-exception"),
            "Teams spells the command without a slash"
        );
        app.tenant.say(&james, "ai-exception list").await;
        last_reply(&app, "james.carter", "You have not filed any requests").await;
        app.stop().await;
    }
);

both!(
    a_request_filed_in_a_dialog_is_reviewed_from_its_card_which_is_updated_in_place,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Voice notes to text").await;
        assert_eq!(
            app.store().load(id).await.unwrap().unwrap().state,
            State::Submitted
        );
        let intake = channel("ai-intake");
        let reference = id.to_string();
        app.until("the completeness card", |_| {
            !app.posts(&intake, &reference).is_empty()
        })
        .await;
        let card = app.posts(&intake, &reference)[0].clone();
        let text = describe(&card.activity);
        assert!(
            text.contains("[Complete]") && text.contains("[Send back…]"),
            "{text}"
        );
        // The requester got the routing plan in their chat.
        last_reply(&app, "james.carter", "Here is how it will be reviewed").await;

        // Noah clicks Complete (Action.Execute): answered in the invoke with the
        // refreshed card.
        let data = action_data(&card.activity, "Complete").unwrap();
        let reply = app
            .tenant
            .execute(&member("noah.fischer"), &card, data)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer = reply.json();
        assert_eq!(answer["statusCode"], 200);
        assert_eq!(
            answer["type"], "application/vnd.microsoft.card.adaptive",
            "{answer}"
        );
        let refreshed = describe(&answer["value"]);
        assert!(!refreshed.contains("[Complete]"), "{refreshed}");
        assert!(
            refreshed.contains("Marked complete by Noah Fischer"),
            "{refreshed}"
        );
        assert_eq!(
            app.store().load(id).await.unwrap().unwrap().state,
            State::InAssessment
        );
        // The same card, updated in place: no live buttons left on it.
        app.until("the card is updated", |f| {
            f.conversation(&intake)
                .iter()
                .any(|p| p.id == card.id && p.updates > 0)
        })
        .await;
        let updated = app
            .fake()
            .conversation(&intake)
            .into_iter()
            .find(|p| p.id == card.id)
            .unwrap();
        let text = describe(&updated.activity);
        assert!(!text.contains("[Complete]"), "{text}");
        assert!(text.contains("Marked complete by Noah Fischer"), "{text}");
        app.stop().await;
    }
);

both!(
    a_channel_the_app_is_not_in_yet_gets_its_card_once_the_app_is_added,
    |db: TestDb| async move {
        let intake = channel("ai-intake");
        let app = TeamsApp::spawn_without(db, std::slice::from_ref(&intake)).await;
        let id = file(&app, "Voice notes to text").await;
        // The requester's routing plan arrives; the intake card waits, with the reason
        // shown to operators (`waiver outbox`), and is never dropped.
        last_reply(&app, "james.carter", "Here is how it will be reviewed").await;
        let mut waiting = Vec::new();
        for _ in 0..500 {
            waiting = app.store().undelivered(100).await.unwrap();
            // Everything else delivered; the card tried and waiting.
            if waiting.len() == 1 && waiting[0].last_error.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(waiting.len(), 1, "{waiting:#?}");
        let row = &waiting[0];
        let report = waiver::delivery::undelivered_report(&waiting, row.created_at);
        // (The attempts shown are the row's: the worker may be trying it again as it is
        // read, every 50 ms here.)
        let line = format!(
            "#{} Teams {intake} — {id} card {:?}, filed {}, {} attempt(s), next try {}: \
             Waiver is not in channel {intake} yet: add the app to its team\n",
            row.id,
            row.outgoing.message.summary,
            row.created_at.minute(),
            row.attempts,
            row.next_attempt_at.minute()
        );
        assert!(report.ends_with(&line), "{report}\nwanted {line}");
        assert!(app.posts(&intake, &id.to_string()).is_empty());
        assert_eq!(
            waiting[0].status,
            waiver::store::OutboxStatus::Pending,
            "waiting, not parked"
        );

        // The admin adds the app to the channel's team. Teams tells the bot about the
        // team's General channel only, yet the card arrives, once: the bot posts in
        // every channel of a team it is in.
        app.fake().add_to_team(&intake);
        app.until("the completeness card", |_| {
            !app.posts(&intake, &id.to_string()).is_empty()
        })
        .await;
        for _ in 0..500 {
            if app.store().undelivered(100).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(app.store().undelivered(100).await.unwrap().is_empty());
        assert_eq!(app.posts(&intake, &id.to_string()).len(), 1);
        app.stop().await;
    }
);

both!(
    a_refused_click_is_answered_in_the_invoke_and_changes_nothing,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Summarise tickets").await;
        let intake = channel("ai-intake");
        let reference = id.to_string();
        app.until("the completeness card", |_| {
            !app.posts(&intake, &reference).is_empty()
        })
        .await;
        let card = app.posts(&intake, &reference)[0].clone();
        let data = action_data(&card.activity, "Complete").unwrap();
        let reply = app
            .tenant
            .invoke(
                &member("olivia.brown"),
                "adaptiveCard/action",
                json!({ "action": { "type": "Action.Execute", "verb": "complete", "data": data } }),
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["value"],
            "Only members of AI intake desk can do this, and you are not one."
        );
        assert_eq!(
            app.store().load(id).await.unwrap().unwrap().state,
            State::Submitted
        );
        let refused: Vec<(String, String)> = app
            .store()
            .audit_of(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == waiver::store::Outcome::Refused)
            .map(|e| (e.actor, e.action))
            .collect();
        assert_eq!(
            refused,
            vec![("olivia.brown".into(), "mark_complete".into())]
        );
        app.stop().await;
    }
);

both!(
    activities_with_a_bad_token_are_refused_and_change_nothing,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let james = member("james.carter");
        let mut activity = app.tenant.personal(&james, "message");
        activity["text"] = json!("ai-exception");
        let body = activity.to_string().into_bytes();
        let calls = app.fake().calls().len();
        let audit = app.store().verify_audit().await.unwrap().unwrap().entries;
        let service_url = app.fake().service_url();
        let wrong_audience = {
            let mut c = app.fake().claims(&service_url);
            c["aud"] = json!("someone-else");
            app.fake().sign(
                &c,
                waiver::fakes::teams::SigningKey::Endorsed,
                waiver::fakes::teams::ENDORSED_KID,
            )
        };
        for (auth, status) in [
            (None, 401),
            (Some("Bearer nonsense".to_string()), 401),
            (Some(format!("Bearer {wrong_audience}")), 403),
            (
                Some(format!(
                    "Bearer {}",
                    app.fake().token("https://elsewhere.example/")
                )),
                401,
            ),
        ] {
            let reply = app.tenant.post_raw(auth, body.clone()).await;
            assert_eq!(reply.status, status, "{}", reply.body);
        }
        assert_eq!(app.fake().calls().len(), calls, "nothing called out");
        assert_eq!(
            app.store().verify_audit().await.unwrap().unwrap().entries,
            audit,
            "nothing recorded"
        );
        app.stop().await;
    }
);

both!(
    approve_with_conditions_then_mark_done_makes_it_active,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let (id, decision) = awaiting_decision(&app, "Coding assistant").await;
        let text = describe(&decision);
        assert!(text.contains("Score 4 of 25, low tier"), "{text}");
        assert!(
            text.contains("[Approve…]") && text.contains("[Reject…]"),
            "{text}"
        );

        // A condition with a due date in the past comes back next to its field.
        let form = open(&app, "carlos.mendes", &decision, "Approve…").await;
        assert!(describe(&form).contains("Condition 1 owner: ____"));
        let yesterday = (app.now().date() - chrono::Days::new(1)).to_string();
        let again = submit(
            &app,
            "carlos.mendes",
            &form,
            &[
                ("c2_text", "Enable SSO for all users"),
                ("c2_owner", &aad("kenji.watanabe")),
                ("c2_due", &yesterday),
            ],
        )
        .await;
        let card = dialog_card(&again);
        let text = describe(card);
        assert!(
            text.contains("Condition 1 must be due between today"),
            "{text}"
        );
        assert_eq!(state_of(&app, id).await, State::AwaitingDecision);

        let due = (app.now().date() + chrono::Days::new(14)).to_string();
        let done = submit(
            &app,
            "carlos.mendes",
            card,
            &[
                ("c2_text", "Enable SSO for all users"),
                ("c2_owner", &aad("kenji.watanabe")),
                ("c2_due", &due),
            ],
        )
        .await;
        assert_eq!(done["task"]["type"], "message", "{done}");
        assert_eq!(state_of(&app, id).await, State::Approved);
        let reference = id.to_string();
        post_in(&app, &channel_of_department("engineering"), "approved").await;
        dm(&app, "kenji.watanabe", "You own condition 1").await;
        let checklist = dm(&app, "marcus.webb", "conditions to complete").await;
        assert!(
            describe(&checklist.activity)
                .contains("1. Enable SSO for all users (owner Kenji Watanabe"),
            "{}",
            describe(&checklist.activity)
        );
        execute(&app, "kenji.watanabe", &checklist.activity, "Mark 1 done").await;
        assert_eq!(state_of(&app, id).await, State::Active);
        dm(&app, "james.carter", "is now active").await;
        // The checklist as first sent, viewed by Marcus in his chat: brought up to
        // date; the same refresh from James' chat shows nothing of it.
        let shown = app.tenant.view(&member("marcus.webb"), &checklist).await;
        assert!(
            !describe(&shown).contains("[Mark 1 done]"),
            "{}",
            describe(&shown)
        );
        let elsewhere = waiver::fakes::teams::Posted {
            conversation: chat_of(&app, "james.carter").unwrap(),
            ..checklist.clone()
        };
        let shown = app.tenant.view(&member("james.carter"), &elsewhere).await;
        assert_eq!(shown, elsewhere.activity);
        // The decision card closed in place, no live actions.
        app.until("the decision card closes", |f| {
            f.conversation(&channel("department-heads"))
                .iter()
                .any(|p| describe(&p.activity).contains("Approved by Carlos Mendes"))
        })
        .await;
        let closed = post_in(&app, &channel("department-heads"), &reference).await;
        assert!(!describe(&closed.activity).contains("[Approve…]"));
        assert!(app.store().verify_audit().await.unwrap().is_ok());
        app.stop().await;
    }
);

both!(
    send_back_then_update_in_the_dialog_makes_a_new_version,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Translate release notes").await;
        let reference = id.to_string();
        let card = post_in(&app, &channel("ai-intake"), &reference).await;
        let form = open(&app, "noah.fischer", &card.activity, "Send back…").await;
        // Empty questions stay in the dialog.
        let again = submit(&app, "noah.fischer", &form, &[("questions", "  ")]).await;
        assert!(describe(dialog_card(&again)).contains("A reason is required."));
        let done = submit(
            &app,
            "noah.fischer",
            &form,
            &[("questions", "Which repositories exactly?")],
        )
        .await;
        assert_eq!(done["task"]["type"], "message");
        assert_eq!(state_of(&app, id).await, State::NeedsInfo);
        let questions = dm(&app, "james.carter", "Which repositories exactly?").await;
        let form = open(&app, "james.carter", &questions.activity, "Update request").await;
        // Pre-filled with version 1.
        assert!(form.to_string().contains("Translate release notes"));
        let done = submit(
            &app,
            "james.carter",
            &form,
            &[("scope_systems", "docs and release-notes repositories")],
        )
        .await;
        assert_eq!(done["task"]["type"], "message", "{done}");
        let r = app.store().load(id).await.unwrap().unwrap();
        assert_eq!((r.state, r.version()), (State::Submitted, 2));
        assert_eq!(
            r.content().scope_systems,
            "docs and release-notes repositories"
        );
        assert_eq!(
            r.content().data_categories.len(),
            1,
            "multi-selects survive the round trip"
        );
        app.stop().await;
    }
);

both!(
    reject_needs_a_reason_and_the_requester_can_withdraw_another,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let (id, decision) = awaiting_decision(&app, "Sales emails").await;
        let form = open(&app, "carlos.mendes", &decision, "Reject…").await;
        let again = submit(&app, "carlos.mendes", &form, &[("reason", "")]).await;
        assert!(describe(dialog_card(&again)).contains("A reason is required."));
        submit(
            &app,
            "carlos.mendes",
            &form,
            &[("reason", "Use the approved tool instead.")],
        )
        .await;
        assert_eq!(state_of(&app, id).await, State::Rejected);
        dm(&app, "james.carter", "was rejected by Carlos Mendes").await;

        // Withdraw asks first (a card shows the question), then acts.
        let other = file(&app, "Meeting notes").await;
        let receipt = dm(&app, "james.carter", &format!("{other} · Meeting notes")).await;
        let answer = execute(
            &app,
            "james.carter",
            &receipt.activity,
            "Yes: Withdraw request",
        )
        .await;
        assert_eq!(answer["statusCode"], 200);
        assert_eq!(state_of(&app, other).await, State::Withdrawn);
        app.stop().await;
    }
);

both!(
    a_high_tier_needs_both_approver_roles_and_a_typed_confirmation,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Customer chat summaries").await;
        let reference = id.to_string();
        let card = post_in(&app, &channel("ai-intake"), &reference).await;
        execute(&app, "noah.fischer", &card.activity, "Complete").await;
        for (who, role) in [("omar.haddad", "risk"), ("tomas.novak", "security")] {
            let card = post_in(&app, &channel(role), &reference).await;
            let form = open(&app, who, &card.activity, "Assess…").await;
            submit(
                &app,
                who,
                &form,
                &[
                    ("findings", "Customer data leaves the region."),
                    ("likelihood", "4"),
                    ("impact", "4"),
                    ("recommendation", "approve_with_conditions"),
                ],
            )
            .await;
        }
        // High tier (16): stakeholders first, then the board and the CISO.
        let stakeholders = post_in(&app, &channel("business-stakeholders"), &reference).await;
        for who in ["julia.schmidt", "kenji.watanabe"] {
            let form = open(&app, who, &stakeholders.activity, "Give feedback…").await;
            submit(
                &app,
                who,
                &form,
                &[("recommendation", "approve"), ("comment", "Fine")],
            )
            .await;
        }
        assert_eq!(state_of(&app, id).await, State::AwaitingDecision);
        let decision = post_in(&app, &channel("ai-governance-board"), &reference).await;
        let form = open(&app, "hannah.berg", &decision.activity, "Approve…").await;
        let again = submit(&app, "hannah.berg", &form, &[("confirm", "yes")]).await;
        assert!(describe(dialog_card(&again)).contains(&format!(
            "Type {reference} exactly to confirm a high-tier decision."
        )));
        submit(&app, "hannah.berg", &form, &[("confirm", &reference)]).await;
        assert_eq!(
            state_of(&app, id).await,
            State::AwaitingDecision,
            "one of two roles"
        );
        let ciso_card = post_in(&app, &channel("ciso"), &reference).await;
        let form = open(&app, "rachel.green", &ciso_card.activity, "Approve…").await;
        submit(&app, "rachel.green", &form, &[("confirm", &reference)]).await;
        // No conditions and its start reached: active at once.
        assert_eq!(state_of(&app, id).await, State::Active);
        app.stop().await;
    }
);

both!(
    a_reply_in_a_cards_thread_is_a_comment_on_the_request,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Drafting contracts").await;
        let intake = channel("ai-intake");
        let card = post_in(&app, &intake, &id.to_string()).await;
        let priya = member("priya.nair");
        let reply = app
            .tenant
            .reply_in_thread(
                &priya,
                &intake,
                &card.id,
                "Is this the same tool as AIX-0007?",
            )
            .await;
        assert_eq!(reply.status, 200);
        let r = app.store().load(id).await.unwrap().unwrap();
        assert_eq!(r.comments.len(), 1);
        assert_eq!(r.comments[0].text, "Is this the same tool as AIX-0007?");
        assert_eq!(r.comments[0].author, common::p("priya.nair"));
        app.stop().await;
    }
);

const DAY_MS: i64 = 86_400_000;

/// Granted through the service at `t0` (before the server's clock), for `days`, low
/// tier, Marcus monitoring, no conditions: active at once.
async fn granted(
    app: &TeamsApp,
    title: &str,
    t0: waiver::domain::Timestamp,
    days: u64,
) -> waiver::domain::ExceptionRequest {
    use waiver::domain::{Action, Actor, AssessmentInput, Recommendation, Terms};
    use waiver::service::{Attempt, Submitted};
    let svc = app.service();
    let start = t0.date();
    let expiry = start + chrono::Days::new(days);
    let form = waiver::domain::FormInput {
        title: title.into(),
        start: start.to_string(),
        end: expiry.to_string(),
        ..common::form()
    };
    let Submitted::Filed(r) = svc
        .submit(&common::p("james.carter"), &form, None, t0)
        .await
        .unwrap()
    else {
        panic!("not filed")
    };
    let assess = |role: &str| {
        Action::Assess(AssessmentInput {
            role: waiver::governance::RoleId::new(role),
            likelihood: 1,
            impact: 2,
            findings: "Internal only.".into(),
            mitigations: String::new(),
            recommendation: Recommendation::Approve,
        })
    };
    for (who, action) in [
        ("noah.fischer", Action::MarkComplete),
        ("omar.haddad", assess("risk")),
        ("tomas.novak", assess("security")),
        (
            "carlos.mendes",
            Action::Approve {
                terms: Terms {
                    start,
                    expiry,
                    monitoring_owner: common::p("marcus.webb"),
                    conditions: vec![],
                },
                confirmation: None,
            },
        ),
    ] {
        let seen = app.store().load(r.id).await.unwrap().unwrap().version();
        svc.act(
            Attempt::new(Actor::Person(common::p(who)), r.id, seen, action),
            t0,
        )
        .await
        .unwrap();
    }
    let r = app.store().load(r.id).await.unwrap().unwrap();
    assert_eq!(r.state, State::Active);
    r
}

both!(
    reminder_digests_reach_teams_and_their_buttons_open_the_attestation_and_renewal,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        // Granted 182 days ago for 200 days: by the review two days ago the 30-day
        // expiry reminder had fallen due too.
        let t0 = waiver::domain::Timestamp::from_millis(common::now().millis() - 182 * DAY_MS);
        let r = granted(&app, "Summarise support tickets", t0, 200).await;
        let review_at = r.grant.as_ref().unwrap().next_review_at.unwrap();
        let report = app.service().sweep(review_at, false).await.unwrap();
        assert_eq!(report.transitions, vec![(r.id, "mark_review_due")]);
        // Marcus never messaged the bot: it opens his chat (the app is installed for
        // the tenant) and posts one digest there.
        let digest = dm(&app, "marcus.webb", "periodic review").await;
        let text = describe(&digest.activity);
        assert!(text.contains("2 reminders"), "{text}");
        assert!(text.contains("expires in 20 days"), "{text}");
        assert!(
            text.contains("[Still needed]") && text.contains("[Renew…]"),
            "{text}"
        );

        // Still needed opens the attestation dialog; submitting it attests.
        let form = open(&app, "marcus.webb", &digest.activity, "Still needed").await;
        assert!(describe(&form).contains("Note for the record: ____"));
        let done = submit(
            &app,
            "marcus.webb",
            &form,
            &[("note", "Still used by support.")],
        )
        .await;
        assert_eq!(done["task"]["type"], "message", "{done}");
        let after = app.store().load(r.id).await.unwrap().unwrap();
        assert_eq!(after.state, State::Active);
        assert_eq!(after.attestations.len(), 1);

        // Renew… opens the intake form pre-filled; submitting files a linked request.
        let form = open(&app, "marcus.webb", &digest.activity, "Renew…").await;
        assert!(
            form.to_string().contains("Summarise support tickets"),
            "pre-filled"
        );
        let done = submit(&app, "marcus.webb", &form, &[]).await;
        assert_eq!(done["task"]["type"], "message", "{done}");
        let renewals = app
            .store()
            .requests_by(&common::p("marcus.webb"), 10)
            .await
            .unwrap();
        assert_eq!(renewals.len(), 1);
        let renewal = app.store().load(renewals[0].id).await.unwrap().unwrap();
        assert_eq!(renewal.renews, Some(r.id));
        assert_eq!(renewal.state, State::Submitted);

        // Someone else's click on the digest is refused in the dialog.
        let answer = app
            .tenant
            .invoke(
                &member("olivia.brown"),
                "task/fetch",
                json!({ "data": action_data(&digest.activity, "Still needed").unwrap() }),
            )
            .await
            .json();
        assert_eq!(answer["task"]["type"], "message");
        assert_eq!(
            answer["task"]["value"],
            format!("Only the monitoring owner of {} can do this.", r.id)
        );

        // At the expiry instant it expires, and the team is told in Teams.
        let expires = r.grant.as_ref().unwrap().expires_at;
        app.service().sweep(expires, false).await.unwrap();
        assert_eq!(
            app.store().load(r.id).await.unwrap().unwrap().state,
            State::Expired
        );
        post_in(&app, &channel_of_department("engineering"), "has expired").await;
        app.stop().await;
    }
);

both!(
    people_of_a_tenant_waiver_does_not_serve_are_refused_and_audited,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let stranger = waiver::fakes::teams::tenant::Member::new(
            "99999999-0000-0000-0000-000000000001",
            "Mallory",
        );
        let mut a = app.tenant.personal(&stranger, "message");
        a["text"] = json!("ai-exception list");
        a["conversation"]["tenantId"] = json!("11111111-2222-3333-4444-555555555555");
        a["channelData"]["tenant"]["id"] = json!("11111111-2222-3333-4444-555555555555");
        let reply = app.tenant.send(&a).await;
        assert_eq!(reply.status, 200);
        let chat = format!("a:chat-{}", stranger.aad_object_id);
        app.until("the refusal", |f| !f.conversation(&chat).is_empty())
            .await;
        let text = describe(&app.fake().conversation(&chat)[0].activity);
        assert_eq!(
            text,
            "Tenant 11111111-2222-3333-4444-555555555555 is not configured for Waiver."
        );
        let audit = app.store().verify_audit().await.unwrap().unwrap();
        assert_eq!(
            audit.entries, 1,
            "the refusal, and nothing else, is in the audit trail"
        );
        app.stop().await;
    }
);

both!(
    a_card_action_re_sent_by_teams_is_processed_once,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Expense receipts").await;
        let intake = channel("ai-intake");
        let card = post_in(&app, &intake, &id.to_string()).await;
        let data = action_data(&card.activity, "Complete").unwrap();
        let mut a =
            app.tenant
                .in_channel(&member("noah.fischer"), "invoke", &intake, Some(&card.id));
        a["name"] = json!("adaptiveCard/action");
        a["replyToId"] = json!(card.id);
        a["value"] =
            json!({ "action": { "type": "Action.Execute", "verb": "complete", "data": data } });
        for _ in 0..3 {
            let reply = app.tenant.send(&a).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        let applied: Vec<String> = app
            .store()
            .audit_of(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == waiver::store::Outcome::Applied)
            .map(|e| e.action)
            .collect();
        assert_eq!(
            applied,
            vec!["submit", "mark_complete"],
            "one change for three deliveries"
        );
        app.stop().await;
    }
);

both!(
    a_dialog_submission_re_sent_by_teams_files_one_request,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let james = member("james.carter");
        app.tenant.say(&james, "ai-exception").await;
        let offer = last_reply(&app, "james.carter", "Open: AI policy exception").await;
        let data = action_data(&offer, "Open: AI policy exception").unwrap();
        let answer = app
            .tenant
            .invoke(&james, "task/fetch", json!({ "data": data }))
            .await
            .json();
        let card = dialog_card(&answer).clone();
        let values = intake(&app, "Meeting summaries");
        let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Teams got no answer in time and sends the same activity again, twice.
        let mut a = app.tenant.personal(&james, "invoke");
        a["name"] = json!("task/submit");
        a["value"] = json!({ "data": waiver::fakes::teams::tenant::dialog_data(&card, &pairs) });
        for _ in 0..3 {
            let reply = app.tenant.send(&a).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(reply.json()["task"]["type"], "message", "{}", reply.body);
        }
        let mine = app
            .store()
            .requests_by(&common::p("james.carter"), 100)
            .await
            .unwrap();
        assert_eq!(
            mine.iter()
                .filter(|s| s.title == "Meeting summaries")
                .count(),
            1,
            "one request for three deliveries"
        );
        app.stop().await;
    }
);

both!(
    export_in_teams_is_for_auditors_and_says_what_the_operator_must_set,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let gov = common::gov();
        let auditor = gov
            .people
            .iter()
            .find(|p| gov.may_audit(&p.id) && p.teams.is_some())
            .unwrap();
        let outsider = gov
            .people
            .iter()
            .find(|p| !gov.may_audit(&p.id) && p.teams.is_some())
            .unwrap();
        // This server has no WAIVER_PUBLIC_URL: the auditor is told what it needs.
        let reply = app
            .tenant
            .say(&member(auditor.id.as_str()), "ai-exception export")
            .await;
        assert_eq!(reply.status, 200);
        last_reply(
            &app,
            auditor.id.as_str(),
            "Evidence packs from chat need WAIVER_PUBLIC_URL",
        )
        .await;
        let reply = app
            .tenant
            .say(&member(outsider.id.as_str()), "ai-exception export")
            .await;
        assert_eq!(reply.status, 200);
        last_reply(&app, outsider.id.as_str(), "Evidence packs are for").await;
        app.stop().await;
    }
);

both!(
    a_stale_copy_of_a_card_shows_the_current_state_when_viewed_and_only_where_it_was_sent,
    |db: TestDb| async move {
        let app = TeamsApp::spawn(db).await;
        let id = file(&app, "Translate release notes").await;
        let heading = format!("{id} · ");
        let card = post_in(&app, &channel("ai-intake"), &heading).await;
        // The card as first posted: what a copy the bot lost track of still shows.
        let stale = waiver::fakes::teams::Posted {
            activity: card.activity.clone(),
            ..card.clone()
        };
        assert!(describe(&stale.activity).contains("[Complete]"));
        let refresh = &card.activity["attachments"][0]["content"]["refresh"]["action"];
        assert_eq!(refresh["type"], "Action.Execute");
        assert_eq!(refresh["verb"], "refresh");

        execute(&app, "noah.fischer", &card.activity, "Complete").await;
        app.until("the card closes", |_| {
            !describe(&post_in_now(&app, &channel("ai-intake"), &heading)).contains("[Complete]")
        })
        .await;
        // Viewed, the stale copy shows the request as it stands: no live button.
        let shown = app.tenant.view(&member("omar.haddad"), &stale).await;
        let text = describe(&shown);
        assert!(text.contains("Marked complete by Noah Fischer."), "{text}");
        assert!(!text.contains("[Complete]"), "{text}");
        assert!(
            shown["attachments"][0]["content"]["refresh"].is_object(),
            "still refreshable"
        );

        // The same refresh from another conversation (James' chat with the bot)
        // shows nothing of the card.
        let chat = chat_of(&app, "james.carter").unwrap();
        let elsewhere = waiver::fakes::teams::Posted {
            conversation: chat,
            ..stale.clone()
        };
        let shown = app.tenant.view(&member("james.carter"), &elsewhere).await;
        assert_eq!(
            shown,
            elsewhere.activity,
            "not replaced: {}",
            describe(&shown)
        );
        let answer = app
            .tenant
            .answers()
            .into_iter()
            .last()
            .expect("the refresh was answered");
        assert_eq!(answer["value"], "This card cannot be shown here.");
        app.stop().await;
    }
);

/// The card mentioning `needle` in `conversation` as it stands now.
fn post_in_now(app: &TeamsApp, conversation: &str, needle: &str) -> Value {
    app.posts(conversation, needle)
        .pop()
        .map(|p| p.activity)
        .unwrap_or_default()
}

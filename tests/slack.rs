//! The seven-step workflow through Slack: the real server on 127.0.0.1:0, a stateful
//! fake Slack Web API, requests signed as Slack signs them, on both databases.
//! Assertions are on what people see: modals, cards, DMs, ephemerals.

mod common;

use common::slack::{APPROVALS, ENGINEERING, INTAKE, RISK, SECURITY};
use common::slack::{assess_inputs, click, click_and_submit, file, has_buttons, next_view, state};
use common::{App, uid};
use waiver::domain::State;
use waiver::fakes::slack::workspace::{Input, describe};

const BOARD: &str = "C0AIXBOARD";
const STAKEHOLDERS: &str = "C0AIXSTAKEHOLDERS";

slack_both!(
    approve_with_conditions_then_mark_done_makes_it_active,
    |app: App| async move {
        common::slack::approve_with_conditions_then_mark_done(&app).await;
        app.stop().await;
    }
);

slack_both!(send_back_then_update_then_approve, |app: App| async move {
    let id = file(&app, "Translate release notes").await;
    let reference = id.to_string();
    app.until("completeness card", |f| !f.messages(INTAKE).is_empty())
        .await;
    let v1_card = app.message(INTAKE, &reference);

    // Send back: the reviewer's questions reach the requester with Update request.
    let reply = click_and_submit(
        &app,
        "noah.fischer",
        &v1_card,
        "send_back",
        &[("questions", Input::Text("Which repositories exactly?"))],
    )
    .await;
    assert_eq!(reply.body, "");
    assert_eq!(state(&app, id).await, State::NeedsInfo);
    let james = uid("james.carter");
    app.until("questions DM", |f| {
        f.dms(&james)
            .iter()
            .any(|m| describe(&m.blocks).contains("Which repositories exactly?"))
    })
    .await;
    let dm = app.fake().dm_channel(&james).unwrap();
    let questions = app.message(&dm, "Which repositories exactly?");
    assert!(describe(&questions.blocks).contains("[Update request]"));
    app.until("v1 card closed", |f| f.messages(INTAKE)[0].edits >= 1)
        .await;
    assert!(
        describe(&app.message(INTAKE, &reference).blocks)
            .contains("Sent back to the requester by Noah Fischer")
    );

    // Update request reopens the form pre-filled; resubmitting makes version 2.
    let opened = app.fake().views_opened().len();
    click(&app, "james.carter", &questions, "update_request").await;
    let view = next_view(&app, opened).await;
    assert_eq!(view.view["title"]["text"], "Update request");
    let title_block = view.view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block_id"] == "title")
        .unwrap();
    assert_eq!(
        title_block["element"]["initial_value"], "Translate release notes",
        "pre-filled"
    );
    let reply = app
        .ws
        .submit(
            &james,
            &view,
            &[(
                "scope_systems",
                Input::Text("docs and release-notes repositories"),
            )],
        )
        .await;
    assert_eq!(reply.body, "", "{}", reply.body);
    let r = app.request(id).await;
    assert_eq!((r.state, r.version()), (State::Submitted, 2));
    assert_eq!(
        r.content().scope_systems,
        "docs and release-notes repositories"
    );
    assert_eq!(
        r.content().title,
        "Translate release notes",
        "untouched fields keep their values"
    );

    // A new card for version 2 returns to the queue; the DM's button is gone.
    app.until("v2 card", |f| f.messages(INTAKE).len() == 2)
        .await;
    let v2_card = app.message(INTAKE, "version 2");
    assert!(describe(&v2_card.blocks).contains("[Complete] [Send back…]"));
    app.drained().await;
    assert!(
        !has_buttons(&app.message(&dm, "Which repositories exactly?")),
        "the Update button is gone"
    );

    click(&app, "lucia.romero", &v2_card, "complete").await;
    app.until("assessment cards", |f| {
        !f.messages(RISK).is_empty() && !f.messages(SECURITY).is_empty()
    })
    .await;
    click_and_submit(
        &app,
        "grace.liu",
        &app.message(RISK, &reference),
        "assess",
        &assess_inputs("1", "1"),
    )
    .await;
    click_and_submit(
        &app,
        "ines.duarte",
        &app.message(SECURITY, &reference),
        "assess",
        &assess_inputs("1", "3"),
    )
    .await;
    app.until("decision card", |f| !f.messages(APPROVALS).is_empty())
        .await;
    let reply = click_and_submit(
        &app,
        "anna.kowalski",
        &app.message(APPROVALS, &reference),
        "approve",
        &[],
    )
    .await;
    assert_eq!(reply.body, "", "{}", reply.body);
    assert_eq!(
        state(&app, id).await,
        State::Active,
        "no conditions and a start of today: active at once"
    );
    app.until("requester told", |f| {
        f.dms(&james)
            .iter()
            .any(|m| describe(&m.blocks).contains("was approved (low tier)"))
    })
    .await;
    app.stop().await;
});

slack_both!(
    reject_requires_a_reason_and_tells_everyone,
    |app: App| async move {
        let id = file(&app, "Auto-grade interviews").await;
        let reference = id.to_string();
        app.until("completeness card", |f| !f.messages(INTAKE).is_empty())
            .await;
        click(
            &app,
            "noah.fischer",
            &app.message(INTAKE, &reference),
            "complete",
        )
        .await;
        app.until("assessment cards", |f| {
            !f.messages(RISK).is_empty() && !f.messages(SECURITY).is_empty()
        })
        .await;
        click_and_submit(
            &app,
            "omar.haddad",
            &app.message(RISK, &reference),
            "assess",
            &assess_inputs("2", "3"),
        )
        .await;
        click_and_submit(
            &app,
            "tomas.novak",
            &app.message(SECURITY, &reference),
            "assess",
            &assess_inputs("1", "1"),
        )
        .await;
        app.until("decision card", |f| !f.messages(APPROVALS).is_empty())
            .await;

        let decision = app.message(APPROVALS, &reference);
        let opened = app.fake().views_opened().len();
        click(&app, "julia.schmidt", &decision, "reject").await;
        let view = next_view(&app, opened).await;
        // An empty reason is refused inside the modal, and nothing changes.
        let reply = app
            .ws
            .submit(
                &uid("julia.schmidt"),
                &view,
                &[("reason", Input::Text("   "))],
            )
            .await;
        assert_eq!(reply.json()["response_action"], "errors", "{}", reply.body);
        assert_eq!(reply.json()["errors"]["reason"], "A reason is required.");
        assert_eq!(state(&app, id).await, State::AwaitingDecision);
        let reply = app
            .ws
            .submit(
                &uid("julia.schmidt"),
                &view,
                &[("reason", Input::Text("No DPA with the vendor."))],
            )
            .await;
        assert_eq!(reply.body, "");
        assert_eq!(state(&app, id).await, State::Rejected);

        let james = uid("james.carter");
        app.until("requester told", |f| {
            f.dms(&james)
                .iter()
                .any(|m| describe(&m.blocks).contains("No DPA with the vendor."))
        })
        .await;
        app.until("announcement", |f| !f.messages(ENGINEERING).is_empty())
            .await;
        assert!(describe(&app.message(ENGINEERING, &reference).blocks).contains("was rejected"));
        app.drained().await;
        let closed = app.message(APPROVALS, &reference);
        assert!(!has_buttons(&closed));
        assert!(
            describe(&closed.blocks).contains("Rejected by Julia Schmidt: No DPA with the vendor.")
        );
        app.stop().await;
    }
);

slack_both!(
    a_high_tier_needs_both_approver_roles_and_a_typed_confirmation,
    |app: App| async move {
        let id = file(&app, "Deploy a churn model").await;
        let reference = id.to_string();
        app.until("completeness card", |f| !f.messages(INTAKE).is_empty())
            .await;
        click(
            &app,
            "noah.fischer",
            &app.message(INTAKE, &reference),
            "complete",
        )
        .await;
        app.until("assessment cards", |f| {
            !f.messages(RISK).is_empty() && !f.messages(SECURITY).is_empty()
        })
        .await;
        click_and_submit(
            &app,
            "omar.haddad",
            &app.message(RISK, &reference),
            "assess",
            &assess_inputs("4", "4"),
        )
        .await;
        click_and_submit(
            &app,
            "tomas.novak",
            &app.message(SECURITY, &reference),
            "assess",
            &assess_inputs("2", "2"),
        )
        .await;

        // Stakeholder review: both roles give feedback.
        app.until("stakeholder card", |f| !f.messages(STAKEHOLDERS).is_empty())
            .await;
        let card = app.message(STAKEHOLDERS, &reference);
        for who in ["julia.schmidt", "kenji.watanabe"] {
            let reply = click_and_submit(
                &app,
                who,
                &card,
                "feedback",
                &[("recommendation", Input::Choose("approve"))],
            )
            .await;
            assert_eq!(reply.body, "", "{}", reply.body);
        }
        app.until("decision card", |f| !f.messages(BOARD).is_empty())
            .await;
        let decision = app.message(BOARD, &reference);
        assert!(describe(&decision.blocks).contains("Score 16 of 25, high tier"));

        // Without the typed reference, nothing is decided.
        let opened = app.fake().views_opened().len();
        click(&app, "hannah.berg", &decision, "approve").await;
        let view = next_view(&app, opened).await;
        let reply = app
            .ws
            .submit(
                &uid("hannah.berg"),
                &view,
                &[("confirm", Input::Text("yes"))],
            )
            .await;
        assert_eq!(
            reply.json()["errors"]["confirm"],
            format!("Type {reference} exactly to confirm a high-tier decision.")
        );
        let reply = app
            .ws
            .submit(
                &uid("hannah.berg"),
                &view,
                &[("confirm", Input::Text(&reference))],
            )
            .await;
        assert_eq!(reply.body, "");
        assert_eq!(
            state(&app, id).await,
            State::AwaitingDecision,
            "the CISO office has not approved yet"
        );
        app.drained().await;
        let decision = app.message(BOARD, &reference);
        assert!(describe(&decision.blocks).contains("Waiting for approval by CISO office"));

        // The board member's second vote is refused; the CISO's completes the quorum.
        let reply = click_and_submit(
            &app,
            "rachel.green",
            &decision,
            "approve",
            &[("confirm", Input::Text(&reference))],
        )
        .await;
        assert_eq!(reply.body, "");
        assert_eq!(state(&app, id).await, State::Active);
        let r = app.request(id).await;
        let g = r.grant.unwrap();
        assert_eq!(
            g.approvers,
            vec![common::p("hannah.berg"), common::p("rachel.green")]
        );
        app.stop().await;
    }
);

slack_both!(
    the_requester_can_withdraw_before_a_decision,
    |app: App| async move {
        let id = file(&app, "Meeting transcription").await;
        let reference = id.to_string();
        let james = uid("james.carter");
        app.until("receipt", |f| {
            f.dms(&james)
                .iter()
                .any(|m| describe(&m.blocks).contains("[Withdraw request]"))
        })
        .await;
        let dm = app.fake().dm_channel(&james).unwrap();
        let receipt = app.message(&dm, "[Withdraw request]");
        // The button asks for confirmation in Slack before it is sent.
        let (_, button) =
            waiver::fakes::slack::workspace::Workspace::button(&receipt, "withdraw").unwrap();
        assert!(
            button["confirm"]["text"]["text"]
                .as_str()
                .unwrap()
                .contains(&format!("Withdraw {reference}?"))
        );
        click(&app, "james.carter", &receipt, "withdraw").await;
        assert_eq!(state(&app, id).await, State::Withdrawn);
        app.drained().await;
        assert!(
            !has_buttons(&app.message(INTAKE, &reference)),
            "no live button on a withdrawn request"
        );
        assert!(describe(&app.message(INTAKE, &reference).blocks).contains("Withdrawn"));
        // Through the slash command, too.
        let id2 = file(&app, "Second request").await;
        let reply = app
            .ws
            .command(&james, &format!("withdraw {id2} duplicate of {reference}"))
            .await;
        assert_eq!(reply.json()["response_type"], "ephemeral");
        assert!(reply.body.contains("was withdrawn"), "{}", reply.body);
        let r = app.request(id2).await;
        assert_eq!(r.state, State::Withdrawn);
        assert_eq!(
            r.closure.unwrap().reason,
            format!("duplicate of {reference}")
        );
        app.stop().await;
    }
);

slack_both!(
    slash_subcommands_answer_ephemerally,
    |app: App| async move {
        let james = uid("james.carter");
        let reply = app.ws.command(&james, "help").await;
        assert_eq!(reply.json()["response_type"], "ephemeral");
        assert!(reply.body.contains("/ai-exception status AIX-0042"));
        let reply = app.ws.command(&james, "frobnicate").await;
        assert!(
            reply.body.contains("Unknown subcommand \\\"frobnicate\\\"")
                && reply.body.contains("/ai-exception list"),
            "{}",
            reply.body
        );
        let reply = app.ws.command(&james, "list").await;
        assert!(reply.body.contains("You have not filed any requests"));

        let id = file(&app, "Voice notes to text").await;
        let reply = app.ws.command(&james, "list").await;
        let listed = describe(&reply.json()["blocks"]);
        assert!(
            listed.contains(&format!(
                "{id} Voice notes to text: Submitted: awaiting completeness review"
            )),
            "{listed}"
        );

        // What waits on the intake desk, and on the requester after a send-back.
        let reply = app.ws.command(&uid("noah.fischer"), "pending").await;
        assert!(
            describe(&reply.json()["blocks"])
                .contains(&format!("{id} Voice notes to text: review completeness"))
        );
        let reply = app.ws.command(&uid("olivia.brown"), "pending").await;
        assert!(reply.body.contains("Nothing is waiting on you"));
        app.until("card", |f| !f.messages(INTAKE).is_empty()).await;
        click_and_submit(
            &app,
            "noah.fischer",
            &app.message(INTAKE, &id.to_string()),
            "send_back",
            &[("questions", Input::Text("Which vendor?"))],
        )
        .await;
        let reply = app.ws.command(&james, "pending").await;
        assert!(describe(&reply.json()["blocks"]).contains("answer the questions and update"));

        // The timeline, for the people involved only.
        let reply = app.ws.command(&james, &format!("status {id}")).await;
        let status = describe(&reply.json()["blocks"]);
        assert!(
            status.contains("submitted by James Carter")
                && status.contains("sent back by Noah Fischer"),
            "{status}"
        );
        let reply = app
            .ws
            .command(&uid("olivia.brown"), &format!("status {id}"))
            .await;
        assert!(
            reply
                .body
                .contains(&format!("You are not involved in {id}"))
        );
        let reply = app.ws.command(&james, "status AIX-9999").await;
        assert!(reply.body.contains("AIX-9999 does not exist"));
        let reply = app.ws.command(&james, "status nonsense").await;
        assert!(reply.body.contains("is not a reference like AIX-0042"));
        app.stop().await;
    }
);

/// Runs `sql` on the test's database over a connection of its own.
async fn on_database(app: &App, sql: &'static str) {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

slack_both!(
    a_database_failure_reads_as_a_temporary_failure_never_as_a_missing_request,
    |app: App| async move {
        sqlx::any::install_default_drivers();
        let james = uid("james.carter");
        let id = file(&app, "Meeting summaries").await;
        app.drained().await;
        on_database(&app, "ALTER TABLE requests RENAME TO requests_away").await;
        for command in [
            format!("status {id}"),
            format!("withdraw {id}"),
            "list".to_string(),
            "pending".to_string(),
        ] {
            let reply = app.ws.command(&james, &command).await;
            assert_eq!(reply.status, 200, "{command}: {}", reply.body);
            assert_eq!(reply.json()["response_type"], "ephemeral", "{command}");
            let text = reply.json()["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert_eq!(
                text,
                waiver::interact::UNAVAILABLE,
                "{command}: {}",
                reply.body
            );
            assert!(!reply.body.contains("does not exist"), "{command}");
        }
        on_database(&app, "ALTER TABLE requests_away RENAME TO requests").await;
        let reply = app.ws.command(&james, &format!("status {id}")).await;
        assert!(
            describe(&reply.json()["blocks"]).contains("Meeting summaries"),
            "nothing was changed: {}",
            reply.body
        );
        assert_eq!(app.request(id).await.state, State::Submitted);
        app.stop().await;
    }
);

slack_both!(
    app_home_shows_my_requests_tasks_and_exceptions,
    |app: App| async move {
        let id = file(&app, "Draft sales emails").await;
        app.until("card", |f| !f.messages(INTAKE).is_empty()).await;
        click(
            &app,
            "noah.fischer",
            &app.message(INTAKE, &id.to_string()),
            "complete",
        )
        .await;
        app.until("assessment cards", |f| {
            !f.messages(RISK).is_empty() && !f.messages(SECURITY).is_empty()
        })
        .await;

        // Omar's home lists the assessment waiting on him.
        let omar = uid("omar.haddad");
        assert_eq!(app.ws.open_home(&omar, "Ev0HOME1").await.status, 200);
        app.until("home published", |f| f.home(&omar).is_some())
            .await;
        let home = describe(&app.fake().home(&omar).unwrap()["blocks"]);
        assert!(
            home.contains(&format!(
                "{id} Draft sales emails: assess for Enterprise risk"
            )),
            "{home}"
        );

        // Once granted, the owner sees the exception with its expiry and next review.
        click_and_submit(
            &app,
            "omar.haddad",
            &app.message(RISK, &id.to_string()),
            "assess",
            &assess_inputs("1", "1"),
        )
        .await;
        click_and_submit(
            &app,
            "tomas.novak",
            &app.message(SECURITY, &id.to_string()),
            "assess",
            &assess_inputs("1", "1"),
        )
        .await;
        app.until("decision card", |f| !f.messages(APPROVALS).is_empty())
            .await;
        click_and_submit(
            &app,
            "carlos.mendes",
            &app.message(APPROVALS, &id.to_string()),
            "approve",
            &[],
        )
        .await;
        let marcus = uid("marcus.webb");
        app.ws.open_home(&marcus, "Ev0HOME2").await;
        app.until("owner's home", |f| f.home(&marcus).is_some())
            .await;
        let home = describe(&app.fake().home(&marcus).unwrap()["blocks"]);
        assert!(
            home.contains("Exceptions you own")
                && home.contains(&format!(
                    "{id} Draft sales emails: Active (low tier), expires"
                )),
            "{home}"
        );
        let james = uid("james.carter");
        app.ws.open_home(&james, "Ev0HOME3").await;
        app.until("requester's home", |f| f.home(&james).is_some())
            .await;
        assert!(
            describe(&app.fake().home(&james).unwrap()["blocks"])
                .contains(&format!("{id} Draft sales emails: Active"))
        );
        app.stop().await;
    }
);

slack_both!(
    a_revoker_revokes_a_granted_exception_through_its_form,
    |app: App| async move {
        use waiver::domain::{Action, Actor, Terms};
        use waiver::service::Attempt;
        let svc = app.service();
        let now = app.now();
        let waiver::service::Submitted::Filed(r) = svc
            .submit(&common::p("james.carter"), &common::form(), None, now)
            .await
            .unwrap()
        else {
            panic!("not filed")
        };
        let id = r.id;
        let assess = |role: &str| {
            Action::Assess(waiver::domain::AssessmentInput {
                role: waiver::governance::RoleId::new(role),
                likelihood: 1,
                impact: 2,
                findings: "Internal code only.".into(),
                mitigations: String::new(),
                recommendation: waiver::domain::Recommendation::Approve,
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
                        start: now.date(),
                        expiry: now.date() + chrono::Days::new(60),
                        monitoring_owner: common::p("marcus.webb"),
                        conditions: vec![],
                    },
                    confirmation: None,
                },
            ),
        ] {
            let seen = app.request(id).await.version();
            let attempt = Attempt::new(Actor::Person(common::p(who)), id, seen, action);
            svc.act(attempt, now).await.unwrap();
        }
        assert_eq!(state(&app, id).await, State::Active);
        app.drained().await;

        // Someone who may not revoke is told so, in the command's answer, and audited.
        let views = app.fake().views_opened().len();
        let reply = app
            .ws
            .command(&uid("olivia.brown"), &format!("revoke {id}"))
            .await;
        assert_eq!(reply.json()["response_type"], "ephemeral");
        assert_eq!(
            reply.json()["text"],
            format!("Only a revoker or an approver of {id}'s tier can revoke it.")
        );
        assert_eq!(app.fake().views_opened().len(), views, "no form for her");

        // Compliance may: the form opens, an empty reason stays in it, a reason revokes.
        let raj = uid("raj.patel");
        let reply = app.ws.command(&raj, &format!("revoke {id}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "");
        let view = next_view(&app, views).await;
        assert_eq!(view.view["callback_id"], "revoke");
        assert_eq!(view.view["title"]["text"], "Revoke");
        let reply = app
            .ws
            .submit(&raj, &view, &[("reason", Input::Text("  "))])
            .await;
        assert_eq!(reply.json()["errors"]["reason"], "A reason is required.");
        assert_eq!(state(&app, id).await, State::Active);
        let reply = app
            .ws
            .submit(
                &raj,
                &view,
                &[("reason", Input::Text("The vendor's terms changed."))],
            )
            .await;
        assert_eq!((reply.status, reply.body.as_str()), (200, ""));
        assert_eq!(state(&app, id).await, State::Revoked);
        let james = uid("james.carter");
        app.until("the requester is told", |f| {
            f.dms(&james)
                .iter()
                .any(|m| describe(&m.blocks).contains("was revoked: The vendor's terms changed."))
        })
        .await;
        app.until("the team is told", |f| {
            f.messages(ENGINEERING)
                .iter()
                .any(|m| describe(&m.blocks).contains("was revoked and may no longer be used"))
        })
        .await;
        let refused: Vec<(String, String)> = app
            .store()
            .audit_of(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == waiver::store::Outcome::Refused)
            .map(|e| (e.actor, e.action))
            .collect();
        // Every refused attempt is audited: hers, and the submission without a reason.
        assert_eq!(
            refused,
            vec![
                ("olivia.brown".into(), "revoke".into()),
                ("raj.patel".into(), "revoke".into())
            ]
        );
        app.stop().await;
    }
);

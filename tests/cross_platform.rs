//! One engine, two surfaces: a request filed in Slack is assessed and approved by
//! people acting in Teams, and the reverse, with every card on both sides kept current
//! and no live button left on a decided request anywhere. Both databases.

mod common;

use common::teams::{BothApp, channel, member};
use common::{TestDb, uid};
use serde_json::{Value, json};
use waiver::domain::{RequestId, State};
use waiver::fakes::slack::workspace::Input;
use waiver::fakes::teams::tenant::{action_data, describe};

const INTAKE: &str = "C0AIXINTAKE";
const RISK: &str = "C0AIXRISK";
const SECURITY: &str = "C0AIXSECURITY";
const APPROVALS: &str = "C0AIXAPPROVALS";

fn slack_has_buttons(m: &waiver::fakes::slack::Message) -> bool {
    waiver::fakes::slack::workspace::describe(&m.blocks)
        .lines()
        .any(|l| l.starts_with('['))
}

fn slack_card(
    app: &BothApp,
    channel: &str,
    id: RequestId,
) -> Option<waiver::fakes::slack::Message> {
    app.slack
        .slack
        .messages(channel)
        .into_iter()
        .find(|m| waiver::fakes::slack::workspace::describe(&m.blocks).contains(&id.to_string()))
}

fn teams_card(app: &BothApp, channel: &str, id: RequestId) -> Option<Value> {
    app.tenant
        .teams
        .conversation(channel)
        .into_iter()
        .find(|p| describe(&p.activity).contains(&id.to_string()))
        .map(|p| p.activity)
}

async fn teams_open(app: &BothApp, who: &str, post: &Value, title: &str) -> Value {
    let data = action_data(post, title).unwrap_or_else(|| panic!("no {title}: {}", describe(post)));
    let reply = app
        .tenant
        .invoke(&member(who), "task/fetch", json!({ "data": data }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["task"]["value"]["card"]["content"].clone()
}

async fn teams_submit(app: &BothApp, who: &str, card: &Value, values: &[(&str, &str)]) {
    let reply = app.tenant.submit_dialog(&member(who), card, values).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["task"]["type"], "message", "{}", reply.body);
}

async fn state(app: &BothApp, id: RequestId) -> State {
    app.store().load(id).await.unwrap().unwrap().state
}

both!(
    filed_in_slack_assessed_and_approved_in_teams,
    |db: TestDb| async move {
        let app = BothApp::spawn(db).await;
        // James files through Slack's modal.
        let reply = app.slack.command(&uid("james.carter"), "").await;
        assert_eq!(reply.status, 200);
        app.until("the modal", |s, _| s.views_opened().len() == 1)
            .await;
        let view = app.slack.slack.views_opened()[0].clone();
        let today = app.now().date();
        let end = (today + chrono::Days::new(90)).to_string();
        let reply = app
            .slack
            .submit(
                &uid("james.carter"),
                &view,
                &[
                    ("title", Input::Text("Coding assistant")),
                    ("policy", Input::Choose("aiup")),
                    ("exception_type", Input::Choose("tool_adoption")),
                    ("ai_system", Input::Text("CodeHelper Pro")),
                    ("justification", Input::Text("Faster tests.")),
                    ("scope_departments", Input::ChooseMany(&["engineering"])),
                    ("scope_users", Input::Text("12 engineers")),
                    ("data_categories", Input::ChooseMany(&["internal"])),
                    ("regions", Input::ChooseMany(&["us"])),
                    ("department", Input::Choose("engineering")),
                    ("start", Input::Date(&today.to_string())),
                    ("end", Input::Date(&end)),
                    ("controls", Input::Text("No customer data.")),
                    ("business_owner", Input::User(&uid("marcus.webb"))),
                ],
            )
            .await;
        assert_eq!(reply.body, "", "{}", reply.body);
        let id = app
            .store()
            .requests_by(&common::p("james.carter"), 10)
            .await
            .unwrap()[0]
            .id;
        // The completeness card is in both; Noah completes it in Teams.
        app.until("both intake cards", |_, _| {
            slack_card(&app, INTAKE, id).is_some()
                && teams_card(&app, &channel("ai-intake"), id).is_some()
        })
        .await;
        let card = teams_card(&app, &channel("ai-intake"), id).unwrap();
        let data = action_data(&card, "Complete").unwrap();
        let answer = app
            .tenant
            .invoke(
                &member("noah.fischer"),
                "adaptiveCard/action",
                json!({ "action": { "type": "Action.Execute", "verb": "complete", "data": data } }),
            )
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(state(&app, id).await, State::InAssessment);
        // Omar and Tomás assess in Teams.
        for (who, role) in [("omar.haddad", "risk"), ("tomas.novak", "security")] {
            app.until("the assessment card", |_, _| {
                teams_card(&app, &channel(role), id).is_some()
            })
            .await;
            let card = teams_card(&app, &channel(role), id).unwrap();
            let form = teams_open(&app, who, &card, "Assess…").await;
            teams_submit(
                &app,
                who,
                &form,
                &[
                    ("findings", "Internal code only."),
                    ("likelihood", "1"),
                    ("impact", "2"),
                    ("recommendation", "approve"),
                ],
            )
            .await;
        }
        // Carlos approves in Teams.
        app.until("the decision cards", |_, _| {
            slack_card(&app, APPROVALS, id).is_some()
                && teams_card(&app, &channel("department-heads"), id).is_some()
        })
        .await;
        let decision = teams_card(&app, &channel("department-heads"), id).unwrap();
        let form = teams_open(&app, "carlos.mendes", &decision, "Approve…").await;
        teams_submit(&app, "carlos.mendes", &form, &[]).await;
        assert_eq!(state(&app, id).await, State::Active);
        app.drained().await;
        // Every Slack card of the request is closed, with the outcome.
        for ch in [INTAKE, RISK, SECURITY, APPROVALS] {
            let m = slack_card(&app, ch, id).unwrap_or_else(|| panic!("a card in {ch}"));
            assert!(
                !slack_has_buttons(&m),
                "{ch}: {}",
                waiver::fakes::slack::workspace::describe(&m.blocks)
            );
        }
        let slack_decision = waiver::fakes::slack::workspace::describe(
            &slack_card(&app, APPROVALS, id).unwrap().blocks,
        );
        assert!(
            slack_decision.contains("Approved by Carlos Mendes"),
            "{slack_decision}"
        );
        // And every Teams card too.
        for role in ["ai-intake", "risk", "security", "department-heads"] {
            let card = teams_card(&app, &channel(role), id).unwrap();
            let text = describe(&card);
            assert!(!text.contains('['), "{role}: {text}");
        }
        // James hears about it in both.
        app.until("James is told in Slack", |s, _| {
            s.dms(&uid("james.carter")).iter().any(|m| {
                waiver::fakes::slack::workspace::describe(&m.blocks).contains("was approved")
            })
        })
        .await;
        app.stop().await;
    }
);

both!(
    filed_in_teams_reviewed_and_decided_in_slack,
    |db: TestDb| async move {
        let app = BothApp::spawn(db).await;
        let james = member("james.carter");
        app.tenant.say(&james, "ai-exception").await;
        let chat = format!("a:chat-{}", james.aad_object_id);
        app.until("the offer to open the form", |_, t| {
            !t.conversation(&chat).is_empty()
        })
        .await;
        let offer = app.tenant.teams.conversation(&chat)[0].activity.clone();
        let form = teams_open(&app, "james.carter", &offer, "Open: AI policy exception").await;
        let today = app.now().date();
        let end = (today + chrono::Days::new(90)).to_string();
        let marcus = member("marcus.webb").aad_object_id;
        teams_submit(
            &app,
            "james.carter",
            &form,
            &[
                ("title", "Meeting summaries"),
                ("policy", "aiup"),
                ("exception_type", "tool_adoption"),
                ("ai_system", "NoteTaker"),
                ("justification", "Fewer minutes to write."),
                ("scope_departments", "engineering"),
                ("scope_users", "all engineers"),
                ("data_categories", "internal"),
                ("regions", "us"),
                ("department", "engineering"),
                ("start", &today.to_string()),
                ("end", &end),
                ("controls", "No customer calls."),
                ("business_owner", &marcus),
            ],
        )
        .await;
        let id = app
            .store()
            .requests_by(&common::p("james.carter"), 10)
            .await
            .unwrap()[0]
            .id;
        app.until("the Slack intake card", |_, _| {
            slack_card(&app, INTAKE, id).is_some()
        })
        .await;
        let card = slack_card(&app, INTAKE, id).unwrap();
        let reply = app
            .slack
            .click(&uid("noah.fischer"), &card, "send_back")
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        app.until("the send-back modal", |s, _| s.views_opened().len() == 1)
            .await;
        let view = app.slack.slack.views_opened()[0].clone();
        let reply = app
            .slack
            .submit(
                &uid("noah.fischer"),
                &view,
                &[("questions", Input::Text("Which meetings?"))],
            )
            .await;
        assert_eq!(reply.body, "");
        assert_eq!(state(&app, id).await, State::NeedsInfo);
        // The Teams intake card closed; James hears in Teams and in Slack.
        app.drained().await;
        let teams_intake = describe(&teams_card(&app, &channel("ai-intake"), id).unwrap());
        assert!(
            teams_intake.contains("Sent back to the requester by Noah Fischer"),
            "{teams_intake}"
        );
        assert!(!teams_intake.contains("[Complete]"), "{teams_intake}");
        app.until("James sees the questions in Teams", |_, t| {
            t.conversation(&chat)
                .iter()
                .any(|p| describe(&p.activity).contains("Which meetings?"))
        })
        .await;
        // He answers by updating in Teams…
        let questions = app
            .tenant
            .teams
            .conversation(&chat)
            .into_iter()
            .rev()
            .find(|p| describe(&p.activity).contains("Which meetings?"))
            .unwrap()
            .activity;
        let form = teams_open(&app, "james.carter", &questions, "Update request").await;
        teams_submit(
            &app,
            "james.carter",
            &form,
            &[("scope_systems", "team stand-ups only")],
        )
        .await;
        assert_eq!(state(&app, id).await, State::Submitted);
        // …and the rest happens in Slack.
        let slack_step = |channel: &'static str,
                          who: &'static str,
                          action: &'static str,
                          inputs: Vec<(&'static str, Input<'static>)>| {
            let app = &app;
            async move {
                app.until("the Slack card", |s, _| {
                    s.messages(channel).iter().any(|m| {
                        let text = waiver::fakes::slack::workspace::describe(&m.blocks);
                        text.contains(&id.to_string()) && text.contains('[')
                    })
                })
                .await;
                let card = app
                    .slack
                    .slack
                    .messages(channel)
                    .into_iter()
                    .rev()
                    .find(|m| {
                        waiver::fakes::slack::workspace::describe(&m.blocks)
                            .contains(&id.to_string())
                    })
                    .unwrap();
                let opened = app.slack.slack.views_opened().len();
                let reply = app.slack.click(&uid(who), &card, action).await.unwrap();
                assert_eq!(reply.status, 200, "{}", reply.body);
                if inputs.is_empty() && action == "complete" {
                    return;
                }
                app.until("the modal", |s, _| s.views_opened().len() > opened)
                    .await;
                let view = app.slack.slack.views_opened()[opened].clone();
                let reply = app.slack.submit(&uid(who), &view, &inputs).await;
                assert_eq!(reply.body, "", "{}", reply.body);
            }
        };
        slack_step(INTAKE, "noah.fischer", "complete", vec![]).await;
        let assessment = || {
            vec![
                ("findings", Input::Text("Internal only.")),
                ("likelihood", Input::Choose("1")),
                ("impact", Input::Choose("2")),
                ("recommendation", Input::Choose("approve")),
            ]
        };
        slack_step(RISK, "omar.haddad", "assess", assessment()).await;
        slack_step(SECURITY, "tomas.novak", "assess", assessment()).await;
        slack_step(
            APPROVALS,
            "carlos.mendes",
            "approve",
            vec![("reason", Input::Text(""))],
        )
        .await;
        assert_eq!(state(&app, id).await, State::Active);
        app.drained().await;
        for role in ["ai-intake", "risk", "security", "department-heads"] {
            let cards: Vec<String> = app
                .tenant
                .teams
                .conversation(&channel(role))
                .iter()
                .map(|p| describe(&p.activity))
                .filter(|t| t.contains(&id.to_string()))
                .collect();
            assert!(!cards.is_empty(), "{role}");
            for text in cards {
                assert!(!text.contains('['), "{role}: {text}");
            }
        }
        let decided = describe(&teams_card(&app, &channel("department-heads"), id).unwrap());
        assert!(decided.contains("Approved by Carlos Mendes"), "{decided}");
        app.stop().await;
    }
);

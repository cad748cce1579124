//! The workflow through Microsoft Teams: the real server on 127.0.0.1:0, the fake
//! token issuer and Bot Connector, every activity signed as the Bot Framework signs
//! it, on both databases. Assertions are on what people see: the cards and dialogs.

mod common;

use common::TestDb;
use common::teams::{TeamsApp, action_data, channel, describe, member};
use serde_json::{Value, json};
use waiver::domain::State;

/// The last reply the bot posted in `who`'s personal chat.
async fn last_reply(app: &TeamsApp, who: &str, needle: &str) -> Value {
    let chat = format!("a:chat-{}", member(who).aad_object_id);
    app.until("the bot answers", |f| {
        f.conversation(&chat)
            .iter()
            .any(|p| describe(&p.activity).contains(needle))
    })
    .await;
    app.fake()
        .conversation(&chat)
        .into_iter()
        .rev()
        .find(|p| describe(&p.activity).contains(needle))
        .unwrap()
        .activity
}

/// The dialog card in a `task/fetch` or `task/submit` answer.
fn dialog_card(answer: &Value) -> &Value {
    assert_eq!(answer["task"]["type"], "continue", "{answer}");
    &answer["task"]["value"]["card"]["content"]
}

/// Fills the dialog `card` with `values` (field id → string) and submits it as Teams
/// does: the inputs' values merged into the submit action's data.
async fn submit(app: &TeamsApp, who: &str, card: &Value, values: &[(&str, &str)]) -> Value {
    let mut data = card["actions"][0]["data"].clone();
    fn inputs(v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(o) => {
                if o.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("Input."))
                {
                    let id = o["id"].as_str().unwrap_or_default().to_string();
                    out.push((id, o.get("value").cloned().unwrap_or(json!(""))));
                }
                o.values().for_each(|c| inputs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| inputs(c, out)),
            _ => {}
        }
    }
    let mut prefilled = Vec::new();
    inputs(card, &mut prefilled);
    for (id, value) in prefilled {
        data[id] = value;
    }
    for (id, value) in values {
        data[*id] = json!(value);
    }
    let reply = app
        .tenant
        .invoke(&member(who), "task/submit", json!({ "data": data }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn intake(app: &TeamsApp, title: &str) -> Vec<(&'static str, String)> {
    let today = app.now().date();
    vec![
        ("title", title.to_string()),
        ("policy", "aiup".into()),
        ("exception_type", "tool_adoption".into()),
        ("ai_system", "CodeHelper Pro".into()),
        (
            "justification",
            "Speeds up test writing for the ingestion team.".into(),
        ),
        ("scope_departments", "engineering".into()),
        ("scope_users", "12 engineers".into()),
        ("data_categories", "internal".into()),
        ("regions", "us".into()),
        ("department", "engineering".into()),
        ("start", today.to_string()),
        ("end", (today + chrono::Days::new(120)).to_string()),
        ("controls", "No customer data in prompts.".into()),
        ("business_owner", member("marcus.webb").aad_object_id),
    ]
}

/// James files a request through `ai-exception` and the dialog it opens.
async fn file(app: &TeamsApp, title: &str) -> waiver::domain::RequestId {
    let james = member("james.carter");
    let reply = app.tenant.say(&james, "ai-exception").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let offer = last_reply(app, "james.carter", "Open: AI policy exception").await;
    let data =
        action_data(&offer, "Open: AI policy exception").expect("a button that opens the form");
    let reply = app
        .tenant
        .invoke(&james, "task/fetch", json!({ "data": data }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let card = dialog_card(&answer).clone();
    assert!(describe(&card).contains("Business justification: ____"));
    let values = intake(app, title);
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = submit(app, "james.carter", &card, &pairs).await;
    assert_eq!(done["task"]["type"], "message", "{done}");
    let mine = app
        .store()
        .requests_by(&common::p("james.carter"), 100)
        .await
        .unwrap();
    mine.iter().find(|s| s.title == title).expect("filed").id
}

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

        // Noah clicks Complete (Action.Execute): answered in the invoke.
        let data = action_data(&card.activity, "Complete").unwrap();
        let reply = app
            .tenant
            .invoke(
                &member("noah.fischer"),
                "adaptiveCard/action",
                json!({ "action": { "type": "Action.Execute", "verb": "complete", "data": data } }),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["statusCode"], 200);
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

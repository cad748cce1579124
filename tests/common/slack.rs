//! Slack steps the lifecycle tests share: filing through /ai-exception and the intake
//! modal, clicking buttons, submitting the modals they open.

use super::{App, uid};

pub const INTAKE: &str = "C0AIXINTAKE";
pub const RISK: &str = "C0AIXRISK";
pub const SECURITY: &str = "C0AIXSECURITY";
pub const APPROVALS: &str = "C0AIXAPPROVALS";
pub const ENGINEERING: &str = "C0ENGINEERING";
use waiver::domain::State;
use waiver::fakes::slack::workspace::{Input, describe};
use waiver::fakes::slack::{Message, OpenedView};

/// The next modal opened after `before` modals were opened.
pub async fn next_view(app: &App, before: usize) -> OpenedView {
    app.until("a modal opens", |f| f.views_opened().len() > before)
        .await;
    app.fake().views_opened()[before].clone()
}

pub fn has_buttons(m: &Message) -> bool {
    describe(&m.blocks).lines().any(|l| l.starts_with('['))
}

/// James files the sample request through /ai-exception and the intake modal.
pub async fn file(app: &App, title: &str) -> waiver::domain::RequestId {
    file_in(&app.ws, app.now(), title).await;
    let mine = app
        .store()
        .requests_by(&super::p("james.carter"), 100)
        .await
        .unwrap();
    mine.iter().find(|s| s.title == title).expect("filed").id
}

pub fn today(app: &App) -> String {
    app.now().date().to_string()
}

pub fn in_days(app: &App, n: u64) -> String {
    (app.now().date() + chrono::Days::new(n)).to_string()
}

pub async fn click(app: &App, who: &str, message: &Message, action: &str) {
    let reply = app
        .ws
        .click(&uid(who), message, action)
        .await
        .unwrap_or_else(|| panic!("no {action} button on:\n{}", describe(&message.blocks)));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Clicks a modal-opening button and submits the modal.
pub async fn click_and_submit(
    app: &App,
    who: &str,
    message: &Message,
    action: &str,
    inputs: &[(&str, Input<'_>)],
) -> waiver::fakes::slack::workspace::Reply {
    let opened = app.fake().views_opened().len();
    click(app, who, message, action).await;
    let view = next_view(app, opened).await;
    app.ws.submit(&uid(who), &view, inputs).await
}

pub async fn state(app: &App, id: waiver::domain::RequestId) -> State {
    app.request(id).await.state
}

pub fn assess_inputs(l: &'static str, i: &'static str) -> Vec<(&'static str, Input<'static>)> {
    vec![
        ("findings", Input::Text("Vendor keeps prompts for 30 days.")),
        ("likelihood", Input::Choose(l)),
        ("impact", Input::Choose(i)),
        ("mitigations", Input::Text("Zero-retention plan.")),
        ("recommendation", Input::Choose("approve_with_conditions")),
    ]
}

/// The first lifecycle, end to end: filed, marked complete, assessed by risk and
/// security, approved with a condition, the condition marked done, active. Asserts
/// what each person sees on the way; returns the request.
pub async fn approve_with_conditions_then_mark_done(app: &App) -> waiver::domain::RequestId {
    let id = file(app, "Coding assistant").await;
    let reference = id.to_string();

    // 1. The requester sees the routing plan; intake sees a completeness card.
    app.until("receipt and routing plan", |f| {
        f.dms(&uid("james.carter")).iter().any(|m| {
            let d = describe(&m.blocks);
            d.contains("Here is how it will be reviewed") && d.contains(&reference)
        })
    })
    .await;
    let dms: Vec<String> = app
        .fake()
        .dms(&uid("james.carter"))
        .iter()
        .map(|m| describe(&m.blocks))
        .collect();
    assert!(
        dms.iter()
            .any(|d| d.contains("Here is how it will be reviewed")
                && d.contains("AI intake desk")
                && d.contains("Enterprise risk, Information security")),
        "{dms:#?}"
    );
    app.until("completeness card", |f| mentions(f, INTAKE, &reference))
        .await;
    let card = app.message(INTAKE, &reference);
    let text = describe(&card.blocks);
    assert!(
        text.contains("Coding assistant")
            && text.contains("James Carter")
            && text.contains("[Complete] [Send back…]"),
        "{text}"
    );

    // 2. Complete: the card closes in place; assessment cards go to risk and security.
    click(app, "noah.fischer", &card, "complete").await;
    app.until("assessment cards", |f| {
        mentions(f, RISK, &reference) && mentions(f, SECURITY, &reference)
    })
    .await;
    // Closed in place (or, when the first post was still in flight, posted closed).
    app.until("completeness card closed", |f| {
        f.messages(INTAKE)
            .iter()
            .any(|m| is_about(m, &reference) && !has_buttons(m))
    })
    .await;
    let closed = app.message(INTAKE, &reference);
    assert!(
        !has_buttons(&closed),
        "no live button on a decided card: {}",
        describe(&closed.blocks)
    );
    assert!(describe(&closed.blocks).contains("Marked complete by Noah Fischer"));

    // 3. Each required role assesses through its modal.
    let reply = click_and_submit(
        app,
        "omar.haddad",
        &app.message(RISK, &reference),
        "assess",
        &assess_inputs("1", "2"),
    )
    .await;
    assert_eq!(reply.body, "", "{}", reply.body);
    let reply = click_and_submit(
        app,
        "tomas.novak",
        &app.message(SECURITY, &reference),
        "assess",
        &assess_inputs("2", "2"),
    )
    .await;
    assert_eq!(reply.body, "", "{}", reply.body);
    app.until("decision card", |f| mentions(f, APPROVALS, &reference))
        .await;
    let decision = app.message(APPROVALS, &reference);
    let text = describe(&decision.blocks);
    assert!(text.contains("Score 4 of 25, low tier"), "{text}");
    assert!(
        text.contains("Enterprise risk (Omar Haddad): likelihood 1 × impact 2 = 2"),
        "{text}"
    );
    assert!(text.contains("[Approve…] [Reject…]"), "{text}");

    // 5. Approve with a condition owned by Kenji; Marcus (business owner) monitors.
    let reply = click_and_submit(
        app,
        "carlos.mendes",
        &decision,
        "approve",
        &[
            ("c1_text", Input::Text("Enable SSO for all users")),
            ("c1_owner", Input::User(&uid("kenji.watanabe"))),
            ("c1_due", Input::Date(&in_days(app, 14))),
        ],
    )
    .await;
    assert_eq!(reply.body, "", "{}", reply.body);
    assert_eq!(state(app, id).await, State::Approved);

    // 6. Everyone is told; the owner gets the checklist with Mark done.
    app.until("announcement", |f| mentions(f, ENGINEERING, &reference))
        .await;
    assert!(describe(&app.message(ENGINEERING, &reference).blocks).contains("approved"));
    app.until("checklist", |f| {
        f.dms(&uid("marcus.webb")).iter().any(|m| {
            let d = describe(&m.blocks);
            d.contains("conditions to complete") && d.contains(&reference)
        })
    })
    .await;
    app.until("condition owner told", |f| {
        f.dms(&uid("kenji.watanabe"))
            .iter()
            .any(|m| describe(&m.blocks).contains(&reference))
    })
    .await;
    let dm_channel = app.fake().dm_channel(&uid("marcus.webb")).unwrap();
    let checklist = app
        .fake()
        .messages(&dm_channel)
        .into_iter()
        .rev()
        .find(|m| {
            let d = describe(&m.blocks);
            d.contains("conditions to complete") && d.contains(&reference)
        })
        .expect("the checklist");
    assert!(
        describe(&checklist.blocks).contains("1. Enable SSO for all users (owner Kenji Watanabe"),
        "{}",
        describe(&checklist.blocks)
    );
    click(app, "marcus.webb", &checklist, "mark_done").await;
    app.until("active", |f| {
        f.dms(&uid("james.carter")).iter().any(|m| {
            let d = describe(&m.blocks);
            d.contains("is now active") && d.contains(&reference)
        })
    })
    .await;
    assert_eq!(state(app, id).await, State::Active);
    app.drained().await;
    let closed = app.message(APPROVALS, &reference);
    assert!(!has_buttons(&closed), "{}", describe(&closed.blocks));
    assert!(describe(&closed.blocks).contains("Approved by Carlos Mendes"));
    assert!(app.store().verify_audit().await.unwrap().is_ok());
    id
}

/// James files the sample request through `ws` (any server, any clock): the command,
/// the intake modal, submitted; the modal closes.
pub async fn file_in(
    ws: &waiver::fakes::slack::workspace::Workspace,
    now: waiver::domain::Timestamp,
    title: &str,
) {
    let opened = ws.slack.views_opened().len();
    let reply = ws.command(&uid("james.carter"), "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        ws.slack
            .wait_for(std::time::Duration::from_secs(10), |f| f
                .views_opened()
                .len()
                > opened)
            .await,
        "the intake modal opens"
    );
    let view = ws.slack.views_opened()[opened].clone();
    assert_eq!(view.view["callback_id"], "intake");
    let start = now.date().to_string();
    let end = (now.date() + chrono::Days::new(120)).to_string();
    let reply = ws
        .submit(
            &uid("james.carter"),
            &view,
            &[
                ("title", Input::Text(title)),
                ("policy", Input::Choose("aiup")),
                ("exception_type", Input::Choose("tool_adoption")),
                ("ai_system", Input::Text("CodeHelper Pro")),
                (
                    "justification",
                    Input::Text("Speeds up test writing for the ingestion team."),
                ),
                ("scope_departments", Input::ChooseMany(&["engineering"])),
                ("scope_users", Input::Text("12 engineers")),
                ("data_categories", Input::ChooseMany(&["internal"])),
                ("regions", Input::ChooseMany(&["us"])),
                ("department", Input::Choose("engineering")),
                ("start", Input::Date(&start)),
                ("end", Input::Date(&end)),
                ("controls", Input::Text("No customer data in prompts.")),
                ("business_owner", Input::User(&uid("marcus.webb"))),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "", "the modal closes");
}

/// Whether `m` is the bot's message about `reference` (its text starts with it; a
/// card may also name other requests, as precedent).
pub fn is_about(m: &Message, reference: &str) -> bool {
    m.user.is_none()
        && m.text
            .as_deref()
            .is_some_and(|t| t.starts_with(&format!("{reference} ")))
}

/// Whether a bot message in `channel` is about `reference`.
pub fn mentions(f: &waiver::fakes::slack::FakeSlack, channel: &str, reference: &str) -> bool {
    f.messages(channel).iter().any(|m| is_about(m, reference))
}

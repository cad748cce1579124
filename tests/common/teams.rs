//! A running Waiver on Teams: the real server against the fake token issuer and Bot
//! Connector, with a signed tenant driver.

use std::time::Duration;

use serde_json::{Value, json};
use waiver::domain::State;
use waiver::fakes::teams::tenant::action_data;
use waiver::fakes::teams::tenant::{Member, Tenant, describe};
use waiver::fakes::teams::{FakeTeams, Posted};

use super::{TestDb, fast_delivery, gov, now, p};

pub const APP_ID: &str = "00000000-0000-0000-0000-0000000b0700";
pub const APP_PASSWORD: &str = "teams-app-password";

/// Every Teams channel the governance file names (roles' and departments'), once.
pub fn teams_channels() -> Vec<String> {
    let g = gov();
    let mut channels: Vec<String> = g
        .roles
        .values()
        .filter_map(|r| r.channels.teams.clone())
        .chain(
            g.form
                .departments
                .iter()
                .filter_map(|d| d.channels.teams.clone()),
        )
        .collect();
    channels.sort();
    channels.dedup();
    channels
}

/// The governance file's tenant.
pub fn tenant() -> String {
    gov().teams_tenants[0].clone()
}

/// A person of the governance file, as a member of the tenant.
pub fn member(person: &str) -> Member {
    let g = gov();
    let who = g
        .person(&p(person))
        .expect("a person of the governance file");
    let teams = who.teams.as_ref().expect("a Teams identity");
    Member::new(&teams.aad_object_id, &who.name)
}

/// A role's Teams channel.
pub fn channel(role: &str) -> String {
    gov()
        .role(&waiver::governance::RoleId::new(role))
        .and_then(|r| r.channels.teams.clone())
        .expect("the role has a Teams channel")
}

pub struct TeamsApp {
    pub tenant: Tenant,
    pub clock: waiver::clock::Clock,
    pub running: Option<waiver::app::Running>,
    pub db: TestDb,
}

fn config(db: &TestDb, fake: &FakeTeams) -> waiver::config::Config {
    waiver::config::Config {
        database_url: db.url.clone(),
        governance: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/governance.toml"),
        listen: "127.0.0.1:0".parse().unwrap(),
        slack: None,
        teams: Some(waiver::config::TeamsConfig {
            app_id: APP_ID.into(),
            app_password: waiver::config::Secret::new(APP_PASSWORD),
            tenant_id: tenant(),
            openid_metadata_url: fake.openid_url(),
            token_url: fake.token_url(),
            service_urls: vec![fake.service_url()],
        }),
        dashboard: Default::default(),
        public_url: None,
        metrics_token: None,
        log_format: Default::default(),
    }
}

/// Delivery tuned for tests, no scheduler.
pub fn options() -> waiver::app::Options {
    waiver::app::Options {
        delivery: waiver::delivery::DeliveryConfig {
            unreachable_wait: Duration::from_millis(50),
            ..fast_delivery()
        },
        no_scheduler: true,
        ..Default::default()
    }
}

async fn start(
    db: &TestDb,
    fake: &FakeTeams,
    options: waiver::app::Options,
) -> waiver::app::Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    waiver::app::start(config(db, fake), listener, options)
        .await
        .expect("waiver starts")
}

impl TeamsApp {
    /// Starts Waiver on Teams alone, with the app installed in every role's channel.
    pub async fn spawn(db: TestDb) -> TeamsApp {
        Self::spawn_without(db, &[]).await
    }

    /// Starts Waiver on Teams alone, with the app installed in every role's channel
    /// but those in `not_installed`.
    pub async fn spawn_without(db: TestDb, not_installed: &[String]) -> TeamsApp {
        Self::spawn_with(db, options(), not_installed).await
    }

    /// Starts on `options` (its clock is replaced by one starting at [`now`]), with
    /// the app installed in every role's channel but those in `not_installed`.
    pub async fn spawn_with(
        db: TestDb,
        mut options: waiver::app::Options,
        not_installed: &[String],
    ) -> TeamsApp {
        let clock = waiver::clock::Clock::starting_at(now());
        let fake = FakeTeams::start(APP_ID, APP_PASSWORD, &tenant(), clock.clone()).await;
        options.clock = clock.clone();
        let running = start(&db, &fake, options).await;
        let tenant = Tenant::new(fake, running.addr);
        let app = TeamsApp {
            tenant,
            clock,
            running: Some(running),
            db,
        };
        let admin = member("noah.fischer");
        let channels = teams_channels();
        for c in channels.iter().filter(|c| !not_installed.contains(c)) {
            let reply = app.tenant.install_in_channel(&admin, c).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        app
    }

    /// Simulates a crash and a restart on the same database, fake and clock.
    pub async fn crash_and_restart(&mut self, mut options: waiver::app::Options) {
        options.clock = self.clock.clone();
        self.running.take().unwrap().crash();
        let running = start(&self.db, &self.tenant.teams, options).await;
        self.tenant.retarget(running.addr);
        self.running = Some(running);
    }

    /// Waits until no message is pending delivery (30 s at most: a post in doubt
    /// waits twice the call timeout before it is tried again).
    pub async fn drained(&self) {
        super::drained(self.store(), Duration::from_secs(30)).await;
    }

    pub fn fake(&self) -> &FakeTeams {
        &self.tenant.teams
    }

    pub fn store(&self) -> &waiver::store::Store {
        &self.running.as_ref().unwrap().store
    }

    pub fn service(&self) -> &waiver::service::Service {
        &self.running.as_ref().unwrap().service
    }

    pub fn now(&self) -> waiver::domain::Timestamp {
        self.clock.now()
    }

    /// Polls until `pred` holds (10 s at most); panics with `what` otherwise.
    pub async fn until(&self, what: &str, pred: impl Fn(&FakeTeams) -> bool) {
        if !self.fake().wait_for(Duration::from_secs(10), pred).await {
            let outbox: Vec<String> = self
                .store()
                .outbox()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.status != waiver::store::OutboxStatus::Sent)
                .map(|r| {
                    format!(
                        "#{} {:?} {} {:?}",
                        r.id,
                        r.status,
                        r.outgoing.to.target(),
                        r.last_error
                    )
                })
                .collect();
            panic!("timed out waiting for: {what}\nundelivered: {outbox:#?}");
        }
    }

    /// The bot's posts in `conversation` whose cards mention `needle`.
    pub fn posts(&self, conversation: &str, needle: &str) -> Vec<Posted> {
        self.fake()
            .conversation(conversation)
            .into_iter()
            .filter(|p| describe(&p.activity).contains(needle))
            .collect()
    }

    /// Stops, then checks every card the test produced with Microsoft's library.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        validate_cards(&cards_seen(&self.tenant));
    }
}

/// One Waiver serving Slack and Teams at once, each against its fake.
pub struct BothApp {
    pub slack: waiver::fakes::slack::workspace::Workspace,
    pub tenant: Tenant,
    pub clock: waiver::clock::Clock,
    pub running: Option<waiver::app::Running>,
    pub db: TestDb,
}

impl BothApp {
    pub async fn spawn(db: TestDb) -> BothApp {
        let clock = waiver::clock::Clock::starting_at(now());
        let fake_slack = waiver::fakes::slack::FakeSlack::start_at(
            super::BOT_TOKEN,
            waiver::fakes::slack::DEFAULT_TEAM_ID,
            clock.clone(),
        )
        .await;
        let fake_teams = FakeTeams::start(APP_ID, APP_PASSWORD, &tenant(), clock.clone()).await;
        let mut config = config(&db, &fake_teams);
        config.slack = super::config(&db, fake_slack.api_url()).slack;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = waiver::app::Options {
            delivery: waiver::delivery::DeliveryConfig {
                unreachable_wait: Duration::from_millis(50),
                ..fast_delivery()
            },
            no_scheduler: true,
            clock: clock.clone(),
            ..Default::default()
        };
        let running = waiver::app::start(config, listener, options)
            .await
            .expect("waiver starts");
        let slack = waiver::fakes::slack::workspace::Workspace::new(
            fake_slack,
            running.addr,
            waiver::config::Secret::new(super::SIGNING_SECRET),
        );
        let tenant = Tenant::new(fake_teams, running.addr);
        let admin = member("noah.fischer");
        let channels = teams_channels();
        for c in channels {
            assert_eq!(tenant.install_in_channel(&admin, &c).await.status, 200);
        }
        BothApp {
            slack,
            tenant,
            clock,
            running: Some(running),
            db,
        }
    }

    pub fn store(&self) -> &waiver::store::Store {
        &self.running.as_ref().unwrap().store
    }

    pub fn now(&self) -> waiver::domain::Timestamp {
        self.clock.now()
    }

    /// Polls until `pred` holds over both fakes (10 s at most).
    pub async fn until(
        &self,
        what: &str,
        pred: impl Fn(&waiver::fakes::slack::FakeSlack, &FakeTeams) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pred(&self.slack.slack, &self.tenant.teams) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until no message is pending delivery.
    pub async fn drained(&self) {
        super::drained(self.store(), Duration::from_secs(10)).await;
    }

    /// Stops, then checks every card the test produced with Microsoft's library.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        validate_cards(&cards_seen(&self.tenant));
    }
}

/// Every Adaptive Card the bot produced: in each post, reply and update the Bot
/// Connector received, and in each invoke answer (dialogs, refreshed cards).
pub fn cards_seen(tenant: &Tenant) -> Vec<Value> {
    let mut cards = Vec::new();
    for call in tenant.teams.calls() {
        if ["post", "reply", "update"].contains(&call.kind.as_str()) {
            for a in call.body["attachments"].as_array().into_iter().flatten() {
                cards.push(a["content"].clone());
            }
        }
    }
    for answer in tenant.answers() {
        if answer["task"]["type"] == "continue" {
            cards.push(answer["task"]["value"]["card"]["content"].clone());
        }
        if answer["type"] == waiver::chat::teams::cards::CONTENT_TYPE {
            cards.push(answer["value"].clone());
        }
    }
    cards
}

/// Checks `cards` with Microsoft's `adaptivecards` library (tests/node): fails on
/// any unknown or invalid element. Without the library (`npm ci` in tests/node) the
/// check is skipped loudly, or fails with `WAIVER_REQUIRE_NODE=1` (CI).
pub fn validate_cards(cards: &[Value]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !dir.join("node_modules/adaptivecards").exists() {
        let required = std::env::var("WAIVER_REQUIRE_NODE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "WAIVER_REQUIRE_NODE=1 but tests/node has no node_modules: run `npm ci` there"
        );
        eprintln!("\n!!! SKIPPING the Adaptive Card check: run `npm ci` in tests/node\n");
        return;
    }
    if cards.is_empty() {
        return;
    }
    let file = super::TempDir::new();
    let path = file.path.join("cards.json");
    std::fs::write(&path, serde_json::to_vec(cards).unwrap()).unwrap();
    let out = std::process::Command::new("node")
        .arg(dir.join("validate-cards.js"))
        .arg(&path)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "Microsoft's Adaptive Cards library refused a card:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// The workflow through Teams, step by step, as people do it.

/// The last reply the bot posted in `who`'s personal chat.
pub async fn last_reply(app: &TeamsApp, who: &str, needle: &str) -> Value {
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
pub fn dialog_card(answer: &Value) -> &Value {
    assert_eq!(answer["task"]["type"], "continue", "{answer}");
    &answer["task"]["value"]["card"]["content"]
}

/// `who` submits the dialog `card` with `values` (field id → string).
pub async fn submit(app: &TeamsApp, who: &str, card: &Value, values: &[(&str, &str)]) -> Value {
    let reply = app.tenant.submit_dialog(&member(who), card, values).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

pub fn intake(app: &TeamsApp, title: &str) -> Vec<(&'static str, String)> {
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
pub async fn file(app: &TeamsApp, title: &str) -> waiver::domain::RequestId {
    let card = intake_form(app).await;
    file_in(app, &card, title).await
}

/// James types `ai-exception` and opens the dialog it offers: the form's card.
pub async fn intake_form(app: &TeamsApp) -> Value {
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
    card
}

/// James submits the intake form `card` as `title`: the request filed.
pub async fn file_in(app: &TeamsApp, card: &Value, title: &str) -> waiver::domain::RequestId {
    let values = intake(app, title);
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = submit(app, "james.carter", card, &pairs).await;
    assert_eq!(done["task"]["type"], "message", "{done}");
    let mine = app
        .store()
        .requests_by(&p("james.carter"), 100)
        .await
        .unwrap();
    mine.iter().find(|s| s.title == title).expect("filed").id
}

/// The conversation of the bot's chat with `who`: the one they opened by messaging
/// the bot, or the one the bot opened to reach them.
pub fn chat_of(app: &TeamsApp, who: &str) -> Option<String> {
    let m = member(who);
    let typed = format!("a:chat-{}", m.aad_object_id);
    if !app.fake().conversation(&typed).is_empty() {
        return Some(typed);
    }
    app.fake().personal(&m.id())
}

/// The post in `conversation` mentioning `needle`, once there is one (the latest).
pub async fn post_in(
    app: &TeamsApp,
    conversation: &str,
    needle: &str,
) -> waiver::fakes::teams::Posted {
    app.until(
        &format!("a post mentioning {needle:?} in {conversation}"),
        |_| !app.posts(conversation, needle).is_empty(),
    )
    .await;
    app.posts(conversation, needle).pop().unwrap()
}

/// A DM to `who` mentioning `needle`.
pub async fn dm(app: &TeamsApp, who: &str, needle: &str) -> waiver::fakes::teams::Posted {
    app.until(&format!("a DM to {who} mentioning {needle:?}"), |_| {
        chat_of(app, who).is_some_and(|c| !app.posts(&c, needle).is_empty())
    })
    .await;
    let chat = chat_of(app, who).unwrap();
    app.posts(&chat, needle).pop().unwrap()
}

/// `who` clicks the form button `title` on `post`: the dialog's card.
pub async fn open(app: &TeamsApp, who: &str, post: &Value, title: &str) -> Value {
    let data =
        action_data(post, title).unwrap_or_else(|| panic!("no {title} on {}", describe(post)));
    assert_eq!(
        data["msteams"]["type"], "task/fetch",
        "{title} opens a dialog"
    );
    let reply = app
        .tenant
        .invoke(&member(who), "task/fetch", json!({ "data": data }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    dialog_card(&reply.json()).clone()
}

/// `who` clicks the button `title` on `post` that acts at once: the invoke's answer.
pub async fn execute(app: &TeamsApp, who: &str, post: &Value, title: &str) -> Value {
    let data =
        action_data(post, title).unwrap_or_else(|| panic!("no {title} on {}", describe(post)));
    let reply = app
        .tenant
        .invoke(
            &member(who),
            "adaptiveCard/action",
            json!({ "action": { "type": "Action.Execute", "verb": data["action"], "data": data } }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

pub async fn state_of(app: &TeamsApp, id: waiver::domain::RequestId) -> State {
    app.store().load(id).await.unwrap().unwrap().state
}

pub fn aad(who: &str) -> String {
    member(who).aad_object_id
}

/// Filed, complete, assessed low (risk 1×2, security 2×2): awaiting Carlos' decision.
pub async fn awaiting_decision(app: &TeamsApp, title: &str) -> (waiver::domain::RequestId, Value) {
    let id = file(app, title).await;
    let reference = id.to_string();
    let card = post_in(app, &channel("ai-intake"), &reference).await;
    execute(app, "noah.fischer", &card.activity, "Complete").await;
    for (who, role, l, i) in [
        ("omar.haddad", "risk", "1", "2"),
        ("tomas.novak", "security", "2", "2"),
    ] {
        let card = post_in(app, &channel(role), &reference).await;
        let form = open(app, who, &card.activity, "Assess…").await;
        let done = submit(
            app,
            who,
            &form,
            &[
                ("findings", "Vendor keeps prompts for 30 days."),
                ("likelihood", l),
                ("impact", i),
                ("recommendation", "approve_with_conditions"),
            ],
        )
        .await;
        assert_eq!(done["task"]["type"], "message", "{who}: {done}");
    }
    let decision = post_in(app, &channel("department-heads"), &reference).await;
    (id, decision.activity)
}

pub fn channel_of_department(department: &str) -> String {
    gov()
        .form
        .departments
        .iter()
        .find(|d| d.id.as_str() == department)
        .and_then(|d| d.channels.teams.clone())
        .expect("the department has a Teams channel")
}
/// A whole lifecycle through Teams, as people click it: James files a request, the
/// intake desk completes it, risk and security assess it low, Carlos approves it with
/// a condition Kenji owns, and Kenji marks the condition done from Marcus' checklist,
/// so it is active. Waits for each card and DM a person acts on.
pub async fn approve_with_conditions_then_mark_done(
    app: &TeamsApp,
    title: &str,
) -> waiver::domain::RequestId {
    let (id, decision) = awaiting_decision(app, title).await;
    let form = open(app, "carlos.mendes", &decision, "Approve…").await;
    let due = (app.now().date() + chrono::Days::new(14)).to_string();
    let done = submit(
        app,
        "carlos.mendes",
        &form,
        &[
            ("c2_text", "Enable SSO for all users"),
            ("c2_owner", &aad("kenji.watanabe")),
            ("c2_due", &due),
        ],
    )
    .await;
    assert_eq!(done["task"]["type"], "message", "{done}");
    assert_eq!(state_of(app, id).await, State::Approved);
    let reference = id.to_string();
    let checklist = dm(
        app,
        "marcus.webb",
        &format!("{reference} · conditions to complete"),
    )
    .await;
    execute(app, "kenji.watanabe", &checklist.activity, "Mark 1 done").await;
    assert_eq!(state_of(app, id).await, State::Active);
    id
}

//! A running Waiver on Teams: the real server against the fake token issuer and Bot
//! Connector, with a signed tenant driver.

use std::time::Duration;

use serde_json::Value;
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

impl TeamsApp {
    /// Starts Waiver on Teams alone, with the app installed in every role's channel.
    pub async fn spawn(db: TestDb) -> TeamsApp {
        Self::spawn_without(db, &[]).await
    }

    /// Starts Waiver on Teams alone, with the app installed in every role's channel
    /// but those in `not_installed`.
    pub async fn spawn_without(db: TestDb, not_installed: &[String]) -> TeamsApp {
        let clock = waiver::clock::Clock::starting_at(now());
        let fake = FakeTeams::start(APP_ID, APP_PASSWORD, &tenant(), clock.clone()).await;
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
        let running = waiver::app::start(config(&db, &fake), listener, options)
            .await
            .expect("waiver starts");
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
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let counts = self.store().outbox_counts().await.unwrap();
            if !counts.iter().any(|(s, n)| s == "pending" && *n > 0) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "outbox not drained: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

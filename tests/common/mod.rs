//! Shared test harness: a fresh database per test on either backend, and fixtures.
//!
//! PostgreSQL: `WAIVER_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! is an admin URL; each test creates its own database there and drops it afterwards,
//! even when the test fails. Without a reachable server the PostgreSQL half is skipped
//! with a loud message, unless `WAIVER_REQUIRE_POSTGRES=1` (CI), where it fails.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use waiver::domain::{FormInput, Timestamp};
use waiver::governance::{self, Governance, PersonId};
use waiver::service::Service;
use waiver::store::Store;

pub mod flow;
pub mod slack;
pub mod teams;

pub const SHIPPED: &str = include_str!("../../manifests/governance.toml");

pub fn gov() -> Arc<Governance> {
    Arc::new(governance::parse(SHIPPED).expect("shipped governance is valid"))
}

pub fn p(id: &str) -> PersonId {
    PersonId::new(id)
}

/// 2026-11-24T10:00:00Z, the instant tests run at. It is passed as `now` to every
/// service call, and the servers the Slack tests start run on a clock that reads
/// it at start ([`App::spawn`]), so no test compares it with the wall clock.
pub fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").unwrap()
}

/// The sample form, filed on [`now`]'s day.
pub fn form() -> FormInput {
    waiver::fakes::testkit::sample_form(now().date())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name(prefix: &str) -> String {
    use std::hash::BuildHasher;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded randomly per process: names never collide across runs.
    let salt = std::collections::hash_map::RandomState::new().hash_one(n) % 1_000_000_000;
    format!("{prefix}_{}_{n}_{salt}", std::process::id())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    /// The first store opened on it, for tests to inspect what the service wrote.
    opened: std::sync::OnceLock<Store>,
    _dir: Option<TempDir>,
    drop_pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = TempDir::new();
        let url = format!("sqlite://{}/waiver.db", dir.path.display());
        Self {
            url,
            backend: "sqlite",
            opened: std::sync::OnceLock::new(),
            _dir: Some(dir),
            drop_pg: None,
        }
    }

    /// `None` (with a loud message) when PostgreSQL is unavailable and not required.
    pub async fn postgres() -> Option<Self> {
        sqlx::any::install_default_drivers();
        let admin = std::env::var("WAIVER_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let required = std::env::var("WAIVER_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let mut conn = match sqlx::AnyConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) if !required => {
                eprintln!(
                    "\n!!! SKIPPING the PostgreSQL half of this test: cannot reach {admin}: {e}\n\
                     !!! Set WAIVER_TEST_POSTGRES to an admin URL, or WAIVER_REQUIRE_POSTGRES=1 to fail instead.\n"
                );
                return None;
            }
            Err(e) => {
                panic!("WAIVER_REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is unreachable: {e}")
            }
        };
        let name = unique_name("waiver_test");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin.split('?').next().unwrap();
        let cut = base
            .rfind('/')
            .filter(|i| *i > "postgres://".len())
            .unwrap_or(base.len());
        let url = format!("{}/{name}", &base[..cut]);
        Some(Self {
            url,
            backend: "postgres",
            opened: std::sync::OnceLock::new(),
            _dir: None,
            drop_pg: Some((admin, name)),
        })
    }

    /// A new store on the database (migrated); the first one is also [`Self::opened`].
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let _ = self.opened.set(store.clone());
        store
    }

    /// The store the test opened first (through [`Self::store`] or [`Self::service`]),
    /// to read what the service wrote.
    pub fn opened(&self) -> &Store {
        self.opened
            .get()
            .expect("open the database with db.store() or db.service() first")
    }

    pub async fn service(&self) -> Service {
        Service::new(self.store().await, gov(), waiver::clock::Clock::System)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.drop_pg.take() {
            // Drop runs outside async (and possibly while unwinding a failed test).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(unique_name("waiver"));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs an async test body once per backend: `both!(name, |db| async move { ... })`.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = common::TestDb::sqlite().await;
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = common::TestDb::postgres().await else {
                    return;
                };
                ($body)(db).await;
            }
        }
    };
}

/// A Slack test body run on both databases and over both transports, HTTP and
/// Socket Mode: `slack_both!(name, |app: App| async move { ... })`.
#[macro_export]
macro_rules! slack_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = common::TestDb::sqlite().await;
                ($body)(common::App::spawn(db).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = common::TestDb::postgres().await else {
                    return;
                };
                ($body)(common::App::spawn(db).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_socket_mode() {
                let db = common::TestDb::sqlite().await;
                ($body)(common::App::spawn_socket(db).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_socket_mode() {
                let Some(db) = common::TestDb::postgres().await else {
                    return;
                };
                ($body)(common::App::spawn_socket(db).await).await;
            }
        }
    };
}

/// The Slack user id of a person in the shipped governance file.
pub fn uid(person: &str) -> String {
    let g = gov();
    g.person(&p(person))
        .and_then(|x| x.slack.as_ref())
        .map(|s| s.user.clone())
        .unwrap_or_else(|| panic!("{person} has no Slack id"))
}

pub const SIGNING_SECRET: &str = "test-signing-secret";
pub const BOT_TOKEN: &str = "xoxb-test-token";
pub const APP_TOKEN: &str = "xapp-1-A0WAIVER-1-test";

/// A running Waiver against a fake Slack, with a signed workspace driver. Waiver and
/// the fake share one clock that starts at [`now`] and advances in real time.
pub struct App {
    pub ws: waiver::fakes::slack::workspace::Workspace,
    pub clock: waiver::clock::Clock,
    pub running: Option<waiver::app::Running>,
    /// In process mode ([`App::spawn_processes`]): the `waiver serve` children (a
    /// killed one is `None`) and a store of the test's own on their database.
    pub processes: Vec<Option<Served>>,
    pub process_store: Option<Store>,
    /// How long [`App::until`] and [`App::drained`] wait: a real server's delivery
    /// keeps its production timings (an answer in doubt waits 20 s before a retry).
    pub patience: std::time::Duration,
    pub db: TestDb,
    /// Applied to the configuration at every start (and restart).
    pub edit: ConfigEdit,
}

/// Waits until no message in `store`'s outbox is pending delivery (`patience` at most).
pub async fn drained(store: &Store, patience: std::time::Duration) {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let counts = store.outbox_counts().await.unwrap();
        if !counts.iter().any(|(s, n)| s == "pending" && *n > 0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbox not drained: {counts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub type ConfigEdit = std::sync::Arc<dyn Fn(&mut waiver::config::Config) + Send + Sync>;

/// Delivery tuned for tests: no pacing, short backoffs, quick polling.
pub fn fast_delivery() -> waiver::delivery::DeliveryConfig {
    waiver::delivery::DeliveryConfig {
        per_conversation: Some(std::time::Duration::ZERO),
        base_backoff: std::time::Duration::from_millis(20),
        idle_poll: std::time::Duration::from_millis(20),
        call_timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    }
}

pub fn config(db: &TestDb, api_url: String) -> waiver::config::Config {
    waiver::config::Config {
        database_url: db.url.clone(),
        governance: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/governance.toml"),
        listen: "127.0.0.1:0".parse().unwrap(),
        slack: Some(waiver::config::SlackConfig {
            signing_secret: Some(waiver::config::Secret::new(SIGNING_SECRET)),
            bot_token: waiver::config::Secret::new(BOT_TOKEN),
            socket_mode: None,
            api_url,
        }),
        teams: None,
        dashboard: Default::default(),
        public_url: None,
        metrics_token: None,
        log_format: Default::default(),
    }
}

impl App {
    pub async fn spawn(db: TestDb) -> App {
        Self::spawn_with(
            db,
            waiver::app::Options {
                delivery: fast_delivery(),
                no_scheduler: true,
                ..Default::default()
            },
        )
        .await
    }

    /// Starts on `options`; its clock is replaced by one starting at [`now`].
    pub async fn spawn_with(db: TestDb, options: waiver::app::Options) -> App {
        Self::spawn_editing(db, options, std::sync::Arc::new(|_| {})).await
    }

    /// [`spawn_with`](Self::spawn_with), serving the dashboard to `dashboard`.
    pub async fn spawn_with_dashboard(
        db: TestDb,
        options: waiver::app::Options,
        dashboard: waiver::config::DashboardAccess,
    ) -> App {
        Self::spawn_editing(
            db,
            options,
            std::sync::Arc::new(move |c| c.dashboard = dashboard.clone()),
        )
        .await
    }

    /// [`spawn_with`](Self::spawn_with), with `edit` applied to the configuration.
    pub async fn spawn_editing(
        db: TestDb,
        mut options: waiver::app::Options,
        edit: ConfigEdit,
    ) -> App {
        let clock = waiver::clock::Clock::starting_at(now());
        options.clock = clock.clone();
        let fake = waiver::fakes::slack::FakeSlack::start_at(
            BOT_TOKEN,
            waiver::fakes::slack::DEFAULT_TEAM_ID,
            clock.clone(),
        )
        .await;
        let running = Self::start(&db, &fake, options, &edit).await;
        let ws = waiver::fakes::slack::workspace::Workspace::new(
            fake,
            running.addr,
            waiver::config::Secret::new(SIGNING_SECRET),
        );
        App {
            ws,
            clock,
            running: Some(running),
            processes: Vec::new(),
            process_store: None,
            patience: std::time::Duration::from_secs(10),
            db,
            edit,
        }
    }

    /// [`spawn`](Self::spawn) with Slack on Socket Mode: no signing secret, no HTTP
    /// from Slack; commands, interactions and events go down the websocket Waiver
    /// opens to a fake Socket Mode server (one connection, reconnecting after 1 s).
    pub async fn spawn_socket(db: TestDb) -> App {
        let clock = waiver::clock::Clock::starting_at(now());
        let fake = waiver::fakes::slack::FakeSlack::start_at(
            BOT_TOKEN,
            waiver::fakes::slack::DEFAULT_TEAM_ID,
            clock.clone(),
        )
        .await;
        let socket = fake.enable_socket_mode(APP_TOKEN).await;
        let edit: ConfigEdit = std::sync::Arc::new(|c| {
            let slack = c.slack.as_mut().unwrap();
            slack.signing_secret = None;
            slack.socket_mode = Some(waiver::config::Secret::new(APP_TOKEN));
        });
        let options = waiver::app::Options {
            delivery: fast_delivery(),
            no_scheduler: true,
            clock: clock.clone(),
            socket: waiver::chat::slack::socket::SocketOptions {
                connections: 1,
                reconnect: std::time::Duration::from_secs(1),
            },
            ..Default::default()
        };
        let running = Self::start(&db, &fake, options, &edit).await;
        assert!(
            socket
                .wait_connected(1, std::time::Duration::from_secs(10))
                .await,
            "Waiver connects to the Socket Mode server"
        );
        let ws = waiver::fakes::slack::workspace::Workspace::new(
            fake,
            running.addr,
            waiver::config::Secret::new(SIGNING_SECRET),
        )
        .over_socket(socket);
        App {
            ws,
            clock,
            running: Some(running),
            processes: Vec::new(),
            process_store: None,
            patience: std::time::Duration::from_secs(10),
            db,
            edit,
        }
    }

    async fn start(
        db: &TestDb,
        fake: &waiver::fakes::slack::FakeSlack,
        options: waiver::app::Options,
        edit: &ConfigEdit,
    ) -> waiver::app::Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = config(db, fake.api_url());
        edit(&mut config);
        waiver::app::start(config, listener, options)
            .await
            .expect("waiver starts")
    }

    /// The instant Waiver and the fake Slack read now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Simulates a crash and a restart on the same database, fake Slack and clock.
    pub async fn crash_and_restart(&mut self, mut options: waiver::app::Options) {
        options.clock = self.clock.clone();
        self.running.take().unwrap().crash();
        let running = Self::start(&self.db, &self.ws.slack, options, &self.edit).await;
        self.ws.retarget(running.addr);
        self.running = Some(running);
    }

    pub fn service(&self) -> &waiver::service::Service {
        &self.running.as_ref().unwrap().service
    }

    /// The running server's database, to read what it wrote.
    pub fn store(&self) -> &Store {
        match &self.running {
            Some(r) => &r.store,
            None => self.process_store.as_ref().expect("a server"),
        }
    }

    /// Request `id` as stored now.
    pub async fn request(&self, id: waiver::domain::RequestId) -> waiver::domain::ExceptionRequest {
        self.store().load(id).await.unwrap().unwrap()
    }

    pub fn fake(&self) -> &waiver::fakes::slack::FakeSlack {
        &self.ws.slack
    }

    /// Polls until `pred` holds ([`App::patience`] at most); panics with `what` otherwise.
    pub async fn until(&self, what: &str, pred: impl Fn(&waiver::fakes::slack::FakeSlack) -> bool) {
        if !self.ws.slack.wait_for(self.patience, pred).await {
            let store = self.store();
            let undelivered: Vec<String> = store
                .outbox()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.status != waiver::store::OutboxStatus::Sent)
                .map(|r| {
                    format!(
                        "#{} {:?} {} attempts={} next={} error={:?}",
                        r.id,
                        r.status,
                        r.outgoing.to.target(),
                        r.attempts,
                        r.next_attempt_at,
                        r.last_error
                    )
                })
                .collect();
            let calls: Vec<String> = self
                .ws
                .slack
                .calls()
                .iter()
                .rev()
                .take(12)
                .map(|c| {
                    format!(
                        "{} {} {:?} {}",
                        c.method, c.status, c.error, c.body["channel"]
                    )
                })
                .collect();
            panic!(
                "timed out waiting for: {what}\nundelivered: {undelivered:#?}\nqueues: {:?}\nlast Slack calls: {calls:#?}",
                store.outbox_queues().await
            );
        }
    }

    /// Waits until every queued message was handled.
    pub async fn drained(&self) {
        drained(self.store(), self.patience).await;
    }

    /// The last message in `channel` whose text mentions `needle`.
    pub fn message(&self, channel: &str, needle: &str) -> waiver::fakes::slack::Message {
        self.ws
            .slack
            .messages(channel)
            .into_iter()
            .rev()
            .find(|m| {
                waiver::fakes::slack::workspace::describe(&m.blocks).contains(needle)
                    || m.text.as_deref().unwrap_or_default().contains(needle)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no message mentioning {needle:?} in {channel}: {:#?}",
                    self.ws
                        .slack
                        .messages(channel)
                        .iter()
                        .map(|m| waiver::fakes::slack::workspace::describe(&m.blocks))
                        .collect::<Vec<_>>()
                )
            })
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        for i in 0..self.processes.len() {
            self.kill(i);
        }
    }

    /// `replicas` real `waiver serve` processes (the binary, as operators run it) on
    /// `db`, against a fake Slack on the system clock (the children's), each on an
    /// address of its own that it keeps across restarts. Requests go to replica 0
    /// until [`App::use_replica`] says otherwise.
    pub async fn spawn_processes(db: TestDb, replicas: usize) -> App {
        let clock = waiver::clock::Clock::System;
        let fake = waiver::fakes::slack::FakeSlack::start_at(
            BOT_TOKEN,
            waiver::fakes::slack::DEFAULT_TEAM_ID,
            clock.clone(),
        )
        .await;
        let store = db.store().await;
        let mut processes = Vec::new();
        for _ in 0..replicas {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            processes.push(Some(Served::start(&db, &fake, addr).await));
        }
        let addr = processes[0].as_ref().unwrap().addr;
        App {
            ws: waiver::fakes::slack::workspace::Workspace::new(
                fake,
                addr,
                waiver::config::Secret::new(SIGNING_SECRET),
            ),
            clock,
            running: None,
            processes,
            process_store: Some(store),
            patience: std::time::Duration::from_secs(60),
            db,
            edit: std::sync::Arc::new(|_| {}),
        }
    }

    /// Sends what follows to replica `i`.
    pub fn use_replica(&mut self, i: usize) {
        let addr = self.processes[i].as_ref().expect("a live replica").addr;
        self.ws.retarget(addr);
    }

    /// SIGKILLs replica `i`: no shutdown, no finishing what it was doing.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut served) = self.processes[i].take() {
            let _ = served.child.kill();
            let _ = served.child.wait();
        }
    }

    /// SIGKILLs replica `i` (if it runs) and starts it again on its address.
    pub async fn kill_and_restart(&mut self, i: usize) {
        let addr = self.processes[i].as_ref().map(|p| p.addr);
        self.kill(i);
        self.restart(i, addr.expect("a replica to restart")).await;
    }

    /// Starts replica `i` (killed earlier) again, on `addr`.
    pub async fn restart(&mut self, i: usize, addr: std::net::SocketAddr) {
        assert!(self.processes[i].is_none(), "replica {i} still runs");
        self.processes[i] = Some(Served::start(&self.db, &self.ws.slack, addr).await);
    }

    /// Replica `i`'s address, if it runs.
    pub fn replica_addr(&self, i: usize) -> Option<std::net::SocketAddr> {
        self.processes[i].as_ref().map(|p| p.addr)
    }
}

/// A `waiver serve` child process.
pub struct Served {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Served {
    async fn start(
        db: &TestDb,
        fake: &waiver::fakes::slack::FakeSlack,
        addr: std::net::SocketAddr,
    ) -> Served {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_waiver"));
        // Waiver's own variables only: the rest (libfaketime's) stays.
        for var in waiver::config::VARIABLES {
            command.env_remove(var);
        }
        let child = command
            .arg("serve")
            .env("WAIVER_DATABASE_URL", &db.url)
            .env(
                "WAIVER_GOVERNANCE",
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/governance.toml"),
            )
            .env("WAIVER_LISTEN", addr.to_string())
            .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
            .env("SLACK_BOT_TOKEN", BOT_TOKEN)
            .env("SLACK_API_URL", fake.api_url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("waiver serve starts");
        let served = Served { child, addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = conn
                    .write_all(b"GET /readyz HTTP/1.1\r\nhost: waiver\r\nconnection: close\r\n\r\n")
                    .await;
                let mut answer = Vec::new();
                let _ = conn.read_to_end(&mut answer).await;
                if answer.starts_with(b"HTTP/1.1 200") {
                    return served;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waiver serve did not become ready on {addr}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

pub const SHIPPED: &str = include_str!("../../manifests/governance.toml");

pub fn gov() -> Arc<Governance> {
    Arc::new(governance::parse(SHIPPED).expect("shipped governance is valid"))
}

pub fn p(id: &str) -> PersonId {
    PersonId::new(id)
}

/// 2026-11-24T10:00:00Z, the instant tests run at.
pub fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").unwrap()
}

pub fn form() -> FormInput {
    waiver::testkit::sample_form()
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
            _dir: None,
            drop_pg: Some((admin, name)),
        })
    }

    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    pub async fn service(&self) -> Service {
        Service::new(self.store().await, gov())
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

//! Several `waiver` processes on one PostgreSQL: replicas starting together migrate the
//! database once, every expiry and every reminder happens once, and a replica killed
//! mid-sweep leaves nothing another cannot finish.
//!
//! PostgreSQL only (replicas need a shared database). Without it the tests skip with a
//! message, unless WAIVER_REQUIRE_POSTGRES=1 (CI), where they fail.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestDb, p};
use sqlx::Row;
use waiver::domain::{
    Action, Actor, AssessmentInput, Recommendation, RequestId, State, Terms, Timestamp,
};
use waiver::service::{Acted, Attempt, Service, Submitted};

const OWNERS: [&str; 4] = [
    "marcus.webb",
    "julia.schmidt",
    "kenji.watanabe",
    "priya.nair",
];

fn waiver(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waiver"));
    cmd.env_remove("WAIVER_GOVERNANCE")
        .env("WAIVER_DATABASE_URL", &db.url)
        .env_remove("SLACK_SIGNING_SECRET")
        .env_remove("SLACK_BOT_TOKEN")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// A child process killed if the test fails before it exits.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `waiver serve` with its scheduler on (chat delivery points at a closed port: the
/// outbox keeps the messages, which is all these tests look at).
fn serve(db: &TestDb) -> Replica {
    let mut child = waiver(db)
        .arg("serve")
        .env("WAIVER_LISTEN", "127.0.0.1:0")
        .env("SLACK_SIGNING_SECRET", "test-secret")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SLACK_API_URL", "http://127.0.0.1:9/api/")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waiver serve");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("ERROR") {
                eprintln!("replica: {line}");
            }
        }
    });
    Replica(child)
}

/// Files and approves one exception long before the wall clock that the replicas
/// (`waiver serve`) read: filed 400 days ago, expiring 84 days later, no conditions
/// (active at once). Then copies it into `n` exceptions owned by four people, all due
/// at its expiry.
async fn register_expired_long_ago(db: &TestDb, n: u64) -> Timestamp {
    let svc: Service = db.service().await;
    let today = waiver::clock::Clock::System.now().date();
    let t0 = Timestamp::start_of(today - chrono::Days::new(400)).plus_hours(10);
    let expiry = t0.date() + chrono::Days::new(84);
    let mut form = common::form();
    form.start = t0.date().to_string();
    form.end = expiry.to_string();
    let Submitted::Filed(r) = svc
        .submit(&p("james.carter"), &form, None, t0)
        .await
        .unwrap()
    else {
        panic!("not filed")
    };
    let id = r.id;
    assert_eq!(id, RequestId::new(1));
    let act = |who: &'static str, action: Action| {
        let svc = svc.clone();
        async move {
            let seen = svc.request(id).await.unwrap().unwrap().version();
            let acted = svc
                .act(Attempt::new(Actor::Person(p(who)), id, seen, action), t0)
                .await
                .unwrap();
            assert!(matches!(acted, Acted::Applied { .. }), "{who}: {acted:?}");
        }
    };
    let assess = |role: &str| {
        Action::Assess(AssessmentInput {
            role: waiver::governance::RoleId::new(role),
            likelihood: 1,
            impact: 2,
            findings: "Internal code only.".into(),
            mitigations: String::new(),
            recommendation: Recommendation::Approve,
        })
    };
    act("noah.fischer", Action::MarkComplete).await;
    act("omar.haddad", assess("risk")).await;
    act("tomas.novak", assess("security")).await;
    act(
        "carlos.mendes",
        Action::Approve {
            terms: Terms {
                start: t0.date(),
                expiry,
                monitoring_owner: p("marcus.webb"),
                conditions: vec![],
            },
            confirmation: None,
        },
    )
    .await;
    let template = svc.request(id).await.unwrap().unwrap();
    assert_eq!(template.state, State::Active);
    let expires = template.grant.unwrap().expires_at;
    waiver::fakes::testkit::copy_register(db.opened(), n, &OWNERS, 1, expires, expires)
        .await
        .unwrap();
    db.opened().close().await;
    expires
}

/// What the replicas did, read from the database.
struct Outcome {
    expired: i64,
    queued: i64,
    reminders: i64,
    /// Applied `expire` audit entries per request.
    expiries: HashMap<i64, usize>,
    /// Reminder keys listed by digest audit entries, with how often each was listed.
    digested: HashMap<String, usize>,
}

async fn outcome(pool: &sqlx::AnyPool) -> Outcome {
    let count = |sql: &'static str| async move {
        sqlx::query(sql)
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    };
    let expired = count("SELECT COUNT(*) FROM requests WHERE state = 'expired'").await;
    let queued = count("SELECT COUNT(*) FROM reminders WHERE status = 'queued'").await;
    let reminders = count("SELECT COUNT(*) FROM reminders").await;
    let mut expiries = HashMap::new();
    let mut digested = HashMap::new();
    let rows = sqlx::query(
        "SELECT request_id, action, entry FROM audit \
         WHERE outcome = 'applied' AND action IN ('expire', 'remind')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for row in rows {
        let action: String = row.try_get("action").unwrap();
        if action == "expire" {
            let id: i64 = row.try_get("request_id").unwrap();
            *expiries.entry(id).or_insert(0) += 1;
        } else {
            let entry: serde_json::Value =
                serde_json::from_str(row.try_get::<&str, _>("entry").unwrap()).unwrap();
            for key in entry["details"]["reminders"].as_array().unwrap() {
                *digested
                    .entry(key.as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
    }
    Outcome {
        expired,
        queued,
        reminders,
        expiries,
        digested,
    }
}

/// Each of `n` exceptions expired once; each reminder (owner and requester told)
/// queued once and sent in exactly one digest; nothing left queued; the audit chain,
/// appended to by several processes, intact.
async fn assert_once(db: &TestDb, pool: &sqlx::AnyPool, n: u64) {
    let o = outcome(pool).await;
    assert_eq!(o.expired, n as i64);
    assert_eq!(o.expiries.len(), n as usize);
    assert!(
        o.expiries.values().all(|c| *c == 1),
        "an exception expired twice"
    );
    assert_eq!(o.queued, 0, "nothing left queued");
    assert_eq!(o.reminders, 2 * n as i64, "owner and requester, once each");
    assert_eq!(
        o.digested.len(),
        2 * n as usize,
        "every reminder in a digest"
    );
    assert!(
        o.digested.values().all(|c| *c == 1),
        "a reminder was sent in two digests"
    );
    let store = db.store().await;
    assert!(store.verify_audit().await.unwrap().is_ok());
    store.close().await;
}

async fn pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::pool::PoolOptions::<sqlx::Any>::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_replicas_on_one_postgres_expire_and_remind_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let n = 300;
    register_expired_long_ago(&db, n).await;
    let pool = pool(&db).await;
    // Both start together; each catches up at once on the same due set.
    let replicas = [serve(&db), serve(&db)];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = outcome(&pool).await;
        if o.expired == n as i64 && o.queued == 0 && o.digested.len() == 2 * n as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not finish: {} expired, {} queued, {} digested",
            o.expired,
            o.queued,
            o.digested.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(replicas);
    assert_once(&db, &pool, n).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_sweep_leaves_nothing_another_cannot_finish() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let n = 400;
    let expires = register_expired_long_ago(&db, n).await;
    let pool = pool(&db).await;
    let at = expires.plus_hours(1).rfc3339();
    let sweep = || {
        waiver(&db)
            .args(["sweep", "--at", &at])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start waiver sweep")
    };
    // Kill the first replica as soon as it has expired something.
    let mut first = Replica(sweep());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = outcome(&pool).await;
        if o.expired > 0 || first.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the first sweep did nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = first.0.kill();
    let _ = first.0.wait();
    let left = outcome(&pool).await;
    eprintln!(
        "killed the first replica with {} of {n} expired, {} reminders queued",
        left.expired, left.queued
    );
    // Two more replicas finish the work concurrently, then a third finds nothing.
    let (a, b) = (sweep(), sweep());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = waiver(&db).args(["sweep", "--at", &at]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing due"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_once(&db, &pool, n).await;
    pool.close().await;
}

/// Every replica migrates at start (`waiver serve`), so replicas started together (a
/// new Deployment, or a rollout of a version with new migrations) migrate one database
/// at once. sqlx holds a PostgreSQL advisory lock while it migrates (`pg_advisory_lock`
/// in sqlx-postgres's `migrate.rs`), so each migration is applied once and every
/// replica starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_one_fresh_database_at_once_apply_each_migration_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let replicas = 6;
    let mut stores = Vec::new();
    for _ in 0..replicas {
        stores.push(waiver::store::Store::connect(&db.url).await.unwrap());
    }
    // Connected first, then released together.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(replicas));
    let migrations: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                store.migrate().await
            })
        })
        .collect();
    for (i, migration) in migrations.into_iter().enumerate() {
        if let Err(e) = migration.await.unwrap() {
            panic!("replica {i} could not migrate: {e}");
        }
    }
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "sql")
        })
        .count() as i64;
    let pool = pool(&db).await;
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<(i64, bool)> = (1..=files).map(|v| (v, true)).collect();
    assert_eq!(
        applied, expected,
        "each migration applied once, successfully"
    );
    // The first migration's one row is there once, and the store works.
    let (heads,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(heads, 1);
    for store in &stores {
        let report = store.verify_audit().await.unwrap().unwrap();
        assert_eq!(report.entries, 0);
        store.close().await;
    }
    pool.close().await;
}

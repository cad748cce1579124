//! A scheduler sweep over a large register (DESIGN §7: 1,000,000 stored exceptions,
//! under 1 s, indexes touch only due rows).
//!
//! `cargo bench --bench sweep` files one exception through the real service and
//! approves it (active, no conditions, expiring in 60 days), then copies it in SQL into
//! BENCH_EXCEPTIONS (default 1,000,000) exceptions owned by eight different people,
//! one in BENCH_DUE_EVERY (default 100) with its 30-day expiry reminder due at the
//! sweep instant and the rest due a day later. It then times:
//! - the sweep at that instant (reads the due rows, queues each reminder once for the
//!   owner and the requester, moves `due_at` on, sends one digest per person);
//! - a second sweep at the same instant (nothing due: the cost of looking).
//!
//! Environment: BENCH_EXCEPTIONS, BENCH_DUE_EVERY, BENCH_DATABASE_URL (default a
//! temporary SQLite file; a `postgres://` URL must name an empty database).

use std::sync::Arc;
use std::time::Instant;

use waiver::domain::{Action, Actor, AssessmentInput, Recommendation, State, Terms, Timestamp};
use waiver::governance::{self, PersonId, RoleId};
use waiver::service::{Acted, Attempt, Service, Submitted};
use waiver::store::Store;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const OWNERS: [&str; 8] = [
    "marcus.webb",
    "julia.schmidt",
    "kenji.watanabe",
    "priya.nair",
    "carlos.mendes",
    "anna.kowalski",
    "william.hughes",
    "rachel.green",
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn act(svc: &Service, who: &str, action: Action, now: Timestamp) {
    let id = waiver::domain::RequestId::new(1);
    let seen = svc.request(id).await.unwrap().unwrap().version();
    let attempt = Attempt::new(Actor::Person(PersonId::new(who)), id, seen, action);
    match svc.act(attempt, now).await.unwrap() {
        Acted::Applied { .. } => {}
        other => panic!("{who}: {other:?}"),
    }
}

fn assess(role: &str) -> Action {
    Action::Assess(AssessmentInput {
        role: RoleId::new(role),
        likelihood: 3,
        impact: 3,
        findings: "Prompts are retained for 30 days.".into(),
        mitigations: "Zero-retention plan.".into(),
        recommendation: Recommendation::Approve,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let n = env_u64("BENCH_EXCEPTIONS", 1_000_000).max(100);
    let every = env_u64("BENCH_DUE_EVERY", 100).max(1);
    let dir = std::env::temp_dir().join(format!("waiver-sweep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let gov = Arc::new(governance::parse(include_str!("../manifests/governance.toml")).unwrap());
    let svc = Service::new(store.clone(), gov, waiver::clock::Clock::System);

    // One exception through the real workflow: medium tier, active, no conditions.
    let t0 = Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").unwrap();
    let form = waiver::fakes::testkit::sample_form(t0.date());
    match svc
        .submit(&PersonId::new("james.carter"), &form, None, t0)
        .await
        .unwrap()
    {
        Submitted::Filed(_) => {}
        other => panic!("{other:?}"),
    }
    act(&svc, "noah.fischer", Action::MarkComplete, t0).await;
    act(&svc, "omar.haddad", assess("risk"), t0).await;
    act(&svc, "tomas.novak", assess("security"), t0).await;
    for who in ["julia.schmidt", "kenji.watanabe"] {
        act(
            &svc,
            who,
            Action::Feedback {
                recommendation: Recommendation::Approve,
                text: "Fine".into(),
            },
            t0,
        )
        .await;
    }
    let expiry = t0.date() + chrono::Days::new(59);
    act(
        &svc,
        "hannah.berg",
        Action::Approve {
            terms: Terms {
                start: t0.date(),
                expiry,
                monitoring_owner: PersonId::new("marcus.webb"),
                conditions: vec![],
            },
            confirmation: None,
        },
        t0,
    )
    .await;
    let template = svc
        .request(waiver::domain::RequestId::new(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(template.state, State::Active);
    let expires = template.grant.as_ref().unwrap().expires_at;
    let due = Timestamp::from_millis(expires.millis() - 30 * 86_400_000);
    let later = due.plus_days(1);

    // Copy it: one row per exception and its version, owners spread over eight people.
    let seeding = Instant::now();
    waiver::fakes::testkit::copy_register(&store, n, &OWNERS, every, due, later)
        .await
        .unwrap();
    println!(
        "seeded {n} exceptions ({} due at {due}) in {:.1} s on {:?}",
        n / every,
        seeding.elapsed().as_secs_f64(),
        store.backend()
    );

    let started = Instant::now();
    let report = svc.sweep(due, false).await.unwrap();
    let took = started.elapsed();
    let rows: usize = report.digests.iter().map(|d| d.keys.len()).sum();
    // A sweep that found less than was seeded would measure something else.
    assert_eq!(
        (report.examined as u64, rows as u64),
        (n / every, 2 * (n / every)),
        "benchmark failed: the sweep did not find every seeded due exception"
    );
    println!(
        "sweep at {due}: {:.3} s — {} due exceptions read, {} reminders queued and sent in {} digests, {} rows moved on (target < {})",
        took.as_secs_f64(),
        report.examined,
        rows,
        report.digests.len(),
        report.examined,
        // DESIGN §7: 0.5 s on SQLite, 1 s on PostgreSQL.
        match store.backend() {
            waiver::store::Backend::Sqlite => "0.5 s",
            waiver::store::Backend::Postgres => "1 s",
        },
    );
    let started = Instant::now();
    let again = svc.sweep(due, false).await.unwrap();
    println!(
        "second sweep at {due}: {:.4} s — {} due exceptions (nothing to do)",
        started.elapsed().as_secs_f64(),
        again.examined
    );
    assert_eq!(again.examined, 0);
    assert_eq!(
        rows as u64,
        2 * (n / every),
        "owner and requester, once each"
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

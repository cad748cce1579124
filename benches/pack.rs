//! An evidence pack of a large register, written and verified offline (DESIGN §7:
//! 100,000 exceptions in under a minute).
//!
//! `cargo bench --bench pack` files BENCH_EXCEPTIONS (default 100,000) exceptions
//! through the real service (so each has its audit entries and digest), one in
//! BENCH_DECIDED_EVERY (default 100) taken on through completeness, two assessments
//! and an approval (a decision with its snapshot), then times writing the pack to a
//! file and verifying it from that file with no database, and reports the file's size
//! and this process's peak resident memory. The verification must report every
//! exception and decision seeded, or the benchmark fails.
//!
//! Environment: BENCH_EXCEPTIONS, BENCH_DECIDED_EVERY, BENCH_DATABASE_URL (default a
//! temporary SQLite file; a `postgres://` URL must name an empty database).

mod support;

use std::sync::Arc;
use std::time::Instant;

use support::{env_u64, fail};
use waiver::domain::{Action, Actor, AssessmentInput, Recommendation, RequestId, Terms, Timestamp};
use waiver::governance::{self, PersonId, RoleId};
use waiver::service::{Acted, Attempt, Service, Submitted};
use waiver::store::Store;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn act(svc: &Service, id: RequestId, who: &str, action: Action, now: Timestamp) {
    let seen = svc.request(id).await.unwrap().unwrap().version();
    let attempt = Attempt::new(Actor::Person(PersonId::new(who)), id, seen, action);
    match svc.act(attempt, now).await {
        Ok(Acted::Applied { .. }) => {}
        other => fail(format!("seeding {id}: {who}: {other:?}")),
    }
}

fn assess(role: &str) -> Action {
    Action::Assess(AssessmentInput {
        role: RoleId::new(role),
        likelihood: 1,
        impact: 2,
        findings: "Internal code only.".into(),
        mitigations: String::new(),
        recommendation: Recommendation::Approve,
    })
}

/// Files exceptions `from..to` (step `step`), taking every `decided_every`th to a decision.
async fn seed(svc: Service, first: u64, n: u64, step: u64, decided_every: u64, t0: Timestamp) {
    let form = waiver::fakes::testkit::sample_form(t0.date());
    let mut k = first;
    while k <= n {
        let id = match svc
            .submit(&PersonId::new("james.carter"), &form, None, t0)
            .await
        {
            Ok(Submitted::Filed(r)) => r.id,
            other => fail(format!("seeding: not filed: {other:?}")),
        };
        if k.is_multiple_of(decided_every) {
            act(&svc, id, "noah.fischer", Action::MarkComplete, t0).await;
            act(&svc, id, "omar.haddad", assess("risk"), t0).await;
            act(&svc, id, "tomas.novak", assess("security"), t0).await;
            let terms = Terms {
                start: t0.date(),
                expiry: t0.date() + chrono::Days::new(90),
                monitoring_owner: PersonId::new("marcus.webb"),
                conditions: vec![],
            };
            let approve = Action::Approve {
                terms,
                confirmation: None,
            };
            act(&svc, id, "carlos.mendes", approve, t0).await;
        }
        k += step;
    }
}

async fn run() {
    let n = env_u64("BENCH_EXCEPTIONS", 100_000).max(10);
    let decided_every = env_u64("BENCH_DECIDED_EVERY", 100).max(1);
    let dir = std::env::temp_dir().join(format!("waiver-pack-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let gov = Arc::new(governance::parse(include_str!("../manifests/governance.toml")).unwrap());
    let svc = Service::new(store.clone(), gov.clone(), waiver::clock::Clock::System);
    let now = waiver::clock::Clock::System.now();
    let t0 = Timestamp::start_of(now.date()).plus_hours(9);

    // Many filers at once, so the writer commits them in groups.
    let seeding = Instant::now();
    let filers = 32;
    let tasks: Vec<_> = (1..=filers)
        .map(|first| tokio::spawn(seed(svc.clone(), first, n, filers, decided_every, t0)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let decided = n / decided_every;
    println!(
        "seeded {n} exceptions ({decided} decided) in {:.1} s on {}",
        seeding.elapsed().as_secs_f64(),
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    let path = dir.join("pack.json");
    let writing = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let manifest = waiver::export::pack::write(&store, &gov, None, now, &mut out)
        .await
        .unwrap_or_else(|e| fail(format!("writing the pack: {e}")));
    drop(out);
    let wrote = writing.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    if manifest.exceptions != n {
        fail(format!(
            "the pack holds {} of {n} exceptions",
            manifest.exceptions
        ));
    }
    store.close().await;

    let verifying = Instant::now();
    let file = std::fs::File::open(&path).unwrap();
    let report = waiver::export::pack::verify(std::io::BufReader::with_capacity(1 << 20, file))
        .unwrap_or_else(|e| fail(e.to_string()));
    let verified = verifying.elapsed();
    if report.exceptions != n || report.decisions != decided {
        fail(format!(
            "verified {} exceptions and {} decisions, seeded {n} and {decided}",
            report.exceptions, report.decisions
        ));
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .unwrap_or(0);
    println!(
        "pack of {n} exceptions, {} audit entries: {:.1} MB",
        report.entries,
        size as f64 / 1e6
    );
    println!("written in {:.1} s", wrote.as_secs_f64());
    println!("verified offline in {:.1} s", verified.as_secs_f64());
    println!(
        "written + verified: {:.1} s (target < 60 s); peak resident memory {} MiB",
        (wrote + verified).as_secs_f64(),
        peak / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
}

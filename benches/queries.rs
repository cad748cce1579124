//! The queries people wait for, on a large register (DESIGN §7: `pending`, `status`,
//! App Home and the dashboard under 50 ms with 100,000 stored exceptions).
//!
//! `cargo bench --bench queries` files one exception through the real service,
//! copies it in SQL into BENCH_EXCEPTIONS (default 100,000) exceptions, spreads them
//! over the workflow's states (a twentieth each awaiting completeness review,
//! assessment, a decision and the requester's update, a tenth due for review, the
//! rest active), then times, BENCH_RUNS times each (default 50), what people ask
//! for: `pending` for the intake desk, a risk assessor, an approver and an owner;
//! App Home for each; `status` of one request; and the register's overview. Each
//! answer is checked to hold what was seeded, so nothing faster but emptier is
//! measured.
//!
//! Environment: BENCH_EXCEPTIONS, BENCH_RUNS, BENCH_DATABASE_URL (default a temporary
//! SQLite file; a `postgres://` URL must name an empty database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use waiver::domain::{Action, Actor, AssessmentInput, Recommendation, Terms, Timestamp};
use waiver::governance::{self, PersonId, RoleId};
use waiver::interact::{self, PlatformUser};
use waiver::service::{Acted, Attempt, Service, Submitted};
use waiver::store::Store;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fail(why: String) -> ! {
    eprintln!("benchmark failed: {why}");
    std::process::exit(1)
}

async fn act(svc: &Service, who: &str, action: Action, now: Timestamp) {
    let id = waiver::domain::RequestId::new(1);
    let seen = svc.request(id).await.unwrap().unwrap().version();
    let attempt = Attempt::new(Actor::Person(PersonId::new(who)), id, seen, action);
    match svc.act(attempt, now).await.unwrap() {
        Acted::Applied { .. } => {}
        other => fail(format!("seeding: {who}: {other:?}")),
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

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `f` `runs` times; (p50, p99, the last answer).
async fn time<T, F, Fut>(runs: usize, mut f: F) -> (Duration, Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut took = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(f().await);
        took.push(started.elapsed());
    }
    took.sort();
    let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99), last.expect("ran"))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let n = env_u64("BENCH_EXCEPTIONS", 100_000).max(100);
    let runs = env_u64("BENCH_RUNS", 50).max(1) as usize;
    let dir = std::env::temp_dir().join(format!("waiver-queries-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let gov = Arc::new(governance::parse(include_str!("../manifests/governance.toml")).unwrap());
    let svc = Service::new(store.clone(), gov, waiver::clock::Clock::System);

    // One exception through the real workflow: low tier, active, no conditions.
    let now = waiver::clock::Clock::System.now();
    let t0 = Timestamp::start_of(now.date()).plus_hours(9);
    let form = waiver::fakes::testkit::sample_form(t0.date());
    match svc
        .submit(&PersonId::new("james.carter"), &form, None, t0)
        .await
    {
        Ok(Submitted::Filed(_)) => {}
        other => fail(format!("seeding: not filed: {other:?}")),
    }
    act(&svc, "noah.fischer", Action::MarkComplete, t0).await;
    act(&svc, "omar.haddad", assess("risk"), t0).await;
    act(&svc, "tomas.novak", assess("security"), t0).await;
    act(
        &svc,
        "carlos.mendes",
        Action::Approve {
            terms: Terms {
                start: t0.date(),
                expiry: t0.date() + chrono::Days::new(90),
                monitoring_owner: PersonId::new("marcus.webb"),
                conditions: vec![],
            },
            confirmation: None,
        },
        t0,
    )
    .await;

    let seeding = Instant::now();
    let later = t0.plus_days(400);
    waiver::fakes::testkit::copy_register(
        &store,
        n,
        &["marcus.webb", "julia.schmidt"],
        1,
        later,
        later,
    )
    .await
    .unwrap();
    // Spread the copies over the states people act in.
    store
        .execute_raw(
            "UPDATE requests SET state = CASE id % 20 \
               WHEN 0 THEN 'submitted' WHEN 1 THEN 'in_assessment' WHEN 2 THEN 'awaiting_decision' \
               WHEN 3 THEN 'needs_info' WHEN 4 THEN 'review_due' WHEN 5 THEN 'review_due' \
               ELSE 'active' END WHERE id > 1",
        )
        .await
        .unwrap();
    store.execute_raw("ANALYZE").await.unwrap();
    println!(
        "seeded {n} exceptions in {:.1} s on {:?}",
        seeding.elapsed().as_secs_f64(),
        store.backend()
    );

    let slack = |person: &str| PlatformUser::Slack {
        workspace: "T0NWIND01".into(),
        user: svc
            .governance()
            .person(&PersonId::new(person))
            .and_then(|p| p.slack.as_ref())
            .map(|s| s.user.clone())
            .unwrap_or_else(|| fail(format!("{person} has no Slack id"))),
    };
    println!(
        "\nwaiver query benchmark (cargo bench --bench queries; {n} exceptions, {runs} runs each, target < 50 ms)"
    );
    println!("{:<52} {:>10} {:>10}", "query", "p50", "p99");
    let mut worst = Duration::ZERO;
    for (who, role) in [
        ("noah.fischer", "intake desk"),
        ("omar.haddad", "risk assessor"),
        ("carlos.mendes", "low-tier approver"),
        ("marcus.webb", "monitoring owner"),
    ] {
        let me = PersonId::new(who);
        let (p50, p99, m) = time(runs, || interact::pending(&svc, &me, now)).await;
        let m = m.unwrap();
        if !m.summary.contains("waiting on you") {
            fail(format!("pending for {who} found nothing: {}", m.summary));
        }
        worst = worst.max(p50);
        println!(
            "{:<52} {:>10} {:>10}",
            format!("pending: {who} ({role}): {}", m.summary),
            ms(p50),
            ms(p99)
        );
        let user = slack(who);
        let (p50, p99, home) = time(runs, || interact::home(&svc, &user, now)).await;
        if home.map(|h| h.is_err()).unwrap_or(true) {
            fail(format!("App Home for {who} failed"));
        }
        worst = worst.max(p50);
        println!(
            "{:<52} {:>10} {:>10}",
            format!("App Home: {who}"),
            ms(p50),
            ms(p99)
        );
    }
    let james = PersonId::new("james.carter");
    let (p50, p99, m) = time(runs, || interact::status(&svc, &james, "AIX-0001")).await;
    if !m.unwrap().summary.starts_with("AIX-0001") {
        fail("status AIX-0001 did not answer".into());
    }
    worst = worst.max(p50);
    println!("{:<52} {:>10} {:>10}", "status AIX-0001", ms(p50), ms(p99));
    let (p50, p99, o) = time(runs, || svc.overview(now, 30, 50)).await;
    let total: u64 = o.unwrap().by_state.iter().map(|(_, c)| c).sum();
    if total != n {
        fail(format!("the overview counted {total} of {n} exceptions"));
    }
    worst = worst.max(p50);
    println!(
        "{:<52} {:>10} {:>10}",
        "register overview (counts, expiring, overdue)",
        ms(p50),
        ms(p99)
    );
    // The dashboard's register page, whole (figures, charts, the newest 500 rows,
    // rendered), unfiltered and filtered.
    for (what, filter) in [
        (
            "dashboard: register page",
            waiver::store::RegisterFilter::default(),
        ),
        (
            "dashboard: register page, state=active, tier=low",
            waiver::store::RegisterFilter {
                state: Some(waiver::domain::State::Active),
                tier: Some(waiver::governance::Tier::Low),
                ..Default::default()
            },
        ),
    ] {
        let (p50, p99, page) = time(runs, || waiver::web::register_page(&svc, &filter)).await;
        let page = page.unwrap_or_else(|e| fail(format!("{what}: {e}")));
        let shown = page.matches("<tr data-ref=").count();
        if shown != 500 {
            fail(format!("{what}: {shown} rows shown, wanted 500"));
        }
        worst = worst.max(p50);
        println!("{what:<52} {:>10} {:>10}", ms(p50), ms(p99));
    }
    println!("slowest p50: {} (target < 50 ms)", ms(worst));
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

//! The queries people wait for (`pending`, `status`, App Home, the overview) issue a
//! fixed number of statements whatever the size of the register: counted here from
//! sqlx's own statement log, for a register of 12 and of 600 requests, on both
//! databases.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::Instrument;

use common::{TestDb, now, p};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use waiver::interact::{self, PlatformUser};
use waiver::service::{Service, Submitted};

/// Statements sqlx ran (their summaries) inside each counting span, by span id: the
/// two backends' tests run at once in this process, and each counts only its own.
static STATEMENTS: Mutex<Option<HashMap<u64, Vec<String>>>> = Mutex::new(None);

struct Counter;

struct Summary(Option<String>);

impl Visit for Summary {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S> Layer<S> for Counter
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let Some(span) = ctx
            .event_scope(event)
            .and_then(|mut scope| scope.find(|s| s.name() == "counted"))
        else {
            return;
        };
        let mut summary = Summary(None);
        event.record(&mut summary);
        let summary = summary.0.unwrap_or_default();
        // The background WAL checkpoint is not a query anyone waits for.
        if summary.to_ascii_uppercase().contains("PRAGMA") {
            return;
        }
        if let Some(log) = STATEMENTS.lock().unwrap().as_mut() {
            log.entry(span.id().into_u64()).or_default().push(summary);
        }
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(
            Counter.with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("sqlx::query", tracing::Level::TRACE)
                    .with_target("queries", tracing::Level::TRACE),
            ),
        );
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

/// The statements `f` runs.
async fn count<F: std::future::Future>(f: F) -> Vec<String> {
    STATEMENTS.lock().unwrap().get_or_insert_with(HashMap::new);
    let span = tracing::trace_span!("counted");
    let id = span.id().expect("the counting span is enabled").into_u64();
    f.instrument(span).await;
    STATEMENTS
        .lock()
        .unwrap()
        .as_mut()
        .and_then(|log| log.remove(&id))
        .unwrap_or_default()
}

/// A register of `n` requests awaiting completeness review (one filed through the
/// service, the rest copies of it).
async fn register(db: &TestDb, n: u64) -> Service {
    let svc = db.service().await;
    let Submitted::Filed(_) = svc
        .submit(&p("james.carter"), &common::form(), None, now())
        .await
        .unwrap()
    else {
        panic!("not filed")
    };
    if n > 1 {
        waiver::fakes::testkit::copy_register(db.opened(), n, &["marcus.webb"], 1, now(), now())
            .await
            .unwrap();
    }
    svc
}

/// How many statements each query needs on a register of `n`.
async fn statements_per_query(db: TestDb, n: u64) -> Vec<(&'static str, usize)> {
    let svc = register(&db, n).await;
    let noah = PlatformUser::Slack {
        workspace: "T0NWIND01".into(),
        user: common::uid("noah.fischer"),
    };
    let me = p("noah.fischer");
    // Warm the pools (connections set themselves up with statements of their own).
    for _ in 0..3 {
        interact::home(&svc, &noah, now()).await.unwrap().unwrap();
    }
    let mut out = Vec::new();
    let pending = count(async {
        let m = interact::pending(&svc, &me, now()).await.unwrap();
        let text = format!("{:?}", m.sections);
        if n > 100 {
            // The oldest hundred are read, thirty listed, and the rest said to exist.
            assert_eq!(m.summary, "100+ item(s) waiting on you");
            assert!(text.contains("…and 70+ more, oldest first."), "{text}");
        } else {
            assert_eq!(m.summary, format!("{n} item(s) waiting on you"));
            assert!(!text.contains("more"), "{text}");
        }
    })
    .await;
    out.push(("pending", pending.len()));
    let home = count(async {
        interact::home(&svc, &noah, now()).await.unwrap().unwrap();
    })
    .await;
    out.push(("home", home.len()));
    let status = count(async {
        interact::status(&svc, &p("james.carter"), "AIX-0001")
            .await
            .unwrap();
    })
    .await;
    out.push(("status", status.len()));
    let overview = count(async {
        svc.overview(now(), 30, 50).await.unwrap();
    })
    .await;
    out.push(("overview", overview.len()));
    out
}

both!(
    queries_people_wait_for_use_a_fixed_number_of_statements,
    |db: TestDb| async move {
        install();
        let big = match db.backend {
            "sqlite" => TestDb::sqlite().await,
            _ => TestDb::postgres()
                .await
                .expect("PostgreSQL was reachable a moment ago"),
        };
        let small = statements_per_query(db, 12).await;
        let large = statements_per_query(big, 600).await;
        eprintln!("statements per query: {large:?}");
        assert_eq!(
            small, large,
            "the same statements for 12 and for 600 requests"
        );
        for (query, n) in &large {
            assert!(*n <= 6, "{query} needs {n} statements");
            assert!(*n >= 1, "{query} was counted");
        }
    }
);

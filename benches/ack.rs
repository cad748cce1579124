//! Acknowledgement latency and throughput of signed Slack requests (DESIGN §7).
//!
//! `cargo bench --bench ack` starts the release `waiver serve` as a child process on
//! SQLite, with the Slack Web API faked in this process (lean mode: it answers and
//! keeps nothing), and measures, with the load generator on the same cores:
//! - p50/p99 acknowledgement latency at a fixed 200 requests/s (open loop);
//! - throughput with many concurrent connections (closed loop);
//!
//! for signed `/ai-exception` slash commands (verify, ack, open the modal) and for
//! signed "Complete" button clicks that each commit a state change (request row,
//! review record, audit entry, outbox rows) to SQLite; and the server's resident
//! memory when idle and under load. Bounded: every phase stops by itself.
//!
//! Environment: BENCH_SECONDS (default 10) per throughput phase, BENCH_CONCURRENCY
//! (default 64).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    Child, Make, Server, Signed, at_rate, env_u64, fail, flat_out, ms, percentile, rss_kib,
};
use waiver::config::Secret;
use waiver::fakes::slack::FakeSlack;
use waiver::fakes::slack::workspace::Workspace;

const SECRET: &str = "bench-signing-secret";
const TOKEN: &str = "xoxb-bench";
const NOAH: &str = "U0NW00001";
const JAMES: &str = "U0NW00026";

// The load generator uses the same allocator as the server it measures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Slack's acknowledgement: 200 and an empty body.
fn empty_200(status: u16, body: &[u8]) -> Result<(), String> {
    if status == 200 && body.is_empty() {
        Ok(())
    } else {
        Err(format!("{status} {}", String::from_utf8_lossy(body)))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_u64("BENCH_SECONDS", 10);
    let concurrency = env_u64("BENCH_CONCURRENCY", 64) as usize;
    let clicks_needed = env_u64("BENCH_CLICKS", 80_000) as usize;
    let dir = std::env::temp_dir().join(format!("waiver-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db_url = format!("sqlite://{}/bench.db", dir.display());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));

    // Seed requests awaiting completeness review, one per click to come.
    eprintln!("seeding {clicks_needed} requests awaiting completeness review…");
    let seed_started = Instant::now();
    {
        let store = waiver::app::open_store(&db_url).await.unwrap();
        let gov = Arc::new(
            waiver::governance::load(&manifest.join("manifests/governance.toml")).unwrap(),
        );
        let svc = waiver::service::Service::new(store.clone(), gov, waiver::clock::Clock::System);
        // `waiver serve` runs on the system clock: file on today's date.
        let now = waiver::clock::Clock::System.now();
        let form = waiver::fakes::testkit::sample_form(now.date());
        let requester = waiver::governance::PersonId::new("james.carter");
        for i in 0..clicks_needed {
            match svc.submit(&requester, &form, None, now).await {
                Ok(waiver::service::Submitted::Filed(_)) => {}
                other => fail(format!(
                    "seeding: request {} of {clicks_needed} was not filed: {other:?}",
                    i + 1
                )),
            }
        }
        // Their filing messages count as delivered: the benchmark measures acknowledgements.
        store
            .execute_raw("UPDATE outbox SET status = 'sent'")
            .await
            .unwrap();
        store.close().await;
    }
    eprintln!("seeded in {:.1} s", seed_started.elapsed().as_secs_f64());

    let slack = FakeSlack::start(TOKEN).await;
    slack.set_lean(true);
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_waiver"))
        .arg("serve")
        .env("WAIVER_DATABASE_URL", &db_url)
        .env(
            "WAIVER_GOVERNANCE",
            manifest.join("manifests/governance.toml"),
        )
        .env("WAIVER_LISTEN", listen.to_string())
        .env("SLACK_SIGNING_SECRET", SECRET)
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_API_URL", slack.api_url())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let child = Child(child);
    let pid = child.0.id();
    let base = format!("http://{listen}");
    let http = support::client();
    support::ready(&http, &base).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid);

    let server = Server {
        http: http.clone(),
        base: base.clone(),
        check: empty_200,
    };
    let ws = Arc::new(Workspace::new(slack, listen, Secret::new(SECRET)));
    let commands: Make = {
        let ws = ws.clone();
        Arc::new(move |i| {
            let body = ws.command_body(JAMES, "", &format!("bench-trigger-{i}"));
            let headers = ws.signature(waiver::clock::Clock::System.unix_seconds(), &body);
            Signed {
                path: "/slack/commands".into(),
                content_type: "application/x-www-form-urlencoded",
                body,
                headers,
            }
        })
    };
    let clicks: Make = {
        let ws = ws.clone();
        Arc::new(move |i| {
            // Request i + 1 was seeded awaiting review; Noah clicks its Complete button.
            let message = waiver::fakes::slack::Message {
                ts: format!("1764000000.{:06}", i + 1),
                channel: "C0AIXINTAKE".into(),
                user: None,
                text: Some(format!("AIX-{:04} · Completeness review", i + 1)),
                blocks: json!([
                    {"type": "header", "text": {"type": "plain_text", "text": format!("AIX-{:04} · Use an LLM coding assistant", i + 1)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "*Business justification*\nSpeeds up test writing for the ingestion team."}},
                    {"type": "actions", "block_id": "b", "elements": [
                        {"type": "button", "action_id": "complete", "text": {"type": "plain_text", "text": "Complete"}, "style": "primary", "value": format!("{{\"r\":{},\"v\":1}}", i + 1)},
                        {"type": "button", "action_id": "send_back", "text": {"type": "plain_text", "text": "Send back…"}, "value": format!("{{\"r\":{},\"v\":1}}", i + 1)}
                    ]}
                ]),
                metadata: None,
                thread_ts: None,
                edits: 0,
            };
            let payload = ws
                .click_payload(NOAH, &message, "complete", &format!("bench-trigger-{i}"))
                .unwrap();
            let body = serde_urlencoded::to_string([("payload", payload.to_string())])
                .unwrap()
                .into_bytes();
            let headers = ws.signature(waiver::clock::Clock::System.unix_seconds(), &body);
            Signed {
                path: "/slack/interactions".into(),
                content_type: "application/x-www-form-urlencoded",
                body,
                headers,
            }
        })
    };

    // Warm-up.
    at_rate(&server, &commands, 500, 500, 0).await;

    eprintln!("phase: commands at 200/s");
    let cmd_latency = at_rate(&server, &commands, 200, (200 * seconds) as usize, 0).await;
    eprintln!("phase: commands flat out");
    let (cmd_flat, cmd_elapsed, cmd_rss) =
        flat_out(&server, &commands, concurrency, seconds, usize::MAX, 0, pid).await;
    // Every acknowledged command opened its modal (views.open, after the ack).
    let commands_sent = 500 + cmd_latency.len() + cmd_flat.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (ws.slack.lean_calls() as usize) < commands_sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = ws.slack.lean_calls() as usize;
    if opened < commands_sent {
        fail(format!(
            "{commands_sent} commands were acknowledged but only {opened} modals opened"
        ));
    }
    eprintln!("phase: clicks at 200/s");
    let click_latency = at_rate(&server, &clicks, 200, (200 * seconds / 2) as usize, 0).await;
    let used = click_latency.len();
    eprintln!("phase: clicks flat out");
    let (click_flat, click_elapsed, click_rss) = flat_out(
        &server,
        &clicks,
        concurrency,
        seconds,
        clicks_needed - used,
        used,
        pid,
    )
    .await;

    // Check that the clicks really committed.
    let store = waiver::store::Store::connect(&db_url).await.unwrap();
    let in_assessment = store
        .in_states(&[waiver::domain::State::InAssessment], 1_000_000)
        .await
        .unwrap()
        .len();
    store.close().await;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    let clicks_sent = used + click_flat.len();
    if in_assessment != clicks_sent {
        fail(format!(
            "{clicks_sent} clicks were acknowledged but {in_assessment} requests moved to in_assessment"
        ));
    }

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "\nwaiver acknowledgement benchmark (cargo bench --bench ack; SQLite, 2 cores shared with the load generator)"
    );
    println!(
        "{:<46} {:>12} {:>12} {:>14}",
        "workload", "p50", "p99", "throughput"
    );
    println!(
        "{:<46} {:>12} {:>12} {:>14}",
        "slash command at 200/s (open loop)",
        ms(percentile(&cmd_latency, 0.5)),
        ms(percentile(&cmd_latency, 0.99)),
        "200/s"
    );
    println!(
        "{:<46} {:>12} {:>12} {:>12.0}/s",
        format!("slash command, {concurrency} connections"),
        ms(percentile(&cmd_flat, 0.5)),
        ms(percentile(&cmd_flat, 0.99)),
        rate(cmd_flat.len(), cmd_elapsed)
    );
    println!(
        "{:<46} {:>12} {:>12} {:>14}",
        "button click (commit) at 200/s (open loop)",
        ms(percentile(&click_latency, 0.5)),
        ms(percentile(&click_latency, 0.99)),
        "200/s"
    );
    println!(
        "{:<46} {:>12} {:>12} {:>12.0}/s",
        format!("button click (commit), {concurrency} connections"),
        ms(percentile(&click_flat, 0.5)),
        ms(percentile(&click_flat, 0.99)),
        rate(click_flat.len(), click_elapsed)
    );
    println!(
        "resident memory: idle {:.1} MB, under load {:.1} MB",
        idle_rss as f64 / 1024.0,
        cmd_rss.max(click_rss) as f64 / 1024.0
    );
    println!(
        "clicks committed: {in_assessment} requests moved to in_assessment ({} clicks sent)",
        used + click_flat.len()
    );
}

//! Signed Teams `adaptiveCard/action` invokes that commit (DESIGN §7: ≥ 5,000/s, p99
//! ≤ 5 ms at 200/s, the JWKS never fetched on the hot path).
//!
//! `cargo bench --bench teams` seeds BENCH_CLICKS requests awaiting completeness
//! review (their Teams intake cards recorded as posted), starts the release
//! `waiver serve` as a child process on SQLite with Teams pointed at the fake token
//! issuer and Bot Connector in this process, and sends each card's **Complete**
//! (`Action.Execute`) as the Bot Connector would — a bearer RS256 JWT, the activity
//! from the card's channel in reply to it. Each invoke verifies the token (keys
//! cached), commits the state change (request, review, event, audit, outbox) and is
//! answered with the refreshed card. It reports p50/p99 at 200/s (open loop), the
//! throughput with BENCH_CONCURRENCY connections (closed loop), resident memory, and
//! how often the keys were fetched. Bounded: every phase stops by itself.
//!
//! Environment: BENCH_SECONDS (default 10), BENCH_CONCURRENCY (default 64),
//! BENCH_CLICKS (default 60,000).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;
use support::{
    Child, Make, Server, Signed, at_rate, env_u64, fail, flat_out, ms, percentile, rss_kib,
};
use waiver::fakes::teams::FakeTeams;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const APP_ID: &str = "00000000-0000-0000-0000-0000000b0700";
const PASSWORD: &str = "bench-app-password";

/// An invoke's answer: 200 with the refreshed card.
fn card_200(status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status == 200 && text.contains("application/vnd.microsoft.card.adaptive") {
        Ok(())
    } else {
        Err(format!("{status} {text}"))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_u64("BENCH_SECONDS", 10);
    let concurrency = env_u64("BENCH_CONCURRENCY", 64) as usize;
    let clicks_needed = env_u64("BENCH_CLICKS", 60_000) as usize;
    let dir = std::env::temp_dir().join(format!("waiver-teams-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db_url = format!("sqlite://{}/bench.db", dir.display());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let gov =
        Arc::new(waiver::governance::load(&manifest.join("manifests/governance.toml")).unwrap());
    let tenant = gov.teams_tenants[0].clone();
    let noah = gov
        .person(&waiver::governance::PersonId::new("noah.fischer"))
        .and_then(|p| p.teams.clone())
        .unwrap_or_else(|| fail("noah.fischer has no Teams identity".into()));
    let fake = FakeTeams::start(APP_ID, PASSWORD, &tenant, waiver::clock::Clock::System).await;
    let service_url = fake.service_url();

    eprintln!("seeding {clicks_needed} requests awaiting completeness review…");
    let seed_started = Instant::now();
    let cards: Vec<(i64, String, String)> = {
        let store = waiver::app::open_store(&db_url).await.unwrap();
        let svc = waiver::service::Service::with_platforms(
            store.clone(),
            gov.clone(),
            waiver::clock::Clock::System,
            &[waiver::message::Platform::Teams],
        );
        let now = waiver::clock::Clock::System.now();
        let form = waiver::fakes::testkit::sample_form(now.date());
        let requester = waiver::governance::PersonId::new("james.carter");
        for i in 0..clicks_needed {
            match svc.submit(&requester, &form, None, now).await {
                Ok(waiver::service::Submitted::Filed(_)) => {}
                other => fail(format!("seeding: request {} not filed: {other:?}", i + 1)),
            }
        }
        // The intake cards count as posted to their channel; the rest as delivered.
        let reference = format!(
            "'{{\"serviceUrl\":\"{service_url}\",\"conversationId\":\"' || target || '\",\"tenantId\":\"{tenant}\"}}'"
        );
        let sql = format!(
            "INSERT INTO cards (platform, card_key, request_id, conversation, message, reference, updated_at) \
             SELECT platform, card_key, request_id, target, 'act-' || id, {reference}, 0 FROM outbox \
             WHERE platform = 'teams' AND card_key LIKE '%/completeness/v1@%'; \
             UPDATE outbox SET status = 'sent'; DELETE FROM outbox_queues"
        );
        store
            .execute_raw(Box::leak(sql.into_boxed_str()))
            .await
            .unwrap();
        store.close().await;
        let pool = sqlx::AnyPool::connect(&db_url).await.unwrap();
        let rows =
            sqlx::query("SELECT request_id, conversation, message FROM cards ORDER BY request_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| (r.get("request_id"), r.get("conversation"), r.get("message")))
            .collect()
    };
    if cards.len() != clicks_needed {
        fail(format!(
            "seeding: {} intake cards for {clicks_needed} requests",
            cards.len()
        ));
    }
    eprintln!("seeded in {:.1} s", seed_started.elapsed().as_secs_f64());

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
        .env_remove("SLACK_SIGNING_SECRET")
        .env_remove("SLACK_BOT_TOKEN")
        .env("TEAMS_APP_ID", APP_ID)
        .env("TEAMS_APP_PASSWORD", PASSWORD)
        .env("TEAMS_TENANT_ID", &tenant)
        .env("TEAMS_OPENID_METADATA_URL", fake.openid_url())
        .env("TEAMS_TOKEN_URL", fake.token_url())
        .env("TEAMS_SERVICE_URLS", &service_url)
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let child = Child(child);
    let pid = child.0.id();
    let base = format!("http://{listen}");
    let http = support::client();
    support::ready(&http, &base).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid);

    // One token for every activity, as the Connector reuses its tokens.
    let token = Arc::new(format!("Bearer {}", fake.token(&service_url)));
    let cards = Arc::new(cards);
    let invokes: Make = {
        let (token, cards, tenant, service_url) = (
            token.clone(),
            cards.clone(),
            tenant.clone(),
            service_url.clone(),
        );
        let from = noah.aad_object_id.clone();
        Arc::new(move |i| {
            let (request, channel, message) = &cards[i % cards.len()];
            let activity = json!({
                "type": "invoke",
                "name": "adaptiveCard/action",
                "id": format!("bench-{i}"),
                "serviceUrl": service_url,
                "channelId": "msteams",
                "from": { "id": format!("29:{from}"), "aadObjectId": from },
                "conversation": {
                    "id": format!("{channel};messageid={message}"),
                    "conversationType": "channel",
                    "tenantId": tenant,
                },
                "channelData": { "channel": { "id": channel }, "tenant": { "id": tenant } },
                "replyToId": message,
                "value": { "action": {
                    "type": "Action.Execute",
                    "verb": "complete",
                    "data": { "action": "complete", "r": request, "v": 1 },
                } },
            });
            Signed {
                path: "/api/messages".into(),
                content_type: "application/json",
                body: activity.to_string().into_bytes(),
                headers: vec![("authorization", token.as_str().to_string())],
            }
        })
    };
    let server = Server {
        http: http.clone(),
        base: base.clone(),
        check: card_200,
    };

    eprintln!("phase: invokes at 200/s");
    let at_200 = at_rate(&server, &invokes, 200, (200 * seconds / 2) as usize, 0).await;
    let used = at_200.len();
    eprintln!("phase: invokes flat out");
    let (flat, elapsed, load_rss) = flat_out(
        &server,
        &invokes,
        concurrency,
        seconds,
        clicks_needed - used,
        used,
        pid,
    )
    .await;
    let sent = used + flat.len();

    let store = waiver::store::Store::connect(&db_url).await.unwrap();
    let committed = store
        .counts_by_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == waiver::domain::State::InAssessment)
        .map(|(_, n)| n as usize)
        .unwrap_or(0);
    store.close().await;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    if committed != sent {
        fail(format!(
            "{sent} invokes were answered but {committed} requests moved to in_assessment"
        ));
    }
    let key_fetches = fake.calls_of("keys").len();
    if key_fetches != 1 {
        fail(format!(
            "the signing keys were fetched {key_fetches} times (once expected)"
        ));
    }

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "\nwaiver Teams invoke benchmark (cargo bench --bench teams; SQLite, 2 cores shared with the load generator)"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12}",
        "workload", "p50", "p99", "throughput"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12}",
        "adaptiveCard/action (commit + card) at 200/s",
        ms(percentile(&at_200, 0.5)),
        ms(percentile(&at_200, 0.99)),
        "200/s"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10.0}/s",
        format!("adaptiveCard/action, {concurrency} connections"),
        ms(percentile(&flat, 0.5)),
        ms(percentile(&flat, 0.99)),
        rate(flat.len(), elapsed)
    );
    println!(
        "resident memory: idle {:.1} MB, under load {:.1} MB",
        idle_rss as f64 / 1024.0,
        load_rss as f64 / 1024.0
    );
    println!(
        "{committed} invokes committed; signing keys fetched {key_fetches} time(s) for {sent} activities"
    );
}

//! The load generator (DESIGN §7): drives running `waiver serve` processes, with Slack
//! and Teams faked in this process, and reports acknowledgement latency (p50, p95,
//! p99), throughput, errors and peak resident memory.
//!
//! `cargo bench --bench load` seeds requests awaiting completeness review, starts the
//! release `waiver serve` (one or two replicas, Slack and Teams both enabled), and,
//! for each workload in turn, sends signed requests at a fixed rate (open loop: each
//! request is timed from when it was due, so a stall counts against every request
//! it delays) and then flat out with many connections (closed loop):
//! - `command`: a signed `/ai-exception` slash command (verify, ack, `views.open`);
//! - `submission`: a signed submission of the intake modal (verify, validate, commit
//!   the new request, ack);
//! - `click`: a signed **Complete** click on an intake card (verify, commit the
//!   state change, ack; the card update follows through the outbox);
//! - `invoke`: a Teams `adaptiveCard/action` invoke with a Bot Framework RS256 token
//!   (verify, commit, answer with the refreshed card).
//!
//! Before them it measures the ceiling: a bare axum endpoint (this binary, started
//! again as a child) answering 200 to the same signed commands without reading them.
//! Afterwards it checks that every acknowledged request did what it says (modals
//! opened, requests filed, state changes committed) and fails if not.
//!
//! Environment (defaults in brackets):
//! - `BENCH_DB` [`sqlite`] or `postgres` (a fresh database on `BENCH_POSTGRES`
//!   [`postgres://postgres@127.0.0.1:5432/postgres`], dropped afterwards);
//! - `BENCH_REPLICAS` [1]: replicas of `waiver serve` on the database, requests
//!   spread over them round-robin (two need PostgreSQL);
//! - `BENCH_WORKLOADS` [`command,submission,click,invoke`];
//! - `BENCH_RATE` [200] requests/s in the open-loop phase, `BENCH_SECONDS` [10] per
//!   flat-out phase (the open-loop phase takes half of it), `BENCH_CONCURRENCY` [64];
//! - `BENCH_CLICKS` [40,000] and `BENCH_INVOKES` [30,000] requests seeded for them;
//! - `BENCH_SERVER_LOG` [`error`]: the servers' `RUST_LOG`;
//! - `BENCH_TARGET` [`waiver`], or a yardstick driven the same way (DESIGN §7;
//!   `npm ci` in `benches/yardsticks` first): `bolt` (Bolt for JavaScript: commands,
//!   submissions and clicks, in-memory state) or `botbuilder` (the Bot Framework SDK:
//!   invokes). Their work is checked through their `/yardstick/stats`.
//!
//! Bounded: every phase stops by itself.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Row};
use support::{Child, Make, Outcome, Server, Signed, at_rate, env_u64, fail, flat_out, ms};
use waiver::config::Secret;
use waiver::fakes::slack::FakeSlack;
use waiver::fakes::slack::workspace::{Input, Workspace};
use waiver::fakes::teams::FakeTeams;
use waiver::governance::PersonId;
use waiver::message::Platform;

// The load generator uses the same allocator as the server it measures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SECRET: &str = "bench-signing-secret";
const TOKEN: &str = "xoxb-bench";
const APP_ID: &str = "00000000-0000-0000-0000-0000000b0700";
const PASSWORD: &str = "bench-app-password";
/// Set in the child that serves the bare-axum ceiling.
const BARE_ROLE: &str = "WAIVER_BENCH_BARE_LISTEN";

/// Slack's acknowledgement: 200 and an empty body.
fn empty_200(status: u16, body: &[u8]) -> Result<(), String> {
    if status == 200 && body.is_empty() {
        Ok(())
    } else {
        Err(format!("{status} {}", String::from_utf8_lossy(body)))
    }
}

/// An invoke's answer: 200 with the refreshed card.
fn card_200(status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status == 200 && text.contains("application/vnd.microsoft.card.adaptive") {
        Ok(())
    } else {
        Err(format!("{status} {text}"))
    }
}

fn main() {
    if let Ok(listen) = std::env::var(BARE_ROLE) {
        return bare_axum(&listen);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// The ceiling: axum on the same runtime shape as `waiver serve`, answering 200 with
/// an empty body to any POST, reading nothing.
fn bare_axum(listen: &str) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let app = axum::Router::new()
                .route("/slack/commands", axum::routing::post(|| async { "" }))
                .route("/readyz", axum::routing::get(|| async { "ok" }));
            let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
            axum::serve(listener, app).await.unwrap();
        });
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

/// What the load goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Waiver,
    Bolt,
    Botbuilder,
}

impl Target {
    fn from_env() -> Self {
        match std::env::var("BENCH_TARGET").as_deref() {
            Err(_) | Ok("waiver") => Self::Waiver,
            Ok("bolt") => Self::Bolt,
            Ok("botbuilder") => Self::Botbuilder,
            Ok(other) => fail(format!(
                "BENCH_TARGET={other}: expected waiver, bolt or botbuilder"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Waiver => "waiver serve",
            Self::Bolt => "Bolt for JavaScript (yardstick)",
            Self::Botbuilder => "botbuilder (yardstick)",
        }
    }

    fn default_workloads(self) -> &'static str {
        match self {
            Self::Waiver => "command,submission,click,invoke",
            Self::Bolt => "command,submission,click",
            Self::Botbuilder => "invoke",
        }
    }
}

/// The database the run uses, removed at the end.
struct Database {
    kind: Db,
    url: String,
    dir: std::path::PathBuf,
    drop_pg: Option<(String, String)>,
}

impl Database {
    async fn create() -> Self {
        let dir = std::env::temp_dir().join(format!("waiver-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        match std::env::var("BENCH_DB").as_deref() {
            Err(_) | Ok("sqlite") => Self {
                kind: Db::Sqlite,
                url: format!("sqlite://{}/bench.db", dir.display()),
                dir,
                drop_pg: None,
            },
            Ok("postgres") => {
                sqlx::any::install_default_drivers();
                let admin = std::env::var("BENCH_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let name = format!("waiver_load_{}", std::process::id());
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| fail(format!("PostgreSQL at {admin}: {e}")));
                for sql in [
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    format!("CREATE DATABASE {name}"),
                ] {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
                // The same server and options, another database.
                let (path, query) = admin.split_once('?').unwrap_or((admin.as_str(), ""));
                let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                Self {
                    kind: Db::Postgres,
                    url: format!("{base}/{name}{query}"),
                    dir,
                    drop_pg: Some((admin, name)),
                }
            }
            Ok(other) => fail(format!("BENCH_DB={other}: expected sqlite or postgres")),
        }
    }

    async fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = self.drop_pg
            && let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One measured workload.
struct Report {
    name: &'static str,
    at_rate: Outcome,
    flat: Outcome,
    flat_rate: f64,
    rss_kib: u64,
}

async fn run() {
    let seconds = env_u64("BENCH_SECONDS", 10);
    let concurrency = env_u64("BENCH_CONCURRENCY", 64) as usize;
    let rate = env_u64("BENCH_RATE", 200);
    let replicas = env_u64("BENCH_REPLICAS", 1) as usize;
    let target = Target::from_env();
    let workloads: Vec<String> = std::env::var("BENCH_WORKLOADS")
        .unwrap_or_else(|_| target.default_workloads().into())
        .split(',')
        .map(|w| w.trim().to_string())
        .collect();
    for w in &workloads {
        if !target.default_workloads().split(',').any(|x| x == w) {
            fail(format!(
                "BENCH_WORKLOADS: {w} is not a workload of {}",
                target.name()
            ));
        }
    }
    let wants = |w: &str| workloads.iter().any(|x| x == w);
    let clicks_needed = if wants("click") {
        env_u64("BENCH_CLICKS", 40_000) as usize
    } else {
        0
    };
    let invokes_needed = if wants("invoke") {
        env_u64("BENCH_INVOKES", 30_000) as usize
    } else {
        0
    };
    let open_count = (rate * seconds / 2) as usize;
    if clicks_needed > 0 && clicks_needed <= open_count
        || invokes_needed > 0 && invokes_needed <= open_count
    {
        fail(format!(
            "BENCH_CLICKS and BENCH_INVOKES must exceed the {open_count} requests of the open-loop phase"
        ));
    }

    let db = Database::create().await;
    if replicas > 1 && (db.kind == Db::Sqlite || target != Target::Waiver) {
        fail("BENCH_REPLICAS > 1 needs BENCH_DB=postgres: SQLite is one process's database".into());
    }
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let gov_path = manifest.join("manifests/governance.toml");
    let gov = Arc::new(waiver::governance::load(&gov_path).unwrap());
    let slack_id = |p: &str| {
        gov.person(&PersonId::new(p))
            .and_then(|x| x.slack.as_ref())
            .map(|s| s.user.clone())
            .unwrap_or_else(|| fail(format!("{p} has no Slack id")))
    };
    let (james, noah, marcus) = (
        slack_id("james.carter"),
        slack_id("noah.fischer"),
        slack_id("marcus.webb"),
    );
    let tenant = gov.teams_tenants[0].clone();
    let noah_teams = gov
        .person(&PersonId::new("noah.fischer"))
        .and_then(|p| p.teams.clone())
        .unwrap_or_else(|| fail("noah.fischer has no Teams identity".into()));

    let slack = FakeSlack::start(TOKEN).await;
    let teams = FakeTeams::start(APP_ID, PASSWORD, &tenant, waiver::clock::Clock::System).await;
    let service_url = teams.service_url();

    // Seed requests awaiting completeness review: the first `clicks_needed` for Slack
    // clicks, the rest for Teams invokes (their Teams intake cards recorded as posted).
    let seeded = clicks_needed + invokes_needed;
    let seed_started = Instant::now();
    let cards: Vec<(i64, String, String)> = if target != Target::Waiver {
        // The yardsticks take any request number as one awaiting review.
        (1..=invokes_needed as i64)
            .map(|r| {
                let request = clicks_needed as i64 + r;
                (request, "19:bench@thread.tacv2".into(), format!("act-{r}"))
            })
            .collect()
    } else {
        eprintln!("seeding {seeded} requests awaiting completeness review…");
        let store = waiver::app::open_store(&db.url).await.unwrap();
        let svc = Arc::new(waiver::service::Service::with_platforms(
            store.clone(),
            gov.clone(),
            waiver::clock::Clock::System,
            &[Platform::Slack, Platform::Teams],
        ));
        let now = waiver::clock::Clock::System.now();
        let form = Arc::new(waiver::fakes::testkit::sample_form(now.date()));
        // In order, so that request n is the n-th filed (the clicks name 1..=clicks).
        let requester = PersonId::new("james.carter");
        for i in 0..seeded {
            match svc.submit(&requester, &form, None, now).await {
                Ok(waiver::service::Submitted::Filed(_)) => {}
                other => fail(format!("seeding: request {} not filed: {other:?}", i + 1)),
            }
        }
        let reference = format!(
            "'{{\"serviceUrl\":\"{service_url}\",\"conversationId\":\"' || target || '\",\"tenantId\":\"{tenant}\"}}'"
        );
        let sql = format!(
            "INSERT INTO cards (platform, card_key, request_id, conversation, message, reference, updated_at) \
             SELECT platform, card_key, request_id, target, 'act-' || id, {reference}, 0 FROM outbox \
             WHERE platform = 'teams' AND card_key LIKE '%/completeness/v1@%' AND request_id > {clicks_needed}; \
             UPDATE outbox SET status = 'sent'; DELETE FROM outbox_queues"
        );
        store
            .execute_raw(Box::leak(sql.into_boxed_str()))
            .await
            .unwrap();
        store.close().await;
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query(
            "SELECT request_id, conversation, message FROM cards WHERE platform = 'teams' ORDER BY request_id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        rows.iter()
            .map(|r| (r.get("request_id"), r.get("conversation"), r.get("message")))
            .collect()
    };
    if cards.len() != invokes_needed {
        fail(format!(
            "seeding: {} Teams intake cards for {invokes_needed} requests",
            cards.len()
        ));
    }
    eprintln!("seeded in {:.1} s", seed_started.elapsed().as_secs_f64());

    // The replicas, and the ceiling.
    let http = support::client();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    let yardsticks = manifest.join("benches/yardsticks");
    if target != Target::Waiver && !yardsticks.join("node_modules").is_dir() {
        fail(format!("run `npm ci` in {} first", yardsticks.display()));
    }
    for _ in 0..replicas {
        let listen = free_port();
        let mut command = match target {
            Target::Waiver => {
                let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_waiver"));
                c.arg("serve");
                c
            }
            Target::Bolt | Target::Botbuilder => {
                let script = match target {
                    Target::Bolt => "bolt.js",
                    _ => "botbuilder.js",
                };
                let mut c = std::process::Command::new("node");
                c.arg(yardsticks.join(script))
                    .env("PORT", listen.port().to_string())
                    .env("MicrosoftAppId", APP_ID)
                    .env("MicrosoftAppPassword", PASSWORD);
                c
            }
        };
        let child = command
            .env("WAIVER_DATABASE_URL", &db.url)
            .env("WAIVER_GOVERNANCE", &gov_path)
            .env("WAIVER_LISTEN", listen.to_string())
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("SLACK_BOT_TOKEN", TOKEN)
            .env("SLACK_API_URL", slack.api_url())
            .env("TEAMS_APP_ID", APP_ID)
            .env("TEAMS_APP_PASSWORD", PASSWORD)
            .env("TEAMS_TENANT_ID", &tenant)
            .env("TEAMS_OPENID_METADATA_URL", teams.openid_url())
            .env("TEAMS_TOKEN_URL", teams.token_url())
            .env("TEAMS_SERVICE_URLS", &service_url)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .spawn()
            .unwrap();
        children.push(Child(child));
        let base = format!("http://{listen}");
        support::ready(&http, &base).await;
        bases.push(base);
    }
    let pids: Vec<u32> = children.iter().map(|c| c.0.id()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib: Vec<u64> = pids.iter().map(|p| support::rss_kib(*p)).collect();

    let ws = Arc::new(Workspace::new(
        slack,
        bases[0].trim_start_matches("http://").parse().unwrap(),
        Secret::new(SECRET),
    ));
    // The intake modal as Slack would hold it after a real command (before lean mode).
    let intake_view = if wants("submission") {
        let reply = ws.command(&james, "").await;
        if reply.status != 200
            || !ws
                .slack
                .wait_for(Duration::from_secs(10), |f| !f.views_opened().is_empty())
                .await
        {
            fail(format!("the intake modal did not open: {}", reply.body));
        }
        Some(ws.slack.views_opened()[0].clone())
    } else {
        None
    };
    ws.slack.set_lean(true);

    let slack_signed = |ws: &Workspace, path: &str, body: Vec<u8>| {
        let headers = ws.signature(waiver::clock::Clock::System.unix_seconds(), &body);
        Signed {
            path: path.into(),
            content_type: "application/x-www-form-urlencoded",
            body,
            headers,
        }
    };
    let commands: Make = {
        let (ws, james) = (ws.clone(), james.clone());
        Arc::new(move |i| {
            let body = ws.command_body(&james, "", &format!("bench-trigger-{i}"));
            slack_signed(&ws, "/slack/commands", body)
        })
    };

    let mut reports = Vec::new();
    let slack_server = Server {
        http: http.clone(),
        bases: bases.clone(),
        check: empty_200,
    };

    // The ceiling, measured in the same run as the commands.
    let ceiling = if wants("command") {
        let listen = free_port();
        let bare = Child(
            std::process::Command::new(std::env::current_exe().unwrap())
                .env(BARE_ROLE, listen.to_string())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://{listen}");
        support::ready(&http, &base).await;
        let server = Server {
            http: http.clone(),
            bases: vec![base],
            check: empty_200,
        };
        eprintln!("phase: bare axum endpoint flat out");
        let (out, elapsed, _) = flat_out(
            &server,
            &commands,
            concurrency,
            seconds,
            usize::MAX,
            0,
            &[bare.0.id()],
        )
        .await;
        drop(bare);
        Some(out.latencies.len() as f64 / elapsed.as_secs_f64())
    } else {
        None
    };

    let mut commands_sent = 0;
    if wants("command") {
        at_rate(&slack_server, &commands, 500, 500, 0).await; // warm-up
        let r = measure(
            "command",
            &slack_server,
            &commands,
            rate,
            seconds,
            concurrency,
            usize::MAX,
            &pids,
        )
        .await;
        commands_sent = 500 + r.at_rate.latencies.len() + r.flat.latencies.len();
        reports.push(r);
        // Every acknowledged command opened its modal (views.open, after the ack).
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
    }

    let mut submissions_ok = 0;
    if let Some(view) = &intake_view {
        let start = waiver::clock::Clock::System.now().date();
        let (start, end) = (
            start.to_string(),
            (start + chrono::Days::new(120)).to_string(),
        );
        let template = ws.submission_payload(
            &james,
            view,
            &[
                ("title", Input::Text("Load test")),
                ("policy", Input::Choose("aiup")),
                ("exception_type", Input::Choose("tool_adoption")),
                ("ai_system", Input::Text("CodeHelper Pro")),
                (
                    "justification",
                    Input::Text("Speeds up test writing for the ingestion team."),
                ),
                ("scope_departments", Input::ChooseMany(&["engineering"])),
                ("scope_users", Input::Text("12 engineers")),
                ("data_categories", Input::ChooseMany(&["internal"])),
                ("regions", Input::ChooseMany(&["us"])),
                ("department", Input::Choose("engineering")),
                ("start", Input::Date(&start)),
                ("end", Input::Date(&end)),
                ("controls", Input::Text("No customer data in prompts.")),
                ("business_owner", Input::User(&marcus)),
            ],
        );
        let template = Arc::new(template);
        let submissions: Make = {
            let (ws, template) = (ws.clone(), template.clone());
            Arc::new(move |i| {
                let mut payload: Value = (*template).clone();
                payload["trigger_id"] = json!(format!("bench-submit-{i}"));
                payload["view"]["id"] = json!(format!("VBENCH{i}"));
                payload["view"]["state"]["values"]["title"]["value"]["value"] =
                    json!(format!("Load test {i}"));
                let body = serde_urlencoded::to_string([("payload", payload.to_string())])
                    .unwrap()
                    .into_bytes();
                slack_signed(&ws, "/slack/interactions", body)
            })
        };
        let r = measure(
            "submission",
            &slack_server,
            &submissions,
            rate,
            seconds,
            concurrency,
            usize::MAX,
            &pids,
        )
        .await;
        submissions_ok = r.at_rate.latencies.len() + r.flat.latencies.len();
        reports.push(r);
    }

    let mut clicks_ok = 0;
    if clicks_needed > 0 {
        let clicks: Make = {
            let (ws, noah) = (ws.clone(), noah.clone());
            Arc::new(move |i| {
                // Request i + 1 was seeded awaiting review; Noah clicks its Complete button.
                let r = i + 1;
                let message = waiver::fakes::slack::Message {
                    ts: format!("1764000000.{r:06}"),
                    channel: "C0AIXINTAKE".into(),
                    user: None,
                    text: Some(format!("AIX-{r:04} · Completeness review")),
                    blocks: json!([
                        {"type": "header", "text": {"type": "plain_text", "text": format!("AIX-{r:04} · Use an LLM coding assistant")}},
                        {"type": "actions", "block_id": "b", "elements": [
                            {"type": "button", "action_id": "complete", "text": {"type": "plain_text", "text": "Complete"}, "style": "primary", "value": format!("{{\"r\":{r},\"v\":1}}")},
                        ]}
                    ]),
                    metadata: None,
                    thread_ts: None,
                    edits: 0,
                };
                let payload = ws
                    .click_payload(&noah, &message, "complete", &format!("bench-click-{i}"))
                    .unwrap();
                let body = serde_urlencoded::to_string([("payload", payload.to_string())])
                    .unwrap()
                    .into_bytes();
                slack_signed(&ws, "/slack/interactions", body)
            })
        };
        let r = measure(
            "click",
            &slack_server,
            &clicks,
            rate,
            seconds,
            concurrency,
            clicks_needed,
            &pids,
        )
        .await;
        clicks_ok = r.at_rate.latencies.len() + r.flat.latencies.len();
        reports.push(r);
    }

    let mut invokes_ok = 0;
    if invokes_needed > 0 {
        // One token for every activity, as the Connector reuses its tokens.
        let token = Arc::new(format!("Bearer {}", teams.token(&service_url)));
        let cards = Arc::new(cards);
        let invokes: Make = {
            let (tenant, service_url) = (tenant.clone(), service_url.clone());
            let from = noah_teams.aad_object_id.clone();
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
            bases: bases.clone(),
            check: card_200,
        };
        let r = measure(
            "invoke",
            &server,
            &invokes,
            rate,
            seconds,
            concurrency,
            invokes_needed,
            &pids,
        )
        .await;
        invokes_ok = r.at_rate.latencies.len() + r.flat.latencies.len();
        reports.push(r);
    }
    let peak_kib: Vec<u64> = pids.iter().map(|p| support::rss_kib(*p)).collect();
    let peak_under_load = reports.iter().map(|r| r.rss_kib).max().unwrap_or(0);

    // Every acknowledgement did what it says.
    if target != Target::Waiver {
        let stats = yardstick_stats(&http, &bases[0]).await;
        drop(children);
        db.remove().await;
        let committed = stats["in_assessment"].as_u64().unwrap_or(0) as usize;
        if committed != clicks_ok + invokes_ok {
            fail(format!(
                "{clicks_ok} clicks and {invokes_ok} invokes were acknowledged but the yardstick moved {committed} requests: {stats}"
            ));
        }
        print_reports(&Printed {
            target,
            db_name: "in memory",
            replicas,
            rate,
            concurrency,
            reports: &reports,
            ceiling,
            idle_kib: &idle_kib,
            peak_kib: &peak_kib,
            peak_under_load,
        });
        println!(
            "checked: {commands_sent} modals opened, {committed} state changes made ({clicks_ok} clicks, {invokes_ok} invokes); the yardstick counts {stats}"
        );
        return fail_on_errors(&reports);
    }
    let store = waiver::store::Store::connect(&db.url).await.unwrap();
    let counts = store.counts_by_state().await.unwrap();
    let count = |s: waiver::domain::State| {
        counts
            .iter()
            .find(|(x, _)| *x == s)
            .map_or(0, |(_, n)| *n as usize)
    };
    let committed = count(waiver::domain::State::InAssessment);
    let total: usize = counts.iter().map(|(_, n)| *n as usize).sum();
    let key_fetches = teams.calls_of("keys").len();
    store.close().await;
    drop(children);
    let db_name = match db.kind {
        Db::Sqlite => "SQLite",
        Db::Postgres => "PostgreSQL",
    };
    db.remove().await;
    if committed != clicks_ok + invokes_ok {
        fail(format!(
            "{clicks_ok} clicks and {invokes_ok} invokes were acknowledged but {committed} requests moved to in_assessment"
        ));
    }
    if total != seeded + submissions_ok {
        fail(format!(
            "{seeded} requests were seeded and {submissions_ok} submissions acknowledged, but {total} requests are stored"
        ));
    }
    if invokes_needed > 0 && key_fetches > replicas {
        fail(format!(
            "the Teams signing keys were fetched {key_fetches} times for {replicas} replica(s)"
        ));
    }

    print_reports(&Printed {
        target,
        db_name,
        replicas,
        rate,
        concurrency,
        reports: &reports,
        ceiling,
        idle_kib: &idle_kib,
        peak_kib: &peak_kib,
        peak_under_load,
    });
    println!(
        "checked: {commands_sent} modals opened, {submissions_ok} requests filed, {committed} state changes committed ({clicks_ok} clicks, {invokes_ok} invokes); Teams signing keys fetched {key_fetches} time(s)"
    );
    fail_on_errors(&reports);
}

fn fail_on_errors(reports: &[Report]) {
    let errors: usize = reports
        .iter()
        .map(|r| r.at_rate.errors + r.flat.errors)
        .sum();
    if errors > 0 {
        for r in reports {
            for e in r.at_rate.first_errors.iter().chain(&r.flat.first_errors) {
                eprintln!("{}: {e}", r.name);
            }
        }
        fail(format!(
            "{errors} requests were not acknowledged as expected"
        ));
    }
}

/// A yardstick's own counts of what it did.
async fn yardstick_stats(http: &support::Http, base: &str) -> Value {
    use http_body_util::BodyExt;
    let resp = http
        .request(
            hyper::Request::get(format!("{base}/yardstick/stats"))
                .body(http_body_util::Full::new(hyper::body::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap_or_else(|e| fail(format!("yardstick stats: {e}")));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or_else(|e| fail(format!("yardstick stats: {e}")))
}

/// What the report table shows.
struct Printed<'a> {
    target: Target,
    db_name: &'a str,
    replicas: usize,
    rate: u64,
    concurrency: usize,
    reports: &'a [Report],
    ceiling: Option<f64>,
    idle_kib: &'a [u64],
    peak_kib: &'a [u64],
    peak_under_load: u64,
}

fn print_reports(p: &Printed<'_>) {
    let (rate, concurrency) = (p.rate, p.concurrency);
    println!(
        "\n{} under load (cargo bench --bench load): {}, {} replica(s), 2 cores shared with the load generator",
        p.target.name(),
        p.db_name,
        p.replicas
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "workload", "p50", "p95", "p99", "throughput", "errors"
    );
    for r in p.reports {
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9}/s {:>7}",
            format!("{} at {rate}/s (open loop)", r.name),
            ms(r.at_rate.p(0.5)),
            ms(r.at_rate.p(0.95)),
            ms(r.at_rate.p(0.99)),
            rate,
            r.at_rate.errors
        );
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9.0}/s {:>7}",
            format!("{}, {concurrency} connections", r.name),
            ms(r.flat.p(0.5)),
            ms(r.flat.p(0.95)),
            ms(r.flat.p(0.99)),
            r.flat_rate,
            r.flat.errors
        );
    }
    if let Some(ceiling) = p.ceiling {
        println!(
            "{:<44} {:>39.0}/s",
            "bare axum endpoint (ceiling), same connections", ceiling
        );
        if let Some(c) = p.reports.iter().find(|r| r.name == "command") {
            println!(
                "slash commands reach {:.0} % of the ceiling",
                100.0 * c.flat_rate / ceiling
            );
        }
    }
    let mb = |k: &[u64]| {
        k.iter()
            .map(|k| format!("{:.1} MB", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    println!(
        "resident memory per replica: idle {}; peak under load {:.1} MB; at the end {}",
        mb(p.idle_kib),
        p.peak_under_load as f64 / 1024.0,
        mb(p.peak_kib)
    );
}

/// The open-loop phase (half of `seconds` at `rate`), then the flat-out phase.
#[allow(clippy::too_many_arguments)]
async fn measure(
    name: &'static str,
    server: &Server,
    make: &Make,
    rate: u64,
    seconds: u64,
    concurrency: usize,
    limit: usize,
    pids: &[u32],
) -> Report {
    eprintln!("phase: {name} at {rate}/s");
    let open = at_rate(server, make, rate, (rate * seconds / 2) as usize, 0).await;
    let used = open.sent();
    eprintln!("phase: {name} flat out");
    let (flat, elapsed, rss_kib) = flat_out(
        server,
        make,
        concurrency,
        seconds,
        limit.saturating_sub(used),
        used,
        pids,
    )
    .await;
    let flat_rate = flat.latencies.len() as f64 / elapsed.as_secs_f64();
    Report {
        name,
        at_rate: open,
        flat,
        flat_rate,
        rss_kib,
    }
}

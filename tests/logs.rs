//! What `waiver serve` writes to its log, in both formats, with every secret fed
//! through every path that could leak it: valid and forged Slack signatures, stale
//! requests, valid and forged Teams tokens, a refused delivery, the dashboard's and
//! the metrics' tokens, and a database URL with a password that cannot connect. Not
//! one secret may appear; every line of a request carries its id, and the lines
//! about a request carry its reference.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waiver::clock::Clock;
use waiver::config::Secret;
use waiver::fakes::slack::FakeSlack;
use waiver::fakes::slack::workspace::Workspace;
use waiver::fakes::teams::FakeTeams;
use waiver::fakes::teams::tenant::{Member, Tenant};

const SIGNING: &str = "sig-secret-5b2c9e0d7a1f4e3c";
const BOT: &str = "xoxb-bot-token-71d0c3a9e5";
const TEAMS_PASSWORD: &str = "teams-password-3e8f1a2b";
const DASHBOARD: &str = "dash-token-9c4e7b1a0d2f";
const METRICS: &str = "metrics-token-6a0f2e9d4c1b";
const DB_PASSWORD: &str = "db-password-4f9a2c7e1b";
const APP_ID: &str = "00000000-0000-0000-0000-0000000b0700";

/// A `waiver` child process whose standard error is collected; killed on drop.
struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn waiver(format: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waiver"));
    // Only Waiver's own settings are cleared: the rest of the environment (a
    // libfaketime clock under CI's shifted runs, say) is the test's.
    for v in waiver::config::VARIABLES {
        cmd.env_remove(v);
    }
    cmd.env("WAIVER_LOG_FORMAT", format)
        .env("RUST_LOG", "debug")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn collect(mut child: Child) -> Server {
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    Server { child, log }
}

impl Server {
    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    async fn until(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        for _ in 0..6000 {
            if pred(&self.lines()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the log never showed {what}:\n{}", self.lines().join("\n"));
    }
}

fn leaked<'a>(lines: &[String], secrets: &'a [String]) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    for s in secrets {
        for l in lines.iter().filter(|l| l.contains(s.as_str())) {
            out.push((s.as_str(), l.clone()));
        }
    }
    out
}

/// Runs traffic with secrets through `waiver serve` logging in `format`; returns its
/// log lines and every secret value that was in play.
async fn traffic(format: &str) -> (Vec<String>, Vec<String>) {
    waiver::chat::install_tls_provider();
    let dir = common::TempDir::new();
    let db = format!("sqlite://{}/waiver.db", dir.path.display());
    let slack =
        FakeSlack::start_at(BOT, waiver::fakes::slack::DEFAULT_TEAM_ID, Clock::System).await;
    let tenant_id = common::teams::tenant();
    let teams = FakeTeams::start(APP_ID, TEAMS_PASSWORD, &tenant_id, Clock::System).await;
    let port = free_port();
    let server = collect(
        waiver(format)
            .arg("serve")
            .env("WAIVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("WAIVER_DATABASE_URL", &db)
            .env("SLACK_SIGNING_SECRET", SIGNING)
            .env("SLACK_BOT_TOKEN", BOT)
            .env("SLACK_API_URL", slack.api_url())
            .env("TEAMS_APP_ID", APP_ID)
            .env("TEAMS_APP_PASSWORD", TEAMS_PASSWORD)
            .env("TEAMS_TENANT_ID", &tenant_id)
            .env("TEAMS_OPENID_METADATA_URL", teams.openid_url())
            .env("TEAMS_TOKEN_URL", teams.token_url())
            .env("TEAMS_SERVICE_URLS", teams.service_url())
            .env("WAIVER_DASHBOARD_TOKEN", DASHBOARD)
            .env("WAIVER_METRICS_TOKEN", METRICS)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start waiver serve"),
    );
    server
        .until("the server listening", |l| {
            l.iter().any(|l| l.contains("waiver is listening"))
        })
        .await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut secrets: Vec<String> = [
        SIGNING,
        BOT,
        TEAMS_PASSWORD,
        DASHBOARD,
        METRICS,
        DB_PASSWORD,
    ]
    .map(String::from)
    .to_vec();

    // Slack: a refused delivery (the intake channel's token is refused), a valid
    // filing, a forged signature, a stale one.
    slack.fail_channel("C0AIXINTAKE", "invalid_auth");
    let ws = Workspace::new(slack, addr, Secret::new(SIGNING));
    let now = Clock::System.now();
    common::slack::file_in(&ws, now, "Logged request").await;
    let body = ws.command_body(&common::uid("james.carter"), "", "trigger-1");
    let ts = Clock::System.unix_seconds();
    for (when, secret) in [(ts, "forged-secret-0123456789"), (ts - 3600, SIGNING)] {
        let sig = waiver::chat::slack::verify::sign(&Secret::new(secret), when, &body);
        secrets.push(sig.trim_start_matches("v0=").to_string());
        let reply = ws
            .post_raw(
                "/slack/commands",
                "application/x-www-form-urlencoded",
                body.clone(),
                &[
                    ("x-slack-request-timestamp", when.to_string()),
                    ("x-slack-signature", sig),
                ],
            )
            .await;
        assert_eq!(reply.status, 401);
    }
    secrets.push(
        waiver::chat::slack::verify::sign(&Secret::new(SIGNING), ts, &body)
            .trim_start_matches("v0=")
            .to_string(),
    );

    // Teams: a valid token, and a forged one carrying a secret-looking payload.
    let service_url = teams.service_url();
    let tenant = Tenant::new(teams, addr);
    let james = Member::new(
        &common::teams::member("james.carter").aad_object_id,
        "James Carter",
    );
    let reply = tenant.say(&james, "ai-exception help").await;
    assert_eq!(reply.status, 200);
    let token = tenant.teams.token(&service_url);
    secrets.push(token.rsplit('.').next().unwrap().to_string());
    let forged = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.forged-teams-token-5d1e.c2lnbmF0dXJl";
    secrets.push("forged-teams-token-5d1e".into());
    let reply = tenant
        .post_raw(Some(format!("Bearer {forged}")), b"{}".to_vec())
        .await;
    assert_eq!(reply.status, 401);

    // The dashboard and the metrics, with wrong and right tokens.
    let base = format!("http://{addr}");
    let r = http
        .get(format!("{base}/"))
        .bearer_auth("dash-wrong-7e1c0b9a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    secrets.push("dash-wrong-7e1c0b9a".into());
    let r = http
        .post(format!("{base}/login"))
        .form(&[("token", DASHBOARD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    secrets.push(session.rsplit('.').next().unwrap().to_string());
    let r = http
        .get(format!("{base}/"))
        .header("cookie", format!("{}={session}", waiver::web::COOKIE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The parked card is logged, without the token that was refused.
    server
        .until("the parked delivery", |l| {
            l.iter().any(|l| l.contains("parked a message"))
        })
        .await;
    server
        .until("the Teams answer delivered", |l| {
            l.iter().any(|l| l.contains("refused a Teams request"))
        })
        .await;
    let mut lines = server.lines();
    drop(server);

    // A database URL with a password that cannot connect: refused, and said without it.
    let url = format!("postgres://waiver:{DB_PASSWORD}@127.0.0.1:1/waiver?sslmode=disable");
    for args in [&["serve"][..], &["migrate"], &["audit", "verify"]] {
        let out = waiver(format)
            .args(args)
            .env("WAIVER_DATABASE_URL", &url)
            .env("WAIVER_LISTEN", "127.0.0.1:0")
            .env("SLACK_SIGNING_SECRET", SIGNING)
            .env("SLACK_BOT_TOKEN", BOT)
            .env("SLACK_API_URL", "http://127.0.0.1:9/api")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains("127.0.0.1:1") || stderr.contains("database"),
            "{stderr}"
        );
        lines.extend(stderr.lines().map(String::from));
    }
    (lines, secrets)
}

#[tokio::test]
async fn text_logs_carry_request_ids_and_references_and_never_a_secret() {
    let (lines, secrets) = traffic("text").await;
    let leaks = leaked(&lines, &secrets);
    assert!(leaks.is_empty(), "secrets in the log: {leaks:#?}");
    // A refused Slack request is logged inside its request's span, with its id.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request{request_id=") && l.contains("refused a Slack request")),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reference=AIX-0001") && l.contains("filed")),
        "{}",
        lines.join("\n")
    );
    // The parked delivery names its request.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reference=AIX-0001") && l.contains("parked a message")),
        "{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_request_ids_and_references_and_never_a_secret() {
    let (lines, secrets) = traffic("json").await;
    let leaks = leaked(&lines, &secrets);
    assert!(leaks.is_empty(), "secrets in the log: {leaks:#?}");
    let mut served = Vec::new();
    for l in &lines {
        if l.starts_with("error:") {
            // What a command that could not start says (not a log line).
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        served.push(v);
    }
    let in_span = |message: &str, field: &str| {
        served.iter().any(|v| {
            v["fields"]["message"] == message
                && v["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s[field].is_string()))
        })
    };
    assert!(in_span("refused a Slack request", "request_id"));
    assert!(in_span("refused a Teams request", "request_id"));
    let with_reference = |message: &str| {
        served.iter().any(|v| {
            v["fields"]["message"] == message
                && v["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["reference"] == "AIX-0001"))
        })
    };
    assert!(with_reference("filed"));
    assert!(with_reference(
        "delivery: parked a message that cannot be delivered"
    ));
    // Every line inside a request's span carries the id.
    for v in &served {
        if let Some(spans) = v["spans"].as_array()
            && let Some(request) = spans.iter().find(|s| s["name"] == "request")
        {
            assert!(request["request_id"].is_string(), "{v}");
        }
    }
}

#[test]
fn a_bad_log_format_is_refused_clearly() {
    let out = waiver("xml").args(["check"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WAIVER_LOG_FORMAT=\"xml\" is neither"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

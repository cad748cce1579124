//! `waiver doctor`: the real binary, run with the environment `waiver serve` reads
//! pointed at the fake Slack, the fake Teams and a test database. One healthy run on
//! each database, then each failure made to happen once, each named on its own line
//! with its fix, and never a secret in what it prints.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::teams::{APP_ID, APP_PASSWORD, channel, member, teams_channels, tenant};
use common::{BOT_TOKEN, SHIPPED, SIGNING_SECRET, TempDir, TestDb, gov, uid};
use sqlx::Connection;
use waiver::config::{SlackConfig, TeamsConfig};
use waiver::fakes::slack::FakeSlack;
use waiver::fakes::teams::FakeTeams;
use waiver::fakes::teams::tenant::Tenant;

/// A password in the PostgreSQL URL (trust authentication ignores it): it must
/// never be printed.
const DB_PASSWORD: &str = "doctor-db-password-3f9a";

fn shipped_governance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/governance.toml")
}

/// `url` with [`DB_PASSWORD`] in its userinfo (PostgreSQL only).
fn with_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme @ ("postgres" | "postgresql"), rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => {
                format!("{scheme}://{user}:{DB_PASSWORD}@{host}")
            }
            _ => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// What one run printed.
struct Doctor {
    code: i32,
    out: String,
    err: String,
}

impl Doctor {
    fn lines(&self) -> Vec<&str> {
        self.out.lines().collect()
    }

    /// Panics unless `line` is one of the lines printed, exactly.
    fn has(&self, line: &str) {
        assert!(
            self.lines().contains(&line),
            "no line\n  {line}\nin\n{}\nstderr: {}",
            self.out,
            self.err
        );
    }

    /// The one line starting with `prefix`.
    fn line(&self, prefix: &str) -> &str {
        let found: Vec<&str> = self
            .lines()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect();
        assert_eq!(found.len(), 1, "lines starting {prefix:?} in\n{}", self.out);
        found[0]
    }

    fn failed(&self) {
        assert_eq!(self.code, 1, "exit code\n{}\n{}", self.out, self.err);
    }

    fn passed(&self) {
        assert_eq!(self.code, 0, "exit code\n{}\n{}", self.out, self.err);
        for line in self.lines() {
            assert!(line.starts_with("ok    "), "not ok: {line}\n{}", self.out);
        }
    }

    /// Panics if any of `secrets` was printed.
    fn shows_none_of(&self, secrets: &[&str]) {
        for s in secrets {
            assert!(
                !self.out.contains(s) && !self.err.contains(s),
                "{s:?} printed:\n{}\n{}",
                self.out,
                self.err
            );
        }
    }
}

/// The secrets of every [`World`].
const SECRETS: [&str; 4] = [BOT_TOKEN, SIGNING_SECRET, APP_PASSWORD, DB_PASSWORD];

/// The platforms a doctor run checks, and its environment.
struct World {
    db: TestDb,
    slack: Option<FakeSlack>,
    teams: Option<Tenant>,
    env: BTreeMap<&'static str, String>,
}

impl World {
    fn new(db: TestDb) -> World {
        let mut env = BTreeMap::new();
        env.insert("WAIVER_DATABASE_URL", with_password(&db.url));
        env.insert(
            "WAIVER_GOVERNANCE",
            shipped_governance().display().to_string(),
        );
        World {
            db,
            slack: None,
            teams: None,
            env,
        }
    }

    fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.env.insert(name, value.into());
    }

    fn slack_env(&mut self, slack: &SlackConfig) {
        if let Some(s) = &slack.signing_secret {
            self.set("SLACK_SIGNING_SECRET", s.expose());
        }
        self.set("SLACK_BOT_TOKEN", slack.bot_token.expose());
        self.set("SLACK_API_URL", slack.api_url.clone());
    }

    fn teams_env(&mut self, teams: &TeamsConfig) {
        self.set("TEAMS_APP_ID", teams.app_id.clone());
        self.set("TEAMS_APP_PASSWORD", teams.app_password.expose());
        self.set("TEAMS_TENANT_ID", teams.tenant_id.clone());
        self.set(
            "TEAMS_OPENID_METADATA_URL",
            teams.openid_metadata_url.clone(),
        );
        self.set("TEAMS_TOKEN_URL", teams.token_url.clone());
        self.set("TEAMS_SERVICE_URLS", teams.service_urls.join(","));
    }

    /// The fake Slack of the tests' workspace.
    async fn with_slack(mut self) -> World {
        let fake = FakeSlack::start_with(BOT_TOKEN, &gov().slack_workspaces[0]).await;
        self.slack_env(&SlackConfig {
            signing_secret: Some(waiver::config::Secret::new(SIGNING_SECRET)),
            bot_token: waiver::config::Secret::new(BOT_TOKEN),
            socket_mode: None,
            api_url: fake.api_url().trim_end_matches('/').to_string(),
        });
        self.slack = Some(fake);
        self
    }

    /// The fake Teams of the tests' tenant, nothing installed yet.
    async fn with_teams(mut self) -> World {
        let fake = FakeTeams::start(
            APP_ID,
            APP_PASSWORD,
            &tenant(),
            waiver::clock::Clock::System,
        )
        .await;
        self.teams_env(&teams_config(&fake));
        // Installs go to a Waiver started later; the address is set then.
        self.teams = Some(Tenant::new(fake, "127.0.0.1:9".parse().unwrap()));
        self
    }

    fn fake_slack(&self) -> &FakeSlack {
        self.slack.as_ref().expect("a world with Slack")
    }

    /// Migrates the database and, with Teams, installs the app as an admin would in
    /// the team of every channel and for every person, but those in `missing`
    /// (channel ids, person ids): a running Waiver stores what Teams tells it.
    async fn installed(mut self, missing: &[&str]) -> World {
        self.db.store().await;
        if let Some(tenant) = self.teams.as_mut() {
            let config = waiver::config::Config {
                teams: Some(teams_config(&tenant.teams)),
                ..common::config(&self.db, String::new())
            };
            install(config, tenant, missing).await;
        }
        self
    }

    async fn doctor(&self) -> Doctor {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_waiver"));
        cmd.arg("doctor").current_dir(env!("CARGO_MANIFEST_DIR"));
        for v in waiver::config::VARIABLES {
            cmd.env_remove(v);
        }
        cmd.env_remove("RUST_LOG").envs(&self.env);
        // The fakes answer on this test's runtime while the binary runs.
        let output = tokio::task::spawn_blocking(move || cmd.output().expect("run waiver"))
            .await
            .unwrap();
        Doctor {
            code: output.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&output.stdout).into_owned(),
            err: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn teams_config(fake: &FakeTeams) -> TeamsConfig {
    TeamsConfig {
        app_id: APP_ID.into(),
        app_password: waiver::config::Secret::new(APP_PASSWORD),
        tenant_id: tenant(),
        openid_metadata_url: fake.openid_url(),
        token_url: fake.token_url(),
        service_urls: vec![fake.service_url()],
    }
}

/// Starts Waiver on `config` (Teams alone), adds the app to the team of every Teams
/// channel of the governance file and installs it for every person with a Teams id,
/// but those in `missing` (channel ids, person ids), then stops Waiver.
async fn install(mut config: waiver::config::Config, tenant: &mut Tenant, missing: &[&str]) {
    config.slack = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = waiver::app::Options {
        no_scheduler: true,
        no_delivery: true,
        ..Default::default()
    };
    let running = waiver::app::start(config, listener, options)
        .await
        .expect("waiver starts");
    tenant.retarget(running.addr);
    let admin = member("noah.fischer");
    for c in teams_channels() {
        if !missing.contains(&c.as_str()) {
            let reply = tenant.install_in_channel(&admin, &c).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    for p in &gov().people {
        if p.teams.is_some() && !missing.contains(&p.id.as_str()) {
            let reply = tenant.install_personal(&member(p.id.as_str())).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    running.stop().await;
}

/// The Slack channels of the governance file, once each.
fn slack_channels() -> Vec<String> {
    let g = gov();
    let mut channels: Vec<String> = g
        .roles
        .values()
        .filter_map(|r| r.channels.slack.clone())
        .chain(
            g.form
                .departments
                .iter()
                .filter_map(|d| d.channels.slack.clone()),
        )
        .collect();
    channels.sort();
    channels.dedup();
    channels
}

both!(
    a_healthy_installation_passes_every_check,
    |db: TestDb| async move {
        let backend = db.backend;
        let w = World::new(db)
            .with_slack()
            .await
            .with_teams()
            .await
            .installed(&[])
            .await;
        let d = w.doctor().await;
        d.passed();
        d.shows_none_of(&SECRETS);
        let people = gov().people.len();
        d.has("ok    Slack token is valid (team T0NWIND01 \"Waiver fake workspace\", bot U0WAIVERBOT @waiver)");
        d.has("ok    Slack workspace T0NWIND01 is listed in governance.toml (platforms.slack_workspaces)");
        d.has("ok    Slack bot scopes: the token has all 9 that manifests/slack/app-manifest.yaml asks for");
        d.has("ok    channel C0AIXRISK #c0aixrisk (Enterprise risk's channel in governance.toml): Waiver is a member");
        d.has(&format!(
            "ok    Slack people: all {people} with a Slack id in governance.toml exist in workspace T0NWIND01 and are active"
        ));
        let teams = w.teams.as_ref().unwrap();
        d.has(&format!(
            "ok    Teams credentials obtain a token from {} (app {APP_ID})",
            teams.teams.token_url()
        ));
        d.has(&format!(
            "ok    Teams signing keys: 2 fetched through {}, 1 endorsed for msteams",
            teams.teams.openid_url()
        ));
        d.has(&format!(
            "ok    Teams: Waiver has heard from tenant {} (the app is installed there)",
            tenant()
        ));
        d.has(&format!(
            "ok    Teams channel {} (Enterprise risk's channel in governance.toml): Waiver has its conversation reference",
            channel("risk")
        ));
        d.has(&format!(
            "ok    Teams people: all {people} with a Teams id in governance.toml have a chat with Waiver"
        ));
        let count = |prefix: &str| d.lines().iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("ok    channel "), slack_channels().len());
        assert_eq!(count("ok    Teams channel "), teams_channels().len());
        let db_line = d.line("ok    database ");
        assert!(db_line.contains("is reachable and migrated"), "{db_line}");
        if backend == "postgres" {
            assert!(
                db_line.contains(":***@"),
                "the password is redacted: {db_line}"
            );
        }
    }
);

both!(
    a_database_never_migrated_is_named_and_left_as_it_is,
    |db: TestDb| async move {
        let backend = db.backend;
        let shown = waiver::config::redact_url(&with_password(&db.url));
        let w = World::new(db).with_slack().await.with_teams().await;
        let d = w.doctor().await;
        d.failed();
        d.shows_none_of(&SECRETS);
        if backend == "sqlite" {
            d.has(&format!(
                "FAIL  database {shown} — the file does not exist: run `waiver migrate` to create it (or fix WAIVER_DATABASE_URL)"
            ));
            d.has("skip  Teams conversation references — the database cannot be read (see above)");
            let file = w.db.url.trim_start_matches("sqlite://");
            assert!(!Path::new(file).exists(), "the doctor created {file}");
        } else {
            d.has(&format!(
                "FAIL  database {shown} holds no Waiver tables yet — run `waiver migrate`"
            ));
            d.has("skip  Teams conversation references — the database is not migrated (see above)");
            // Nothing was migrated: a second look sees the same.
            let again = w.doctor().await;
            again.has(&format!(
                "FAIL  database {shown} holds no Waiver tables yet — run `waiver migrate`"
            ));
        }
        // The platforms are still checked.
        d.has("ok    Slack bot scopes: the token has all 9 that manifests/slack/app-manifest.yaml asks for");
    }
);

/// Runs `sql` on the test database directly.
async fn raw(url: &str, sql: &'static str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

both!(
    a_database_ahead_of_or_behind_this_build_is_named_with_its_fix,
    |db: TestDb| async move {
        let shown = waiver::config::redact_url(&with_password(&db.url));
        let url = db.url.clone();
        let w = World::new(db).with_slack().await.installed(&[]).await;

        // A newer Waiver migrated it further.
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(9999_i64)
        .bind("from a newer waiver")
        .bind(vec![0_u8; 48])
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let d = w.doctor().await;
        d.failed();
        d.has(&format!(
            "FAIL  database {shown} was migrated by a newer Waiver: migration 9999 \"from a newer waiver\" is unknown to this build (waiver {}) — run that newer Waiver, or restore a backup taken before it migrated",
            env!("CARGO_PKG_VERSION")
        ));
        d.shows_none_of(&SECRETS);
        raw(&url, "DELETE FROM _sqlx_migrations WHERE version = 9999").await;
        w.doctor().await.line("ok    database ");

        // The newest migration as if it had never run.
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let (version, description): (i64, String) = sqlx::query_as(
            "SELECT version, description FROM _sqlx_migrations ORDER BY version DESC LIMIT 1",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(version)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let d = w.doctor().await;
        d.failed();
        d.has(&format!(
            "FAIL  database {shown} is not migrated: 1 of {total} migrations are pending ({version} \"{description}\") — run `waiver migrate`"
        ));
        d.shows_none_of(&SECRETS);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_slack_token_is_named_and_the_slack_checks_after_it_skipped() {
    let mut w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    let wrong = "xoxb-refused-7c1d99e0";
    w.set("SLACK_BOT_TOKEN", wrong);
    let d = w.doctor().await;
    d.failed();
    d.has("FAIL  Slack token is refused (invalid_auth) — set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-…, on the app's OAuth & Permissions page; reinstall the app if it was revoked)");
    d.has("skip  Slack workspace, scopes, channels and people — they need a valid token");
    d.has("skip  Teams — not configured (TEAMS_APP_ID is not set)");
    d.shows_none_of(&[wrong, BOT_TOKEN, SIGNING_SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_is_named_and_the_lookups_it_blocks_skipped() {
    let w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    let granted: Vec<&str> = waiver::chat::slack::probe::bot_scopes()
        .into_iter()
        .filter(|s| *s != "users:read")
        .collect();
    w.fake_slack().set_scopes(&granted);
    let d = w.doctor().await;
    d.failed();
    d.has("FAIL  Slack bot scopes: the token lacks users:read — add them under the app's OAuth & Permissions → Bot Token Scopes (as manifests/slack/app-manifest.yaml lists them), then reinstall the app to the workspace");
    d.has("skip  Slack people — looking them up needs the users:read scope, which the token lacks (see the scopes line)");
    d.has("ok    channel C0AIXLEGAL #c0aixlegal (Legal's channel in governance.toml): Waiver is a member");
    d.shows_none_of(&SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_does_not_exist_is_named_with_its_fix() {
    let w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    w.fake_slack().remove_channel("C0AIXRISK");
    let d = w.doctor().await;
    d.failed();
    d.has("FAIL  channel C0AIXRISK (Enterprise risk's channel in governance.toml) — not found in workspace T0NWIND01: fix the id in governance.toml (in Slack: the channel's name → About → Channel ID), or, if it is private, /invite @waiver in it");
    d.has("ok    channel C0AIXLEGAL #c0aixlegal (Legal's channel in governance.toml): Waiver is a member");
    d.shows_none_of(&SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_without_the_bot_is_named_with_the_invite_to_type() {
    let w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    w.fake_slack().remove_bot_from("C0AIXSTAKEHOLDERS");
    let d = w.doctor().await;
    d.failed();
    d.has("FAIL  channel C0AIXSTAKEHOLDERS (Business stakeholders' and Technical stakeholders' channel in governance.toml) — Waiver is not a member: /invite @waiver in #c0aixstakeholders");
    d.shows_none_of(&SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_deactivated_people_are_named_with_their_fix() {
    let w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    w.fake_slack().remove_user(&uid("grace.liu"));
    w.fake_slack().deactivate_user(&uid("ines.duarte"));
    let d = w.doctor().await;
    d.failed();
    let people = gov().people.len();
    d.has(&format!(
        "ok    Slack people: {} of {people} with a Slack id in governance.toml exist in workspace T0NWIND01 and are active",
        people - 2
    ));
    d.has("FAIL  person Grace Liu (grace.liu in governance.toml) — Slack user U0NW00005 does not exist in workspace T0NWIND01: fix their slack.user in governance.toml (in Slack: their profile → ⋮ → Copy member ID)");
    d.has("FAIL  person Inês Duarte (ines.duarte in governance.toml) — Slack user U0NW00007 is deactivated: give their roles in governance.toml to someone active, or reactivate the account");
    d.shows_none_of(&SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_teams_credentials_are_named_without_the_password() {
    let mut w = World::new(TestDb::sqlite().await)
        .with_teams()
        .await
        .installed(&[])
        .await;
    let wrong = "not-the-teams-password-41b7";
    w.set("TEAMS_APP_PASSWORD", wrong);
    let d = w.doctor().await;
    d.failed();
    d.has(&format!(
        "FAIL  Teams credentials are refused by {} (HTTP 401 invalid_client) — check TEAMS_APP_ID, TEAMS_APP_PASSWORD (a client secret of that app registration that has not expired) and TEAMS_TENANT_ID",
        w.teams.as_ref().unwrap().teams.token_url()
    ));
    d.has("skip  Slack — not configured (SLACK_BOT_TOKEN is not set)");
    // What Waiver stored is still checked.
    d.line("ok    Teams people: ");
    d.shows_none_of(&[wrong, APP_PASSWORD]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_teams_conversation_references_are_named_with_their_fix() {
    let risk = channel("risk");
    let w = World::new(TestDb::sqlite().await)
        .with_teams()
        .await
        .installed(&[risk.as_str(), "grace.liu"])
        .await;
    let d = w.doctor().await;
    d.failed();
    d.has(&format!(
        "FAIL  Teams channel {risk} (Enterprise risk's channel in governance.toml) — no conversation reference: add the Waiver app to that channel's team (in Teams: the team → ⋯ → Manage team → Apps), then, unless it is the team's General channel, @mention Waiver in the channel once"
    ));
    d.has("FAIL  person Grace Liu (grace.liu in governance.toml) — no Teams chat with Waiver yet: they message Waiver once in Teams, or a Teams admin installs the app for them (Teams admin center → Teams apps → Setup policies → Installed apps)");
    d.has(&format!(
        "ok    Teams channel {} (Legal's channel in governance.toml): Waiver has its conversation reference",
        channel("legal")
    ));
    d.shows_none_of(&SECRETS);
}

/// Before the app is installed anywhere, every channel and person lacks a reference:
/// one failure says so, not one per channel and person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_waiver_never_heard_from_is_one_failure() {
    let w = World::new(TestDb::sqlite().await).with_teams().await;
    w.db.store().await;
    let d = w.doctor().await;
    d.failed();
    let t = tenant();
    d.has(&format!(
        "FAIL  Teams: Waiver has never heard from tenant {t} — upload the app (`waiver teams-package`) in the Teams admin center, add it to the teams of governance.toml's channels, and install it for its people (Setup policies → Installed apps)"
    ));
    d.has(&format!(
        "skip  Teams channels and people — Waiver has no conversation reference in tenant {t} yet (see above)"
    ));
    assert_eq!(
        d.lines().iter().filter(|l| l.starts_with("FAIL")).count(),
        1,
        "{}",
        d.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_governance_file_is_named_field_by_field() {
    let dir = TempDir::new();
    let path = dir.path.join("governance.toml");
    let broken = SHIPPED.replace(
        "approvers = [\"ai-governance-board\", \"ciso\"]",
        "approvers = [\"ai-governance-board\", \"cisoo\"]",
    );
    assert_ne!(broken, SHIPPED);
    std::fs::write(&path, broken).unwrap();
    let mut w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    w.set("WAIVER_GOVERNANCE", path.display().to_string());
    let d = w.doctor().await;
    d.failed();
    let shown = path.display();
    d.has(&format!(
        "FAIL  governance file {shown} has 1 problem(s) — fix each field below (`waiver check {shown}` lists them too)"
    ));
    d.has(&format!(
        "FAIL  governance file {shown}: tiers.high.approvers[1]: unknown role \"cisoo\""
    ));
    d.has("skip  Slack channels and people — governance.toml is invalid (see above)");
    d.has("ok    Slack bot scopes: the token has all 9 that manifests/slack/app-manifest.yaml asks for");
    d.shows_none_of(&SECRETS);
}

/// The demo's fakes (`waiver demo`, `waiver demo --teams`) and the governance file it
/// ships are a consistent workspace and tenant: the doctor finds nothing wrong once the
/// app is installed there, as the demo installs it (in every channel's team) and as a
/// Teams admin would for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_against_the_demos_fake_workspace_and_tenant() {
    let g = gov();
    let clock = waiver::clock::Clock::System;
    let slack = waiver::demo::slack::fake(&g, clock.clone()).await;
    let teams = waiver::demo::teams::fake(&g, clock).await.unwrap();
    let slack_config = waiver::demo::slack::config(&slack);
    let teams_config = waiver::demo::teams::config(&teams);
    let mut w = World::new(TestDb::sqlite().await);
    w.slack_env(&slack_config);
    w.teams_env(&teams_config);
    w.db.store().await;
    // Waiver runs as the demo runs it, while the admin installs the app.
    let config = waiver::config::Config {
        slack: Some(slack_config),
        teams: Some(teams_config),
        ..common::config(&w.db, String::new())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = waiver::app::start(
        config,
        listener,
        waiver::app::Options {
            no_scheduler: true,
            no_delivery: true,
            ..Default::default()
        },
    )
    .await
    .expect("waiver starts");
    let tenant = Tenant::new(teams, running.addr);
    let channels = waiver::demo::teams::install(&tenant, &g).await.unwrap();
    assert_eq!(channels, teams_channels().len());
    for p in &g.people {
        let reply = tenant.install_personal(&member(p.id.as_str())).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    running.stop().await;
    w.slack = Some(slack);
    w.teams = Some(tenant);
    let d = w.doctor().await;
    d.passed();
    d.line("ok    Slack token is valid ");
    d.line("ok    Teams credentials obtain a token ");
    d.line("ok    Teams people: all ");
}

/// One list of bot scopes: the manifest's (read here line by line), the doctor's,
/// and what the fake Slack grants by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctors_scopes_are_the_manifests_and_the_fakes() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/slack/app-manifest.yaml"),
    )
    .unwrap();
    let mut in_bot = false;
    let mut listed = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t == "bot:" {
            in_bot = true;
        } else if in_bot && t.starts_with("- ") {
            listed.push(t[2..].split_whitespace().next().unwrap().to_string());
        } else if in_bot && !t.is_empty() && !t.starts_with('#') {
            break;
        }
    }
    let doctor: Vec<String> = waiver::chat::slack::probe::bot_scopes()
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(doctor, listed);
    for needed in ["channels:read", "groups:read", "users:read", "chat:write"] {
        assert!(doctor.iter().any(|s| s == needed), "{needed}");
    }
    let fake = FakeSlack::start(BOT_TOKEN).await;
    waiver::chat::install_tls_provider();
    let answer = reqwest::Client::new()
        .post(format!("{}auth.test", fake.api_url()))
        .bearer_auth(BOT_TOKEN)
        .send()
        .await
        .unwrap();
    let header = answer.headers()["x-oauth-scopes"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(header, listed.join(","));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_s_app_token_is_checked_with_apps_connections_open() {
    let mut w = World::new(TestDb::sqlite().await)
        .with_slack()
        .await
        .installed(&[])
        .await;
    let app_token = "xapp-1-A0WAIVER-1-doctor";
    let _socket = w.fake_slack().enable_socket_mode(app_token).await;
    w.env.remove("SLACK_SIGNING_SECRET");
    w.set("SLACK_SOCKET_MODE", "1");
    w.set("SLACK_APP_TOKEN", app_token);
    let d = w.doctor().await;
    assert_eq!(d.code, 0, "{}", d.out);
    d.has(
        "ok    Slack Socket Mode: the app-level token opens a connection (apps.connections.open)",
    );
    let wrong = "xapp-1-A0WAIVER-1-wrong";
    w.set("SLACK_APP_TOKEN", wrong);
    let d = w.doctor().await;
    d.failed();
    d.has("FAIL  Slack Socket Mode: apps.connections.open refuses the app-level token (invalid_auth) — set SLACK_APP_TOKEN to a token from the app's Basic Information → App-Level Tokens with the connections:write scope, and turn Socket Mode on for the app (manifests/slack/app-manifest-socket-mode.yaml)");
    d.shows_none_of(&[wrong, app_token, BOT_TOKEN]);
}

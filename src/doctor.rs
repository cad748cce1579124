//! `waiver doctor`: the live configuration (what `waiver serve` reads) checked
//! against the governance file, the database and the chat platforms, one line per
//! check, each failure with its fix.
//!
//! Checks, in order: the configuration; the governance file; the database (reachable,
//! and migrated exactly as far as this build, without migrating it); Slack when
//! configured (the bot token, its workspace, its scopes against the app manifest,
//! every channel the governance file names and the bot's membership, every person's
//! Slack account); Teams when configured (the credentials against the token endpoint,
//! the OpenID metadata and its signing keys, the tenant, and a stored conversation
//! reference for every channel and person). Every check runs; one that depends on a
//! failed one says `skip` and why.
//!
//! Limits: it reads, never writes (no migration, no message posted). Slack's signing
//! secret and Socket Mode's app token cannot be checked from here: only Slack's
//! requests prove them. Secrets never appear in its output; the database URL is shown
//! redacted.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::chat::slack::probe::{self, Channel, Probe, ProbeError, User};
use crate::chat::teams::auth::check_keys;
use crate::chat::teams::deliver::{ConversationRef, TeamsDelivery, TokenError, tenant_key};
use crate::config::{
    Config, ConfigError, DEFAULT_SLACK_API_URL, DEFAULT_TEAMS_OPENID_METADATA_URL, SlackConfig,
    TeamsConfig, redact_url, scrub,
};
use crate::governance::{self, Channels, Governance};
use crate::message::{Address, Platform};
use crate::store::{self, Inspection, MigrationInfo, Schema};

/// How long one platform call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long all of Slack's lookups may take together.
const SLACK_DEADLINE: Duration = Duration::from_secs(60);

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Not checked: it depends on a failed check, or does not apply.
    Skip,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub status: Status,
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        write!(f, "{tag:<6}{}", self.text)
    }
}

/// The lines so far; each is handed to `echo` as it is found (the CLI prints it).
pub struct Report<'a> {
    pub lines: Vec<Line>,
    echo: Box<dyn FnMut(&Line) + Send + 'a>,
}

impl<'a> Report<'a> {
    pub fn new(echo: impl FnMut(&Line) + Send + 'a) -> Self {
        Self {
            lines: Vec::new(),
            echo: Box::new(echo),
        }
    }

    fn push(&mut self, status: Status, text: impl Into<String>) {
        let line = Line {
            status,
            text: text.into(),
        };
        (self.echo)(&line);
        self.lines.push(line);
    }

    fn ok(&mut self, text: impl Into<String>) {
        self.push(Status::Ok, text);
    }

    fn fail(&mut self, text: impl Into<String>) {
        self.push(Status::Fail, text);
    }

    fn skip(&mut self, text: impl Into<String>) {
        self.push(Status::Skip, text);
    }

    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self.lines.iter().any(|l| l.status == Status::Fail)
    }

    pub fn failures(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.status == Status::Fail)
            .count()
    }
}

/// Runs every check on `config` (as `Config::from_env` read it).
pub async fn run(config: Result<Config, ConfigError>, report: &mut Report<'_>) {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            report.fail(format!(
                "configuration — {e}: fix the environment `waiver serve` runs with"
            ));
            report.skip("governance, database, Slack and Teams — the configuration cannot be read");
            return;
        }
    };
    configuration(&config, report);
    let file = config
        .governance
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| config.governance.display().to_string());
    let gov = governance_file(&config.governance, report);
    let mut db = database(&config.database_url, report).await;
    match &config.slack {
        Some(slack) => {
            let ctx = Context {
                gov: gov.as_ref(),
                file: &file,
            };
            check_slack(slack, &ctx, report).await;
        }
        None => report.skip("Slack — not configured (SLACK_BOT_TOKEN is not set)"),
    }
    match &config.teams {
        Some(teams) => {
            let ctx = Context {
                gov: gov.as_ref(),
                file: &file,
            };
            check_teams(teams, &ctx, db.as_mut(), report).await;
        }
        None => report.skip("Teams — not configured (TEAMS_APP_ID is not set)"),
    }
    if let Some(db) = db {
        db.close().await;
    }
}

/// What the platform checks need from the governance check.
struct Context<'a> {
    /// `None`: the governance file is invalid (checks that need it are skipped).
    gov: Option<&'a Governance>,
    /// The governance file's name, as lines mention it.
    file: &'a str,
}

fn configuration(config: &Config, report: &mut Report<'_>) {
    let slack = match &config.slack {
        Some(s) if s.socket_mode.is_some() => "Slack (Socket Mode)",
        Some(_) => "Slack (Events API over HTTP)",
        None => "",
    };
    let teams = if config.teams.is_some() { "Teams" } else { "" };
    let platforms: Vec<&str> = [slack, teams]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if platforms.is_empty() {
        report.fail(format!("configuration — {}", crate::app::NO_PLATFORM));
    } else {
        report.ok(format!(
            "configuration read: {} configured; governance {}; listening on {}",
            platforms.join(" and "),
            config.governance.display(),
            config.listen
        ));
    }
}

fn governance_file(path: &Path, report: &mut Report<'_>) -> Option<Governance> {
    match governance::load(path) {
        Ok(gov) => {
            report.ok(format!(
                "governance file {} is valid ({} people, {} roles, {} policies; sha256 {})",
                path.display(),
                gov.people.len(),
                gov.roles.len(),
                gov.policies.len(),
                gov.hash.short()
            ));
            Some(gov)
        }
        Err(governance::LoadError::Invalid { path, errors }) => {
            report.fail(format!(
                "governance file {path} has {} problem(s) — fix each field below (`waiver check {path}` lists them too)",
                errors.len()
            ));
            for e in errors {
                report.fail(format!("governance file {path}: {e}"));
            }
            None
        }
        Err(e) => {
            let text = e.to_string().replace('\n', " ");
            report.fail(format!(
                "governance file — {text}: fix it, or point WAIVER_GOVERNANCE at the right file"
            ));
            None
        }
    }
}

fn described(m: &MigrationInfo) -> String {
    format!("{} \"{}\"", m.version, m.description)
}

/// Checks the database without changing it; the open connection, if there is one.
async fn database(url: &str, report: &mut Report<'_>) -> Option<Inspection> {
    let shown = redact_url(url);
    let mut db = match store::inspect(url).await {
        Ok(Some(db)) => db,
        Ok(None) => {
            report.fail(format!(
                "database {shown} — the file does not exist: run `waiver migrate` to create it (or fix WAIVER_DATABASE_URL)"
            ));
            return None;
        }
        // Its text quotes only the scheme, and says what to use.
        Err(e @ store::StoreError::Url(_)) => {
            report.fail(format!("database {shown} — {e}"));
            return None;
        }
        // Its text says what to check.
        Err(e @ store::StoreError::Unreachable(_)) => {
            report.fail(format!("database {shown} — {}", scrub(&e.to_string(), url)));
            return None;
        }
        Err(e) => {
            report.fail(format!(
                "database {shown} cannot be opened — {}: check WAIVER_DATABASE_URL (user, password, host, port and database name)",
                scrub(&e.to_string(), url)
            ));
            return None;
        }
    };
    match db.schema().await {
        Ok(Schema::Current { latest, count }) => report.ok(format!(
            "database {shown} is reachable and migrated ({count} migrations, the latest {})",
            described(&latest)
        )),
        Ok(Schema::Behind { pending, total }) if pending.len() == total => report.fail(format!(
            "database {shown} holds no Waiver tables yet — run `waiver migrate`"
        )),
        Ok(Schema::Behind { pending, total }) => report.fail(format!(
            "database {shown} is not migrated: {} of {total} migrations are pending ({}) — run `waiver migrate`",
            pending.len(),
            pending.iter().map(described).collect::<Vec<_>>().join(", ")
        )),
        Ok(Schema::Ahead { unknown }) => report.fail(format!(
            "database {shown} was migrated by a newer Waiver: migration {} is unknown to this build (waiver {}) — run that newer Waiver, or restore a backup taken before it migrated",
            unknown.iter().map(described).collect::<Vec<_>>().join(", "),
            env!("CARGO_PKG_VERSION")
        )),
        Ok(Schema::Dirty { failed }) => report.fail(format!(
            "database {shown}: migration {} failed part-way — restore a backup taken before it, then run `waiver migrate`",
            described(&failed)
        )),
        Ok(Schema::Changed { changed }) => report.fail(format!(
            "database {shown}: applied migration {} differs from this build's — another build of Waiver migrated it; run that build, or restore a backup",
            described(&changed)
        )),
        Err(e) => report.fail(format!(
            "database {shown} cannot be read — {}",
            scrub(&e.to_string(), url)
        )),
    }
    Some(db)
}

/// `name's` (`names'`).
fn possessive(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}'")
    } else {
        format!("{name}'s")
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Every channel the governance file names on one platform, once (roles' channels
/// in role order, then departments'), with who uses it: (channel id, "X's and Y's channel in governance.toml").
fn channels_of(
    gov: &Governance,
    file: &str,
    pick: impl Fn(&Channels) -> Option<&String>,
) -> Vec<(String, String)> {
    let mut users: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |channel: &String, who: String| match users.iter_mut().find(|(c, _)| c == channel)
    {
        Some((_, names)) => names.push(who),
        None => users.push((channel.clone(), vec![who])),
    };
    for role in gov.roles.values() {
        if let Some(c) = pick(&role.channels) {
            add(c, possessive(&role.name));
        }
    }
    for d in &gov.form.departments {
        if let Some(c) = pick(&d.channels) {
            add(c, possessive(&format!("{} department", d.label)));
        }
    }
    users
        .into_iter()
        .map(|(c, names)| (c, format!("{} channel in {file}", and_list(&names))))
        .collect()
}

/// The error codes that mean "this token is not (or no longer) valid".
const REFUSED_TOKEN: [&str; 6] = [
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
];

async fn check_slack(slack: &SlackConfig, ctx: &Context<'_>, report: &mut Report<'_>) {
    let probe = Probe::new(slack, CALL_TIMEOUT, SLACK_DEADLINE);
    let me = match probe.identity().await {
        Ok(me) => me,
        Err(e) => {
            match &e {
                ProbeError::Api { code, .. } if REFUSED_TOKEN.contains(&code.as_str()) => {
                    report.fail(format!(
                        "Slack token is refused ({code}) — set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-…, on the app's OAuth & Permissions page; reinstall the app if it was revoked)"
                    ))
                }
                _ => report.fail(format!(
                    "Slack Web API at {} gives no answer to auth.test ({e}) — check SLACK_API_URL (default {DEFAULT_SLACK_API_URL}) and that this host reaches it",
                    slack.api_url
                )),
            }
            report.skip("Slack workspace, scopes, channels and people — they need a valid token");
            return;
        }
    };
    let bot = me.user.clone().unwrap_or_else(|| "waiver".into());
    if me.bot_id.is_none() {
        report.fail(format!(
            "Slack token is valid but not a bot token (team {}, user {}) — set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-…), not a user token",
            me.team_id, me.user_id
        ));
    } else {
        report.ok(format!(
            "Slack token is valid (team {} \"{}\", bot {} @{bot})",
            me.team_id, me.team, me.user_id
        ));
    }
    match ctx.gov {
        Some(gov) if gov.slack_workspaces.contains(&me.team_id) => report.ok(format!(
            "Slack workspace {} is listed in {} (platforms.slack_workspaces)",
            me.team_id, ctx.file
        )),
        Some(gov) => report.fail(format!(
            "Slack workspace {} (the token's) is not in platforms.slack_workspaces of {} ({}) — people act only from a listed workspace: add it there, or use the bot token of a listed workspace",
            me.team_id,
            ctx.file,
            gov.slack_workspaces.join(", ")
        )),
        None => {}
    }
    let required = probe::bot_scopes();
    match &me.scopes {
        None => report.fail(format!(
            "Slack bot scopes cannot be checked — the answer to auth.test carried no {} header (is SLACK_API_URL a proxy that drops it?)",
            probe::SCOPES_HEADER
        )),
        Some(granted) => {
            let missing: Vec<&str> = required
                .iter()
                .copied()
                .filter(|s| !granted.iter().any(|g| g == s))
                .collect();
            if missing.is_empty() {
                report.ok(format!(
                    "Slack bot scopes: the token has all {} that {} asks for",
                    required.len(),
                    probe::MANIFEST_PATH
                ));
            } else {
                report.fail(format!(
                    "Slack bot scopes: the token lacks {} — add them under the app's OAuth & Permissions → Bot Token Scopes (as {} lists them), then reinstall the app to the workspace",
                    missing.join(", "),
                    probe::MANIFEST_PATH
                ));
            }
        }
    }
    if let Some(app_token) = &slack.socket_mode {
        match probe.socket_mode(app_token).await {
            Ok(()) => report.ok("Slack Socket Mode: the app-level token opens a connection (apps.connections.open)"),
            Err(ProbeError::Api { code, .. }) => report.fail(format!(
                "Slack Socket Mode: apps.connections.open refuses the app-level token ({code}) — set SLACK_APP_TOKEN to a token from the app's Basic Information → App-Level Tokens with the connections:write scope, and turn Socket Mode on for the app (manifests/slack/app-manifest-socket-mode.yaml)"
            )),
            Err(e) => report.fail(format!(
                "Slack Socket Mode: apps.connections.open gives no answer ({e}) — check SLACK_API_URL and that this host reaches Slack"
            )),
        }
    }
    let Some(gov) = ctx.gov else {
        report.skip(format!(
            "Slack channels and people — {} is invalid (see above)",
            ctx.file
        ));
        return;
    };
    slack_channels(&probe, gov, ctx.file, &me.team_id, &bot, report).await;
    slack_people(&probe, gov, ctx.file, &me.team_id, report).await;
}

/// A scope a lookup lacked, if that is why it failed.
fn missing_scope(e: &ProbeError) -> Option<String> {
    match e {
        ProbeError::Api { code, needed } if code == "missing_scope" => {
            Some(needed.clone().unwrap_or_else(|| "a read".into()))
        }
        _ => None,
    }
}

async fn slack_channels(
    probe: &Probe,
    gov: &Governance,
    file: &str,
    team: &str,
    bot: &str,
    report: &mut Report<'_>,
) {
    let channels = channels_of(gov, file, |c| c.slack.as_ref());
    if channels.is_empty() {
        report.skip(format!("Slack channels — {file} names none"));
        return;
    }
    let ids: Vec<String> = channels.iter().map(|(id, _)| id.clone()).collect();
    let answers = probe.channels(&ids).await;
    let mut unscoped: Vec<(String, String)> = Vec::new();
    for ((id, label), answer) in channels.iter().zip(answers) {
        match answer {
            Channel::Found {
                name,
                is_archived: true,
                ..
            } => report.fail(format!(
                "channel {id}{} ({label}) — the channel is archived: unarchive it, or name another channel in {file}",
                hash_name(&name)
            )),
            Channel::Found {
                name,
                is_member: true,
                ..
            } => report.ok(format!(
                "channel {id}{} ({label}): Waiver is a member",
                hash_name(&name)
            )),
            Channel::Found { name, .. } => report.fail(format!(
                "channel {id} ({label}) — Waiver is not a member: /invite @{bot} in #{}",
                name.unwrap_or_else(|| id.clone())
            )),
            Channel::NotFound => report.fail(format!(
                "channel {id} ({label}) — not found in workspace {team}: fix the id in {file} (in Slack: the channel's name → About → Channel ID), or, if it is private, /invite @{bot} in it"
            )),
            Channel::Failed(e) => match missing_scope(&e) {
                Some(scope) => unscoped.push((id.clone(), scope)),
                None => report.fail(format!(
                    "channel {id} ({label}) — cannot be looked up ({e}); run `waiver doctor` again"
                )),
            },
        }
    }
    if !unscoped.is_empty() {
        let mut scopes: Vec<String> = unscoped.iter().map(|(_, s)| s.clone()).collect();
        scopes.sort();
        scopes.dedup();
        let ids: Vec<String> = unscoped.into_iter().map(|(id, _)| id).collect();
        report.skip(format!(
            "channel {} — looking them up needs the {} scope, which the token lacks (see the scopes line)",
            ids.join(", "),
            scopes.join(", ")
        ));
    }
}

fn hash_name(name: &Option<String>) -> String {
    name.as_ref().map(|n| format!(" #{n}")).unwrap_or_default()
}

async fn slack_people(
    probe: &Probe,
    gov: &Governance,
    file: &str,
    team: &str,
    report: &mut Report<'_>,
) {
    let (here, elsewhere): (Vec<_>, Vec<_>) = gov
        .people
        .iter()
        .filter_map(|p| p.slack.as_ref().map(|s| (p, s)))
        .partition(|(_, s)| s.workspace == team);
    if here.is_empty() && elsewhere.is_empty() {
        report.skip(format!(
            "Slack people — {file} names no one with a Slack id"
        ));
        return;
    }
    let ids: Vec<String> = here.iter().map(|(_, s)| s.user.clone()).collect();
    let answers = probe.users(&ids).await;
    let mut active = 0;
    let mut fails = Vec::new();
    let mut unscoped: Vec<String> = Vec::new();
    for ((p, s), answer) in here.iter().zip(answers) {
        let who = format!("person {} ({} in {file})", p.name, p.id);
        match answer {
            User::Found { deleted: false, .. } => active += 1,
            User::Found { deleted: true, .. } => fails.push(format!(
                "{who} — Slack user {} is deactivated: give their roles in {file} to someone active, or reactivate the account",
                s.user
            )),
            User::NotFound => fails.push(format!(
                "{who} — Slack user {} does not exist in workspace {team}: fix their slack.user in {file} (in Slack: their profile → ⋮ → Copy member ID)",
                s.user
            )),
            User::Failed(e) => match missing_scope(&e) {
                Some(scope) => {
                    if !unscoped.contains(&scope) {
                        unscoped.push(scope);
                    }
                }
                None => fails.push(format!(
                    "{who} — Slack user {} cannot be looked up ({e}); run `waiver doctor` again",
                    s.user
                )),
            },
        }
    }
    if active > 0 {
        let all = if active == here.len() {
            format!("all {active}")
        } else {
            format!("{active} of {}", here.len())
        };
        report.ok(format!(
            "Slack people: {all} with a Slack id in {file} exist in workspace {team} and are active"
        ));
    }
    for f in fails {
        report.fail(f);
    }
    if !unscoped.is_empty() {
        report.skip(format!(
            "Slack people — looking them up needs the {} scope, which the token lacks (see the scopes line)",
            unscoped.join(", ")
        ));
    }
    if !elsewhere.is_empty() {
        let names: Vec<String> = elsewhere.iter().map(|(p, _)| p.id.to_string()).collect();
        report.skip(format!(
            "Slack people of other workspaces ({}) — SLACK_BOT_TOKEN is for {team}, so they cannot be looked up",
            names.join(", ")
        ));
    }
}

async fn check_teams(
    teams: &TeamsConfig,
    ctx: &Context<'_>,
    db: Option<&mut Inspection>,
    report: &mut Report<'_>,
) {
    crate::chat::install_tls_provider();
    let http = match reqwest::Client::builder().timeout(CALL_TIMEOUT).build() {
        Ok(h) => h,
        Err(e) => {
            report.fail(format!("Teams — cannot build an HTTP client ({e})"));
            return;
        }
    };
    let token_url = redact_url(&teams.token_url);
    let delivery = TeamsDelivery::new(
        teams.clone(),
        http.clone(),
        CALL_TIMEOUT,
        Default::default(),
    );
    match delivery.check_token().await {
        Ok(()) => report.ok(format!(
            "Teams credentials obtain a token from {token_url} (app {})",
            teams.app_id
        )),
        Err(TokenError::Refused(why)) => report.fail(format!(
            "Teams credentials are refused by {token_url} ({why}) — check TEAMS_APP_ID, TEAMS_APP_PASSWORD (a client secret of that app registration that has not expired) and TEAMS_TENANT_ID"
        )),
        Err(TokenError::Unavailable(why)) => report.fail(format!(
            "Teams token endpoint {token_url} gives no token ({why}) — check TEAMS_TOKEN_URL (or TEAMS_TENANT_ID, which the default is built from) and that this host reaches it"
        )),
    }
    let metadata = redact_url(&teams.openid_metadata_url);
    match check_keys(&http, &teams.openid_metadata_url).await {
        Ok(k) if k.for_teams > 0 => report.ok(format!(
            "Teams signing keys: {} fetched through {metadata}, {} endorsed for msteams",
            k.keys, k.for_teams
        )),
        Ok(k) => report.fail(format!(
            "Teams signing keys: {} fetched through {metadata}, none endorsed for msteams — Waiver would refuse every Teams request: TEAMS_OPENID_METADATA_URL must be the Bot Framework's (default {DEFAULT_TEAMS_OPENID_METADATA_URL})",
            k.keys
        )),
        Err(e) => report.fail(format!(
            "Teams OpenID metadata {metadata}: {e} — check TEAMS_OPENID_METADATA_URL (default {DEFAULT_TEAMS_OPENID_METADATA_URL}) and that this host reaches it"
        )),
    }
    let Some(gov) = ctx.gov else {
        report.skip(format!(
            "Teams tenant and conversation references — {} is invalid (see above)",
            ctx.file
        ));
        return;
    };
    let tenant = teams.tenant_id.as_str();
    if gov
        .teams_tenants
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tenant))
    {
        report.ok(format!(
            "Teams tenant {tenant} (TEAMS_TENANT_ID) is listed in {} (platforms.teams_tenants)",
            ctx.file
        ));
    } else {
        report.fail(format!(
            "Teams tenant {tenant} (TEAMS_TENANT_ID) is not in platforms.teams_tenants of {} ({}) — people act only from a listed tenant: add it there, or set TEAMS_TENANT_ID to a listed one",
            ctx.file,
            gov.teams_tenants.join(", ")
        ));
    }
    let Some(db) = db else {
        report.skip("Teams conversation references — the database cannot be read (see above)");
        return;
    };
    teams_references(teams, gov, ctx.file, db, report).await;
}

/// Whether Waiver knows how to reach each Teams channel and person: a conversation
/// reference stored from an activity (an install, a message), with a serviceUrl it
/// may call.
async fn teams_references(
    teams: &TeamsConfig,
    gov: &Governance,
    file: &str,
    db: &mut Inspection,
    report: &mut Report<'_>,
) {
    let tenant = teams.tenant_id.as_str();
    let channels = channels_of(gov, file, |c| c.teams.as_ref());
    let (here, elsewhere): (Vec<_>, Vec<_>) = gov
        .people
        .iter()
        .filter_map(|p| p.teams.as_ref().map(|t| (p, t)))
        .partition(|(_, t)| t.tenant.eq_ignore_ascii_case(tenant));
    let person_key = |aad: &str| {
        Address::Direct {
            user: aad.to_string(),
        }
        .target()
    };
    let mut keys = vec![tenant_key(tenant)];
    keys.extend(channels.iter().map(|(c, _)| c.clone()));
    keys.extend(here.iter().map(|(_, t)| person_key(&t.aad_object_id)));
    let known: HashMap<String, String> = match db.conversations(Platform::Teams, &keys).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            report.skip("Teams conversation references — the database is not migrated (see above)");
            return;
        }
        Err(e) => {
            report.fail(format!(
                "Teams conversation references cannot be read from the database — {e}"
            ));
            return;
        }
    };
    // A stored reference is usable if Waiver may call its serviceUrl.
    let unusable = |raw: &String| -> Option<String> {
        match ConversationRef::parse(raw) {
            Some(r) if teams.allows_service_url(&r.service_url) => None,
            Some(r) => Some(format!(
                "its serviceUrl {} is not in TEAMS_SERVICE_URLS: add it there (comma-separated)",
                r.service_url
            )),
            None => Some("the stored reference is unreadable: reinstall the app there".into()),
        }
    };
    match known.get(&tenant_key(tenant)) {
        Some(raw) => match unusable(raw) {
            None => report.ok(format!(
                "Teams: Waiver has heard from tenant {tenant} (the app is installed there)"
            )),
            Some(why) => report.fail(format!("Teams tenant {tenant} — {why}")),
        },
        None => {
            report.fail(format!(
                "Teams: Waiver has never heard from tenant {tenant} — upload the app (`waiver teams-package`) in the Teams admin center, add it to the teams of {file}'s channels, and install it for its people (Setup policies → Installed apps)"
            ));
            // Nothing can be known then: one line, not one per channel and person.
            if known.is_empty() {
                report.skip(format!(
                    "Teams channels and people — Waiver has no conversation reference in tenant {tenant} yet (see above)"
                ));
                return;
            }
        }
    }
    for (id, label) in &channels {
        match known.get(id) {
            Some(raw) => match unusable(raw) {
                None => report.ok(format!(
                    "Teams channel {id} ({label}): Waiver has its conversation reference"
                )),
                Some(why) => report.fail(format!("Teams channel {id} ({label}) — {why}")),
            },
            None => report.fail(format!(
                "Teams channel {id} ({label}) — no conversation reference: add the Waiver app to that channel's team (in Teams: the team → ⋯ → Manage team → Apps), then, unless it is the team's General channel, @mention Waiver in the channel once"
            )),
        }
    }
    if here.is_empty() && elsewhere.is_empty() {
        report.skip(format!(
            "Teams people — {file} names no one with a Teams id"
        ));
        return;
    }
    let mut reached = 0;
    let mut fails = Vec::new();
    for (p, t) in &here {
        let who = format!("person {} ({} in {file})", p.name, p.id);
        match known.get(&person_key(&t.aad_object_id)) {
            Some(raw) => match unusable(raw) {
                None => reached += 1,
                Some(why) => fails.push(format!("{who} — Teams chat with Waiver: {why}")),
            },
            None => fails.push(format!(
                "{who} — no Teams chat with Waiver yet: they message Waiver once in Teams, or a Teams admin installs the app for them (Teams admin center → Teams apps → Setup policies → Installed apps)"
            )),
        }
    }
    if reached > 0 {
        let all = if reached == here.len() {
            format!("all {reached}")
        } else {
            format!("{reached} of {}", here.len())
        };
        report.ok(format!(
            "Teams people: {all} with a Teams id in {file} have a chat with Waiver"
        ));
    }
    for f in fails {
        report.fail(f);
    }
    if !elsewhere.is_empty() {
        let names: Vec<String> = elsewhere.iter().map(|(p, _)| p.id.to_string()).collect();
        report.skip(format!(
            "Teams people of other tenants ({}) — the bot is registered in {tenant} only",
            names.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_and_aligned() {
        let line = |status, text: &str| {
            Line {
                status,
                text: text.into(),
            }
            .to_string()
        };
        assert_eq!(line(Status::Ok, "a"), "ok    a");
        assert_eq!(line(Status::Fail, "b"), "FAIL  b");
        assert_eq!(line(Status::Skip, "c"), "skip  c");
    }

    #[test]
    fn channel_labels_name_everyone_who_uses_the_channel() {
        assert_eq!(possessive("Legal"), "Legal's");
        assert_eq!(possessive("Department heads"), "Department heads'");
        assert_eq!(
            and_list(&["A's".into(), "B's".into(), "C's".into()]),
            "A's, B's and C's"
        );
        let gov = governance::parse(include_str!("../manifests/governance.toml")).unwrap();
        let slack = channels_of(&gov, "governance.toml", |c| c.slack.as_ref());
        let label = |id: &str| {
            slack
                .iter()
                .find(|(c, _)| c == id)
                .map(|(_, l)| l.clone())
                .unwrap()
        };
        assert_eq!(
            label("C0AIXRISK"),
            "Enterprise risk's channel in governance.toml"
        );
        assert_eq!(
            label("C0AIXSTAKEHOLDERS"),
            "Business stakeholders' and Technical stakeholders' channel in governance.toml"
        );
        let mut ids: Vec<&String> = slack.iter().map(|(c, _)| c).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "each channel once");
    }
}

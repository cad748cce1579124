//! Settings from the environment (DESIGN §5). Secrets are [`Secret`]s: their `Debug`
//! and `Display` never show the value.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A value that must never reach logs, errors or the audit trail.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that needs it (signing, an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared by digest so that the comparison's
    /// timing says nothing about the secret.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        Sha256::digest(given.as_bytes()) == Sha256::digest(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL as it may be shown: the password in its userinfo and the value of every
/// password-, secret- or token-like query parameter replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            // The userinfo ends at the last '@' before the path.
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => {
                    let user = rest[..at].split(':').next().unwrap_or_default();
                    let hidden = if rest[..at].contains(':') { ":***" } else { "" };
                    format!("{scheme}://{user}{hidden}{}", &rest[at..])
                }
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|s| key.contains(s))
}

/// `text` with every secret that `url` carries (its password, secret query values)
/// replaced by `***`: for error chains whose lower layers may quote the URL.
pub fn scrub(text: &str, url: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    if let Some((_, rest)) = base.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some((_, password)) = rest[..at].split_once(':')
        {
            secrets.push(password.to_string());
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && is_secret_key(key)
        {
            secrets.push(value.to_string());
        }
    }
    let mut out = text.replace(url, &redact_url(url));
    for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
        out = out.replace(&secret, "***");
    }
    out
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://waiver.db";
pub const DEFAULT_GOVERNANCE: &str = "manifests/governance.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_TEAMS_OPENID_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
pub const DEFAULT_TEAMS_SERVICE_URLS: &str = "https://smba.trafficmanager.net/";

/// Microsoft Teams, through the Bot Framework (a single-tenant bot).
#[derive(Clone, Debug)]
pub struct TeamsConfig {
    /// The bot's Microsoft App ID: the audience of inbound tokens.
    pub app_id: String,
    pub app_password: Secret,
    /// The tenant the bot is registered in (its outbound tokens come from there).
    pub tenant_id: String,
    pub openid_metadata_url: String,
    pub token_url: String,
    /// The serviceUrl prefixes the bot will ever call.
    pub service_urls: Vec<String>,
}

impl TeamsConfig {
    /// Whether the bot may call `service_url`: the same scheme, host and port as one
    /// of the allowed URLs, under its path (at a `/`), with no user info. Plain text
    /// prefixes would let `https://smba.trafficmanager.net.evil.example/` through.
    pub fn allows_service_url(&self, service_url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(service_url) else {
            return false;
        };
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        self.service_urls.iter().any(|allowed| {
            let Ok(allowed) = reqwest::Url::parse(allowed) else {
                return false;
            };
            let dir = |path: &str| {
                if path.ends_with('/') {
                    path.to_string()
                } else {
                    format!("{path}/")
                }
            };
            url.scheme() == allowed.scheme()
                && url.host_str() == allowed.host_str()
                && url.port_or_known_default() == allowed.port_or_known_default()
                && dir(url.path()).starts_with(&dir(allowed.path()))
        })
    }
}

/// Whether `url` is HTTPS, or HTTP to this machine (tests, a local proxy).
fn secure_or_loopback(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => true,
        Ok(u) if u.scheme() == "http" => {
            let host = u.host_str().unwrap_or_default();
            host == "localhost"
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// The variables that configure Teams.
pub const TEAMS_VARIABLES: [&str; 6] = [
    "TEAMS_APP_ID",
    "TEAMS_APP_PASSWORD",
    "TEAMS_TENANT_ID",
    "TEAMS_OPENID_METADATA_URL",
    "TEAMS_TOKEN_URL",
    "TEAMS_SERVICE_URLS",
];

/// Every environment variable Waiver reads (DESIGN §5), besides `RUST_LOG`. The
/// packaging test checks the Dockerfile and Kubernetes manifests against it.
pub const VARIABLES: [&str; 20] = [
    "WAIVER_DATABASE_URL",
    "WAIVER_GOVERNANCE",
    "WAIVER_LISTEN",
    "WAIVER_PUBLIC_URL",
    "WAIVER_DASHBOARD_TOKEN",
    "WAIVER_DASHBOARD_USER_HEADER",
    "WAIVER_DASHBOARD_OPEN",
    "WAIVER_METRICS_TOKEN",
    "WAIVER_LOG_FORMAT",
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_API_URL",
    "SLACK_APP_TOKEN",
    "SLACK_SOCKET_MODE",
    TEAMS_VARIABLES[0],
    TEAMS_VARIABLES[1],
    TEAMS_VARIABLES[2],
    TEAMS_VARIABLES[3],
    TEAMS_VARIABLES[4],
    TEAMS_VARIABLES[5],
];

/// How log lines are written (`WAIVER_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `WAIVER_LOG_FORMAT`'s value; unset is text.
    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(ConfigError::LogFormat(other.to_string())),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// Verifies HTTP requests from Slack; optional in Socket Mode, where Slack sends
    /// nothing over HTTP.
    pub signing_secret: Option<Secret>,
    pub bot_token: Secret,
    /// `SLACK_APP_TOKEN` (`xapp-…`) when `SLACK_SOCKET_MODE=1`: events arrive over a
    /// websocket the bot opens, and no public URL is needed.
    pub socket_mode: Option<Secret>,
    /// Base URL of the Web API, without a trailing `/` (methods are appended as
    /// `{api_url}/{method}`).
    pub api_url: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub governance: PathBuf,
    pub listen: SocketAddr,
    pub slack: Option<SlackConfig>,
    pub teams: Option<TeamsConfig>,
    pub dashboard: DashboardAccess,
    /// `WAIVER_PUBLIC_URL`: the address people reach Waiver at (links in chat).
    pub public_url: Option<String>,
    /// `WAIVER_METRICS_TOKEN`: a bearer token `GET /metrics` asks for (none: open).
    pub metrics_token: Option<Secret>,
    pub log_format: LogFormat,
}

/// Who may see the register dashboard. With none of these set it refuses to serve.
#[derive(Clone, Debug, Default)]
pub struct DashboardAccess {
    /// `WAIVER_DASHBOARD_TOKEN`: a bearer token, or the login form's cookie.
    pub token: Option<Secret>,
    /// `WAIVER_DASHBOARD_USER_HEADER`: the header a reverse proxy sets to the signed-in
    /// person (their governance id or email); only compliance and admin roles see it.
    pub user_header: Option<String>,
    /// `WAIVER_DASHBOARD_OPEN=1`: anyone who can reach it (local use).
    pub open: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("WAIVER_LISTEN={0:?} is not an address like 127.0.0.1:3000")]
    Listen(String),
    #[error("{set} is set but {missing} is not: Slack needs both")]
    SlackIncomplete {
        set: &'static str,
        missing: &'static str,
    },
    #[error("SLACK_API_URL={0:?} is not an http(s) URL")]
    SlackApiUrl(String),
    #[error(
        "{set} is set but {missing} is not: Teams needs TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID"
    )]
    TeamsIncomplete {
        set: &'static str,
        missing: &'static str,
    },
    #[error("{name}={value:?} is not an http(s) URL")]
    TeamsUrl { name: &'static str, value: String },
    #[error(
        "TEAMS_SERVICE_URLS names {0:?}: each must be an https URL (http only to 127.0.0.1 or localhost)"
    )]
    TeamsServiceUrl(String),
    #[error("WAIVER_DASHBOARD_USER_HEADER={0:?} is not an HTTP header name")]
    DashboardHeader(String),
    #[error(
        "WAIVER_DASHBOARD_TOKEN is too short: use at least 16 characters (e.g. `openssl rand -hex 24`)"
    )]
    DashboardToken,
    #[error(
        "WAIVER_DASHBOARD_OPEN=1 serves the register to anyone who can connect, so it needs a loopback WAIVER_LISTEN (127.0.0.1:…), not {0:?}"
    )]
    DashboardOpen(String),
    #[error("WAIVER_PUBLIC_URL={0:?} is not an http(s) URL like https://waiver.example.com")]
    PublicUrl(String),
    #[error("WAIVER_LOG_FORMAT={0:?} is neither `text` nor `json`")]
    LogFormat(String),
    #[error(
        "SLACK_SOCKET_MODE={0:?}: use 1 to receive Slack events over Socket Mode, or leave it unset"
    )]
    SocketModeFlag(String),
    #[error(
        "SLACK_SOCKET_MODE=1 needs SLACK_APP_TOKEN, an app-level token (xapp-…) with the connections:write scope, and SLACK_BOT_TOKEN"
    )]
    SocketModeIncomplete,
    #[error("SLACK_APP_TOKEN is not an app-level token: it starts with xapp-")]
    AppToken,
    #[error(
        "WAIVER_METRICS_TOKEN is too short: use at least 16 characters (e.g. `openssl rand -hex 24`)"
    )]
    MetricsToken,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let listen_text = get("WAIVER_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text
            .parse()
            .map_err(|_| ConfigError::Listen(listen_text.clone()))?;
        let slack = slack(&get)?;
        let teams = teams(&get)?;
        let dashboard = DashboardAccess {
            token: get("WAIVER_DASHBOARD_TOKEN")
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            user_header: get("WAIVER_DASHBOARD_USER_HEADER").filter(|h| !h.is_empty()),
            open: get("WAIVER_DASHBOARD_OPEN").is_some_and(|v| v == "1"),
        };
        if let Some(h) = &dashboard.user_header
            && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            return Err(ConfigError::DashboardHeader(h.clone()));
        }
        if dashboard
            .token
            .as_ref()
            .is_some_and(|t| t.expose().chars().count() < 16)
        {
            return Err(ConfigError::DashboardToken);
        }
        // "Open" is for a laptop: never on an address others can reach.
        let loopback: SocketAddr = listen;
        if dashboard.open && !loopback.ip().is_loopback() {
            return Err(ConfigError::DashboardOpen(listen_text.clone()));
        }
        Ok(Self {
            database_url: get("WAIVER_DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            governance: get("WAIVER_GOVERNANCE")
                .unwrap_or_else(|| DEFAULT_GOVERNANCE.into())
                .into(),
            listen,
            slack,
            teams,
            dashboard,
            public_url: match get("WAIVER_PUBLIC_URL").filter(|u| !u.is_empty()) {
                Some(u) => Some(
                    http_url("WAIVER_PUBLIC_URL", u.trim_end_matches('/').to_string())
                        .map_err(|_| ConfigError::PublicUrl(u))?,
                ),
                None => None,
            },
            metrics_token: match get("WAIVER_METRICS_TOKEN").filter(|t| !t.is_empty()) {
                Some(t) if t.chars().count() < 16 => return Err(ConfigError::MetricsToken),
                t => t.map(Secret::new),
            },
            log_format: LogFormat::parse(get("WAIVER_LOG_FORMAT").as_deref())?,
        })
    }
}

/// Slack's settings: HTTP (signing secret + bot token) or Socket Mode (app token + bot
/// token, the signing secret optional).
fn slack(get: &impl Fn(&str) -> Option<String>) -> Result<Option<SlackConfig>, ConfigError> {
    let socket = match get("SLACK_SOCKET_MODE").as_deref().map(str::trim) {
        None | Some("") | Some("0") => false,
        Some("1") => true,
        Some(other) => return Err(ConfigError::SocketModeFlag(other.to_string())),
    };
    let (secret, token) = (get("SLACK_SIGNING_SECRET"), get("SLACK_BOT_TOKEN"));
    let app_token = if socket {
        let (Some(app), Some(_)) = (get("SLACK_APP_TOKEN"), &token) else {
            return Err(ConfigError::SocketModeIncomplete);
        };
        if !app.starts_with("xapp-") {
            return Err(ConfigError::AppToken);
        }
        Some(Secret::new(app))
    } else {
        None
    };
    let token = match (&secret, token, socket) {
        (None, None, _) => return Ok(None),
        (Some(_), None, _) => {
            return Err(ConfigError::SlackIncomplete {
                set: "SLACK_SIGNING_SECRET",
                missing: "SLACK_BOT_TOKEN",
            });
        }
        (None, Some(_), false) => {
            return Err(ConfigError::SlackIncomplete {
                set: "SLACK_BOT_TOKEN",
                missing: "SLACK_SIGNING_SECRET",
            });
        }
        (_, Some(token), _) => token,
    };
    let mut api_url = get("SLACK_API_URL").unwrap_or_else(|| DEFAULT_SLACK_API_URL.into());
    if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
        return Err(ConfigError::SlackApiUrl(api_url));
    }
    while api_url.ends_with('/') {
        api_url.pop();
    }
    Ok(Some(SlackConfig {
        signing_secret: secret.map(Secret::new),
        bot_token: Secret::new(token),
        socket_mode: app_token,
        api_url,
    }))
}

fn http_url(name: &'static str, value: String) -> Result<String, ConfigError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value)
    } else {
        Err(ConfigError::TeamsUrl { name, value })
    }
}

/// Teams' settings: none set is no Teams; some set needs the three credentials.
fn teams(get: &impl Fn(&str) -> Option<String>) -> Result<Option<TeamsConfig>, ConfigError> {
    let Some(set) = TEAMS_VARIABLES.into_iter().find(|v| get(v).is_some()) else {
        return Ok(None);
    };
    let required = ["TEAMS_APP_ID", "TEAMS_APP_PASSWORD", "TEAMS_TENANT_ID"];
    if let Some(missing) = required.into_iter().find(|v| get(v).is_none()) {
        return Err(ConfigError::TeamsIncomplete { set, missing });
    }
    let value = |name: &str| get(name).unwrap_or_default();
    let tenant_id = value("TEAMS_TENANT_ID");
    let token_url = get("TEAMS_TOKEN_URL").unwrap_or_else(|| {
        format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token")
    });
    let service_urls: Vec<String> = get("TEAMS_SERVICE_URLS")
        .unwrap_or_else(|| DEFAULT_TEAMS_SERVICE_URLS.into())
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    for u in &service_urls {
        // The bot sends its token there: never in the clear beyond this machine.
        if !secure_or_loopback(u) {
            return Err(ConfigError::TeamsServiceUrl(u.clone()));
        }
    }
    Ok(Some(TeamsConfig {
        app_id: value("TEAMS_APP_ID"),
        app_password: Secret::new(value("TEAMS_APP_PASSWORD")),
        tenant_id,
        openid_metadata_url: http_url(
            "TEAMS_OPENID_METADATA_URL",
            get("TEAMS_OPENID_METADATA_URL")
                .unwrap_or_else(|| DEFAULT_TEAMS_OPENID_METADATA_URL.into()),
        )?,
        token_url: http_url("TEAMS_TOKEN_URL", token_url)?,
        service_urls,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_match_by_origin_and_path_never_by_text_prefix() {
        let config = |allowed: &str| TeamsConfig {
            app_id: "app".into(),
            app_password: Secret::new("pw".to_string()),
            tenant_id: "t".into(),
            openid_metadata_url: String::new(),
            token_url: String::new(),
            service_urls: vec![allowed.into()],
        };
        let c = config("https://smba.trafficmanager.net");
        for ok in [
            "https://smba.trafficmanager.net/",
            "https://smba.trafficmanager.net/emea/",
            "https://SMBA.trafficmanager.net:443/amer/x",
        ] {
            assert!(c.allows_service_url(ok), "{ok}");
        }
        for bad in [
            "https://smba.trafficmanager.net.evil.example/",
            "https://smba.trafficmanager.net@evil.example/",
            "https://user@smba.trafficmanager.net/",
            "http://smba.trafficmanager.net/",
            "https://smba.trafficmanager.net:8443/",
            "not a url",
        ] {
            assert!(!c.allows_service_url(bad), "{bad}");
        }
        let c = config("https://smba.trafficmanager.net/emea/");
        assert!(c.allows_service_url("https://smba.trafficmanager.net/emea/"));
        assert!(!c.allows_service_url("https://smba.trafficmanager.net/emeax/"));
        assert!(!c.allows_service_url("https://smba.trafficmanager.net/"));
    }

    #[test]
    fn the_environment_read_is_exactly_the_documented_list() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let full = |k: &str| {
            asked.borrow_mut().insert(k.to_string());
            Some(
                match k {
                    "WAIVER_LISTEN" => "127.0.0.1:3000",
                    "SLACK_SOCKET_MODE" | "WAIVER_DASHBOARD_OPEN" => "1",
                    "SLACK_APP_TOKEN" => "xapp-1-A1-1-abc",
                    "WAIVER_LOG_FORMAT" => "json",
                    "WAIVER_DASHBOARD_USER_HEADER" => "x-forwarded-user",
                    "TEAMS_SERVICE_URLS" => "https://smba.trafficmanager.net/",
                    k if k.ends_with("_URL") => "https://example.test",
                    _ => "0123456789abcdef0123",
                }
                .to_string(),
            )
        };
        let config = Config::from_lookup(full).unwrap();
        assert!(config.slack.unwrap().socket_mode.is_some());
        assert_eq!(config.log_format, LogFormat::Json);
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|v| v.to_string()).collect();
        assert_eq!(asked.into_inner(), listed);
    }

    #[test]
    fn socket_mode_needs_an_app_token_and_no_signing_secret() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = Config::from_lookup(env(&[
            ("SLACK_SOCKET_MODE", "1"),
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_APP_TOKEN", "xapp-1"),
        ]))
        .unwrap();
        let slack = c.slack.unwrap();
        assert!(slack.signing_secret.is_none() && slack.socket_mode.is_some());
        for (pairs, says) in [
            (
                &[("SLACK_SOCKET_MODE", "1"), ("SLACK_BOT_TOKEN", "xoxb-1")][..],
                "needs SLACK_APP_TOKEN",
            ),
            (
                &[
                    ("SLACK_SOCKET_MODE", "1"),
                    ("SLACK_BOT_TOKEN", "xoxb-1"),
                    ("SLACK_APP_TOKEN", "xoxb-2"),
                ][..],
                "starts with xapp-",
            ),
            (&[("SLACK_SOCKET_MODE", "yes")][..], "use 1"),
            (
                &[("SLACK_BOT_TOKEN", "xoxb-1")][..],
                "SLACK_SIGNING_SECRET is not",
            ),
            (
                &[("WAIVER_LOG_FORMAT", "xml")][..],
                "neither `text` nor `json`",
            ),
            (&[("WAIVER_METRICS_TOKEN", "short")][..], "too short"),
        ] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(pairs.to_vec().into_boxed_slice());
            let err = Config::from_lookup(env(pairs)).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn teams_service_urls_must_be_https_beyond_this_machine() {
        let env = |urls: &'static str| {
            move |k: &str| match k {
                "SLACK_SIGNING_SECRET" | "SLACK_BOT_TOKEN" => None,
                "TEAMS_APP_ID" | "TEAMS_APP_PASSWORD" | "TEAMS_TENANT_ID" => Some("x".to_string()),
                "TEAMS_SERVICE_URLS" => Some(urls.to_string()),
                _ => None,
            }
        };
        let err = Config::from_lookup(env("http://smba.trafficmanager.net/"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "TEAMS_SERVICE_URLS names \"http://smba.trafficmanager.net/\": each must be an https URL (http only to 127.0.0.1 or localhost)"
        );
        assert!(Config::from_lookup(env("http://127.0.0.1:9/")).is_ok());
        assert!(Config::from_lookup(env("https://smba.trafficmanager.net/")).is_ok());
    }
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url, "sqlite://waiver.db");
        assert_eq!(c.governance, PathBuf::from("manifests/governance.toml"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert!(c.slack.is_none());
    }

    #[test]
    fn secrets_never_print() {
        let c = config(&[
            ("SLACK_SIGNING_SECRET", "s3cr3t"),
            ("SLACK_BOT_TOKEN", "xoxb-123"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("xoxb-123"),
            "{shown}"
        );
        assert_eq!(c.slack.unwrap().api_url, "https://slack.com/api");
    }

    #[test]
    fn a_password_in_the_userinfo_is_redacted() {
        assert_eq!(
            redact_url("postgres://waiver:hunter2@db:5432/waiver"),
            "postgres://waiver:***@db:5432/waiver"
        );
        assert_eq!(redact_url("mysql://u:s3cretpw@h/db"), "mysql://u:***@h/db");
        // A password holding '@' still ends at the last '@' of the authority.
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://waiver.db"), "sqlite://waiver.db");
    }

    #[test]
    fn password_like_query_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=qs3cret&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://h/db?sslpassword=x1&user=u&api_token=t0k"),
            "postgres://h/db?sslpassword=***&user=u&api_token=***"
        );
        assert_eq!(
            redact_url("sqlite://w.db?mode=rwc"),
            "sqlite://w.db?mode=rwc"
        );
    }

    #[test]
    fn scrubbing_removes_every_secret_a_url_carries_from_a_message() {
        let url = "postgres://u:s3cretpw@h/db?password=qs3cret";
        let text = format!("failed for {url}; also s3cretpw and qs3cret quoted alone");
        let shown = scrub(&text, url);
        assert!(
            !shown.contains("s3cretpw") && !shown.contains("qs3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://u:***@h/db?password=***"),
            "{shown}"
        );
    }

    #[test]
    fn teams_needs_its_three_credentials_once_any_teams_variable_is_set() {
        assert!(config(&[]).unwrap().teams.is_none());
        let err = config(&[("TEAMS_SERVICE_URLS", "https://smba.trafficmanager.net/")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "TEAMS_SERVICE_URLS is set but TEAMS_APP_ID is not: Teams needs TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID"
        );
        assert!(matches!(
            config(&[("TEAMS_APP_ID", "a"), ("TEAMS_TENANT_ID", "t")]),
            Err(ConfigError::TeamsIncomplete {
                missing: "TEAMS_APP_PASSWORD",
                ..
            })
        ));
        let c = config(&[
            ("TEAMS_APP_ID", "app"),
            ("TEAMS_APP_PASSWORD", "pw-secret"),
            ("TEAMS_TENANT_ID", "tenant-1"),
        ])
        .unwrap();
        let t = c.teams.unwrap();
        assert_eq!(
            t.token_url,
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(t.openid_metadata_url, DEFAULT_TEAMS_OPENID_METADATA_URL);
        assert!(t.allows_service_url("https://smba.trafficmanager.net/emea/"));
        assert!(!t.allows_service_url("https://evil.example/smba.trafficmanager.net/"));
        assert!(!format!("{t:?}").contains("pw-secret"));
        assert!(matches!(
            config(&[
                ("TEAMS_APP_ID", "app"),
                ("TEAMS_APP_PASSWORD", "pw"),
                ("TEAMS_TENANT_ID", "t"),
                ("TEAMS_TOKEN_URL", "ftp://x"),
            ]),
            Err(ConfigError::TeamsUrl { .. })
        ));
    }

    #[test]
    fn half_a_slack_configuration_is_an_error() {
        assert!(matches!(
            config(&[("SLACK_BOT_TOKEN", "xoxb")]),
            Err(ConfigError::SlackIncomplete { .. })
        ));
        assert!(matches!(
            config(&[("WAIVER_LISTEN", "nowhere")]),
            Err(ConfigError::Listen(_))
        ));
    }
}

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

pub const DEFAULT_DATABASE_URL: &str = "sqlite://waiver.db";
pub const DEFAULT_GOVERNANCE: &str = "manifests/governance.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";

#[derive(Clone, Debug)]
pub struct SlackConfig {
    pub signing_secret: Secret,
    pub bot_token: Secret,
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
        let slack = match (get("SLACK_SIGNING_SECRET"), get("SLACK_BOT_TOKEN")) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::SlackIncomplete {
                    set: "SLACK_SIGNING_SECRET",
                    missing: "SLACK_BOT_TOKEN",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::SlackIncomplete {
                    set: "SLACK_BOT_TOKEN",
                    missing: "SLACK_SIGNING_SECRET",
                });
            }
            (Some(secret), Some(token)) => {
                let mut api_url =
                    get("SLACK_API_URL").unwrap_or_else(|| DEFAULT_SLACK_API_URL.into());
                if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
                    return Err(ConfigError::SlackApiUrl(api_url));
                }
                while api_url.ends_with('/') {
                    api_url.pop();
                }
                Some(SlackConfig {
                    signing_secret: Secret::new(secret),
                    bot_token: Secret::new(token),
                    api_url,
                })
            }
        };
        Ok(Self {
            database_url: get("WAIVER_DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            governance: get("WAIVER_GOVERNANCE")
                .unwrap_or_else(|| DEFAULT_GOVERNANCE.into())
                .into(),
            listen,
            slack,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

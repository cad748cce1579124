//! What `waiver doctor` asks Slack: who the bot token is (`auth.test`) and which
//! scopes it was granted, whether channels exist with the bot in them
//! (`conversations.info`), and whether people exist and are active (`users.info`).
//!
//! Slack reports a token's scopes only in the `x-oauth-scopes` header of its answers,
//! which slack-morphism's client does not expose; so these calls go through reqwest,
//! with slack-morphism's request and response types. They are bounded: a few at a
//! time, each with a timeout, all within one deadline, and a rate limit is waited out
//! once.
//!
//! The scopes Waiver needs are those of the Slack app manifest
//! (`manifests/slack/app-manifest.yaml`), read from it: one source of truth.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use slack_morphism::prelude::*;
use tokio::time::Instant;

use crate::config::{Secret, SlackConfig};

/// The Slack app manifest, as shipped.
pub const MANIFEST: &str = include_str!("../../../manifests/slack/app-manifest.yaml");
/// Where the manifest is, for people to open.
pub const MANIFEST_PATH: &str = "manifests/slack/app-manifest.yaml";
/// The response header in which Slack lists a token's scopes.
pub const SCOPES_HEADER: &str = "x-oauth-scopes";

/// How many lookups run at once (conversations.info is Tier 3, users.info Tier 4).
const CONCURRENCY: usize = 4;
/// The longest `Retry-After` waited out.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The bot scopes the manifest asks for (`oauth_config.scopes.bot`), in its order.
pub fn bot_scopes() -> Vec<&'static str> {
    let mut out = Vec::new();
    // The keys that lead to the current line, with their indentation.
    let mut path: Vec<(usize, &str)> = Vec::new();
    for line in MANIFEST.lines() {
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        };
        let text = code.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let indent = code.len() - code.trim_start().len();
        if let Some(item) = text.strip_prefix("- ") {
            let keys: Vec<&str> = path.iter().map(|(_, k)| *k).collect();
            if keys == ["oauth_config", "scopes", "bot"] {
                out.push(item.trim());
            }
            continue;
        }
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        if let Some((key, _)) = text.split_once(':') {
            path.push((indent, key.trim()));
        }
    }
    out
}

/// Why a call gave no answer to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// Slack answered `{"ok":false,"error":code}` (`needed`: the scope it lacks).
    Api {
        code: String,
        needed: Option<String>,
    },
    /// An HTTP status other than 200.
    Http(u16),
    /// No answer (connection refused, DNS, TLS).
    Unreachable(String),
    /// An answer that is not Slack's JSON.
    Unreadable,
    TimedOut,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Api { code, .. } => f.write_str(code),
            ProbeError::Http(status) => write!(f, "HTTP {status}"),
            ProbeError::Unreachable(why) => write!(f, "no answer: {why}"),
            ProbeError::Unreadable => f.write_str("an answer that is not Slack's JSON"),
            ProbeError::TimedOut => f.write_str("timed out"),
        }
    }
}

/// Who the bot token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub team_id: String,
    pub team: String,
    /// The bot's user id.
    pub user_id: String,
    /// The bot's user name (for `/invite @name`).
    pub user: Option<String>,
    /// `None`: not a bot token (a user token, `xoxp-…`).
    pub bot_id: Option<String>,
    /// The scopes granted; `None` when the answer carried no `x-oauth-scopes`.
    pub scopes: Option<Vec<String>>,
}

/// What Slack says about a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Found {
        name: Option<String>,
        is_member: bool,
        is_archived: bool,
    },
    /// `channel_not_found`: no such channel, or a private one the bot is not in.
    NotFound,
    Failed(ProbeError),
}

/// What Slack says about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    Found {
        deleted: bool,
        team_id: Option<String>,
    },
    /// `user_not_found`.
    NotFound,
    Failed(ProbeError),
}

/// Slack's Web API at `SLACK_API_URL`, with the bot token.
pub struct Probe {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
    call_timeout: Duration,
    deadline: Instant,
}

impl Probe {
    /// Calls take at most `call_timeout` each, and none starts after `total`.
    pub fn new(config: &SlackConfig, call_timeout: Duration, total: Duration) -> Self {
        crate::chat::install_tls_provider();
        Self {
            http: reqwest::Client::new(),
            api_url: config.api_url.clone(),
            token: config.bot_token.clone(),
            call_timeout,
            deadline: Instant::now() + total,
        }
    }

    /// Calls `method` with `form`: the answer's JSON and the scopes header.
    async fn call(
        &self,
        method: &str,
        form: &impl Serialize,
    ) -> Result<(Value, Option<String>), ProbeError> {
        self.call_as(&self.token, method, form).await
    }

    /// Like [`call`](Self::call), with another token.
    async fn call_as(
        &self,
        token: &Secret,
        method: &str,
        form: &impl Serialize,
    ) -> Result<(Value, Option<String>), ProbeError> {
        let url = format!("{}/{method}", self.api_url);
        let mut waited = false;
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProbeError::TimedOut);
            }
            let resp = self
                .http
                .post(&url)
                .bearer_auth(token.expose())
                .form(form)
                .timeout(self.call_timeout.min(left))
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        ProbeError::TimedOut
                    } else {
                        ProbeError::Unreachable(crate::chat::error_chain(&e.without_url()))
                    }
                })?;
            let status = resp.status().as_u16();
            if status == 429 && !waited {
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                if after <= MAX_RETRY_AFTER && after < left {
                    waited = true;
                    tokio::time::sleep(after).await;
                    continue;
                }
            }
            if status != 200 {
                return Err(ProbeError::Http(status));
            }
            let scopes = resp
                .headers()
                .get(SCOPES_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = resp.json().await.map_err(|_| ProbeError::Unreadable)?;
            if body["ok"] != Value::Bool(true) {
                return Err(ProbeError::Api {
                    code: body["error"]
                        .as_str()
                        .unwrap_or("unknown_error")
                        .to_string(),
                    needed: body["needed"].as_str().map(str::to_string),
                });
            }
            return Ok((body, scopes));
        }
    }

    /// `apps.connections.open` with Socket Mode's app-level token: whether Slack
    /// would hand it a websocket (the URL is single-use and not kept).
    pub async fn socket_mode(&self, app_token: &Secret) -> Result<(), ProbeError> {
        self.call_as(app_token, "apps.connections.open", &[("", ""); 0])
            .await
            .map(|_| ())
    }

    /// `auth.test`: who the token is, and its scopes.
    pub async fn identity(&self) -> Result<Identity, ProbeError> {
        let (body, scopes) = self.call("auth.test", &[("", ""); 0]).await?;
        let me: SlackApiAuthTestResponse =
            serde_json::from_value(body).map_err(|_| ProbeError::Unreadable)?;
        Ok(Identity {
            team_id: me.team_id.0,
            team: me.team,
            user_id: me.user_id.0,
            user: me.user,
            bot_id: me.bot_id.map(|b| b.0),
            scopes: scopes.map(|s| {
                s.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        })
    }

    async fn channel(&self, id: &str) -> Channel {
        let req = SlackApiConversationsInfoRequest::new(SlackChannelId::new(id.to_string()));
        match self.call("conversations.info", &req).await {
            Ok((body, _)) => {
                match serde_json::from_value::<SlackApiConversationsInfoResponse>(body) {
                    Ok(info) => Channel::Found {
                        name: info.channel.name,
                        is_member: info.channel.flags.is_member == Some(true),
                        is_archived: info.channel.flags.is_archived == Some(true),
                    },
                    Err(_) => Channel::Failed(ProbeError::Unreadable),
                }
            }
            Err(ProbeError::Api { code, .. }) if code == "channel_not_found" => Channel::NotFound,
            Err(e) => Channel::Failed(e),
        }
    }

    /// `conversations.info` for each of `ids`, in their order.
    pub async fn channels(&self, ids: &[String]) -> Vec<Channel> {
        futures_util::stream::iter(ids)
            .map(|id| self.channel(id))
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    async fn user(&self, id: &str) -> User {
        let req = SlackApiUsersInfoRequest::new(SlackUserId::new(id.to_string()));
        match self.call("users.info", &req).await {
            Ok((body, _)) => match serde_json::from_value::<SlackApiUsersInfoResponse>(body) {
                Ok(info) => User::Found {
                    deleted: info.user.deleted == Some(true),
                    team_id: info.user.team_id.map(|t| t.0),
                },
                Err(_) => User::Failed(ProbeError::Unreadable),
            },
            Err(ProbeError::Api { code, .. }) if code == "user_not_found" => User::NotFound,
            Err(e) => User::Failed(e),
        }
    }

    /// `users.info` for each of `ids`, in their order.
    pub async fn users(&self, ids: &[String]) -> Vec<User> {
        futures_util::stream::iter(ids)
            .map(|id| self.user(id))
            .buffered(CONCURRENCY)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bot_scopes_are_read_from_the_manifest() {
        assert_eq!(
            bot_scopes(),
            [
                "commands",
                "chat:write",
                "im:write",
                "im:history",
                "channels:history",
                "groups:history",
                "channels:read",
                "groups:read",
                "users:read",
            ]
        );
    }
}

//! What the delivery worker needs from Teams: post (opening a person's chat with the
//! bot the first time), update in place (`PUT …/activities/{id}`), and what each Bot
//! Connector answer means.
//!
//! Calls carry a client-credentials token for the bot (from `TEAMS_TOKEN_URL`, scope
//! `https://api.botframework.com/.default`), cached until five minutes before it
//! expires. They go only to the serviceUrl stored with the conversation, and only if
//! it is one of `TEAMS_SERVICE_URLS`.
//!
//! A post's reference is the conversation's serviceUrl and id and the activity id.
//! The Bot Connector cannot list a conversation's messages, so a post interrupted
//! without an answer cannot be looked up: `find` says so, and the worker posts again
//! (the one place a crash can still duplicate a Teams message).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::cards;
use crate::chat::Failure;
use crate::config::TeamsConfig;
use crate::message::{Address, Outgoing, Posted};
use crate::metrics::Metrics;

/// Teams allows about seven messages a second per conversation.
pub const PACE: Duration = Duration::from_millis(150);

/// How the bot reaches a conversation (stored when an activity arrives from it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRef {
    pub service_url: String,
    /// The conversation to post to (a channel id posts a new thread there); empty
    /// for a tenant's reference, which only says where its Bot Connector is.
    #[serde(default)]
    pub conversation_id: String,
    pub tenant_id: String,
}

impl ConversationRef {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("references serialise")
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

/// The address of a tenant's reference (its serviceUrl, for chats not yet opened).
pub fn tenant_key(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

struct Token {
    value: String,
    until: Instant,
}

impl From<&TokenAnswer> for Token {
    /// Held until five minutes before it expires.
    fn from(answer: &TokenAnswer) -> Self {
        let lifetime = Duration::from_secs(answer.expires_in.saturating_sub(300).max(30));
        Token {
            value: answer.access_token.clone(),
            until: Instant::now() + lifetime,
        }
    }
}

/// Teams' side of delivery.
pub struct TeamsDelivery {
    config: TeamsConfig,
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
    call_timeout: Duration,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: String,
}

fn transient(error: String, doubt: bool) -> Failure {
    Failure::Transient {
        after: None,
        error,
        doubt,
    }
}

/// What a Bot Connector answer means.
fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> Failure {
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    let what = format!("HTTP {status} {code}").trim().to_string();
    match status {
        429 => Failure::Transient {
            after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
            error: what,
            doubt: false,
        },
        // Precondition failed: Teams is busy with the conversation; try again.
        412 => transient(what, false),
        s if s >= 500 => transient(what, true),
        404 => Failure::MessageGone,
        _ => Failure::Permanent(what),
    }
}

/// A refused token request in a few words: the status, the OAuth error code and
/// Azure AD's `AADSTS` number (never its description, which may quote the request).
fn token_error(status: u16, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut out = format!("HTTP {status}");
    if let Some(code) = v["error"]
        .as_str()
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        out.push(' ');
        out.push_str(code);
    }
    if let Some(n) = v["error_codes"][0].as_u64() {
        out.push_str(&format!(" (AADSTS{n})"));
    }
    out
}

/// Why no token was had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token endpoint refused the credentials (4xx): they will not fix themselves.
    Refused(String),
    /// No usable answer (unreachable, 5xx, 429, not JSON): try again.
    Unavailable(String),
}

impl TeamsDelivery {
    pub fn new(
        config: TeamsConfig,
        http: reqwest::Client,
        call_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            http,
            token: Mutex::new(None),
            call_timeout,
            metrics,
        }
    }

    /// Fetches a token now, as the first post would (`waiver doctor`): whether the
    /// credentials work. The token is kept for later calls, never shown.
    pub async fn check_token(&self) -> Result<(), TokenError> {
        let answer = self.request_token().await?;
        self.keep(&answer).await;
        Ok(())
    }

    /// A new token from `TEAMS_TOKEN_URL`, counted in the metrics.
    async fn request_token(&self) -> Result<TokenAnswer, TokenError> {
        let answer = self.ask_for_token().await;
        self.metrics.teams_token(answer.is_ok());
        answer
    }

    /// Asks `TEAMS_TOKEN_URL` for a token (client credentials).
    async fn ask_for_token(&self) -> Result<TokenAnswer, TokenError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.config.app_id.as_str()),
            ("client_secret", self.config.app_password.expose()),
            ("scope", "https://api.botframework.com/.default"),
        ];
        let resp = self
            .http
            .post(&self.config.token_url)
            .form(&form)
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(crate::chat::error_chain(&e.without_url())))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let why = token_error(status, &resp.text().await.unwrap_or_default());
            return Err(if status >= 500 || status == 429 {
                TokenError::Unavailable(why)
            } else {
                TokenError::Refused(why)
            });
        }
        resp.json()
            .await
            .map_err(|_| TokenError::Unavailable("unreadable answer".into()))
    }

    async fn keep(&self, answer: &TokenAnswer) {
        *self.token.lock().await = Some(Token::from(answer));
    }

    /// The bot's token, fetched when there is none or it expires within five minutes.
    async fn token(&self) -> Result<String, Failure> {
        // Held across the fetch: concurrent posts wait for one token request.
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref().filter(|t| t.until > Instant::now()) {
            return Ok(t.value.clone());
        }
        let answer = self.request_token().await.map_err(|e| match e {
            // Wrong credentials will not fix themselves.
            TokenError::Refused(why) => Failure::Permanent(format!(
                "token: {why} (check TEAMS_APP_ID and TEAMS_APP_PASSWORD)"
            )),
            TokenError::Unavailable(why) => transient(format!("token: {why}"), false),
        })?;
        *held = Some(Token::from(&answer));
        Ok(answer.access_token)
    }

    /// Calls the Bot Connector at `service_url`.
    async fn call(
        &self,
        method: reqwest::Method,
        service_url: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, Failure> {
        if !self.config.allows_service_url(service_url) {
            return Err(Failure::Permanent(format!(
                "serviceUrl {service_url} is not in TEAMS_SERVICE_URLS"
            )));
        }
        let token = self.token().await?;
        let url = format!("{}/{path}", service_url.trim_end_matches('/'));
        let resp = self
            .http
            .request(method, url)
            .bearer_auth(&token)
            .json(body)
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|e| transient(e.without_url().to_string(), true))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        if status == 401 {
            // The token may have been revoked early: fetch a new one next time.
            *self.token.lock().await = None;
            return Err(transient("HTTP 401".into(), false));
        }
        if !(200..300).contains(&status) {
            return Err(classify(status, retry_after, &text));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The stored addresses a post to `m.to` can use, best first.
    pub fn reference_keys(&self, m: &Outgoing) -> Vec<String> {
        match &m.to {
            Address::Direct { .. } => {
                vec![m.to.target(), tenant_key(&self.config.tenant_id)]
            }
            // A channel the bot was never told about (Teams announces a team's General
            // channel only) is tried through the tenant's serviceUrl: the bot can post
            // in every channel of a team it is in.
            Address::Channel { .. } => vec![m.to.target(), tenant_key(&self.config.tenant_id)],
            Address::Ephemeral { .. } => vec![m.to.target()],
        }
    }

    fn activity(&self, m: &Outgoing) -> Value {
        json!({
            "type": "message",
            "summary": m.message.summary,
            "text": "",
            "attachments": [{
                "contentType": cards::CONTENT_TYPE,
                "content": cards::outgoing(m),
            }],
        })
    }

    /// Posts `m`, opening the person's chat with the bot first when only the tenant's
    /// reference is known.
    pub async fn post(
        &self,
        m: &Outgoing,
        reference: Option<&(String, String)>,
    ) -> Result<Option<Posted>, Failure> {
        let Some((key, raw)) = reference else {
            return Err(Failure::Unreachable(match &m.to {
                Address::Channel { channel } => {
                    format!("Waiver is not in channel {channel} yet: add the app to its team")
                }
                other => format!(
                    "Waiver has no conversation with {} in Teams yet: install the app for them",
                    other.target()
                ),
            }));
        };
        let r = ConversationRef::parse(raw)
            .ok_or_else(|| Failure::Permanent("an unreadable conversation reference".into()))?;
        let mut r = r;
        let not_in_channel = |channel: &str| {
            Failure::Unreachable(format!(
                "Waiver is not in channel {channel} yet: add the app to its team"
            ))
        };
        if let Address::Channel { channel } = &m.to {
            // Learned or not, a channel's conversation is the channel itself.
            r.conversation_id = channel.clone();
        } else if r.conversation_id.is_empty() || key.starts_with("tenant:") {
            let Address::Direct { user } = &m.to else {
                return Err(not_in_channel(&m.to.target()));
            };
            let created = self
                .call(
                    reqwest::Method::POST,
                    &r.service_url,
                    "v3/conversations",
                    &json!({
                        "isGroup": false,
                        "bot": { "id": format!("28:{}", self.config.app_id) },
                        // The AAD object id: the person may never have written to
                        // the bot, so their `29:` id is not known.
                        "members": [{ "id": user }],
                        "tenantId": r.tenant_id,
                        "channelData": { "tenant": { "id": r.tenant_id } },
                    }),
                )
                .await
                .map_err(|e| match e {
                    Failure::Permanent(why) | Failure::Unreachable(why) => {
                        Failure::Unreachable(format!(
                            "cannot open a chat with {user} ({why}): is the app installed for them?"
                        ))
                    }
                    other => other,
                })?;
            let id: IdAnswer = serde_json::from_value(created)
                .map_err(|_| transient("create conversation: no id".into(), true))?;
            r.conversation_id = id.id;
        }
        let answer = self
            .call(
                reqwest::Method::POST,
                &r.service_url,
                &format!("v3/conversations/{}/activities", r.conversation_id),
                &self.activity(m),
            )
            .await
            .map_err(|e| match (e, &m.to) {
                // Not a card that went away: the conversation is not (or no longer)
                // one the bot is in.
                (Failure::Permanent(why), Address::Channel { channel })
                    if why.starts_with("HTTP 403") =>
                {
                    not_in_channel(channel)
                }
                (Failure::MessageGone, Address::Channel { channel }) => not_in_channel(channel),
                (Failure::MessageGone, _) => Failure::Unreachable(format!(
                    "Teams does not know conversation {} for {} (the app was removed?): install the app for them again",
                    r.conversation_id,
                    m.to.target()
                )),
                (other, _) => other,
            })?;
        let id: IdAnswer = serde_json::from_value(answer)
            .map_err(|_| transient("post: no activity id".into(), true))?;
        Ok(Some(Posted {
            conversation: r.conversation_id.clone(),
            message: id.id,
            reference: Some(r.encode()),
        }))
    }

    /// Answers in `to` (to the activity `reply_to`, when there is one) with `card`.
    pub async fn reply(
        &self,
        to: &ConversationRef,
        reply_to: Option<&str>,
        card: Value,
    ) -> Result<(), Failure> {
        let path = match reply_to {
            Some(id) => format!("v3/conversations/{}/activities/{id}", to.conversation_id),
            None => format!("v3/conversations/{}/activities", to.conversation_id),
        };
        let activity = json!({
            "type": "message",
            "text": "",
            "replyToId": reply_to,
            "attachments": [{ "contentType": cards::CONTENT_TYPE, "content": card }],
        });
        self.call(reqwest::Method::POST, &to.service_url, &path, &activity)
            .await
            .map(|_| ())
    }

    /// Updates the card posted at `at` to show `m`.
    pub async fn update(&self, at: &Posted, m: &Outgoing) -> Result<Posted, Failure> {
        let r = at
            .reference
            .as_deref()
            .and_then(ConversationRef::parse)
            .ok_or_else(|| Failure::Permanent("a card without a conversation reference".into()))?;
        let mut activity = self.activity(m);
        activity["id"] = json!(at.message);
        self.call(
            reqwest::Method::PUT,
            &r.service_url,
            &format!(
                "v3/conversations/{}/activities/{}",
                at.conversation, at.message
            ),
            &activity,
        )
        .await?;
        Ok(at.clone())
    }
}

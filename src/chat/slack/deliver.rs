//! What the delivery worker needs from Slack: post, update in place, find a post an
//! interrupted attempt may have made, and what each Web API error means.
//!
//! Every post carries its outbox id in the message metadata, so an interrupted
//! attempt's post is found in the conversation's history before anything is posted
//! again. A post's reference is its channel and `ts`.

use std::time::Duration;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::client::SlackApi;
use super::render;
use crate::chat::Failure;
use crate::domain::Timestamp;
use crate::message::{Address, Outgoing, Posted};

/// Metadata type of Waiver's posts; its payload carries the outbox id.
pub const METADATA_TYPE: &str = "waiver_outbox";

/// Slack allows about one message per second per channel.
pub const PACE: Duration = Duration::from_secs(1);

const TRANSIENT_API_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// What a Web API error means for delivery.
fn classify(e: SlackClientError) -> Failure {
    match e {
        SlackClientError::RateLimitError(r) => Failure::Transient {
            after: Some(r.retry_after.unwrap_or(Duration::from_secs(1))),
            error: "rate limited".into(),
            doubt: false,
        },
        SlackClientError::ApiError(a) if a.code == "message_not_found" => Failure::MessageGone,
        SlackClientError::ApiError(a) if TRANSIENT_API_ERRORS.contains(&a.code.as_str()) => {
            Failure::Transient {
                after: None,
                doubt: a.code == "request_timeout",
                error: a.code,
            }
        }
        SlackClientError::ApiError(a) => Failure::Permanent(a.code),
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => Failure::Transient {
            after: None,
            error: format!("HTTP {}", h.status_code),
            doubt: true,
        },
        SlackClientError::HttpError(h) => Failure::Permanent(format!("HTTP {}", h.status_code)),
        other => Failure::Transient {
            after: None,
            error: other.to_string().chars().take(200).collect(),
            doubt: true,
        },
    }
}

fn ts_of(t: Timestamp) -> SlackTs {
    SlackTs::new(format!("{}.000000", t.millis().div_euclid(1000)))
}

fn posted(channel: String, ts: String) -> Posted {
    Posted {
        conversation: channel,
        message: ts,
        reference: None,
    }
}

/// Slack's side of delivery.
#[derive(Clone)]
pub struct SlackDelivery {
    api: SlackApi,
    call_timeout: Duration,
}

impl SlackDelivery {
    pub fn new(api: SlackApi, call_timeout: Duration) -> Self {
        Self { api, call_timeout }
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, SlackClientError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(Failure::Transient {
                after: None,
                error: "timed out".into(),
                doubt: true,
            }),
        }
    }

    fn content(m: &Outgoing, outbox_id: Option<i64>) -> SlackMessageContent {
        let mut content = SlackMessageContent::new()
            .with_text(render::fallback(&m.message))
            .with_blocks(render::blocks(&m.message));
        if let Some(id) = outbox_id {
            content = content.with_metadata(SlackMessageMetadata {
                event_type: METADATA_TYPE.into(),
                event_payload: Some([("outbox_id".to_string(), id.to_string())].into()),
            });
        }
        content
    }

    /// The conversation a message to `to` lands in, for pacing and ordering.
    pub fn conversation(to: &Address) -> &str {
        match to {
            Address::Channel { channel } => channel,
            Address::Direct { user } => user,
            Address::Ephemeral { channel, .. } => channel,
        }
    }

    /// Posts `m` (outbox row `outbox_id`); ephemerals leave no reference.
    pub async fn post(&self, m: &Outgoing, outbox_id: i64) -> Result<Option<Posted>, Failure> {
        let session = self.api.session();
        if let Address::Ephemeral { channel, user } = &m.to {
            let req = SlackApiChatPostEphemeralRequest::new(
                SlackChannelId::new(channel.clone()),
                SlackUserId::new(user.clone()),
                Self::content(m, None),
            );
            self.call(session.chat_post_ephemeral(&req)).await?;
            return Ok(None);
        }
        let req = SlackApiChatPostMessageRequest::new(
            SlackChannelId::new(Self::conversation(&m.to).to_string()),
            Self::content(m, Some(outbox_id)),
        );
        let resp = self.call(session.chat_post_message(&req)).await?;
        Ok(Some(posted(resp.channel.to_string(), resp.ts.to_string())))
    }

    /// Updates the card at `at` to show `m`.
    pub async fn update(&self, at: &Posted, m: &Outgoing) -> Result<Posted, Failure> {
        let req = SlackApiChatUpdateRequest::new(
            SlackChannelId::new(at.conversation.clone()),
            Self::content(m, None),
            SlackTs::new(at.message.clone()),
        );
        self.call(self.api.session().chat_update(&req)).await?;
        Ok(at.clone())
    }

    /// Looks for the post of outbox row `outbox_id`, made at or after `since`.
    pub async fn find(
        &self,
        m: &Outgoing,
        outbox_id: i64,
        since: Timestamp,
    ) -> Result<Option<Posted>, Failure> {
        let session = self.api.session();
        let channel = match &m.to {
            Address::Channel { channel } => channel.clone(),
            Address::Direct { user } => {
                let req = SlackApiConversationsOpenRequest::new()
                    .with_users(vec![SlackUserId::new(user.clone())]);
                let resp = self.call(session.conversations_open(&req)).await?;
                resp.channel.id.to_string()
            }
            Address::Ephemeral { .. } => return Ok(None),
        };
        let req = SlackApiConversationsHistoryRequest::new()
            .with_channel(SlackChannelId::new(channel.clone()))
            // A minute's margin for the difference between this host's clock and Slack's.
            .with_oldest(ts_of(Timestamp::from_millis(since.millis() - 60_000)))
            .with_include_all_metadata(true)
            .with_limit(200);
        let resp = self.call(session.conversations_history(&req)).await?;
        let id = outbox_id.to_string();
        Ok(resp.messages.iter().find_map(|msg| {
            let meta = msg.content.metadata.as_ref()?;
            let ours = meta.event_type == METADATA_TYPE
                && meta.event_payload.as_ref()?.get("outbox_id") == Some(&id);
            ours.then(|| posted(channel.clone(), msg.origin.ts.to_string()))
        }))
    }
}

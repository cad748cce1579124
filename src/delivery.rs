//! The outbox worker: delivers queued chat messages, at least once, with idempotent
//! effects.
//!
//! - A card is posted once and updated in place afterwards (its channel and message
//!   ts are stored when it is posted); a pending update that a newer one makes
//!   pointless is skipped.
//! - Every post carries its outbox id in the message metadata. An attempt that ended
//!   without a definite answer (a crash, a timeout, a 5xx) leaves the row "in doubt";
//!   the next attempt first looks for the message in the conversation, so a post is
//!   never duplicated.
//! - 429 waits for `Retry-After`; 5xx, timeouts and transport errors back off
//!   exponentially; permanent errors (`channel_not_found`, `invalid_auth`, ...) park
//!   the message with an error log line, a metric and an audit entry.
//! - Posts are paced per conversation (Slack allows about one message per second
//!   per channel); rows to one conversation are delivered in order.
//!
//! Several replicas may run workers on one PostgreSQL: rows are claimed with leases
//! and `SKIP LOCKED`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::{Mutex, Notify, watch};
use tokio::time::Instant;

use crate::chat::slack::client::SlackApi;
use crate::chat::slack::render;
use crate::chat::{Address, Outgoing, Platform};
use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::store::{Claimed, Finish, Store};

/// How often the worker checks that every conversation with pending messages has a
/// queue (see `Store::repair_outbox_queues`).
const REPAIR_EVERY: Duration = Duration::from_secs(60);

/// Metadata type of Waiver's posts; its payload carries the outbox id.
pub const METADATA_TYPE: &str = "waiver_outbox";

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub batch: i64,
    pub lease: Duration,
    /// First retry delay after a transient failure; doubles per attempt.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Transient failures after which a message is parked.
    pub max_attempts: u32,
    /// Minimum gap between two posts to one conversation.
    pub per_conversation: Duration,
    pub call_timeout: Duration,
    /// How often to look for work when nothing signals it (other replicas' rows,
    /// retries coming due).
    pub idle_poll: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            lease: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 12,
            per_conversation: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            idle_poll: Duration::from_millis(500),
        }
    }
}

/// Delivery counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub parked: AtomicU64,
    pub superseded: AtomicU64,
}

/// The worker.
pub struct Deliverer {
    store: Store,
    slack: SlackApi,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    last_post: Mutex<HashMap<String, Instant>>,
    clock: Clock,
    pub metrics: Arc<DeliveryMetrics>,
}

enum Failure {
    /// Try again; `doubt`: the call may have taken effect.
    Transient {
        after: Option<Duration>,
        error: String,
        doubt: bool,
    },
    Permanent(String),
    /// The message a card update targets no longer exists.
    MessageGone,
}

const TRANSIENT_API_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

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

impl Deliverer {
    pub fn new(
        store: Store,
        slack: SlackApi,
        config: DeliveryConfig,
        wake: Arc<Notify>,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            slack,
            config,
            wake,
            clock,
            last_post: Mutex::new(HashMap::new()),
            metrics: Arc::new(DeliveryMetrics::default()),
        }
    }

    /// Delivers until `shutdown` turns true, then finishes the batch in flight.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut repaired: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if repaired.is_none_or(|t| t.elapsed() >= REPAIR_EVERY) {
                repaired = Some(Instant::now());
                match self.store.repair_outbox_queues(self.clock.now()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(queues = n, "delivery: recreated lost conversation queues")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "delivery: cannot check the conversation queues")
                    }
                }
            }
            let delivered = match self.tick().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "delivery: cannot read the outbox");
                    0
                }
            };
            if delivered == 0 {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Claims one batch, delivers it, and records the outcomes in one transaction;
    /// returns how many rows were handled.
    pub async fn tick(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let rows = self
            .store
            .claim_outbox(now, self.config.batch, self.config.lease.as_millis() as i64)
            .await?;
        let work = rows.into_iter().map(|row| async move {
            let finish = self.deliver(&row).await;
            let counter = match &finish {
                Finish::Sent { .. } => Some(&self.metrics.sent),
                Finish::Superseded => Some(&self.metrics.superseded),
                Finish::Retry { .. } => Some(&self.metrics.retried),
                Finish::Parked { .. } => Some(&self.metrics.parked),
                Finish::Defer { .. } => None,
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if let Finish::Parked { error } = &finish {
                tracing::error!(
                    outbox_id = row.id,
                    target = %row.outgoing.to.target(),
                    error = %error,
                    "delivery: parked a message that cannot be delivered"
                );
            }
            (row, finish)
        });
        let results = futures_util::future::join_all(work).await;
        // Only deferrals: nothing was due yet, so wait rather than spin.
        let progressed = results
            .iter()
            .filter(|(_, f)| !matches!(f, Finish::Defer { .. }))
            .count();
        if let Err(e) = self
            .store
            .finish_deliveries(results, self.clock.now())
            .await
        {
            // The leases expire and the rows are retried (in doubt, so no duplicate).
            tracing::error!(error = %e, "delivery: cannot record outcomes");
        }
        Ok(progressed)
    }

    async fn deliver(&self, row: &Claimed) -> Finish {
        match self.store.card_superseded(row).await {
            Ok(true) => return Finish::Superseded,
            Ok(false) => {}
            Err(e) => return self.retry(row, format!("store: {e}"), None, false),
        }
        match row.outgoing.platform {
            Platform::Slack => match self.deliver_slack(row).await {
                Ok(finish) => finish,
                Err(Failure::Transient {
                    after,
                    error,
                    doubt,
                }) => self.retry(row, error, after, doubt),
                Err(Failure::Permanent(error)) => Finish::Parked { error },
                Err(Failure::MessageGone) => {
                    self.retry(row, "message_not_found".into(), Some(Duration::ZERO), false)
                }
            },
            Platform::Teams => Finish::Parked {
                error: "Teams delivery is not configured".into(),
            },
        }
    }

    fn retry(
        &self,
        row: &Claimed,
        error: String,
        after: Option<Duration>,
        in_doubt: bool,
    ) -> Finish {
        if row.attempts >= self.config.max_attempts {
            return Finish::Parked {
                error: format!("gave up after {} attempts: {error}", row.attempts),
            };
        }
        let mut backoff = after.unwrap_or_else(|| {
            let exp = self
                .config
                .base_backoff
                .saturating_mul(1 << row.attempts.saturating_sub(1).min(16));
            exp.min(self.config.max_backoff)
        });
        if in_doubt {
            // A request that timed out may still land: let it, before the next attempt
            // looks for it in the conversation.
            backoff = backoff.max(self.config.call_timeout.saturating_mul(2));
        }
        Finish::Retry {
            at: Timestamp::from_millis(self.clock.now().millis() + backoff.as_millis() as i64),
            error,
            in_doubt,
        }
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, SlackClientError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.config.call_timeout, fut).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(Failure::Transient {
                after: None,
                error: "timed out".into(),
                doubt: true,
            }),
        }
    }

    fn content(&self, m: &Outgoing, outbox_id: Option<i64>) -> SlackMessageContent {
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

    async fn deliver_slack(&self, row: &Claimed) -> Result<Finish, Failure> {
        let m = &row.outgoing;
        let session = self.slack.session();
        let channel_of = |to: &Address| match to {
            Address::Channel { channel } => channel.clone(),
            Address::Direct { user } => user.clone(),
            Address::Ephemeral { channel, .. } => channel.clone(),
        };
        if let Address::Ephemeral { channel, user } = &m.to {
            let req = SlackApiChatPostEphemeralRequest::new(
                SlackChannelId::new(channel.clone()),
                SlackUserId::new(user.clone()),
                self.content(m, None),
            );
            self.call(session.chat_post_ephemeral(&req)).await?;
            return Ok(Finish::Sent {
                channel: None,
                ts: None,
            });
        }
        if let Some(key) = &m.card {
            let posted =
                self.store
                    .card(m.platform, key)
                    .await
                    .map_err(|e| Failure::Transient {
                        after: None,
                        error: e.to_string(),
                        doubt: false,
                    })?;
            if let Some(posted) = posted {
                let req = SlackApiChatUpdateRequest::new(
                    SlackChannelId::new(posted.channel.clone()),
                    self.content(m, None),
                    SlackTs::new(posted.ts.clone()),
                );
                return match self.call(session.chat_update(&req)).await {
                    Ok(_) => Ok(Finish::Sent {
                        channel: Some(posted.channel),
                        ts: Some(posted.ts),
                    }),
                    Err(Failure::MessageGone) => {
                        // Someone deleted the card: post it again on the next attempt.
                        let _ = self.store.forget_card(m.platform, key).await;
                        Err(Failure::MessageGone)
                    }
                    Err(e) => Err(e),
                };
            }
        }
        if row.in_doubt && row.attempts > 1 {
            match self.find_posted(row).await {
                Ok(Some((channel, ts))) => {
                    tracing::info!(
                        outbox_id = row.id,
                        "delivery: found the message of an interrupted attempt"
                    );
                    return Ok(Finish::Sent {
                        channel: Some(channel),
                        ts: Some(ts),
                    });
                }
                Ok(None) => {}
                Err(e @ Failure::Transient { .. }) => return Err(e),
                // The history cannot be read (a missing scope, say): deliver rather than
                // lose the message, at the risk of a duplicate.
                Err(_) => tracing::warn!(
                    outbox_id = row.id,
                    "delivery: cannot look for an interrupted post; posting again"
                ),
            }
        }
        let target = channel_of(&m.to);
        if let Some(at) = self.paced(&target).await {
            return Ok(Finish::Defer { at });
        }
        let req = SlackApiChatPostMessageRequest::new(
            SlackChannelId::new(target),
            self.content(m, Some(row.id)),
        );
        let resp = self.call(session.chat_post_message(&req)).await?;
        Ok(Finish::Sent {
            channel: Some(resp.channel.to_string()),
            ts: Some(resp.ts.to_string()),
        })
    }

    /// When the conversation may take another post, if not now. Otherwise records
    /// this post as the conversation's latest.
    async fn paced(&self, target: &str) -> Option<Timestamp> {
        if self.config.per_conversation.is_zero() {
            return None;
        }
        let mut last = self.last_post.lock().await;
        let now = Instant::now();
        if let Some(next) = last
            .get(target)
            .map(|t| *t + self.config.per_conversation)
            .filter(|t| *t > now)
        {
            let wait = next - now;
            return Some(Timestamp::from_millis(
                self.clock.now().millis() + wait.as_millis() as i64 + 1,
            ));
        }
        last.insert(target.to_string(), now);
        if last.len() > 10_000 {
            last.retain(|_, t| *t + self.config.per_conversation > now);
        }
        None
    }

    /// Looks for the message an interrupted attempt may have posted.
    async fn find_posted(&self, row: &Claimed) -> Result<Option<(String, String)>, Failure> {
        let session = self.slack.session();
        let channel = match &row.outgoing.to {
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
            .with_oldest(ts_of(Timestamp::from_millis(
                row.created_at.millis() - 1000,
            )))
            .with_include_all_metadata(true)
            .with_limit(200);
        let resp = self.call(session.conversations_history(&req)).await?;
        let id = row.id.to_string();
        Ok(resp.messages.iter().find_map(|msg| {
            let meta = msg.content.metadata.as_ref()?;
            let ours = meta.event_type == METADATA_TYPE
                && meta.event_payload.as_ref()?.get("outbox_id") == Some(&id);
            ours.then(|| (channel.clone(), msg.origin.ts.to_string()))
        }))
    }
}

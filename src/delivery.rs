//! The outbox worker: delivers queued chat messages, at least once, with idempotent
//! effects, through whichever surface each message is for ([`Surface`], a closed set:
//! each supplies post, update, find-in-doubt, error classification and pacing).
//!
//! - A card is posted once and updated in place afterwards (where it was posted is
//!   stored, in the surface's own terms); a pending update that a newer one makes
//!   pointless is skipped.
//! - Every post is findable by its outbox id (Slack: message metadata). An attempt
//!   that ended without a definite answer (a crash, a timeout, a 5xx) leaves the row
//!   "in doubt"; the next attempt first asks the surface to find the message, so a
//!   post is never duplicated.
//! - 429 waits for `Retry-After`; 5xx, timeouts and transport errors back off
//!   exponentially; permanent errors (`channel_not_found`, `invalid_auth`, ...) park
//!   the message with an error log line, a metric and an audit entry. A message for a
//!   surface that is not configured is parked too.
//! - Posts are paced per conversation at the surface's limit (Slack: about one
//!   message per second per channel); rows to one conversation are delivered in order.
//!
//! Several replicas may run workers on one PostgreSQL: rows are claimed with leases
//! and `SKIP LOCKED`; a worker renews the leases of its attempts in flight, so a dead
//! replica's claims run out one lease (20 s) after it died.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::chat::{Failure, Surface};
use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::message::Platform;
use crate::store::{Claimed, Finish, OutboxRow, OutboxStatus, Store};

/// How often the worker checks that every conversation with pending messages has a
/// queue (see `Store::repair_outbox_queues`).
const REPAIR_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// How many messages are delivered at once.
    pub batch: i64,
    /// How long a claim lasts unless renewed. The worker renews the claims of its
    /// attempts in flight every quarter lease, so a live worker keeps what it is
    /// delivering however long the attempt takes, while a dead replica's claims run
    /// out one lease after it died (and then its messages are tried again, in doubt).
    /// Longer than twice the call timeout, so that a post in flight when a replica
    /// died has landed, or failed, before the next attempt looks for it.
    pub lease: Duration,
    /// First retry delay after a transient failure; doubles per attempt.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Transient failures after which a message is parked.
    pub max_attempts: u32,
    /// Minimum gap between two posts to one conversation; `None`: each surface's own
    /// limit (tests set zero).
    pub per_conversation: Option<Duration>,
    pub call_timeout: Duration,
    /// How often to look for work when nothing signals it (other replicas' rows,
    /// retries coming due).
    pub idle_poll: Duration,
    /// How long a message for a recipient the surface cannot reach yet waits before
    /// it is tried again.
    pub unreachable_wait: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            lease: Duration::from_secs(20),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 12,
            per_conversation: None,
            call_timeout: Duration::from_secs(10),
            idle_poll: Duration::from_millis(500),
            unreachable_wait: Duration::from_secs(60),
        }
    }
}

/// The worker.
pub struct Deliverer {
    store: Store,
    surfaces: Vec<Surface>,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    last_post: Mutex<HashMap<String, Instant>>,
    clock: Clock,
}

impl Deliverer {
    pub fn new(
        store: Store,
        surfaces: Vec<Surface>,
        config: DeliveryConfig,
        wake: Arc<Notify>,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            surfaces,
            config,
            wake,
            clock,
            last_post: Mutex::new(HashMap::new()),
        }
    }

    /// Delivers until `shutdown` turns true, then finishes the deliveries in flight.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // An embedded database belongs to this one process: the claims it finds were
        // a killed predecessor's, and waiting out their lease would only hold
        // their conversations up. They end after the grace an answer in doubt gets
        // (twice the call timeout), so that a post still in flight when the process
        // died can land before the next attempt looks for it. (Replicas on
        // PostgreSQL cannot tell a dead peer's claim from a live one's; there the
        // lease runs out.)
        if self.store.backend() == crate::store::Backend::Sqlite {
            let grace = self
                .config
                .call_timeout
                .saturating_mul(2)
                .min(self.config.lease);
            let until =
                Timestamp::from_millis(self.clock.now().millis() + grace.as_millis() as i64);
            match self.store.shorten_claims(until).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    messages = n,
                    "delivery: a stopped server's claims end after the in-doubt grace"
                ),
                Err(e) => tracing::error!(error = %e, "delivery: cannot cut old claims short"),
            }
        }
        let mut repaired: Option<Instant> = None;
        // Up to `batch` deliveries at once. Each outcome is recorded as soon as its
        // call ends (with any others that ended meanwhile), and a freed slot is filled
        // at once: a slow call holds up only its own conversation, and a crash loses
        // the outcome of the calls in flight alone.
        // Each in a task of its own, so that a call keeps going (and lets go of what
        // it holds) while the loop claims and records.
        let mut in_flight: JoinSet<(Claimed, Finish)> = JoinSet::new();
        // The outbox row each attempt in flight holds, by task, for renewing claims.
        let mut held: HashMap<tokio::task::Id, i64> = HashMap::new();
        let renew_every = self.config.lease / 4;
        let mut renewed = Instant::now();
        loop {
            let stopping = *shutdown.borrow();
            if stopping && in_flight.is_empty() {
                break;
            }
            if !held.is_empty() && renewed.elapsed() >= renew_every {
                renewed = Instant::now();
                self.renew(held.values().copied().collect()).await;
            }
            if !stopping {
                if repaired.is_none_or(|t| t.elapsed() >= REPAIR_EVERY) {
                    repaired = Some(Instant::now());
                    self.repair().await;
                }
                let room = self.config.batch - in_flight.len() as i64;
                if room > 0 {
                    match self.claim(room).await {
                        Ok(rows) => {
                            if held.is_empty() {
                                renewed = Instant::now();
                            }
                            for row in rows {
                                let (this, id) = (self.clone(), row.id);
                                let task = in_flight.spawn(async move { this.traced(row).await });
                                held.insert(task.id(), id);
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "delivery: cannot read the outbox"),
                    }
                }
            }
            if in_flight.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // The next outcome; or, while calls are in flight, new work to claim, or
            // time to renew their claims.
            let first = tokio::select! {
                done = in_flight.join_next_with_id() => done,
                () = self.wake.notified(), if !stopping => None,
                () = tokio::time::sleep(self.config.idle_poll), if !stopping => None,
                () = tokio::time::sleep(renew_every.saturating_sub(renewed.elapsed())) => None,
                _ = shutdown.changed(), if !stopping => None,
            };
            let mut ended = Vec::new();
            for done in first
                .into_iter()
                .chain(std::iter::from_fn(|| in_flight.try_join_next_with_id()))
            {
                match done {
                    Ok((task, outcome)) => {
                        held.remove(&task);
                        ended.push(outcome);
                    }
                    // Its lease runs out and the message is tried again (in doubt).
                    Err(e) => {
                        held.remove(&e.id());
                        tracing::error!(error = %e, "delivery: an attempt failed");
                    }
                }
            }
            if !ended.is_empty() {
                self.finish(ended).await;
            }
        }
    }

    /// Recreates lost conversation queues (see `Store::repair_outbox_queues`).
    async fn repair(&self) {
        match self.store.repair_outbox_queues(self.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(queues = n, "delivery: recreated lost conversation queues"),
            Err(e) => tracing::error!(error = %e, "delivery: cannot check the conversation queues"),
        }
    }

    /// Extends the claims of the attempts in flight by a lease from now.
    async fn renew(&self, ids: Vec<i64>) {
        let until = Timestamp::from_millis(
            self.clock.now().millis() + self.config.lease.as_millis() as i64,
        );
        if let Err(e) = self.store.renew_claims(&ids, until).await {
            // Retried at the next renewal; a claim that runs out meanwhile is tried
            // again in doubt, which looks for the post first.
            tracing::error!(error = %e, "delivery: cannot renew claims");
        }
    }

    /// Claims up to `limit` due messages (the head of each due conversation).
    async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, crate::store::StoreError> {
        let lease = self.config.lease.as_millis() as i64;
        self.store
            .claim_outbox(self.clock.now(), limit, lease)
            .await
    }

    /// A message's attempt, in a span naming it and the request it is about.
    fn traced(&self, row: Claimed) -> impl Future<Output = (Claimed, Finish)> + Send + '_ {
        let span = tracing::info_span!(
            "delivery",
            outbox_id = row.id,
            reference = tracing::field::Empty
        );
        if let Some(id) = &row.outgoing.request {
            span.record("reference", tracing::field::display(id));
        }
        self.deliver_one(row).instrument(span)
    }

    /// Records how attempts ended, in one commit.
    async fn finish(&self, ended: Vec<(Claimed, Finish)>) {
        if let Err(e) = self.store.finish_deliveries(ended, self.clock.now()).await {
            // The leases expire and the rows are retried (in doubt, so no duplicate).
            tracing::error!(error = %e, "delivery: cannot record outcomes");
        }
    }

    /// One message's attempt, with its metrics and log lines.
    async fn deliver_one(&self, row: Claimed) -> (Claimed, Finish) {
        let finish = self.deliver(&row).await;
        let (outcome, error) = match &finish {
            Finish::Sent { .. } => ("sent", None),
            Finish::Superseded => ("superseded", None),
            Finish::Retry { error, .. } => ("retried", Some(error.as_str())),
            Finish::Parked { error } => ("parked", Some(error.as_str())),
            Finish::Wait { error, .. } => ("waiting", Some(error.as_str())),
            Finish::Defer { .. } => ("deferred", None),
        };
        self.store
            .metrics()
            .delivered(row.outgoing.platform.as_str(), outcome, error);
        if let Finish::Wait { error, .. } = &finish {
            tracing::warn!(
                outbox_id = row.id,
                target = %row.outgoing.to.target(),
                error = %error,
                "delivery: cannot reach the recipient yet; the message waits"
            );
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
    }

    async fn deliver(&self, row: &Claimed) -> Finish {
        match self.store.card_superseded(row).await {
            Ok(true) => return self.superseded(row).await,
            Ok(false) => {}
            Err(e) => return self.retry(row, format!("store: {e}"), None, false),
        }
        let platform = row.outgoing.platform;
        let Some(surface) = self.surfaces.iter().find(|s| s.platform() == platform) else {
            return Finish::Parked {
                error: format!("{} delivery is not configured", platform_name(platform)),
            };
        };
        match self.deliver_to(surface, row).await {
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
            Err(Failure::Unreachable(error)) => Finish::Wait {
                at: Timestamp::from_millis(
                    self.clock.now().millis() + self.config.unreachable_wait.as_millis() as i64,
                ),
                error,
            },
        }
    }

    /// A card message a newer one overtook. If an earlier attempt to post it was
    /// interrupted, the post may have landed: find it first, so that the newer
    /// version updates that card in place instead of posting a second one.
    async fn superseded(&self, row: &Claimed) -> Finish {
        let surface = self
            .surfaces
            .iter()
            .find(|s| s.platform() == row.outgoing.platform);
        let Some(found) = self.interrupted_post(surface, row).await else {
            return Finish::Superseded;
        };
        match found {
            Ok(Some(posted)) => {
                tracing::info!(
                    outbox_id = row.id,
                    "delivery: an overtaken card's interrupted post had landed; the newer version updates it"
                );
                Finish::Sent {
                    posted: Some(posted),
                }
            }
            Ok(None) => Finish::Superseded,
            Err(Failure::Transient { after, error, .. }) => self.retry(row, error, after, true),
            Err(_) => Finish::Superseded,
        }
    }

    /// When an earlier attempt to post `row` was interrupted (the call may have taken
    /// effect), the surface's search for that post, counted in the metrics; `None`
    /// when there is nothing to look for.
    async fn interrupted_post(
        &self,
        surface: Option<&Surface>,
        row: &Claimed,
    ) -> Option<Result<Option<crate::message::Posted>, Failure>> {
        let m = &row.outgoing;
        let surface = surface.filter(|s| row.in_doubt && row.attempts > 1 && s.is_paced(m))?;
        // From when it was queued or first tried, whichever came first by this
        // server's clock (a sweep at another instant queues with that instant).
        let since = row
            .first_attempt_at
            .map_or(row.created_at, |t| t.min(row.created_at));
        let found = surface.find(m, row.id, since).await;
        self.store.metrics().in_doubt_lookup(
            m.platform.as_str(),
            match &found {
                Ok(Some(_)) => "found",
                Ok(None) => "not_found",
                Err(_) => "failed",
            },
        );
        Some(found)
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

    /// One attempt: update a posted card in place, or find an interrupted post, or post.
    async fn deliver_to(&self, surface: &Surface, row: &Claimed) -> Result<Finish, Failure> {
        let m = &row.outgoing;
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
                return match surface.update(&posted, m).await {
                    Ok(posted) => Ok(Finish::Sent {
                        posted: Some(posted),
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
        let paced = surface.is_paced(m);
        if let Some(found) = self.interrupted_post(Some(surface), row).await {
            match found {
                Ok(Some(posted)) => {
                    tracing::info!(
                        outbox_id = row.id,
                        "delivery: found the message of an interrupted attempt"
                    );
                    return Ok(Finish::Sent {
                        posted: Some(posted),
                    });
                }
                Ok(None) => {}
                Err(e @ Failure::Transient { .. }) => return Err(e),
                // The history cannot be read (a missing scope, say): deliver rather than
                // lose the message, at the risk of a duplicate.
                Err(e) => tracing::warn!(
                    outbox_id = row.id,
                    error = ?e,
                    "delivery: cannot look for an interrupted post; posting again"
                ),
            }
        }
        if paced {
            let pace = self
                .config
                .per_conversation
                .unwrap_or_else(|| surface.pace());
            let conversation = format!("{}:{}", m.platform.as_str(), surface.conversation(m));
            if let Some(at) = self.paced(&conversation, pace).await {
                return Ok(Finish::Defer { at });
            }
        }
        let keys = surface.reference_keys(m);
        let reference = if keys.is_empty() {
            None
        } else {
            self.store
                .conversation(m.platform, &keys)
                .await
                .map_err(|e| Failure::Transient {
                    after: None,
                    error: format!("store: {e}"),
                    doubt: false,
                })?
        };
        let posted = surface.post(m, row.id, reference.as_ref()).await?;
        // A conversation the surface opened (a first direct message): remember it.
        if let (Some(p), Some(key)) = (&posted, keys.first())
            && let Some(r) = &p.reference
            && reference.as_ref().is_none_or(|(k, _)| k != key)
            && let Err(e) = self
                .store
                .remember_conversation(m.platform, key, r, self.clock.now())
                .await
        {
            tracing::warn!(error = %e, "delivery: cannot remember a new conversation");
        }
        Ok(Finish::Sent { posted })
    }

    /// When the conversation may take another post, if not now. Otherwise records
    /// this post as the conversation's latest.
    async fn paced(&self, target: &str, pace: Duration) -> Option<Timestamp> {
        if pace.is_zero() {
            return None;
        }
        let mut last = self.last_post.lock().await;
        let now = Instant::now();
        if let Some(next) = last.get(target).map(|t| *t + pace).filter(|t| *t > now) {
            let wait = next - now;
            return Some(Timestamp::from_millis(
                self.clock.now().millis() + wait.as_millis() as i64 + 1,
            ));
        }
        last.insert(target.to_string(), now);
        if last.len() > 10_000 {
            last.retain(|_, t| *t + pace > now);
        }
        None
    }
}

fn platform_name(p: Platform) -> &'static str {
    match p {
        Platform::Slack => "Slack",
        Platform::Teams => "Teams",
    }
}

/// What `waiver outbox` prints: every message not delivered yet, one line each — the
/// recipient, what it is, how far its delivery got and why it is not there yet.
pub fn undelivered_report(rows: &[OutboxRow], now: Timestamp) -> String {
    if rows.is_empty() {
        return "every message has been delivered\n".into();
    }
    let parked = rows
        .iter()
        .filter(|r| r.status == OutboxStatus::Parked)
        .count();
    let mut out = format!(
        "{} message(s) not delivered: {} pending, {parked} parked\n",
        rows.len(),
        rows.len() - parked
    );
    for r in rows {
        let m = &r.outgoing;
        let state = match r.status {
            OutboxStatus::Parked => "parked (send again with `waiver outbox retry`)".to_string(),
            _ if r.next_attempt_at > now => format!("next try {}", r.next_attempt_at.minute()),
            _ => "due now".to_string(),
        };
        let kind = if m.card.is_some() { "card" } else { "message" };
        let what = match &m.request {
            Some(id) => format!("{id} {kind}"),
            None => kind.to_string(),
        };
        let mut summary: String = m.message.summary.chars().take(80).collect();
        if summary.len() < m.message.summary.len() {
            summary.push('…');
        }
        out.push_str(&format!(
            "#{} {} {} — {what} {summary:?}, filed {}, {} attempt(s), {state}",
            r.id,
            platform_name(m.platform),
            m.to.target(),
            r.created_at.minute(),
            r.attempts,
        ));
        if let Some(e) = &r.last_error {
            out.push_str(&format!(": {e}"));
        }
        out.push('\n');
    }
    out
}

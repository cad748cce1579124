//! The one orchestrator: load → the pure domain decides → the store commits the new
//! state, its audit entry and the messages it causes, in one transaction.
//!
//! Refusals are expected outcomes: they are recorded in the audit trail and returned
//! as [`Acted::Refused`] for the chat surface to explain. Concurrent changes to the
//! same request are retried from a fresh read: the domain re-checks everything, so a
//! retry can only succeed if the action is still valid.

use std::sync::Arc;

use serde_json::json;

use crate::chat::plan::{self, Context};
use crate::clock::Clock;
use crate::domain::schedule;
use crate::domain::{
    Action, Actor, Event, ExceptionRequest, FieldErrors, FormInput, RequestContent, RequestId,
    State, Timestamp, WorkflowError,
};
use crate::governance::{Governance, PersonId};
use crate::message::{Address, Message, Outgoing, Platform, Section};
use crate::store::{
    AuditRecord, Change, NewRequest, Outcome, ReminderRow, ReminderStatus, Scheduling, Store,
    StoreError,
};

mod evidence;
mod query;
mod sweep;

pub use evidence::EVIDENCE_ROUTE;
pub use query::{Home, Overview, Register, Tasks, TimelineEntry, Waiting};
pub use sweep::SweepReport;

/// Attempts before a contended request gives up (each retry re-reads and re-decides).
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} does not exist")]
    NotFound(RequestId),
    #[error("{0} is changing too often right now; try again")]
    Busy(RequestId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the service cannot take work right now.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("database unavailable")]
    Database(#[source] StoreError),
    #[error("busy: {queued} changes are waiting to be written")]
    Backlog { queued: usize },
}

/// How an action ended.
#[derive(Debug)]
pub enum Acted {
    Applied {
        before: Box<ExceptionRequest>,
        request: Box<ExceptionRequest>,
        event: Box<Event>,
    },
    Refused {
        request: Box<ExceptionRequest>,
        error: WorkflowError,
    },
    /// The same delivery (idempotency key) was processed before.
    Duplicate,
}

#[derive(Debug)]
pub enum Submitted {
    Filed(Box<ExceptionRequest>),
    Invalid(FieldErrors),
    Refused(WorkflowError),
    /// Filed already under this idempotency key (a platform re-sent the submission).
    Duplicate,
}

/// One attempt by someone to act on a request.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub actor: Actor,
    pub request: RequestId,
    /// The version the actor saw (on the card they clicked).
    pub seen: u32,
    pub action: Action,
    /// Processed at most once (Slack `event_id`, Teams activity id).
    pub idempotency_key: Option<String>,
    /// Where to explain a refusal (an ephemeral message), in the same transaction as
    /// its audit entry.
    pub reply_to: Option<(Platform, Address)>,
}

impl Attempt {
    pub fn new(actor: Actor, request: RequestId, seen: u32, action: Action) -> Self {
        Self {
            actor,
            request,
            seen,
            action,
            idempotency_key: None,
            reply_to: None,
        }
    }

    pub fn idempotent(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn reply_to(mut self, platform: Platform, address: Address) -> Self {
        self.reply_to = Some((platform, address));
        self
    }
}

/// A refusal decided before any action was attempted (a button whose form the clicker
/// may not use, a renewal they may not file): the audit trail names what was tried.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub actor: Actor,
    /// The version the actor saw.
    pub seen: u32,
    /// The audit trail's name for what was tried (`renew`, `approve`, …).
    pub action: &'static str,
    /// Where to explain it (an ephemeral message), with its audit entry.
    pub reply_to: Option<(Platform, Address)>,
    pub idempotency_key: Option<String>,
}

impl Attempt {
    fn refusal(&self) -> Refusal {
        Refusal {
            actor: self.actor.clone(),
            seen: self.seen,
            action: self.action.name(),
            reply_to: self.reply_to.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// Input refused before any request could decide it: who (as the audit names them),
/// what they tried, why, the request it named (if any), the explanation to deliver
/// (if the surface sends it asynchronously) and an idempotency key (if re-delivered).
#[derive(Clone, Debug)]
pub struct Rejected {
    actor: String,
    action: String,
    reason: String,
    request: Option<RequestId>,
    outbox: Vec<Outgoing>,
    key: Option<String>,
}

impl Rejected {
    pub fn new(actor: String, action: &str, reason: String) -> Self {
        Self {
            actor,
            action: action.to_string(),
            reason,
            request: None,
            outbox: Vec::new(),
            key: None,
        }
    }

    pub fn about(mut self, request: RequestId) -> Self {
        self.request = Some(request);
        self
    }

    pub fn explained(mut self, message: Outgoing) -> Self {
        self.outbox.push(message);
        self
    }

    pub fn once(mut self, key: String) -> Self {
        self.key = Some(key);
        self
    }
}

#[derive(Clone)]
pub struct Service {
    store: Store,
    gov: Arc<Governance>,
    platforms: Arc<[Platform]>,
    /// Woken after every commit that queued messages, so delivery starts at once.
    outbox_ready: Arc<tokio::sync::Notify>,
    /// Actions on one request in this process take turns, so they never conflict
    /// with each other; conflicts remain possible only across replicas.
    turns: Arc<Turns>,
    clock: Clock,
    /// Signed download links for evidence packs asked for in chat.
    links: Option<Arc<evidence::Links>>,
}

/// One async lock per request in use.
#[derive(Default)]
struct Turns {
    locks: std::sync::Mutex<
        std::collections::HashMap<RequestId, std::sync::Weak<tokio::sync::Mutex<()>>>,
    >,
}

impl Turns {
    fn of(&self, id: RequestId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(&id).and_then(std::sync::Weak::upgrade) {
            return lock;
        }
        if locks.len() > 4096 {
            locks.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(id, Arc::downgrade(&lock));
        lock
    }
}

impl Service {
    /// A service that talks to Slack; its edges read `now` from `clock` (the wiring
    /// chooses it).
    pub fn new(store: Store, gov: Arc<Governance>, clock: Clock) -> Self {
        Self::with_platforms(store, gov, clock, &[Platform::Slack])
    }

    pub fn with_platforms(
        store: Store,
        gov: Arc<Governance>,
        clock: Clock,
        platforms: &[Platform],
    ) -> Self {
        Self {
            store,
            gov,
            platforms: platforms.into(),
            outbox_ready: Arc::new(tokio::sync::Notify::new()),
            turns: Arc::new(Turns::default()),
            clock,
            links: None,
        }
    }

    /// Lets `export` in chat send signed links to evidence packs at `base_url`
    /// (`WAIVER_PUBLIC_URL`), keyed by `secret` (a secret every replica shares).
    pub fn with_evidence_links(mut self, base_url: &str, secret: &str) -> Self {
        self.links = Some(Arc::new(evidence::Links::new(base_url, secret)));
        self
    }

    /// The clock the edges read `now` from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// This server's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        self.store.metrics()
    }

    /// The text `GET /metrics` answers: the counters, with what the database says now
    /// (outbox backlog, exceptions by state) read first.
    pub async fn scrape_metrics(&self) -> Result<String, StoreError> {
        let (writer_queue, writer_capacity) = self.store.writer_backlog();
        let (backlog, oldest) = self.store.outbox_backlog().await?;
        let states = self.store.counts_by_state().await?;
        let now = self.clock.now();
        let observed = crate::metrics::Observed {
            writer_queue,
            writer_capacity,
            outbox: backlog
                .into_iter()
                .map(|(p, status, n)| (p.as_str(), status.as_str(), n))
                .collect(),
            oldest_pending_seconds: oldest
                .map_or(0.0, |t| (now.millis() - t.millis()).max(0) as f64 / 1000.0),
            exceptions: states
                .into_iter()
                .map(|(state, n)| (state.as_str(), n as i64))
                .collect(),
        };
        let metrics = self.store.metrics();
        metrics.observe(&observed);
        Ok(metrics.encode())
    }

    /// Whether the service can take work now (for `/readyz`): the database answers
    /// and the writer's queue has room.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let (queued, room) = self.store.writer_backlog();
        if queued >= room {
            return Err(NotReady::Backlog { queued });
        }
        self.store.ping().await.map_err(NotReady::Database)
    }

    /// The earliest instant the scheduler has something to do, if any.
    pub async fn next_due_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.store.next_due_at().await
    }

    /// Claims a delivery's idempotency key for something that changes nothing (an App
    /// Home view): `false` when it was processed before.
    pub async fn claim(&self, key: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.store.claim_idempotency_key(key, now).await
    }

    /// Signalled whenever new messages are queued (the delivery worker waits on it).
    pub fn outbox_ready(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_ready.clone()
    }

    pub fn platforms(&self) -> &[Platform] {
        &self.platforms
    }

    /// Plans the messages of a transition (with similar past exceptions when a review
    /// card will show them).
    async fn plan(
        &self,
        before: Option<&ExceptionRequest>,
        after: &ExceptionRequest,
        event: &Event,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let reviewing = matches!(
            after.state,
            State::InAssessment
                | State::ReassessmentRequired
                | State::InStakeholderReview
                | State::AwaitingDecision
        );
        let similar = if reviewing {
            self.store.similar(after, 5).await?
        } else {
            Vec::new()
        };
        let ctx = Context {
            gov: &self.gov,
            platforms: &self.platforms,
            similar: &similar,
        };
        Ok(plan::plan(&ctx, before, after, event))
    }

    pub fn governance(&self) -> &Arc<Governance> {
        &self.gov
    }

    /// Files a new request (or a renewal of `renews`).
    pub async fn submit(
        &self,
        requester: &PersonId,
        input: &FormInput,
        renews: Option<RequestId>,
        now: Timestamp,
    ) -> Result<Submitted, ServiceError> {
        self.submit_once(requester, input, renews, None, now).await
    }

    /// [`submit`](Self::submit), at most once per `idempotency_key` (the platform's
    /// id for a submission it may send again): the request, its audit entry and the
    /// key are committed together.
    pub async fn submit_once(
        &self,
        requester: &PersonId,
        input: &FormInput,
        renews: Option<RequestId>,
        idempotency_key: Option<String>,
        now: Timestamp,
    ) -> Result<Submitted, ServiceError> {
        let gov = self.gov.clone();
        let content = match RequestContent::parse(input, &gov, now.date()) {
            Ok(c) => c,
            Err(errors) => return Ok(Submitted::Invalid(errors)),
        };
        if let Some(old_id) = renews {
            let old = self
                .store
                .load(old_id)
                .await?
                .ok_or(ServiceError::NotFound(old_id))?;
            if let Err(error) = old.may_renew(requester) {
                let refusal = Refusal {
                    actor: Actor::Person(requester.clone()),
                    seen: old.version(),
                    action: "renew",
                    reply_to: None,
                    idempotency_key: None,
                };
                self.refuse(&refusal, &old, &error, now).await?;
                return Ok(Submitted::Refused(error));
            }
        }
        let requester = requester.clone();
        let platforms = self.platforms.clone();
        let created = self
            .store
            .create_once(
                move |id| {
                    let t = ExceptionRequest::submit(
                        id,
                        requester.clone(),
                        content.clone(),
                        renews,
                        now,
                    );
                    let ctx = Context {
                        gov: &gov,
                        platforms: &platforms,
                        similar: &[],
                    };
                    let outbox = plan::plan(&ctx, None, &t.request, &t.event);
                    let audit = applied(
                        &Actor::Person(requester.clone()),
                        "submit",
                        None,
                        &t.request,
                        &t.event,
                        now,
                    );
                    let due_at = schedule::next_due(&t.request, &gov, now);
                    NewRequest {
                        request: t.request,
                        event: t.event,
                        audit,
                        outbox,
                        due_at,
                    }
                },
                idempotency_key,
                now,
            )
            .await;
        let new = match created {
            Ok(new) => new,
            Err(StoreError::Duplicate) => return Ok(Submitted::Duplicate),
            Err(e) => return Err(e.into()),
        };
        self.outbox_ready.notify_one();
        let request = new.request;
        tracing::Span::current().record("reference", tracing::field::display(request.id));
        tracing::info!(requester = %request.requester, "filed");
        Ok(Submitted::Filed(Box::new(request)))
    }

    /// Brings in one past exception (`waiver import`), at most once per
    /// `idempotency_key` (its external id): the request, its `import` audit entry
    /// naming `actor` and the source, and its schedule, in one transaction. No chat
    /// message is sent. `Ok(None)`: imported before.
    pub async fn import_past(
        &self,
        past: crate::domain::Past,
        actor: &str,
        idempotency_key: String,
        now: Timestamp,
    ) -> Result<Option<ExceptionRequest>, ServiceError> {
        let gov = self.gov.clone();
        let actor = actor.to_string();
        let created = self
            .store
            .create_once(
                move |id| {
                    let t = ExceptionRequest::import(id, past.clone(), now);
                    let mut audit =
                        applied(&Actor::Scheduler, "import", None, &t.request, &t.event, now);
                    audit.actor = actor.clone();
                    let due_at = schedule::next_due(&t.request, &gov, now);
                    NewRequest {
                        request: t.request,
                        event: t.event,
                        audit,
                        outbox: Vec::new(),
                        due_at,
                    }
                },
                Some(idempotency_key),
                now,
            )
            .await;
        match created {
            Ok(new) => Ok(Some(new.request)),
            Err(StoreError::Duplicate) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes an attempt at `now`: load, decide, commit (retrying from a fresh read when
    /// someone else changed the request first).
    pub async fn act(&self, attempt: Attempt, now: Timestamp) -> Result<Acted, ServiceError> {
        let id = attempt.request;
        // The request's log lines name it from here on.
        tracing::Span::current().record("reference", tracing::field::display(id));
        let turn = self.turns.of(id);
        let _turn = turn.lock().await;
        for round in 0..MAX_ATTEMPTS {
            if round > 0 {
                // Another replica changed the request: back off a little, with jitter.
                tokio::time::sleep(jitter(round)).await;
            }
            let before = self
                .store
                .load(id)
                .await?
                .ok_or(ServiceError::NotFound(id))?;
            let t = match before.apply(
                &attempt.actor,
                attempt.seen,
                attempt.action.clone(),
                &self.gov,
                now,
            ) {
                Ok(t) => t,
                Err(error) if attempt.actor == Actor::Scheduler => {
                    // The scheduler re-checks on every sweep; its refusals are not
                    // attempts by anyone (another replica got there first).
                    return Ok(Acted::Refused {
                        request: Box::new(before),
                        error,
                    });
                }
                Err(error) => {
                    tracing::info!(action = attempt.action.name(), reason = %error, "refused");
                    let recorded = self.refuse(&attempt.refusal(), &before, &error, now).await;
                    return match recorded {
                        Ok(()) => Ok(Acted::Refused {
                            request: Box::new(before),
                            error,
                        }),
                        Err(StoreError::Duplicate) => Ok(Acted::Duplicate),
                        Err(e) => Err(e.into()),
                    };
                }
            };
            let mut outbox = self.plan(Some(&before), &t.request, &t.event).await?;
            let scheduling = Scheduling {
                due_at: schedule::next_due(&t.request, &self.gov, now),
                reminders: if attempt.actor == Actor::Scheduler {
                    to_digests(&t.request, &mut outbox, now)
                } else {
                    Vec::new()
                },
            };
            let audit = applied(
                &attempt.actor,
                attempt.action.name(),
                Some(&before),
                &t.request,
                &t.event,
                now,
            );
            let change = Change {
                event: &t.event,
                audit,
                outbox,
                idempotency_key: attempt.idempotency_key.clone(),
                scheduling,
            };
            match self.store.commit(&before, &t.request, change).await {
                Ok(_) => {
                    self.outbox_ready.notify_one();
                    tracing::info!(
                        action = attempt.action.name(),
                        actor = %attempt.actor.audit_name(),
                        state = t.request.state.as_str(),
                        "applied"
                    );
                    return Ok(Acted::Applied {
                        before: Box::new(before),
                        request: Box::new(t.request),
                        event: Box::new(t.event),
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Duplicate) => return Ok(Acted::Duplicate),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy(id))
    }

    /// Records a refused attempt on `request` (an audit entry), with the explanation
    /// where the attempt came from when the surface asked for one.
    pub async fn refuse(
        &self,
        refusal: &Refusal,
        request: &ExceptionRequest,
        error: &WorkflowError,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let audit = AuditRecord {
            at: now,
            actor: refusal.actor.audit_name(),
            request: Some(request.id),
            action: refusal.action.to_string(),
            outcome: Outcome::Refused,
            details: json!({
                "reason": error.to_string(),
                "state": request.state,
                "version": request.version(),
                "seen": refusal.seen,
            }),
        };
        let reply = refusal
            .reply_to
            .clone()
            .map(|(platform, to)| refusal_message(platform, to, request.id, &error.to_string()));
        let has_reply = reply.is_some();
        self.store.metrics().refused(
            refusal.reply_to.as_ref().map_or("any", |(p, _)| p.as_str()),
            &crate::metrics::variant_label(&format!("{error:?}")),
        );
        self.store
            .record(
                audit,
                reply.into_iter().collect(),
                refusal.idempotency_key.clone(),
            )
            .await?;
        if has_reply {
            self.outbox_ready.notify_one();
        }
        Ok(())
    }

    /// Records input refused before any request could decide it (an unknown
    /// workspace, a malformed reference), so that the audit trail shows the attempt.
    pub async fn record_refusal(
        &self,
        refused: Rejected,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let audit = AuditRecord {
            at: now,
            actor: refused.actor,
            request: refused.request,
            action: refused.action.to_string(),
            outcome: Outcome::Refused,
            details: json!({ "reason": refused.reason }),
        };
        let has_messages = !refused.outbox.is_empty();
        self.store.metrics().refused("any", "unknown_input");
        match self.store.record(audit, refused.outbox, refused.key).await {
            Ok(_) | Err(StoreError::Duplicate) => {}
            Err(e) => return Err(e),
        }
        if has_messages {
            self.outbox_ready.notify_one();
        }
        Ok(())
    }
}

/// The scheduler's transitions tell people in their next digest, never one direct
/// message per item: one-off direct messages become queued reminders.
fn to_digests(
    r: &ExceptionRequest,
    outbox: &mut Vec<Outgoing>,
    now: Timestamp,
) -> Vec<ReminderRow> {
    let mut rows = Vec::new();
    outbox.retain(|m| {
        if m.card.is_some() || !matches!(m.to, Address::Direct { .. }) {
            return true;
        }
        rows.push(ReminderRow {
            key: format!("said:{}:{}:{}", r.id.get(), r.revision, rows.len()),
            request: Some(r.id),
            platform: m.platform,
            to: m.to.clone(),
            due_at: now,
            status: ReminderStatus::Queued,
            message: m.message.clone(),
        });
        false
    });
    rows
}

fn applied(
    actor: &Actor,
    action: &str,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
    now: Timestamp,
) -> AuditRecord {
    AuditRecord {
        at: now,
        actor: actor.audit_name(),
        request: Some(after.id),
        action: action.to_string(),
        outcome: Outcome::Applied,
        details: json!({
            "from": before.map(|b| b.state),
            "to": after.state,
            "version": after.version(),
            "revision": after.revision,
            "digest": crate::store::digest(after),
            "event": event,
        }),
    }
}

/// A few milliseconds, growing with `round`, randomised so that contenders spread out.
fn jitter(round: usize) -> std::time::Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(round) % 1000;
    std::time::Duration::from_micros((round as u64) * 2000 + random * round as u64)
}

/// An ephemeral explanation of a refusal.
pub fn refusal_message(
    platform: Platform,
    to: Address,
    request: RequestId,
    text: &str,
) -> Outgoing {
    let text = text.to_string();
    Outgoing {
        request: Some(request),
        platform,
        to,
        card: None,
        message: Message {
            summary: text.clone(),
            sections: vec![Section::Text { label: None, text }],
        },
    }
}

//! Group commit: state changes are queued to one writer task, which commits whatever
//! has gathered as one transaction of multi-row statements.
//!
//! Why: every statement is a round trip (for SQLite, to sqlx's worker thread: ~75 µs
//! on the 2-core reference machine) and every commit an fsync; a click that wrote its
//! dozen rows one statement at a time was bound by round trips, not work. A batch
//! costs about ten statements and one fsync however many changes it holds, and adds
//! no latency when the writer is idle (a batch is whatever queued during the previous
//! commit).
//!
//! Semantics are those of one transaction per change:
//! - optimistic concurrency: one guarded upsert (`WHERE revision = excluded.revision
//!   - 1 ... RETURNING id`) decides which changes win; a change whose request moved on
//!   (or that touches a request an earlier change in the batch touched) gets
//!   `Conflict` and writes nothing;
//! - idempotency keys: a key already claimed (or claimed earlier in the batch) gets
//!   `Duplicate` and writes nothing;
//! - only winners' records, audit entries and outbox rows are written;
//! - if the batch fails as a whole, each change is retried alone, so one bad change
//!   cannot fail its neighbours.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, AnyConnection, AssertSqlSafe, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::audit::{self, AuditRecord};
use super::{Backend, NewRequest, RequestBody, Result, StoreError, json, system_key};
use crate::domain::{Event, ExceptionRequest, RequestId, State, Timestamp, VoteVerdict};
use crate::message::Outgoing;

/// Largest batch the writer commits at once.
const MAX_BATCH: usize = 256;
/// Multi-row statements are issued in these sizes, so that each table needs only a
/// handful of distinct statements (and they stay in the prepared-statement cache).
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// A value bound to a placeholder.
#[derive(Clone, Debug)]
pub(crate) enum Bind {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

pub(super) struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    suffix: &'static str,
}

const REQUESTS: Table = Table {
    name: "requests",
    columns: &[
        "id",
        "revision",
        "state",
        "version",
        "requester",
        "business_owner",
        "title",
        "ai_system",
        "policy_id",
        "policy_version",
        "tier",
        "risk_score",
        "renews",
        "created_at",
        "updated_at",
        "stage_since",
        "starts_at",
        "expires_at",
        "next_review_at",
        "monitoring_owner",
        "body",
        "ai_system_key",
        "due_at",
        "department",
        "regions",
        "created_month",
    ],
    // `due_at` keeps an earlier instant the scheduler has not handled yet (it moves it
    // on itself after a sweep); it is cleared when nothing can be due any more.
    suffix: " ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, state = excluded.state, \
        version = excluded.version, requester = excluded.requester, business_owner = excluded.business_owner, \
        title = excluded.title, ai_system = excluded.ai_system, policy_id = excluded.policy_id, \
        policy_version = excluded.policy_version, tier = excluded.tier, risk_score = excluded.risk_score, \
        renews = excluded.renews, created_at = excluded.created_at, updated_at = excluded.updated_at, \
        stage_since = excluded.stage_since, starts_at = excluded.starts_at, expires_at = excluded.expires_at, \
        next_review_at = excluded.next_review_at, monitoring_owner = excluded.monitoring_owner, \
        body = excluded.body, ai_system_key = excluded.ai_system_key, \
        department = excluded.department, regions = excluded.regions, created_month = excluded.created_month, \
        due_at = CASE WHEN excluded.due_at IS NULL THEN NULL \
          WHEN requests.due_at IS NOT NULL AND requests.due_at < excluded.due_at THEN requests.due_at \
          ELSE excluded.due_at END \
        WHERE requests.revision = excluded.revision - 1 RETURNING id",
};
const VERSIONS: Table = Table {
    name: "request_versions",
    columns: &["request_id", "version", "author", "created_at", "body"],
    suffix: "",
};
const REVIEWS: Table = Table {
    name: "reviews",
    columns: &[
        "request_id",
        "seq",
        "version",
        "reviewer",
        "verdict",
        "created_at",
        "body",
    ],
    suffix: "",
};
const ASSESSMENTS: Table = Table {
    name: "assessments",
    columns: &[
        "request_id",
        "seq",
        "version",
        "role",
        "assessor",
        "likelihood",
        "impact",
        "created_at",
        "body",
    ],
    suffix: "",
};
const COMMENTS: Table = Table {
    name: "comments",
    columns: &[
        "request_id",
        "seq",
        "version",
        "author",
        "created_at",
        "body",
    ],
    suffix: "",
};
const DECISIONS: Table = Table {
    name: "decisions",
    columns: &[
        "request_id",
        "seq",
        "version",
        "approver",
        "role",
        "verdict",
        "created_at",
        "governance_hash",
        "policy_version",
        "body",
        "snapshot",
    ],
    suffix: "",
};
const CONDITIONS: Table = Table {
    name: "conditions",
    columns: &[
        "request_id",
        "condition_id",
        "owner",
        "due",
        "done_by",
        "done_at",
        "body",
    ],
    suffix: " ON CONFLICT (request_id, condition_id) DO UPDATE SET owner = excluded.owner, due = excluded.due, \
        done_by = excluded.done_by, done_at = excluded.done_at, body = excluded.body",
};
const ATTESTATIONS: Table = Table {
    name: "attestations",
    columns: &[
        "request_id",
        "seq",
        "attested_by",
        "answer",
        "created_at",
        "body",
    ],
    suffix: "",
};
pub(super) const REMINDERS: Table = Table {
    name: "reminders",
    columns: &[
        "key",
        "request_id",
        "platform",
        "target",
        "due_at",
        "created_at",
        "status",
        "sent_at",
        "body",
    ],
    // A key that exists already belongs to whoever inserted it first.
    suffix: " ON CONFLICT (key) DO NOTHING",
};
const IDEMPOTENCY: Table = Table {
    name: "idempotency",
    columns: &["key", "created_at"],
    suffix: "",
};
const OUTBOX: Table = Table {
    name: "outbox",
    columns: &[
        "created_at",
        "request_id",
        "platform",
        "target",
        "card_key",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
    ],
    suffix: "",
};
/// A conversation's queue exists while it has pending messages; an existing queue
/// keeps its schedule (it may be backing off). The no-op update takes the queue's row
/// lock, so a delivery worker emptying the queue concurrently waits for this batch
/// and then sees its messages (PostgreSQL, READ COMMITTED).
pub(super) const QUEUES: Table = Table {
    name: "outbox_queues",
    columns: &["platform", "target", "next_attempt_at"],
    suffix: " ON CONFLICT (platform, target) DO UPDATE SET next_attempt_at = outbox_queues.next_attempt_at",
};
pub(super) const CARDS: Table = Table {
    name: "cards",
    columns: &[
        "platform",
        "card_key",
        "request_id",
        "conversation",
        "message",
        "reference",
        "updated_at",
    ],
    suffix: " ON CONFLICT (platform, card_key) DO UPDATE SET conversation = excluded.conversation, \
        message = excluded.message, reference = excluded.reference, updated_at = excluded.updated_at",
};
const EVENTS: Table = Table {
    name: "request_events",
    columns: &["request_id", "revision", "at", "actor", "kind", "version"],
    suffix: "",
};
pub(super) const AUDIT: Table = Table {
    name: "audit",
    columns: &[
        "seq",
        "at",
        "actor",
        "request_id",
        "action",
        "outcome",
        "entry",
        "prev_hash",
        "hash",
    ],
    suffix: "",
};

/// The rows one change writes, computed outside the writer from (before, after).
#[derive(Clone)]
pub(super) struct Delta {
    request: Vec<Bind>,
    id: i64,
    records: Vec<(&'static Table, Vec<Bind>)>,
}

/// What the scheduler is owed by a request as it commits.
#[derive(Clone, Debug, Default)]
pub struct Scheduling {
    /// When the scheduler next has something to do for the request.
    pub due_at: Option<Timestamp>,
    /// Reminders queued for the next digest (the scheduler's transitions tell people
    /// in digests, never one message per item).
    pub reminders: Vec<super::schedule::ReminderRow>,
}

/// Scheduling columns are set only while they matter, so the partial indexes hold
/// only live rows.
fn request_row(r: &ExceptionRequest, now: Timestamp, due_at: Option<Timestamp>) -> Vec<Bind> {
    let c = r.content();
    let body = json(&RequestBody {
        required_roles: r.required_roles.clone(),
        risk: r.risk.clone(),
        grant: r.grant.clone(),
        closure: r.closure.clone(),
    });
    let grant = r.grant.as_ref().filter(|_| !r.state.is_terminal());
    let review = grant
        .and_then(|g| g.next_review_at)
        .filter(|_| r.state == State::Active);
    let risk = r.risk.as_ref().filter(|k| k.version == r.version());
    // An imported exception has a grant's tier but no score of ours.
    let tier = risk.map(|k| k.tier).or_else(|| {
        r.grant
            .as_ref()
            .filter(|_| r.risk.is_none())
            .map(|g| g.tier)
    });
    vec![
        Bind::Int(r.id.get()),
        Bind::Int(r.revision as i64),
        Bind::Text(r.state.as_str().into()),
        Bind::Int(i64::from(r.version())),
        Bind::Text(r.requester.to_string()),
        Bind::Text(c.business_owner.to_string()),
        Bind::Text(c.title.clone()),
        Bind::Text(c.ai_system.clone()),
        Bind::Text(c.policy.to_string()),
        Bind::Text(c.policy_version.clone()),
        Bind::OptText(tier.map(|t| t.as_str().to_string())),
        Bind::OptInt(risk.map(|k| i64::from(k.score))),
        Bind::OptInt(r.renews.map(RequestId::get)),
        Bind::Int(r.created_at.millis()),
        Bind::Int(now.millis()),
        Bind::Int(r.stage_since.millis()),
        Bind::OptInt(grant.map(|g| g.starts_at.millis())),
        Bind::OptInt(grant.map(|g| g.expires_at.millis())),
        Bind::OptInt(review.map(Timestamp::millis)),
        Bind::OptText(grant.map(|g| g.monitoring_owner.to_string())),
        Bind::Text(body),
        Bind::Text(system_key(&c.ai_system)),
        Bind::OptInt(
            due_at
                .filter(|_| !r.state.is_terminal())
                .map(Timestamp::millis),
        ),
        Bind::Text(c.department.to_string()),
        Bind::Text(
            c.regions
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        Bind::Text(r.created_at.to_datetime().format("%Y-%m").to_string()),
    ]
}

impl Delta {
    /// Records are append-only: whatever `after` holds beyond `before` is new.
    /// Conditions are the one record that changes (done), so they are upserted.
    pub(super) fn new(
        before: Option<&ExceptionRequest>,
        after: &ExceptionRequest,
        event: &Event,
        now: Timestamp,
        scheduling: &Scheduling,
        actor: &str,
    ) -> Result<Self> {
        let id = after.id.get();
        let skip = |len: fn(&ExceptionRequest) -> usize| before.map(len).unwrap_or(0);
        let mut records: Vec<(&'static Table, Vec<Bind>)> = Vec::new();
        for v in &after.versions[skip(|b| b.versions.len())..] {
            records.push((
                &VERSIONS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i64::from(v.number)),
                    Bind::Text(v.author.audit_name()),
                    Bind::Int(v.at.millis()),
                    Bind::Text(json(v)),
                ],
            ));
        }
        for (i, rv) in after
            .reviews
            .iter()
            .enumerate()
            .skip(skip(|b| b.reviews.len()))
        {
            let verdict = match rv.verdict {
                crate::domain::Verdict::Complete => "complete",
                crate::domain::Verdict::SentBack { .. } => "sent_back",
            };
            records.push((
                &REVIEWS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i as i64),
                    Bind::Int(i64::from(rv.version)),
                    Bind::Text(rv.reviewer.to_string()),
                    Bind::Text(verdict.into()),
                    Bind::Int(rv.at.millis()),
                    Bind::Text(json(rv)),
                ],
            ));
        }
        for (i, a) in after
            .assessments
            .iter()
            .enumerate()
            .skip(skip(|b| b.assessments.len()))
        {
            records.push((
                &ASSESSMENTS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i as i64),
                    Bind::Int(i64::from(a.version)),
                    Bind::Text(a.role.to_string()),
                    Bind::Text(a.assessor.to_string()),
                    Bind::Int(i64::from(a.likelihood)),
                    Bind::Int(i64::from(a.impact)),
                    Bind::Int(a.at.millis()),
                    Bind::Text(json(a)),
                ],
            ));
        }
        for (i, c) in after
            .comments
            .iter()
            .enumerate()
            .skip(skip(|b| b.comments.len()))
        {
            records.push((
                &COMMENTS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i as i64),
                    Bind::Int(i64::from(c.version)),
                    Bind::Text(c.author.to_string()),
                    Bind::Int(c.at.millis()),
                    Bind::Text(json(c)),
                ],
            ));
        }
        for (i, v) in after.votes.iter().enumerate().skip(skip(|b| b.votes.len())) {
            let Event::Voted { snapshot, .. } = event else {
                return Err(super::corrupt(
                    "decision",
                    "a vote was added without a Voted event",
                ));
            };
            let verdict = match v.verdict {
                VoteVerdict::Approve { .. } => "approve",
                VoteVerdict::Reject { .. } => "reject",
            };
            records.push((
                &DECISIONS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i as i64),
                    Bind::Int(i64::from(v.version)),
                    Bind::Text(v.approver.to_string()),
                    Bind::Text(v.role.to_string()),
                    Bind::Text(verdict.into()),
                    Bind::Int(v.at.millis()),
                    Bind::Text(snapshot.governance_hash.to_string()),
                    Bind::Text(snapshot.content.policy_version.clone()),
                    Bind::Text(json(v)),
                    Bind::Text(json(snapshot)),
                ],
            ));
        }
        for c in &after.conditions {
            let old = before.and_then(|b| b.conditions.iter().find(|o| o.id == c.id));
            if old == Some(c) {
                continue;
            }
            records.push((
                &CONDITIONS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i64::from(c.id)),
                    Bind::Text(c.owner.to_string()),
                    Bind::Text(c.due.to_string()),
                    Bind::OptText(c.done.as_ref().map(|d| d.by.to_string())),
                    Bind::OptInt(c.done.as_ref().map(|d| d.at.millis())),
                    Bind::Text(json(c)),
                ],
            ));
        }
        for (i, a) in after
            .attestations
            .iter()
            .enumerate()
            .skip(skip(|b| b.attestations.len()))
        {
            records.push((
                &ATTESTATIONS,
                vec![
                    Bind::Int(id),
                    Bind::Int(i as i64),
                    Bind::Text(a.by.to_string()),
                    Bind::Text(a.answer.as_str().into()),
                    Bind::Int(a.at.millis()),
                    Bind::Text(json(a)),
                ],
            ));
        }
        for r in &scheduling.reminders {
            records.push((&REMINDERS, r.binds(now)));
        }
        records.push((
            &EVENTS,
            vec![
                Bind::Int(id),
                Bind::Int(after.revision as i64),
                Bind::Int(now.millis()),
                Bind::Text(actor.to_string()),
                Bind::Text(event.name().into()),
                Bind::Int(i64::from(after.version())),
            ],
        ));
        Ok(Self {
            request: request_row(after, now, scheduling.due_at),
            id,
            records,
        })
    }
}

/// Builds a new request for the number it is given (pure; may run again if the batch
/// is retried, with another number).
pub(super) type MakeRequest = Box<dyn Fn(RequestId) -> NewRequest + Send + Sync>;

/// What a job writes.
enum Work {
    /// A change to an existing request. The new revision is the one read plus one, so
    /// the upsert's guard (`revision = excluded.revision - 1`) checks the read.
    Change { delta: Delta },
    /// A new request; its number is allocated in the batch.
    Create(MakeRequest),
    /// Nothing but the audit entry, outbox rows and idempotency key.
    Record,
    /// The outcomes of delivery attempts (see `outbox::write_outcomes`).
    Delivered(Vec<(super::outbox::Claimed, super::outbox::Finish)>),
    /// Queued reminders to send, one digest per address (see `schedule::write_digests`).
    Digest(
        Vec<super::schedule::DigestGroup>,
        super::schedule::DigestPlan,
    ),
    /// Parked messages an operator sends again (see `outbox::write_requeue`).
    Requeue { ids: Vec<i64>, actor: String },
}

/// What a finished job answers.
pub(super) enum Done {
    Seq(u64),
    Created(Box<NewRequest>),
    Digests(Vec<super::schedule::DigestSent>),
    Requeued(Vec<i64>),
}

pub(super) struct Job {
    work: Work,
    audit: Option<AuditRecord>,
    outbox: Vec<Outgoing>,
    key: Option<String>,
    now: Timestamp,
    reply: oneshot::Sender<Result<Done>>,
}

type Submitted = (Job, oneshot::Receiver<Result<Done>>);

impl Job {
    fn new(
        work: Work,
        audit: Option<AuditRecord>,
        outbox: Vec<Outgoing>,
        key: Option<String>,
        now: Timestamp,
    ) -> Submitted {
        let (reply, rx) = oneshot::channel();
        let job = Self {
            work,
            audit,
            outbox,
            key,
            now,
            reply,
        };
        (job, rx)
    }

    pub(super) fn change(
        delta: Delta,
        audit: AuditRecord,
        outbox: Vec<Outgoing>,
        key: Option<String>,
    ) -> Submitted {
        let now = audit.at;
        Self::new(Work::Change { delta }, Some(audit), outbox, key, now)
    }

    pub(super) fn create(make: MakeRequest, key: Option<String>, now: Timestamp) -> Submitted {
        Self::new(Work::Create(make), None, Vec::new(), key, now)
    }

    pub(super) fn delivered(
        results: Vec<(super::outbox::Claimed, super::outbox::Finish)>,
        now: Timestamp,
    ) -> Submitted {
        Self::new(Work::Delivered(results), None, Vec::new(), None, now)
    }

    pub(super) fn digest(
        groups: Vec<super::schedule::DigestGroup>,
        plan: super::schedule::DigestPlan,
        now: Timestamp,
    ) -> Submitted {
        Self::new(Work::Digest(groups, plan), None, Vec::new(), None, now)
    }

    pub(super) fn requeue(ids: Vec<i64>, actor: String, now: Timestamp) -> Submitted {
        Self::new(Work::Requeue { ids, actor }, None, Vec::new(), None, now)
    }

    pub(super) fn record(
        audit: Option<AuditRecord>,
        outbox: Vec<Outgoing>,
        key: Option<String>,
        now: Timestamp,
    ) -> Submitted {
        Self::new(Work::Record, audit, outbox, key, now)
    }
}

/// The writer's queue.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Changes queued for the writer by default. A full queue makes callers wait (their
/// requests are not acknowledged until their change is queued), so memory stays
/// bounded under any load; `/readyz` reports it.
pub const DEFAULT_QUEUE: usize = 4096;

impl Writer {
    pub(super) fn spawn(
        pool: sqlx::AnyPool,
        backend: Backend,
        queue: usize,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(run(pool, backend, rx, metrics));
        Self { tx }
    }

    /// (changes queued, room for).
    pub(super) fn backlog(&self) -> (usize, usize) {
        let room = self.tx.max_capacity();
        (room - self.tx.capacity(), room)
    }

    pub(super) async fn submit(
        &self,
        job: Job,
        rx: oneshot::Receiver<Result<Done>>,
    ) -> Result<Done> {
        self.tx
            .send(job)
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        rx.await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
    }
}

async fn run(
    pool: sqlx::AnyPool,
    backend: Backend,
    mut rx: mpsc::Receiver<Job>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&pool, backend, batch, &metrics).await;
    }
}

/// Commits a batch; on failure, each job again on its own.
async fn commit_batch(
    pool: &sqlx::AnyPool,
    backend: Backend,
    mut batch: Vec<Job>,
    metrics: &crate::metrics::Metrics,
) {
    match attempt(pool, backend, &mut batch).await {
        Ok(outcomes) => {
            let committed = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
            let conflicts = outcomes
                .iter()
                .filter(|o| matches!(o, Err(StoreError::Conflict)))
                .count() as u64;
            metrics.committed(committed, conflicts);
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) if batch.len() == 1 => {
            let job = batch.pop().expect("one job");
            let _ = job.reply.send(Err(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = batch.len(), "a batch failed; committing its changes one by one");
            for job in batch {
                Box::pin(commit_batch(pool, backend, vec![job], metrics)).await;
            }
        }
    }
}

/// One transaction for the whole batch. Returns each job's outcome, or an error if the
/// transaction failed (nothing was written).
async fn attempt(
    pool: &sqlx::AnyPool,
    backend: Backend,
    batch: &mut [Job],
) -> Result<Vec<Result<Done>>> {
    let mut tx: Transaction<'static, Any> = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    let n = batch.len();
    let mut outcome: Vec<Option<Result<Done>>> = (0..n).map(|_| None).collect();

    // 1. Idempotency keys already claimed (or claimed earlier in this batch) make
    //    their change a duplicate. Keys are written below for winners only, so a
    //    change that loses on a conflict can be retried under the same key.
    let mut seen_keys = HashSet::new();
    let mut keys = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        if let Some(k) = &job.key {
            if seen_keys.insert(k.clone()) {
                keys.push(k.clone());
            } else {
                outcome[i] = Some(Err(StoreError::Duplicate));
            }
        }
    }
    if !keys.is_empty() {
        let claimed = existing_keys(&mut tx, &keys).await?;
        for (i, job) in batch.iter().enumerate() {
            if outcome[i].is_none() && job.key.as_ref().is_some_and(|k| claimed.contains(k)) {
                outcome[i] = Some(Err(StoreError::Duplicate));
            }
        }
    }

    // 2. New requests get their numbers.
    let creates: Vec<usize> = (0..n)
        .filter(|i| outcome[*i].is_none() && matches!(batch[*i].work, Work::Create(_)))
        .collect();
    let mut created: HashMap<usize, NewRequest> = HashMap::new();
    if !creates.is_empty() {
        let last: i64 = sqlx::query(
            "UPDATE counters SET value = value + $1 WHERE name = 'request' RETURNING value",
        )
        .bind(creates.len() as i64)
        .fetch_one(&mut *tx)
        .await?
        .try_get("value")?;
        let first = last - creates.len() as i64 + 1;
        for (k, i) in creates.iter().enumerate() {
            if let Work::Create(make) = &batch[*i].work {
                created.insert(*i, make(RequestId::new(first + k as i64)));
            }
        }
    }

    // 3. One guarded upsert decides which changes win. A request touched twice in a
    //    batch: the later change conflicts (it was computed from the same state).
    let mut touched = HashSet::new();
    let mut upserts: Vec<(usize, i64, Vec<Bind>)> = Vec::new();
    for i in 0..n {
        if outcome[i].is_some() {
            continue;
        }
        let (id, row) = match (&batch[i].work, created.get(&i)) {
            (Work::Change { delta, .. }, _) => (delta.id, delta.request.clone()),
            (Work::Create(_), Some(new)) => (
                new.request.id.get(),
                request_row(&new.request, batch[i].now, new.due_at),
            ),
            _ => continue,
        };
        if !touched.insert(id) {
            outcome[i] = Some(Err(StoreError::Conflict));
            continue;
        }
        upserts.push((i, id, row));
    }
    // A consistent lock order across concurrent batches (PostgreSQL).
    upserts.sort_by_key(|(_, id, _)| *id);
    let won: HashSet<i64> = if upserts.is_empty() {
        HashSet::new()
    } else {
        insert(
            &mut tx,
            &REQUESTS,
            upserts.iter().map(|(_, _, r)| r.clone()).collect(),
        )
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<std::result::Result<_, _>>()?
    };
    for (i, id, _) in &upserts {
        if !won.contains(id) {
            outcome[*i] = Some(Err(StoreError::Conflict));
        }
    }
    let winners: Vec<usize> = (0..n).filter(|i| outcome[*i].is_none()).collect();
    let key_rows: Vec<Vec<Bind>> = winners
        .iter()
        .filter_map(|i| {
            batch[*i]
                .key
                .as_ref()
                .map(|k| vec![Bind::Text(k.clone()), Bind::Int(batch[*i].now.millis())])
        })
        .collect();
    if !key_rows.is_empty() {
        insert(&mut tx, &IDEMPOTENCY, key_rows).await?;
    }

    // 4. The winners' records.
    let mut by_table: Vec<(&'static Table, Vec<Vec<Bind>>)> = Vec::new();
    for i in &winners {
        let records: Vec<(&'static Table, Vec<Bind>)> = match (&batch[*i].work, created.get(i)) {
            (Work::Change { delta, .. }, _) => delta.records.clone(),
            (Work::Create(_), Some(new)) => {
                Delta::new(
                    None,
                    &new.request,
                    &new.event,
                    batch[*i].now,
                    &Scheduling::default(),
                    &new.audit.actor,
                )?
                .records
            }
            _ => Vec::new(),
        };
        for (table, row) in records {
            match by_table.iter_mut().find(|(t, _)| std::ptr::eq(*t, table)) {
                Some((_, rows)) => rows.push(row),
                None => by_table.push((table, vec![row])),
            }
        }
    }
    for (table, rows) in by_table {
        insert(&mut tx, table, rows).await?;
    }

    // 4b. Digests: the queued reminders they send are marked sent here, so a reminder
    //     that another replica sent meanwhile (no longer queued) is not sent again.
    let mut digest_out: HashMap<usize, Vec<Outgoing>> = HashMap::new();
    let mut digest_audits: Vec<(usize, AuditRecord)> = Vec::new();
    let mut digests_sent: HashMap<usize, Vec<super::schedule::DigestSent>> = HashMap::new();
    for i in &winners {
        if let Work::Digest(groups, plan) = &batch[*i].work {
            let written =
                super::schedule::write_digests(&mut tx, groups, plan, batch[*i].now).await?;
            digest_out.insert(*i, written.outbox);
            digest_audits.extend(written.audits.into_iter().map(|a| (*i, a)));
            digests_sent.insert(*i, written.sent);
        }
    }

    // 5. The winners' outgoing messages and their conversations' queues.
    let mut outbox_rows = Vec::new();
    for i in &winners {
        let messages = match created.get(i) {
            Some(new) => &new.outbox,
            None => &batch[*i].outbox,
        };
        let digests = digest_out.get(i).map(Vec::as_slice).unwrap_or_default();
        for m in messages.iter().chain(digests) {
            let now = batch[*i].now.millis();
            outbox_rows.push(vec![
                Bind::Int(now),
                Bind::OptInt(m.request.map(RequestId::get)),
                Bind::Text(m.platform.as_str().into()),
                Bind::Text(m.to.target()),
                Bind::OptText(m.card.clone()),
                Bind::Text(json(m)),
                Bind::Text("pending".into()),
                Bind::Int(0),
                // Due at once, whatever instant the change was made at (a sweep may run
                // `as of` a later instant than the clock's).
                Bind::Int(0),
            ]);
        }
    }
    if !outbox_rows.is_empty() {
        let mut queues: Vec<Vec<Bind>> = Vec::new();
        let mut seen = HashSet::new();
        for row in &outbox_rows {
            if let (Bind::Text(platform), Bind::Text(target), Bind::Int(at)) =
                (&row[2], &row[3], &row[8])
                && seen.insert((platform.clone(), target.clone()))
            {
                queues.push(vec![
                    Bind::Text(platform.clone()),
                    Bind::Text(target.clone()),
                    Bind::Int(*at),
                ]);
            }
        }
        insert(&mut tx, &OUTBOX, outbox_rows).await?;
        insert(&mut tx, &QUEUES, queues).await?;
    }
    // 5b. Delivery outcomes (after queueing, so lock order stays requests → queues →
    //     audit head).
    let mut delivery_audits: Vec<(usize, AuditRecord)> = Vec::new();
    for i in &winners {
        if let Work::Delivered(results) = &batch[*i].work {
            for a in super::outbox::write_outcomes(&mut tx, backend, results, batch[*i].now).await?
            {
                delivery_audits.push((*i, a));
            }
        }
    }

    // 5c. Parked messages sent again.
    let mut requeued: HashMap<usize, Vec<i64>> = HashMap::new();
    for i in &winners {
        if let Work::Requeue { ids, actor } = &batch[*i].work {
            let (done, audits) =
                super::outbox::write_requeue(&mut tx, ids, actor, batch[*i].now).await?;
            requeued.insert(*i, done);
            delivery_audits.extend(audits.into_iter().map(|a| (*i, a)));
        }
    }

    // 6. One audit entry per winner, chained in batch order. The audit head is locked
    //    last: every transaction takes request rows, then queue rows, then the head.
    let audits: Vec<(usize, AuditRecord)> = winners
        .iter()
        .filter_map(|i| {
            let record = batch[*i]
                .audit
                .clone()
                .or_else(|| created.get(i).map(|c| c.audit.clone()));
            record.map(|r| (*i, r))
        })
        .collect();
    let audits: Vec<(usize, AuditRecord)> = audits
        .into_iter()
        .chain(delivery_audits)
        .chain(digest_audits)
        .collect();
    let mut seqs: HashMap<usize, u64> = HashMap::new();
    if !audits.is_empty() {
        let (rows, assigned) =
            audit::chain(&mut tx, backend, audits.iter().map(|(_, r)| r)).await?;
        insert(&mut tx, &AUDIT, rows).await?;
        for ((i, _), seq) in audits.iter().zip(assigned) {
            seqs.insert(*i, seq);
        }
    }

    tx.commit().await?;

    for i in winners {
        let seq = seqs.get(&i).copied().unwrap_or_default();
        outcome[i] = Some(Ok(match (created.remove(&i), digests_sent.remove(&i)) {
            (Some(new), _) => Done::Created(Box::new(new)),
            (None, Some(sent)) => Done::Digests(sent),
            (None, None) => match requeued.remove(&i) {
                Some(ids) => Done::Requeued(ids),
                None => Done::Seq(seq),
            },
        }));
    }
    Ok(outcome
        .into_iter()
        .map(|o| o.unwrap_or(Err(StoreError::Conflict)))
        .collect())
}

/// The keys among `keys` that were claimed already.
async fn existing_keys(conn: &mut AnyConnection, keys: &[String]) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    let mut rest = keys;
    while !rest.is_empty() {
        let size = CHUNKS.into_iter().find(|c| *c <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        // The SQL text holds only placeholders.
        let sql = format!(
            "SELECT key FROM idempotency WHERE key IN ({})",
            Backend::of(conn).params(1, size)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for k in chunk {
            q = q.bind(k.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.insert(row.try_get::<String, _>("key")?);
        }
    }
    Ok(out)
}

/// Inserts `rows` into `table` with multi-row statements; returns any RETURNING rows.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    table: &Table,
    rows: Vec<Vec<Bind>>,
) -> Result<Vec<sqlx::any::AnyRow>> {
    let backend = Backend::of(conn);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let size = CHUNKS.into_iter().find(|c| *c <= rows.len()).unwrap_or(1);
        let chunk: Vec<Vec<Bind>> = rows.by_ref().take(size).collect();
        let width = table.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            table.name,
            table.columns.join(", ")
        );
        for r in 0..size {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            sql.push_str(&backend.params(r * width + 1, width));
            sql.push(')');
        }
        sql.push_str(table.suffix);
        // The SQL text holds only table and column names and placeholders.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            for v in row {
                q = match v {
                    Bind::Int(x) => q.bind(x),
                    Bind::OptInt(x) => q.bind(x),
                    Bind::Text(x) => q.bind(x),
                    Bind::OptText(x) => q.bind(x),
                };
            }
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

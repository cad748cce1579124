//! Durable state on SQLite (embedded default) or PostgreSQL, through one sqlx `Any`
//! implementation with portable SQL; backend-specific SQL only where it must differ.
//!
//! Every state change is one transaction: the request row (optimistic concurrency on
//! `revision`), its new records, one hash-chained audit entry, the outbox rows of the
//! messages it causes, and the idempotency key of the delivery that caused it.
//! Transactions never leave this module.
//!
//! Limits: SQLite has one writer; a dedicated one-connection pool serialises writes
//! (`BEGIN IMMEDIATE`) while reads use their own pool. Timestamps are BIGINT unix
//! milliseconds and ids TEXT, the types `Any` decodes on both backends.

mod audit;
mod outbox;

use std::borrow::Cow;
use std::sync::Once;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Connection, Row, SqlSafeStr, Transaction};

use crate::chat::Outgoing;
use crate::domain::{
    Assessment, Attestation, Closure, Comment, Condition, Event, ExceptionRequest, Grant,
    RequestId, Review, Risk, State, Timestamp, Version, Vote, VoteVerdict,
};
use crate::governance::{PersonId, RoleId};

pub use audit::{AuditEntry, AuditRecord, Outcome, VerifyError, VerifyReport};
pub use outbox::{Claimed, Finish, OutboxRow, OutboxStatus, PostedCard};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the request changed since it was read")]
    Conflict,
    #[error("this delivery was already processed")]
    Duplicate,
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    Url(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The two databases Waiver runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The database behind Waiver.
#[derive(Clone, Debug)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
}

/// The rest of the aggregate that no query filters on.
#[derive(Serialize, Deserialize)]
struct RequestBody {
    required_roles: Vec<RoleId>,
    risk: Option<Risk>,
    grant: Option<Grant>,
    closure: Option<Closure>,
}

/// A request being filed, with what its filing writes.
pub struct NewRequest {
    pub request: ExceptionRequest,
    pub event: Event,
    pub audit: AuditRecord,
    pub outbox: Vec<Outgoing>,
}

/// What one committed change writes besides the request itself.
pub struct Change<'a> {
    pub event: &'a Event,
    pub audit: AuditRecord,
    pub outbox: Vec<Outgoing>,
    /// Processed at most once (Slack `event_id`, Teams activity id).
    pub idempotency_key: Option<String>,
}

fn migrator(backend: Backend) -> Migrator {
    let files: [(i64, &'static str, &'static str, &'static str); 2] = [
        (
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "delivery",
            include_str!("../../migrations/sqlite/0002_delivery.sql"),
            include_str!("../../migrations/postgres/0002_delivery.sql"),
        ),
    ];
    Migrator::with_migrations(
        files
            .into_iter()
            .map(|(version, name, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain records serialise")
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

impl Store {
    /// Opens the database at `url`, creating an SQLite file if it is missing.
    pub async fn connect(url: &str) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = Backend::of_url(url).ok_or_else(|| StoreError::Url(url.to_string()))?;
        match backend {
            Backend::Sqlite => {
                let url = if url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                let options = || {
                    AnyPoolOptions::new().after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never block the writer. synchronous=FULL: a
                            // commit that was acknowledged survives a power cut.
                            sqlx::raw_sql(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                };
                let write = options()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await?;
                let read = options()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await?;
                Ok(Self {
                    read,
                    write,
                    backend,
                })
            }
            Backend::Postgres => {
                // One direct attempt first: a server that is down fails fast with its
                // own error instead of after the pool's acquire timeout.
                sqlx::AnyConnection::connect(url).await?.close().await?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?;
                Ok(Self {
                    read: pool.clone(),
                    write: pool,
                    backend,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        migrator(self.backend).run(&self.write).await?;
        Ok(())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            // Take the write lock up front: a deferred transaction that upgrades later
            // can fail with SQLITE_BUSY without waiting.
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    // -----------------------------------------------------------------------------
    // Requests.

    /// Loads a request with every record it has.
    pub async fn load(&self, id: RequestId) -> Result<Option<ExceptionRequest>> {
        load_request(&self.read, id).await
    }

    /// Files a new request: allocates its number, then commits what `make` builds
    /// for that number, all in one transaction.
    pub async fn create<F>(&self, make: F) -> Result<NewRequest>
    where
        F: FnOnce(RequestId) -> NewRequest + Send,
    {
        let mut tx = self.begin().await?;
        let n: i64 = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'request' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("value")?;
        let new = make(RequestId::new(n));
        let change = Change {
            event: &new.event,
            audit: new.audit.clone(),
            outbox: new.outbox.clone(),
            idempotency_key: None,
        };
        self.write_change(&mut tx, None, &new.request, change)
            .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Commits `after` (derived from `before`) if nobody changed the request since
    /// `before` was read; otherwise [`StoreError::Conflict`] and nothing is written.
    /// Returns the audit sequence number of the change.
    pub async fn commit(
        &self,
        before: &ExceptionRequest,
        after: &ExceptionRequest,
        change: Change<'_>,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let seq = self
            .write_change(&mut tx, Some(before), after, change)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Records something that changed no request (a refused attempt, a delivery):
    /// one audit entry and its outbox rows.
    pub async fn record(
        &self,
        audit: AuditRecord,
        outbox: Vec<Outgoing>,
        idempotency_key: Option<String>,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        if let Some(key) = &idempotency_key {
            claim_key(&mut tx, key, audit.at).await?;
        }
        let seq = audit::append(&mut tx, self.backend, &audit).await?;
        outbox::insert(&mut tx, &outbox, audit.at).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Claims an idempotency key on its own (for deliveries that change nothing).
    /// `false` when it was already claimed.
    pub async fn claim_idempotency_key(&self, key: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        match claim_key(&mut tx, key, now).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(StoreError::Duplicate) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn write_change(
        &self,
        tx: &mut Transaction<'static, Any>,
        before: Option<&ExceptionRequest>,
        after: &ExceptionRequest,
        change: Change<'_>,
    ) -> Result<u64> {
        if let Some(key) = &change.idempotency_key {
            claim_key(tx, key, change.audit.at).await?;
        }
        let now = change.audit.at;
        upsert_request(tx, before, after, now).await?;
        insert_records(tx, before, after, change.event).await?;
        let seq = audit::append(tx, self.backend, &change.audit).await?;
        outbox::insert(tx, &change.outbox, now).await?;
        Ok(seq)
    }

    // -----------------------------------------------------------------------------
    // Queries for people.

    /// Requests filed by `person`, newest first.
    pub async fn requests_by(&self, person: &PersonId, limit: i64) -> Result<Vec<Summary>> {
        let rows = sqlx::query(
            "SELECT id, state, version, title, tier, expires_at, next_review_at, updated_at \
             FROM requests WHERE requester = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(person.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Summary::from_row).collect()
    }

    /// Granted exceptions that `person` monitors, soonest expiry first.
    pub async fn owned_by(&self, person: &PersonId, limit: i64) -> Result<Vec<Summary>> {
        let rows = sqlx::query(
            "SELECT id, state, version, title, tier, expires_at, next_review_at, updated_at \
             FROM requests WHERE monitoring_owner = $1 AND expires_at IS NOT NULL \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(person.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Summary::from_row).collect()
    }

    /// Requests in any of `states`, oldest stage first.
    pub async fn in_states(&self, states: &[State], limit: i64) -> Result<Vec<ExceptionRequest>> {
        let mut out = Vec::new();
        for state in states {
            let ids: Vec<i64> = sqlx::query(
                "SELECT id FROM requests WHERE state = $1 ORDER BY stage_since LIMIT $2",
            )
            .bind(state.as_str())
            .bind(limit)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
            for id in ids {
                if let Some(r) = self.load(RequestId::new(id)).await? {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.stage_since);
        out.truncate(limit.max(0) as usize);
        Ok(out)
    }

    /// Earlier requests about the same AI system or under the same policy, newest first.
    pub async fn similar(&self, request: &ExceptionRequest, limit: i64) -> Result<Vec<Summary>> {
        let content = request.content();
        let rows = sqlx::query(
            "SELECT id, state, version, title, tier, expires_at, next_review_at, updated_at \
             FROM requests WHERE id <> $1 AND (lower(ai_system) = lower($2) OR policy_id = $3) \
             ORDER BY (lower(ai_system) = lower($2)) DESC, id DESC LIMIT $4",
        )
        .bind(request.id.get())
        .bind(content.ai_system.as_str())
        .bind(content.policy.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Summary::from_row).collect()
    }

    /// The ids of requests changed at or after `since`, in id order.
    pub async fn changed_since(&self, since: Option<Timestamp>) -> Result<Vec<RequestId>> {
        let rows = sqlx::query("SELECT id FROM requests WHERE updated_at >= $1 ORDER BY id")
            .bind(since.map(Timestamp::millis).unwrap_or(i64::MIN))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok(RequestId::new(r.try_get("id")?)))
            .collect()
    }

    /// Every decision recorded on a request, with what the approver saw.
    pub async fn decisions(&self, id: RequestId) -> Result<Vec<DecisionRecord>> {
        let rows = sqlx::query(
            "SELECT body, snapshot, governance_hash, policy_version FROM decisions \
             WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id.get())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DecisionRecord {
                    vote: parse("decision", r.try_get::<&str, _>("body")?)?,
                    snapshot: parse("decision snapshot", r.try_get::<&str, _>("snapshot")?)?,
                    governance_hash: r.try_get("governance_hash")?,
                    policy_version: r.try_get("policy_version")?,
                })
            })
            .collect()
    }

    /// The audit entries about one request, in order.
    pub async fn audit_of(&self, id: RequestId) -> Result<Vec<AuditEntry>> {
        audit::of_request(&self.read, id).await
    }

    /// Recomputes the whole audit chain.
    pub async fn verify_audit(&self) -> Result<Result<VerifyReport, VerifyError>> {
        audit::verify(&self.read).await
    }

    /// Raw SQL for tests and tooling that must reach under the store (tamper tests).
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &'static str) -> Result<u64> {
        Ok(sqlx::raw_sql(sql)
            .execute(&self.write)
            .await?
            .rows_affected())
    }
}

/// A line about a request, for lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub id: RequestId,
    pub state: State,
    pub version: u32,
    pub title: String,
    pub tier: Option<crate::governance::Tier>,
    pub expires_at: Option<Timestamp>,
    pub next_review_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl Summary {
    fn from_row(r: &AnyRow) -> Result<Self> {
        let state: &str = r.try_get("state")?;
        let tier: Option<String> = r.try_get("tier")?;
        Ok(Self {
            id: RequestId::new(r.try_get("id")?),
            state: State::parse(state).ok_or_else(|| corrupt("state", state))?,
            version: r.try_get::<i64, _>("version")? as u32,
            title: r.try_get("title")?,
            tier: tier.as_deref().and_then(crate::governance::Tier::parse),
            expires_at: r
                .try_get::<Option<i64>, _>("expires_at")?
                .map(Timestamp::from_millis),
            next_review_at: r
                .try_get::<Option<i64>, _>("next_review_at")?
                .map(Timestamp::from_millis),
            updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
        })
    }
}

/// One stored decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionRecord {
    pub vote: Vote,
    pub snapshot: serde_json::Value,
    pub governance_hash: String,
    pub policy_version: String,
}

async fn claim_key(tx: &mut Transaction<'static, Any>, key: &str, now: Timestamp) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO idempotency (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Duplicate);
    }
    Ok(())
}

/// Scheduling columns are set only while they matter, so the partial indexes hold
/// only live rows.
fn live_grant(r: &ExceptionRequest) -> Option<&Grant> {
    r.grant.as_ref().filter(|_| !r.state.is_terminal())
}

async fn upsert_request(
    tx: &mut Transaction<'static, Any>,
    before: Option<&ExceptionRequest>,
    r: &ExceptionRequest,
    now: Timestamp,
) -> Result<()> {
    let c = r.content();
    let body = json(&RequestBody {
        required_roles: r.required_roles.clone(),
        risk: r.risk.clone(),
        grant: r.grant.clone(),
        closure: r.closure.clone(),
    });
    let grant = live_grant(r);
    let review = grant
        .and_then(|g| g.next_review_at)
        .filter(|_| r.state == State::Active);
    let risk = r.risk.as_ref().filter(|k| k.version == r.version());
    let query = match before {
        None => sqlx::query(
            "INSERT INTO requests (revision, state, version, requester, business_owner, title, \
             ai_system, policy_id, policy_version, tier, risk_score, renews, created_at, \
             updated_at, stage_since, starts_at, expires_at, next_review_at, monitoring_owner, \
             body, id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21)",
        ),
        Some(_) => sqlx::query(
            "UPDATE requests SET revision = $1, state = $2, version = $3, requester = $4, \
             business_owner = $5, title = $6, ai_system = $7, policy_id = $8, \
             policy_version = $9, tier = $10, risk_score = $11, renews = $12, created_at = $13, \
             updated_at = $14, stage_since = $15, starts_at = $16, expires_at = $17, \
             next_review_at = $18, monitoring_owner = $19, body = $20 \
             WHERE id = $21 AND revision = $22",
        ),
    };
    let done = query
        .bind(r.revision as i64)
        .bind(r.state.as_str())
        .bind(i64::from(r.version()))
        .bind(r.requester.as_str())
        .bind(c.business_owner.as_str())
        .bind(c.title.as_str())
        .bind(c.ai_system.as_str())
        .bind(c.policy.as_str())
        .bind(c.policy_version.as_str())
        .bind(risk.map(|k| k.tier.as_str()))
        .bind(risk.map(|k| i64::from(k.score)))
        .bind(r.renews.map(RequestId::get))
        .bind(r.created_at.millis())
        .bind(now.millis())
        .bind(r.stage_since.millis())
        .bind(grant.map(|g| g.starts_at.millis()))
        .bind(grant.map(|g| g.expires_at.millis()))
        .bind(review.map(Timestamp::millis))
        .bind(grant.map(|g| g.monitoring_owner.as_str()))
        .bind(body)
        .bind(r.id.get())
        .bind(before.map(|b| b.revision as i64).unwrap_or_default())
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// Records are append-only: whatever `after` holds beyond `before` is new. Conditions
/// are the one record that changes (done), so they are upserted when they differ.
async fn insert_records(
    tx: &mut Transaction<'static, Any>,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
) -> Result<()> {
    let id = after.id.get();
    let skip = |len: fn(&ExceptionRequest) -> usize| before.map(len).unwrap_or(0);

    for v in &after.versions[skip(|b| b.versions.len())..] {
        sqlx::query(
            "INSERT INTO request_versions (request_id, version, author, created_at, body) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(i64::from(v.number))
        .bind(v.author.audit_name())
        .bind(v.at.millis())
        .bind(json(v))
        .execute(&mut **tx)
        .await?;
    }
    let from = skip(|b| b.reviews.len());
    for (i, rv) in after.reviews.iter().enumerate().skip(from) {
        let verdict = match rv.verdict {
            crate::domain::Verdict::Complete => "complete",
            crate::domain::Verdict::SentBack { .. } => "sent_back",
        };
        sqlx::query(
            "INSERT INTO reviews (request_id, seq, version, reviewer, verdict, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(i as i64)
        .bind(i64::from(rv.version))
        .bind(rv.reviewer.as_str())
        .bind(verdict)
        .bind(rv.at.millis())
        .bind(json(rv))
        .execute(&mut **tx)
        .await?;
    }
    let from = skip(|b| b.assessments.len());
    for (i, a) in after.assessments.iter().enumerate().skip(from) {
        sqlx::query(
            "INSERT INTO assessments (request_id, seq, version, role, assessor, likelihood, \
             impact, created_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(i as i64)
        .bind(i64::from(a.version))
        .bind(a.role.as_str())
        .bind(a.assessor.as_str())
        .bind(i64::from(a.likelihood))
        .bind(i64::from(a.impact))
        .bind(a.at.millis())
        .bind(json(a))
        .execute(&mut **tx)
        .await?;
    }
    let from = skip(|b| b.comments.len());
    for (i, c) in after.comments.iter().enumerate().skip(from) {
        sqlx::query(
            "INSERT INTO comments (request_id, seq, version, author, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(i as i64)
        .bind(i64::from(c.version))
        .bind(c.author.as_str())
        .bind(c.at.millis())
        .bind(json(c))
        .execute(&mut **tx)
        .await?;
    }
    let from = skip(|b| b.votes.len());
    for (i, v) in after.votes.iter().enumerate().skip(from) {
        let Event::Voted { snapshot, .. } = event else {
            return Err(corrupt(
                "decision",
                "a vote was added without a Voted event",
            ));
        };
        let verdict = match v.verdict {
            VoteVerdict::Approve { .. } => "approve",
            VoteVerdict::Reject { .. } => "reject",
        };
        sqlx::query(
            "INSERT INTO decisions (request_id, seq, version, approver, role, verdict, \
             created_at, governance_hash, policy_version, body, snapshot) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(i as i64)
        .bind(i64::from(v.version))
        .bind(v.approver.as_str())
        .bind(v.role.as_str())
        .bind(verdict)
        .bind(v.at.millis())
        .bind(snapshot.governance_hash.as_str())
        .bind(snapshot.content.policy_version.as_str())
        .bind(json(v))
        .bind(json(snapshot))
        .execute(&mut **tx)
        .await?;
    }
    for c in &after.conditions {
        let old = before.and_then(|b| b.conditions.iter().find(|o| o.id == c.id));
        if old == Some(c) {
            continue;
        }
        let query = if old.is_none() {
            "INSERT INTO conditions (owner, due, done_by, done_at, body, request_id, condition_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        } else {
            "UPDATE conditions SET owner = $1, due = $2, done_by = $3, done_at = $4, body = $5 \
             WHERE request_id = $6 AND condition_id = $7"
        };
        sqlx::query(query)
            .bind(c.owner.as_str())
            .bind(c.due.to_string())
            .bind(c.done.as_ref().map(|d| d.by.as_str()))
            .bind(c.done.as_ref().map(|d| d.at.millis()))
            .bind(json(c))
            .bind(id)
            .bind(i64::from(c.id))
            .execute(&mut **tx)
            .await?;
    }
    let from = skip(|b| b.attestations.len());
    for (i, a) in after.attestations.iter().enumerate().skip(from) {
        sqlx::query(
            "INSERT INTO attestations (request_id, seq, attested_by, answer, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(i as i64)
        .bind(a.by.as_str())
        .bind(a.answer.as_str())
        .bind(a.at.millis())
        .bind(json(a))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn load_request<'e, E>(db: E, id: RequestId) -> Result<Option<ExceptionRequest>>
where
    E: sqlx::Executor<'e, Database = Any> + Copy,
{
    let Some(row) = sqlx::query(
        "SELECT id, revision, state, requester, created_at, stage_since, renews, body \
         FROM requests WHERE id = $1",
    )
    .bind(id.get())
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    let children = sqlx::query(
        "SELECT kind, seq, body FROM ( \
           SELECT 'a' AS kind, version AS seq, body FROM request_versions WHERE request_id = $1 \
           UNION ALL SELECT 'b', seq, body FROM reviews WHERE request_id = $1 \
           UNION ALL SELECT 'c', seq, body FROM assessments WHERE request_id = $1 \
           UNION ALL SELECT 'd', seq, body FROM comments WHERE request_id = $1 \
           UNION ALL SELECT 'e', seq, body FROM decisions WHERE request_id = $1 \
           UNION ALL SELECT 'f', condition_id, body FROM conditions WHERE request_id = $1 \
           UNION ALL SELECT 'g', seq, body FROM attestations WHERE request_id = $1 \
         ) AS children ORDER BY kind, seq",
    )
    .bind(id.get())
    .fetch_all(db)
    .await?;

    let mut versions: Vec<Version> = Vec::new();
    let mut reviews: Vec<Review> = Vec::new();
    let mut assessments: Vec<Assessment> = Vec::new();
    let mut comments: Vec<Comment> = Vec::new();
    let mut votes: Vec<Vote> = Vec::new();
    let mut conditions: Vec<Condition> = Vec::new();
    let mut attestations: Vec<Attestation> = Vec::new();
    for child in &children {
        let kind: &str = child.try_get("kind")?;
        let body: &str = child.try_get("body")?;
        match kind {
            "a" => versions.push(parse("version", body)?),
            "b" => reviews.push(parse("review", body)?),
            "c" => assessments.push(parse("assessment", body)?),
            "d" => comments.push(parse("comment", body)?),
            "e" => votes.push(parse("decision", body)?),
            "f" => conditions.push(parse("condition", body)?),
            "g" => attestations.push(parse("attestation", body)?),
            other => return Err(corrupt("record kind", other)),
        }
    }
    if versions.is_empty() {
        return Err(corrupt("request", format!("{id} has no versions")));
    }
    let state: &str = row.try_get("state")?;
    let body: RequestBody = parse("request body", row.try_get::<&str, _>("body")?)?;
    Ok(Some(ExceptionRequest {
        id,
        revision: row.try_get::<i64, _>("revision")? as u64,
        state: State::parse(state).ok_or_else(|| corrupt("state", state))?,
        requester: PersonId::new(row.try_get::<String, _>("requester")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        stage_since: Timestamp::from_millis(row.try_get("stage_since")?),
        renews: row.try_get::<Option<i64>, _>("renews")?.map(RequestId::new),
        versions,
        required_roles: body.required_roles,
        reviews,
        assessments,
        comments,
        votes,
        risk: body.risk,
        grant: body.grant,
        conditions,
        attestations,
        closure: body.closure,
    }))
}

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
mod evidence;
mod inspect;
mod nodelay;
mod outbox;
mod queries;
mod schedule;
mod writer;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection, Row, SqlSafeStr, Transaction};

use crate::domain::{
    Assessment, Attestation, Closure, Comment, Condition, Event, ExceptionRequest, Grant,
    RequestId, Review, Risk, State, Summary, Timestamp, Version, Vote,
};
use crate::governance::{PersonId, RoleId};
use crate::message::Outgoing;
use crate::metrics::Metrics;

pub use audit::{
    AuditEntry, AuditRecord, GENESIS, Outcome, VerifyError, VerifyReport, chain_hash, digest,
};
pub use evidence::{ChainedEntry, Frozen, GovernanceFile};
pub use inspect::{Inspection, MigrationInfo, Schema, inspect};
pub use outbox::{Claimed, Finish, OutboxRow, OutboxStatus};
pub use queries::{
    Candidates, EventRecord, OverdueCondition, RegisterFilter, RegisterGroup, RegisterRow,
    StageCount, TaskQuery,
};
pub use schedule::{
    ComposeDigest, DigestGroup, DigestPlan, DigestSent, ReminderRecord, ReminderRow, ReminderStatus,
};
pub use writer::{DEFAULT_QUEUE as DEFAULT_WRITER_QUEUE, Scheduling};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the request changed since it was read")]
    Conflict,
    #[error("this delivery was already processed")]
    Duplicate,
    /// Only the scheme: the URL itself may hold a password.
    #[error(
        "unsupported database URL scheme {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    Url(String),
    #[error(
        "cannot reach the database server ({0}); check that it is running and that WAIVER_DATABASE_URL names the right host and port"
    )]
    Unreachable(String),
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
    /// The backend of an open connection.
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// Placeholders for `n` values bound in order, numbered from `from` (a statement
    /// must use one style throughout). SQLite gets anonymous `?`: sqlx-sqlite looks each
    /// `$N` up by name, which SQLite answers by walking its list of names, so binding a
    /// multi-row statement costs time quadratic in its parameters.
    pub(crate) fn params(self, from: usize, n: usize) -> String {
        (from..from + n)
            .map(|i| self.param(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `i`th placeholder (see [`Backend::params`]).
    pub(crate) fn param(self, i: usize) -> String {
        match self {
            Backend::Sqlite => "?".into(),
            Backend::Postgres => format!("${i}"),
        }
    }

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

/// A failure to connect, in words an operator can act on.
fn unreachable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(io) => StoreError::Unreachable(io.to_string()),
        sqlx::Error::Tls(tls) => StoreError::Unreachable(format!("TLS: {tls}")),
        sqlx::Error::PoolTimedOut => StoreError::Unreachable("timed out".into()),
        other => StoreError::Database(other),
    }
}

/// The database behind Waiver.
#[derive(Clone, Debug)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    /// Group-commits state changes (see `writer`).
    writer: writer::Writer,
    /// This server's counters (commits and conflicts are counted by the writer).
    metrics: Arc<Metrics>,
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
    /// When the scheduler first has something to do for it (its completeness SLA).
    pub due_at: Option<Timestamp>,
}

/// What one committed change writes besides the request itself.
pub struct Change<'a> {
    pub event: &'a Event,
    pub audit: AuditRecord,
    pub outbox: Vec<Outgoing>,
    /// Processed at most once (Slack `event_id`, Teams activity id).
    pub idempotency_key: Option<String>,
    /// What the scheduler is owed afterwards.
    pub scheduling: Scheduling,
}

fn migrator(backend: Backend) -> Migrator {
    let files: [(i64, &'static str, &'static str, &'static str); 10] = [
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
        (
            3,
            "lookups",
            include_str!("../../migrations/sqlite/0003_lookups.sql"),
            include_str!("../../migrations/postgres/0003_lookups.sql"),
        ),
        (
            4,
            "outbox queues",
            include_str!("../../migrations/sqlite/0004_outbox_queues.sql"),
            include_str!("../../migrations/postgres/0004_outbox_queues.sql"),
        ),
        (
            5,
            "schedule",
            include_str!("../../migrations/sqlite/0005_schedule.sql"),
            include_str!("../../migrations/postgres/0005_schedule.sql"),
        ),
        (
            6,
            "surfaces",
            include_str!("../../migrations/sqlite/0006_surfaces.sql"),
            include_str!("../../migrations/postgres/0006_surfaces.sql"),
        ),
        (
            7,
            "conversations",
            include_str!("../../migrations/sqlite/0007_conversations.sql"),
            include_str!("../../migrations/postgres/0007_conversations.sql"),
        ),
        (
            8,
            "governance files",
            include_str!("../../migrations/sqlite/0008_governance.sql"),
            include_str!("../../migrations/postgres/0008_governance.sql"),
        ),
        (
            9,
            "register dimensions",
            include_str!("../../migrations/sqlite/0009_register.sql"),
            include_str!("../../migrations/postgres/0009_register.sql"),
        ),
        (
            10,
            "first attempts",
            include_str!("../../migrations/sqlite/0010_first_attempt.sql"),
            include_str!("../../migrations/postgres/0010_first_attempt.sql"),
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
        Self::connect_with(url, writer::DEFAULT_QUEUE).await
    }

    /// Like [`Store::connect`], with room for `queue` changes waiting for the writer.
    pub async fn connect_with(url: &str, queue: usize) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = Backend::of_url(url).ok_or_else(|| {
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            StoreError::Url(scheme.chars().take(20).collect())
        })?;
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
                            // commit that was acknowledged survives a power cut. No
                            // automatic checkpoint: it would run inside whichever commit
                            // crossed the threshold; a background task checkpoints instead.
                            sqlx::raw_sql(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                                 PRAGMA wal_autocheckpoint = 0;",
                            )
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                };
                // A local file needs no liveness ping on every acquire (it cost a
                // round trip per query).
                let write = options()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await?;
                let read = options()
                    .max_connections(4)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await?;
                tokio::spawn(checkpoints(read.clone()));
                let metrics = Arc::new(Metrics::new());
                Ok(Self {
                    read,
                    writer: writer::Writer::spawn(write.clone(), backend, queue, metrics.clone()),
                    write,
                    backend,
                    metrics,
                })
            }
            Backend::Postgres => {
                // One direct attempt first: a server that is down fails fast with its
                // own error instead of after the pool's acquire timeout.
                sqlx::AnyConnection::connect(url)
                    .await
                    .map_err(unreachable)?
                    .close()
                    .await?;
                // Over TCP, each new connection gets TCP_NODELAY (see `nodelay`).
                let tcp_port = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .ok()
                    .filter(|o| o.get_socket().is_none() && !o.get_host().starts_with('/'))
                    .map(|o| o.get_port());
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |_, _| {
                        Box::pin(async move {
                            if let Some(port) = tcp_port {
                                nodelay::on_sockets_to(port);
                            }
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                let metrics = Arc::new(Metrics::new());
                Ok(Self {
                    read: pool.clone(),
                    writer: writer::Writer::spawn(pool.clone(), backend, queue, metrics.clone()),
                    write: pool,
                    backend,
                    metrics,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        migrator(self.backend).run(&self.write).await?;
        Ok(())
    }

    /// Changes waiting for the writer, and the room there is for them.
    pub fn writer_backlog(&self) -> (usize, usize) {
        self.writer.backlog()
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
        let mut conn = self.read.acquire().await?;
        Ok(load_requests(&mut conn, self.backend, &[id]).await?.pop())
    }

    /// Files a new request: allocates its number, then commits what `make` builds
    /// for that number, all in one transaction. `make` is pure and may run again
    /// (with another number) if its batch is retried.
    pub async fn create<F>(&self, make: F, now: Timestamp) -> Result<NewRequest>
    where
        F: Fn(RequestId) -> NewRequest + Send + Sync + 'static,
    {
        self.create_once(make, None, now).await
    }

    /// [`create`](Self::create), at most once per `idempotency_key`:
    /// [`StoreError::Duplicate`] when the key was claimed before.
    pub async fn create_once<F>(
        &self,
        make: F,
        idempotency_key: Option<String>,
        now: Timestamp,
    ) -> Result<NewRequest>
    where
        F: Fn(RequestId) -> NewRequest + Send + Sync + 'static,
    {
        let (job, rx) = writer::Job::create(Box::new(make), idempotency_key, now);
        match self.writer.submit(job, rx).await? {
            writer::Done::Created(new) => Ok(*new),
            _ => Err(corrupt("create", "the writer answered without a request")),
        }
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
        if after.revision != before.revision + 1 {
            return Err(corrupt("commit", "a change must move the revision by one"));
        }
        let delta = writer::Delta::new(
            Some(before),
            after,
            change.event,
            change.audit.at,
            &change.scheduling,
            &change.audit.actor,
        )?;
        let (job, rx) =
            writer::Job::change(delta, change.audit, change.outbox, change.idempotency_key);
        match self.writer.submit(job, rx).await? {
            writer::Done::Seq(seq) => Ok(seq),
            _ => Err(corrupt("commit", "the writer answered with a new request")),
        }
    }

    /// Records something that changed no request (a refused attempt, a delivery):
    /// one audit entry and its outbox rows.
    pub async fn record(
        &self,
        audit: AuditRecord,
        outbox: Vec<Outgoing>,
        idempotency_key: Option<String>,
    ) -> Result<u64> {
        let now = audit.at;
        let (job, rx) = writer::Job::record(Some(audit), outbox, idempotency_key, now);
        match self.writer.submit(job, rx).await? {
            writer::Done::Seq(seq) => Ok(seq),
            _ => Err(corrupt("record", "the writer answered with a new request")),
        }
    }

    /// Claims an idempotency key on its own (for deliveries that change nothing).
    /// `false` when it was already claimed.
    pub async fn claim_idempotency_key(&self, key: &str, now: Timestamp) -> Result<bool> {
        let (job, rx) = writer::Job::record(None, Vec::new(), Some(key.to_string()), now);
        match self.writer.submit(job, rx).await {
            Ok(_) => Ok(true),
            Err(StoreError::Duplicate) => Ok(false),
            Err(e) => Err(e),
        }
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
        rows.iter().map(summary).collect()
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
        rows.iter().map(summary).collect()
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

    /// Earlier requests about the same AI system (first) or under the same policy,
    /// newest first. Both lookups are index range scans.
    pub async fn similar(&self, request: &ExceptionRequest, limit: i64) -> Result<Vec<Summary>> {
        let content = request.content();
        let same_system = sqlx::query(
            "SELECT id, state, version, title, tier, expires_at, next_review_at, updated_at \
             FROM requests WHERE ai_system_key = $1 AND id <> $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(system_key(&content.ai_system))
        .bind(request.id.get())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<Summary> = same_system.iter().map(summary).collect::<Result<_>>()?;
        if (out.len() as i64) < limit {
            let same_policy = sqlx::query(
                "SELECT id, state, version, title, tier, expires_at, next_review_at, updated_at \
                 FROM requests WHERE policy_id = $1 AND id <> $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(content.policy.as_str())
            .bind(request.id.get())
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
            for row in &same_policy {
                let s = summary(row)?;
                if (out.len() as i64) < limit && !out.iter().any(|o| o.id == s.id) {
                    out.push(s);
                }
            }
        }
        Ok(out)
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
        rows.iter().map(decision_from_row).collect()
    }

    /// The audit entries about one request, in order.
    pub async fn audit_of(&self, id: RequestId) -> Result<Vec<AuditEntry>> {
        audit::of_request(&self.read, id).await
    }

    /// Recomputes the whole audit chain.
    pub async fn verify_audit(&self) -> Result<Result<VerifyReport, VerifyError>> {
        audit::verify(&self.read).await
    }

    /// Raw SQL for tests and benchmarks that must reach under the store (tamper tests,
    /// seeding a register); test-only, like `crate::fakes`.
    #[cfg(feature = "fakes")]
    pub async fn execute_raw(&self, sql: &'static str) -> Result<u64> {
        Ok(sqlx::raw_sql(sql)
            .execute(&self.write)
            .await?
            .rows_affected())
    }
}

/// Moves the WAL into the database file every second, off the commit path (PASSIVE:
/// it never blocks the writer). Ends when the pool closes.
async fn checkpoints(pool: AnyPool) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// A [`Summary`] from a row of `SUMMARY_COLUMNS`.
fn summary(r: &AnyRow) -> Result<Summary> {
    let state: &str = r.try_get("state")?;
    let tier: Option<String> = r.try_get("tier")?;
    Ok(Summary {
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

fn decision_from_row(r: &AnyRow) -> Result<DecisionRecord> {
    Ok(DecisionRecord {
        vote: parse("decision", r.try_get::<&str, _>("body")?)?,
        snapshot: parse("decision snapshot", r.try_get::<&str, _>("snapshot")?)?,
        governance_hash: r.try_get("governance_hash")?,
        policy_version: r.try_get("policy_version")?,
    })
}

/// One stored decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub vote: Vote,
    pub snapshot: serde_json::Value,
    pub governance_hash: String,
    pub policy_version: String,
}

/// The normalised form of an AI system's name, for "same system" lookups.
fn system_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Loads many requests with two queries per chunk (the scheduler's batches).
async fn load_requests(
    db: &mut sqlx::AnyConnection,
    backend: Backend,
    ids: &[RequestId],
) -> Result<Vec<ExceptionRequest>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list = backend.params(1, chunk.len());
        // Each list of the union binds the ids again (one placeholder style, in order).
        let [a, b, c, d, e, f, g]: [String; 7] =
            std::array::from_fn(|k| backend.params(k * chunk.len() + 1, chunk.len()));
        // The SQL text holds only placeholders.
        let sql = format!(
            "SELECT id, revision, state, requester, created_at, stage_since, renews, body \
             FROM requests WHERE id IN ({list}) ORDER BY id"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.get());
        }
        let rows = q.fetch_all(&mut *db).await?;
        let sql = format!(
            "SELECT request_id, kind, seq, body FROM ( \
               SELECT request_id, 'a' AS kind, version AS seq, body FROM request_versions WHERE request_id IN ({a}) \
               UNION ALL SELECT request_id, 'b', seq, body FROM reviews WHERE request_id IN ({b}) \
               UNION ALL SELECT request_id, 'c', seq, body FROM assessments WHERE request_id IN ({c}) \
               UNION ALL SELECT request_id, 'd', seq, body FROM comments WHERE request_id IN ({d}) \
               UNION ALL SELECT request_id, 'e', seq, body FROM decisions WHERE request_id IN ({e}) \
               UNION ALL SELECT request_id, 'f', condition_id, body FROM conditions WHERE request_id IN ({f}) \
               UNION ALL SELECT request_id, 'g', seq, body FROM attestations WHERE request_id IN ({g}) \
             ) AS children ORDER BY request_id, kind, seq"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for _ in 0..7 {
            for id in chunk {
                q = q.bind(id.get());
            }
        }
        let children = q.fetch_all(&mut *db).await?;
        let mut by_id: HashMap<i64, Vec<&sqlx::any::AnyRow>> = HashMap::new();
        for c in &children {
            by_id.entry(c.try_get("request_id")?).or_default().push(c);
        }
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let kids = by_id.remove(&id).unwrap_or_default();
            out.push(assemble(RequestId::new(id), row, kids.into_iter())?);
        }
    }
    Ok(out)
}

/// A request from its row and its records' rows (`kind`, `body`, in order).
fn assemble<'r>(
    id: RequestId,
    row: &sqlx::any::AnyRow,
    children: impl Iterator<Item = &'r sqlx::any::AnyRow>,
) -> Result<ExceptionRequest> {
    let mut versions: Vec<Version> = Vec::new();
    let mut reviews: Vec<Review> = Vec::new();
    let mut assessments: Vec<Assessment> = Vec::new();
    let mut comments: Vec<Comment> = Vec::new();
    let mut votes: Vec<Vote> = Vec::new();
    let mut conditions: Vec<Condition> = Vec::new();
    let mut attestations: Vec<Attestation> = Vec::new();
    for child in children {
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
    Ok(ExceptionRequest {
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
    })
}

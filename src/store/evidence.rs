//! What an evidence pack is read from — the governance files decisions were made
//! under, the requests with their decisions and reminders, and the audit chain as
//! stored (each entry's exact text and hashes) — all from one consistent snapshot of
//! the database, so a server running meanwhile cannot make the pack disagree with
//! itself.

use futures_util::TryStreamExt;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use super::{Backend, DecisionRecord, ReminderRecord, Result, Store};
use crate::domain::{ExceptionRequest, RequestId, Timestamp};

/// One audit entry as stored: its exact hashed text and the chain around it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainedEntry {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    /// The entry's JSON, byte for byte as hashed.
    pub entry: String,
}

/// A governance file as kept: its hash, when it was first run, its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GovernanceFile {
    pub hash: String,
    pub first_seen: Timestamp,
    pub source: String,
}

impl Store {
    /// Keeps a governance file's text under its hash (once; later calls change nothing).
    pub async fn remember_governance(
        &self,
        hash: &str,
        source: &str,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO governance_files (hash, first_seen, source) VALUES ($1, $2, $3) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(now.millis())
        .bind(source)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// A read-only view of the whole database as of now, held until it is dropped
    /// (SQLite: one read transaction; PostgreSQL: REPEATABLE READ).
    pub async fn frozen(&self) -> Result<Frozen> {
        let tx = match self.backend {
            Backend::Sqlite => self.read.begin().await?,
            Backend::Postgres => {
                self.read
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?
            }
        };
        Ok(Frozen {
            tx,
            backend: self.backend,
        })
    }
}

/// See [`Store::frozen`].
pub struct Frozen {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl Frozen {
    /// The audit head: the last sequence number and hash appended.
    pub async fn audit_head(&mut self) -> Result<(u64, String)> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *self.tx)
            .await?;
        Ok((head.try_get::<i64, _>("seq")? as u64, head.try_get("hash")?))
    }

    /// Requests changed at or after `since` (all with `None`), by number.
    pub async fn changed_since(&mut self, since: Option<Timestamp>) -> Result<Vec<RequestId>> {
        let rows = sqlx::query("SELECT id FROM requests WHERE updated_at >= $1 ORDER BY id")
            .bind(since.map(Timestamp::millis).unwrap_or(i64::MIN))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| Ok(RequestId::new(r.try_get("id")?)))
            .collect()
    }

    pub async fn requests(&mut self, ids: &[RequestId]) -> Result<Vec<ExceptionRequest>> {
        super::load_requests(&mut self.tx, self.backend, ids).await
    }

    /// The decisions on `ids`, in order, with the request each belongs to.
    pub async fn decisions(
        &mut self,
        ids: &[RequestId],
    ) -> Result<Vec<(RequestId, DecisionRecord)>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT request_id, body, snapshot, governance_hash, policy_version FROM decisions \
                 WHERE request_id IN ({}) ORDER BY request_id, seq",
                self.backend.params(1, chunk.len())
            );
            for r in &bind_ids(&sql, chunk).fetch_all(&mut *self.tx).await? {
                out.push((
                    RequestId::new(r.try_get("request_id")?),
                    super::decision_from_row(r)?,
                ));
            }
        }
        Ok(out)
    }

    /// The reminders of `ids`, in the order they fell due.
    pub async fn reminders(&mut self, ids: &[RequestId]) -> Result<Vec<ReminderRecord>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT key, request_id, target, status, due_at, sent_at, body FROM reminders \
                 WHERE request_id IN ({}) ORDER BY request_id, due_at, key",
                self.backend.params(1, chunk.len())
            );
            for r in &bind_ids(&sql, chunk).fetch_all(&mut *self.tx).await? {
                out.push(super::schedule::reminder_from_row(r)?);
            }
        }
        Ok(out)
    }

    /// Every governance file kept, oldest first.
    pub async fn governance_files(&mut self) -> Result<Vec<GovernanceFile>> {
        let rows = sqlx::query(
            "SELECT hash, first_seen, source FROM governance_files ORDER BY first_seen, hash",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GovernanceFile {
                    hash: r.try_get("hash")?,
                    first_seen: Timestamp::from_millis(r.try_get("first_seen")?),
                    source: r.try_get("source")?,
                })
            })
            .collect()
    }

    /// The first audit entry about any of `ids` (`None`: no entry names them).
    pub async fn first_entry_of(&mut self, ids: &[RequestId]) -> Result<Option<u64>> {
        let mut first: Option<i64> = None;
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT MIN(seq) AS seq FROM audit WHERE request_id IN ({})",
                self.backend.params(1, chunk.len())
            );
            let seq: Option<i64> = bind_ids(&sql, chunk)
                .fetch_one(&mut *self.tx)
                .await?
                .try_get("seq")?;
            first = match (first, seq) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(first.map(|s| s as u64))
    }

    /// Calls `each` with every audit entry from `from` to `to`, in order, as stored.
    pub async fn audit_range<E>(
        &mut self,
        from: u64,
        to: u64,
        mut each: impl FnMut(ChainedEntry) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<(), E>> {
        let mut rows = sqlx::query(
            "SELECT seq, prev_hash, hash, entry FROM audit WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(from as i64)
        .bind(to as i64)
        .fetch(&mut *self.tx);
        while let Some(r) = rows.try_next().await? {
            let entry = ChainedEntry {
                seq: r.try_get::<i64, _>("seq")? as u64,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
                entry: r.try_get("entry")?,
            };
            if let Err(e) = each(entry) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}

fn bind_ids<'q>(
    sql: &str,
    ids: &[RequestId],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
    for id in ids {
        q = q.bind(id.get());
    }
    q
}

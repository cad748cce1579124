//! The append-only, hash-chained audit log.
//!
//! Each entry is stored as the exact JSON text that was hashed, with
//! `hash = SHA-256(prev_hash ‖ entry)`; the filterable columns (time, actor, request,
//! action, outcome) repeat fields of the entry and are checked against it. A one-row
//! head table holds the last sequence number and hash, so a truncated tail is
//! detected too. Appends serialise on the head row (`FOR UPDATE` on PostgreSQL; SQLite
//! has one writer).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, Row};

use super::writer::Bind;
use super::{Backend, Result, corrupt};
use crate::domain::{RequestId, Timestamp};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A state change was committed.
    Applied,
    /// The attempt was refused; nothing changed.
    Refused,
    /// A chat message was delivered.
    Delivered,
    /// A chat message could not be delivered and was parked.
    Parked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Refused => "refused",
            Outcome::Delivered => "delivered",
            Outcome::Parked => "parked",
        }
    }
}

/// What to append.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: String,
    pub request: Option<RequestId>,
    pub action: String,
    pub outcome: Outcome,
    /// Everything else worth keeping: the event, the refusal reason, the message id.
    pub details: serde_json::Value,
}

/// The hashed form of an entry. Field order is fixed by the struct.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    pub request: Option<RequestId>,
    pub action: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

/// SHA-256 of a request's JSON, hex: recorded in the audit entry of every change, so
/// that a copy of the request (an evidence pack) can be checked against the
/// tamper-evident trail field by field.
pub fn digest(request: &crate::domain::ExceptionRequest) -> String {
    let json = serde_json::to_vec(request).expect("requests serialise");
    hex::encode(Sha256::digest(&json))
}

/// `SHA-256(prev_hash ‖ entry)`, hex: how each entry is chained to the one before.
pub fn chain_hash(prev: &str, entry: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(entry.as_bytes());
    hex::encode(h.finalize())
}

/// Chains `records` after the current head: returns the audit rows to insert (in the
/// column order of `writer::AUDIT`) and the sequence numbers assigned, and moves the
/// head. Runs inside the caller's transaction, which serialises appends (PostgreSQL
/// locks the head row; SQLite has one writer).
pub(super) async fn chain<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    records: impl Iterator<Item = &'a AuditRecord>,
) -> Result<(Vec<Vec<Bind>>, Vec<u64>)> {
    let head = match backend {
        Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
    };
    let row = sqlx::query(head).fetch_one(&mut *conn).await?;
    let mut seq = row.try_get::<i64, _>("seq")? as u64;
    let mut prev: String = row.try_get("hash")?;
    let mut rows = Vec::new();
    let mut seqs = Vec::new();
    for record in records {
        seq += 1;
        let entry = AuditEntry {
            seq,
            at: record.at,
            actor: record.actor.clone(),
            request: record.request,
            action: record.action.clone(),
            outcome: record.outcome,
            details: record.details.clone(),
        };
        let text = serde_json::to_string(&entry).expect("audit entries serialise");
        let hash = chain_hash(&prev, &text);
        rows.push(vec![
            Bind::Int(seq as i64),
            Bind::Int(record.at.millis()),
            Bind::Text(record.actor.clone()),
            Bind::OptInt(record.request.map(RequestId::get)),
            Bind::Text(record.action.clone()),
            Bind::Text(record.outcome.as_str().into()),
            Bind::Text(text),
            Bind::Text(prev),
            Bind::Text(hash.clone()),
        ]);
        seqs.push(seq);
        prev = hash;
    }
    if !seqs.is_empty() {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq as i64)
            .bind(prev)
            .execute(&mut *conn)
            .await?;
    }
    Ok((rows, seqs))
}

pub(super) async fn of_request(db: &AnyPool, id: RequestId) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query("SELECT entry FROM audit WHERE request_id = $1 ORDER BY seq")
        .bind(id.get())
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| {
            let text: &str = r.try_get("entry")?;
            serde_json::from_str(text).map_err(|e| corrupt("audit entry", e))
        })
        .collect()
}

/// A chain that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub head: String,
}

/// The first entry at which the chain breaks, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub seq: u64,
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit entry {} is broken: {}", self.seq, self.reason)
    }
}

/// The head: the last sequence number and hash appended.
async fn head(db: &AnyPool) -> Result<(u64, String)> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(db)
        .await?;
    Ok((head.try_get::<i64, _>("seq")? as u64, head.try_get("hash")?))
}

/// Recomputes every hash in order, checks each row's columns against its entry, the
/// sequence for gaps and the head for a truncated tail.
///
/// The head is read before the entries: an append moves the head in the transaction
/// that inserts its entries, so every entry up to that head is there when they are
/// read, and entries appended meanwhile (the server keeps running while an auditor
/// verifies) are not mistaken for a tampered tail.
pub(super) async fn verify(db: &AnyPool) -> Result<Result<VerifyReport, VerifyError>> {
    use futures_util::TryStreamExt;

    let (head_seq, head_hash) = head(db).await?;
    let mut rows = sqlx::query(
        "SELECT seq, at, actor, request_id, action, outcome, entry, prev_hash, hash \
         FROM audit ORDER BY seq",
    )
    .fetch(db);
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_string();
    // The chain's hash at the head's entry.
    let mut at_head = (head_seq == 0).then(|| prev.clone());
    while let Some(row) = rows.try_next().await? {
        let seq = row.try_get::<i64, _>("seq")? as u64;
        let fail = |reason: String| Ok(Err(VerifyError { seq, reason }));
        if seq != expected_seq {
            return fail(format!(
                "expected entry {expected_seq} next: entries {expected_seq}..{} are missing",
                seq - 1
            ));
        }
        let prev_hash: String = row.try_get("prev_hash")?;
        if prev_hash != prev {
            return fail("its prev_hash does not match the previous entry's hash".into());
        }
        let text: String = row.try_get("entry")?;
        let hash: String = row.try_get("hash")?;
        if chain_hash(&prev, &text) != hash {
            return fail("its content does not match its hash (the entry was altered)".into());
        }
        let entry: AuditEntry = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(e) => return fail(format!("its entry is not valid JSON: {e}")),
        };
        let columns_match = entry.seq == seq
            && entry.at.millis() == row.try_get::<i64, _>("at")?
            && entry.actor == row.try_get::<String, _>("actor")?
            && entry.request.map(RequestId::get) == row.try_get::<Option<i64>, _>("request_id")?
            && entry.action == row.try_get::<String, _>("action")?
            && entry.outcome.as_str() == row.try_get::<String, _>("outcome")?;
        if !columns_match {
            return fail(
                "its columns disagree with its hashed entry (a column was altered)".into(),
            );
        }
        prev = hash;
        if seq == head_seq {
            at_head = Some(prev.clone());
        }
        expected_seq += 1;
    }
    drop(rows);
    let last = expected_seq - 1;
    if last < head_seq {
        return Ok(Err(VerifyError {
            seq: head_seq,
            reason: format!(
                "the chain ends at entry {last} but the head records entry {head_seq}: entries were removed from the end"
            ),
        }));
    }
    if at_head.as_deref() != Some(head_hash.as_str()) {
        return Ok(Err(VerifyError {
            seq: head_seq,
            reason: format!(
                "the head records a hash for entry {head_seq} that the chain does not have: the head or the entries before it were rewritten"
            ),
        }));
    }
    if last > head_seq {
        // Entries past the head read first: appended since, so the head has moved on
        // to them (or past them) — unless they were inserted behind its back.
        let (now_seq, now_hash) = head(db).await?;
        if last > now_seq || (last == now_seq && now_hash != prev) {
            return Ok(Err(VerifyError {
                seq: last,
                reason: format!(
                    "the chain ends at entry {last} but the head records entry {now_seq}: entries were added without moving the head"
                ),
            }));
        }
    }
    Ok(Ok(VerifyReport {
        entries: last,
        head: prev,
    }))
}

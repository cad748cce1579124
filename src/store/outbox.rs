//! The outbox: every outgoing chat message, written in the same transaction as the
//! change that caused it, then delivered by the delivery worker.

use sqlx::{Any, Row, Transaction};

use super::{Result, Store, corrupt, json, parse};
use crate::chat::Outgoing;
use crate::domain::Timestamp;

/// Where a message is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Sent,
    /// Failed permanently; kept for operators, never retried by itself.
    Parked,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Parked => "parked",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Parked]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One stored message.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub created_at: Timestamp,
    pub outgoing: Outgoing,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    Sent,
    Retry { at: Timestamp, error: String },
    Parked { error: String },
}

pub(super) async fn insert(
    tx: &mut Transaction<'static, Any>,
    messages: &[Outgoing],
    now: Timestamp,
) -> Result<()> {
    for m in messages {
        sqlx::query(
            "INSERT INTO outbox (created_at, request_id, platform, target, card_key, payload, \
             status, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $1)",
        )
        .bind(now.millis())
        .bind(m.request.map(|r| r.get()))
        .bind(m.platform.as_str())
        .bind(m.to.target())
        .bind(m.card.as_deref())
        .bind(json(m))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<OutboxRow> {
    let status: &str = r.try_get("status")?;
    Ok(OutboxRow {
        id: r.try_get("id")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        outgoing: parse("outbox payload", r.try_get::<&str, _>("payload")?)?,
        status: OutboxStatus::parse(status).ok_or_else(|| corrupt("outbox status", status))?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        next_attempt_at: Timestamp::from_millis(r.try_get("next_attempt_at")?),
        last_error: r.try_get("last_error")?,
    })
}

impl Store {
    /// Every outbox row, oldest first (for tests, `waiver demo` and operators).
    pub async fn outbox(&self) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, created_at, payload, status, attempts, next_attempt_at, last_error \
             FROM outbox ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

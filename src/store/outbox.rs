//! The outbox: every outgoing chat message, written in the same transaction as the
//! change that caused it, then delivered by the delivery worker.

use serde_json::json;
use sqlx::Row;

use super::{AuditRecord, Outcome, Result, Store, corrupt, parse};
use crate::domain::{RequestId, Timestamp};
use crate::message::{Outgoing, Platform, Posted};

/// Where a message is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Sent,
    /// Replaced by a newer message for the same card before it was sent.
    Superseded,
    /// Failed permanently; kept for operators, never retried by itself.
    Parked,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Superseded => "superseded",
            OutboxStatus::Parked => "parked",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Superseded, Self::Parked]
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
    /// Until when an attempt holds the row (a delivery in flight), if one does.
    pub lease_until: Option<Timestamp>,
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
        lease_until: r
            .try_get::<Option<i64>, _>("lease_until")?
            .map(Timestamp::from_millis),
    })
}

impl Store {
    /// Every outbox row, oldest first (for tests, `waiver demo` and operators).
    pub async fn outbox(&self) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, created_at, payload, status, attempts, next_attempt_at, last_error, \
             lease_until FROM outbox ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

/// A row claimed for delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub created_at: Timestamp,
    pub outgoing: Outgoing,
    /// Attempts including this one.
    pub attempts: u32,
    /// An earlier attempt ended without a definite answer (crash, timeout): the
    /// message may already be in the channel.
    pub in_doubt: bool,
    /// When the first attempt began (`None` for a first attempt).
    pub first_attempt_at: Option<Timestamp>,
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Finish {
    /// Delivered; for posts and card updates, where the message now is.
    Sent { posted: Option<Posted> },
    /// A newer message for the same card makes this one pointless.
    Superseded,
    /// Try again at `at`. `in_doubt`: the attempt may have taken effect.
    Retry {
        at: Timestamp,
        error: String,
        in_doubt: bool,
    },
    /// Permanent failure: kept for operators, never retried by itself.
    Parked { error: String },
    /// Not attempted (the conversation is paced): try at `at`, attempt not counted.
    Defer { at: Timestamp },
    /// Not deliverable yet (the surface cannot reach the address: the app is not
    /// installed there): kept, tried again at `at`, the reason shown to operators.
    Wait { at: Timestamp, error: String },
}

impl Store {
    /// Claims up to `limit` due rows for `lease_ms`. Per conversation, only the oldest
    /// pending row is claimable, so messages to one channel or person arrive in order
    /// (and a card's post always precedes its updates). Safe with several replicas:
    /// PostgreSQL claims with `FOR UPDATE SKIP LOCKED`.
    pub async fn claim_outbox(
        &self,
        now: Timestamp,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>> {
        // Due conversations (index on next_attempt_at), each with its head-of-line
        // message (index seek); a leased head is being delivered by someone else.
        let select = match self.backend {
            super::Backend::Postgres => {
                "SELECT o.id, o.created_at, o.payload, o.attempts, o.in_doubt, o.first_attempt_at FROM outbox_queues q \
                 JOIN outbox o ON o.id = (SELECT MIN(e.id) FROM outbox e WHERE e.platform = q.platform \
                   AND e.target = q.target AND e.status = 'pending') \
                 WHERE q.next_attempt_at <= $1 AND (o.lease_until IS NULL OR o.lease_until < $1) \
                 ORDER BY q.next_attempt_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED"
            }
            super::Backend::Sqlite => {
                "SELECT o.id, o.created_at, o.payload, o.attempts, o.in_doubt, o.first_attempt_at FROM outbox_queues q \
                 JOIN outbox o ON o.id = (SELECT MIN(e.id) FROM outbox e WHERE e.platform = q.platform \
                   AND e.target = q.target AND e.status = 'pending') \
                 WHERE q.next_attempt_at <= $1 AND (o.lease_until IS NULL OR o.lease_until < $1) \
                 ORDER BY q.next_attempt_at LIMIT $2"
            }
        };
        let mut tx = self.begin().await?;
        let rows = sqlx::query(select)
            .bind(now.millis())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(Claimed {
                id: r.try_get("id")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                outgoing: parse("outbox payload", r.try_get::<&str, _>("payload")?)?,
                attempts: r.try_get::<i64, _>("attempts")? as u32 + 1,
                in_doubt: r.try_get::<i64, _>("in_doubt")? != 0,
                first_attempt_at: r
                    .try_get::<Option<i64>, _>("first_attempt_at")?
                    .map(Timestamp::from_millis),
            });
        }
        let ids: Vec<i64> = out.iter().map(|c| c.id).collect();
        for chunk in ids.chunks(32) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            // The SQL text holds only placeholders.
            let sql = format!(
                "UPDATE outbox SET lease_until = $1, attempts = attempts + 1, in_doubt = 1, \
                 first_attempt_at = COALESCE(first_attempt_at, $2) WHERE id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now.millis() + lease_ms)
                .bind(now.millis());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records how a batch of attempts ended. The outcomes are committed by the store's
    /// writer, in the same group commit as state changes; deliveries and parked
    /// messages are audited.
    pub async fn finish_deliveries(
        &self,
        results: Vec<(Claimed, Finish)>,
        now: Timestamp,
    ) -> Result<()> {
        let (job, rx) = super::writer::Job::delivered(results, now);
        self.writer.submit(job, rx).await.map(|_| ())
    }

    /// Recreates the queue of any conversation with pending messages but no queue (a
    /// queue removed by one replica while another queued a message). Cheap when all
    /// is in order; the delivery worker runs it now and then.
    pub async fn repair_outbox_queues(&self, now: Timestamp) -> Result<u64> {
        let done = sqlx::query(
            "INSERT INTO outbox_queues (platform, target, next_attempt_at) \
             SELECT platform, target, $1 FROM outbox o WHERE status = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM outbox_queues q WHERE q.platform = o.platform AND q.target = o.target) \
             GROUP BY platform, target ON CONFLICT (platform, target) DO NOTHING",
        )
        .bind(now.millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Cuts every claim on pending messages short, to end by `until` (at start on an
    /// embedded database, whose claims can only be a stopped predecessor's). In-doubt
    /// marks stay, so that the next attempt first looks for a post that landed.
    pub async fn shorten_claims(&self, until: Timestamp) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE outbox SET lease_until = $1 WHERE status = 'pending' AND lease_until > $1",
        )
        .bind(until.millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Extends the claims on `ids` (attempts still in flight) to `until`. A claim
    /// already ended (its outcome recorded) is left alone.
    pub async fn renew_claims(&self, ids: &[i64], until: Timestamp) -> Result<()> {
        for chunk in ids.chunks(64) {
            // The SQL text holds only placeholders.
            let sql = format!(
                "UPDATE outbox SET lease_until = $1 WHERE status = 'pending' \
                 AND lease_until IS NOT NULL AND id IN ({})",
                placeholders(2, chunk.len(), 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(until.millis());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&self.write).await?;
        }
        Ok(())
    }

    /// The conversation queues (for operators and tests): platform, target, next due.
    pub async fn outbox_queues(&self) -> Result<Vec<(String, String, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT platform, target, next_attempt_at FROM outbox_queues ORDER BY next_attempt_at",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("platform")?,
                    r.try_get("target")?,
                    Timestamp::from_millis(r.try_get("next_attempt_at")?),
                ))
            })
            .collect()
    }

    /// Whether a newer message for the same card is waiting (this one can be skipped).
    pub async fn card_superseded(&self, row: &Claimed) -> Result<bool> {
        let Some(key) = &row.outgoing.card else {
            return Ok(false);
        };
        let newer = sqlx::query(
            "SELECT 1 AS one FROM outbox WHERE platform = $1 AND card_key = $2 AND id > $3 \
             AND status = 'pending' LIMIT 1",
        )
        .bind(row.outgoing.platform.as_str())
        .bind(key.as_str())
        .bind(row.id)
        .fetch_optional(&self.read)
        .await?;
        Ok(newer.is_some())
    }

    /// Where a card was posted, if it was.
    pub async fn card(&self, platform: Platform, key: &str) -> Result<Option<Posted>> {
        let row = sqlx::query(
            "SELECT conversation, message, reference FROM cards WHERE platform = $1 AND card_key = $2",
        )
        .bind(platform.as_str())
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(Posted {
                conversation: r.try_get("conversation")?,
                message: r.try_get("message")?,
                reference: r.try_get("reference")?,
            })
        })
        .transpose()
    }

    /// Remembers how `platform` reaches `address` (its own reference, opaque here).
    pub async fn remember_conversation(
        &self,
        platform: Platform,
        address: &str,
        reference: &str,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO conversations (platform, address, reference, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (platform, address) DO UPDATE \
             SET reference = excluded.reference, updated_at = excluded.updated_at",
        )
        .bind(platform.as_str())
        .bind(address)
        .bind(reference)
        .bind(now.millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// How `platform` reaches the first of `addresses` it knows: (address, reference).
    pub async fn conversation(
        &self,
        platform: Platform,
        addresses: &[String],
    ) -> Result<Option<(String, String)>> {
        for address in addresses {
            let row = sqlx::query(
                "SELECT reference FROM conversations WHERE platform = $1 AND address = $2",
            )
            .bind(platform.as_str())
            .bind(address.as_str())
            .fetch_optional(&self.read)
            .await?;
            if let Some(r) = row {
                return Ok(Some((address.clone(), r.try_get("reference")?)));
            }
        }
        Ok(None)
    }

    /// What the card posted as `message` in `conversation` shows by now: its newest
    /// message, delivered or about to be.
    pub async fn card_now(
        &self,
        platform: Platform,
        conversation: &str,
        message: &str,
    ) -> Result<Option<Outgoing>> {
        // Two index seeks: the card by where it was posted, then its newest message.
        let key = sqlx::query(
            "SELECT card_key FROM cards WHERE platform = $1 AND conversation = $2 AND message = $3",
        )
        .bind(platform.as_str())
        .bind(conversation)
        .bind(message)
        .fetch_optional(&self.read)
        .await?;
        let Some(key) = key else {
            return Ok(None);
        };
        let key: String = key.try_get("card_key")?;
        self.card_message(platform, &key).await
    }

    /// The newest message for the card `key` (what the card shows, or is about to).
    pub async fn card_message(&self, platform: Platform, key: &str) -> Result<Option<Outgoing>> {
        let row = sqlx::query(
            "SELECT payload FROM outbox WHERE platform = $1 AND card_key = $2 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(platform.as_str())
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| parse("outbox payload", r.try_get::<&str, _>("payload")?))
            .transpose()
    }

    /// Forgets a card whose message is gone, so the next message posts it anew.
    pub async fn forget_card(&self, platform: Platform, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM cards WHERE platform = $1 AND card_key = $2")
            .bind(platform.as_str())
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The request whose card is `message` in `conversation` (for thread replies).
    pub async fn request_of_card(
        &self,
        platform: Platform,
        conversation: &str,
        message: &str,
    ) -> Result<Option<RequestId>> {
        let row = sqlx::query(
            "SELECT request_id FROM cards WHERE platform = $1 AND conversation = $2 AND message = $3",
        )
        .bind(platform.as_str())
        .bind(conversation)
        .bind(message)
        .fetch_optional(&self.read)
        .await?;
        Ok(row
            .and_then(|r| r.try_get::<Option<i64>, _>("request_id").ok().flatten())
            .map(RequestId::new))
    }

    /// Messages not delivered, by platform and status (pending, parked), and when the
    /// oldest pending one was queued (for `/metrics`).
    pub async fn outbox_backlog(
        &self,
    ) -> Result<(Vec<(Platform, OutboxStatus, i64)>, Option<Timestamp>)> {
        let rows = sqlx::query(
            "SELECT platform, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
             WHERE status IN ('pending', 'parked') GROUP BY platform, status",
        )
        .fetch_all(&self.read)
        .await?;
        let mut counts = Vec::new();
        let mut oldest = None;
        for r in &rows {
            let platform: String = r.try_get("platform")?;
            let status: String = r.try_get("status")?;
            let platform =
                Platform::parse(&platform).ok_or_else(|| corrupt("platform", &platform))?;
            let status = OutboxStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?;
            if status == OutboxStatus::Pending {
                let at = Timestamp::from_millis(r.try_get::<i64, _>("oldest")?);
                oldest = Some(oldest.map_or(at, |o: Timestamp| o.min(at)));
            }
            counts.push((platform, status, r.try_get::<i64, _>("n")?));
        }
        Ok((counts, oldest))
    }

    /// Outbox rows by status (for operators, metrics and tests).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}

fn delivery_audit(
    row: &Claimed,
    now: Timestamp,
    outcome: Outcome,
    details: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        at: now,
        actor: "waiver".into(),
        request: row.outgoing.request,
        action: "deliver".into(),
        outcome,
        details,
    }
}

/// A multi-row statement's placeholders: `($from, $from+1), ($from+2, $from+3), ...`
/// for `rows` tuples of `width`, or `$from, ...` when `width` is 1.
fn placeholders(from: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (0..width)
                .map(|c| format!("${}", from + r * width + c))
                .collect();
            if width == 1 {
                cols.join("")
            } else {
                format!("({})", cols.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes a batch of delivery outcomes inside the writer's transaction and returns
/// the audit records to chain. Statements are per kind of outcome, not per message.
pub(super) async fn write_outcomes(
    conn: &mut sqlx::AnyConnection,
    backend: super::Backend,
    results: &[(Claimed, Finish)],
    now: Timestamp,
) -> Result<Vec<AuditRecord>> {
    use sqlx::AssertSqlSafe;
    let done_ids = |pred: fn(&Finish) -> bool| -> Vec<i64> {
        results
            .iter()
            .filter(|(_, f)| pred(f))
            .map(|(r, _)| r.id)
            .collect()
    };
    let sent = done_ids(|f| matches!(f, Finish::Sent { .. }));
    let superseded = done_ids(|f| matches!(f, Finish::Superseded));
    // Conversations whose head finished, in a stable order (lock order on PostgreSQL).
    let mut finished: Vec<(String, String)> = results
        .iter()
        .filter(|(_, f)| {
            matches!(
                f,
                Finish::Sent { .. } | Finish::Superseded | Finish::Parked { .. }
            )
        })
        .map(|(r, _)| {
            (
                r.outgoing.platform.as_str().to_string(),
                r.outgoing.to.target(),
            )
        })
        .collect();
    finished.sort();
    finished.dedup();

    // Lock the finished conversations' queues first; the emptiness check below is a
    // later statement, so it sees any batch that queued a message meanwhile.
    for chunk in finished.chunks(32) {
        if backend == super::Backend::Postgres {
            let sql = format!(
                "SELECT platform FROM outbox_queues WHERE (platform, target) IN ({}) \
                 ORDER BY platform, target FOR UPDATE",
                placeholders(1, chunk.len(), 2)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (p, t) in chunk {
                q = q.bind(p.as_str()).bind(t.as_str());
            }
            q.fetch_all(&mut *conn).await?;
        }
    }
    for (ids, status) in [(&sent, "sent"), (&superseded, "superseded")] {
        for chunk in ids.chunks(64) {
            let sql = format!(
                "UPDATE outbox SET status = '{status}', sent_at = $1, lease_until = NULL, in_doubt = 0, \
                 last_error = NULL WHERE id IN ({})",
                placeholders(2, chunk.len(), 1)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now.millis());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
    }
    let mut audits = Vec::new();
    let mut cards = Vec::new();
    for (row, finish) in results {
        let m = &row.outgoing;
        match finish {
            Finish::Sent { posted } => {
                if let (Some(key), Some(p)) = (&m.card, posted) {
                    cards.push(vec![
                        super::writer::Bind::Text(m.platform.as_str().into()),
                        super::writer::Bind::Text(key.clone()),
                        super::writer::Bind::OptInt(m.request.map(RequestId::get)),
                        super::writer::Bind::Text(p.conversation.clone()),
                        super::writer::Bind::Text(p.message.clone()),
                        super::writer::Bind::OptText(p.reference.clone()),
                        super::writer::Bind::Int(now.millis()),
                    ]);
                }
                audits.push(delivery_audit(
                    row,
                    now,
                    Outcome::Delivered,
                    json!({
                        "outbox_id": row.id,
                        "platform": m.platform,
                        "target": m.to.target(),
                        "card": m.card,
                        "conversation": posted.as_ref().map(|p| &p.conversation),
                        "message": posted.as_ref().map(|p| &p.message),
                        "summary": m.message.summary,
                    }),
                ));
            }
            Finish::Superseded => {}
            Finish::Parked { error } => {
                sqlx::query(
                    "UPDATE outbox SET status = 'parked', last_error = $1, lease_until = NULL, in_doubt = 0 \
                     WHERE id = $2",
                )
                .bind(error.as_str())
                .bind(row.id)
                .execute(&mut *conn)
                .await?;
                audits.push(delivery_audit(
                    row,
                    now,
                    Outcome::Parked,
                    json!({
                        "outbox_id": row.id,
                        "platform": m.platform,
                        "target": m.to.target(),
                        "card": m.card,
                        "error": error,
                    }),
                ));
            }
            Finish::Retry {
                at,
                error,
                in_doubt,
            } => {
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $1, last_error = $2, in_doubt = $3, lease_until = NULL \
                     WHERE id = $4",
                )
                .bind(at.millis())
                .bind(error.as_str())
                .bind(i64::from(*in_doubt))
                .bind(row.id)
                .execute(&mut *conn)
                .await?;
                delay_queue(conn, row, *at).await?;
            }
            Finish::Wait { at, error } => {
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $1, attempts = attempts - 1, last_error = $2, \
                     in_doubt = 0, lease_until = NULL WHERE id = $3",
                )
                .bind(at.millis())
                .bind(error.as_str())
                .bind(row.id)
                .execute(&mut *conn)
                .await?;
                delay_queue(conn, row, *at).await?;
            }
            Finish::Defer { at } => {
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $1, attempts = attempts - 1, in_doubt = $2, \
                     lease_until = NULL WHERE id = $3",
                )
                .bind(at.millis())
                .bind(i64::from(row.in_doubt))
                .bind(row.id)
                .execute(&mut *conn)
                .await?;
                delay_queue(conn, row, *at).await?;
            }
        }
    }
    if !cards.is_empty() {
        super::writer::insert(conn, &super::writer::CARDS, cards).await?;
    }
    // The finished heads are no longer pending: an emptied queue goes, the others'
    // next head is due now.
    for chunk in finished.chunks(32) {
        let list = placeholders(1, chunk.len(), 2);
        let sql = format!(
            "DELETE FROM outbox_queues WHERE (platform, target) IN ({list}) AND NOT EXISTS \
             (SELECT 1 FROM outbox o WHERE o.platform = outbox_queues.platform \
              AND o.target = outbox_queues.target AND o.status = 'pending')"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (p, t) in chunk {
            q = q.bind(p.as_str()).bind(t.as_str());
        }
        q.execute(&mut *conn).await?;
        let sql = format!(
            "UPDATE outbox_queues SET next_attempt_at = ${} WHERE (platform, target) IN ({list})",
            chunk.len() * 2 + 1
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (p, t) in chunk {
            q = q.bind(p.as_str()).bind(t.as_str());
        }
        q.bind(now.millis()).execute(&mut *conn).await?;
    }
    Ok(audits)
}

async fn delay_queue(conn: &mut sqlx::AnyConnection, row: &Claimed, at: Timestamp) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_queues SET next_attempt_at = $1 WHERE platform = $2 AND target = $3",
    )
    .bind(at.millis())
    .bind(row.outgoing.platform.as_str())
    .bind(row.outgoing.to.target())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Parked messages an operator sends again: each of `ids` still parked goes back to
/// pending with its attempts reset, except a card message that a newer message for
/// the same card has overtaken (it would show an old state), which is superseded —
/// whether the newer one was sent, is pending or is parked too (sent again instead).
/// Returns the ids requeued, with one audit entry each.
pub(super) async fn write_requeue(
    conn: &mut sqlx::AnyConnection,
    ids: &[i64],
    actor: &str,
    now: Timestamp,
) -> Result<(Vec<i64>, Vec<AuditRecord>)> {
    use super::writer::{Bind, QUEUES, insert};
    use sqlx::AssertSqlSafe;
    let mut done = Vec::new();
    let mut audits = Vec::new();
    // Conversations to queue, in a stable order (lock order on PostgreSQL).
    let mut queues = std::collections::BTreeSet::new();
    for chunk in ids.chunks(64) {
        let list = placeholders(1, chunk.len(), 1);
        let bind_all = |sql: String| {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            q
        };
        bind_all(format!(
            "UPDATE outbox SET status = 'superseded', lease_until = NULL, in_doubt = 0 \
             WHERE id IN ({list}) AND status = 'parked' AND card_key IS NOT NULL AND EXISTS \
             (SELECT 1 FROM outbox n WHERE n.platform = outbox.platform AND n.card_key = outbox.card_key \
             AND n.id > outbox.id AND n.status IN ('pending', 'sent', 'parked'))"
        ))
        .execute(&mut *conn)
        .await?;
        let rows = bind_all(format!(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = 0, \
             lease_until = NULL, in_doubt = 0 WHERE id IN ({list}) AND status = 'parked' \
             RETURNING id, request_id, platform, target, card_key, last_error"
        ))
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let platform: String = r.try_get("platform")?;
            let target: String = r.try_get("target")?;
            done.push(id);
            audits.push(AuditRecord {
                at: now,
                actor: actor.to_string(),
                request: r
                    .try_get::<Option<i64>, _>("request_id")?
                    .map(RequestId::new),
                action: "requeue".into(),
                outcome: Outcome::Applied,
                details: json!({
                    "outbox_id": id,
                    "platform": platform,
                    "target": target,
                    "card": r.try_get::<Option<String>, _>("card_key")?,
                    "last_error": r.try_get::<Option<String>, _>("last_error")?,
                }),
            });
            queues.insert((platform, target));
        }
    }
    if !queues.is_empty() {
        let rows = queues
            .into_iter()
            .map(|(platform, target)| vec![Bind::Text(platform), Bind::Text(target), Bind::Int(0)])
            .collect();
        insert(conn, &QUEUES, rows).await?;
    }
    done.sort_unstable();
    Ok((done, audits))
}

impl Store {
    /// Messages not delivered yet — pending (waiting, retrying) and parked — oldest
    /// first, at most `limit` (for operators: `waiver outbox`).
    pub async fn undelivered(&self, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, created_at, payload, status, attempts, next_attempt_at, last_error, \
             lease_until FROM outbox WHERE status IN ('pending', 'parked') ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Sends parked messages again (`None`: every parked message), audited under
    /// `actor`; returns the ids requeued. See [`write_requeue`].
    pub async fn requeue_parked(
        &self,
        ids: Option<Vec<i64>>,
        actor: &str,
        now: Timestamp,
    ) -> Result<Vec<i64>> {
        let ids = match ids {
            Some(ids) => ids,
            None => sqlx::query("SELECT id FROM outbox WHERE status = 'parked' ORDER BY id")
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<std::result::Result<_, _>>()?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (job, rx) = super::writer::Job::requeue(ids, actor.to_string(), now);
        match self.writer.submit(job, rx).await? {
            super::writer::Done::Requeued(ids) => Ok(ids),
            _ => Err(corrupt(
                "requeue",
                "the writer answered with something else",
            )),
        }
    }
}

//! The scheduler's storage: which requests are due, which reminders were queued or
//! sent (claimed by unique key, so once across replicas), and the digests that send
//! them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::audit::{AuditRecord, Outcome};
use super::writer::{self, Bind};
use super::{Backend, Result, Store, corrupt, load_requests, parse};
use crate::domain::{ExceptionRequest, RequestId, State, Timestamp};
use crate::message::{Address, Message, Outgoing, Platform};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReminderStatus {
    /// Waiting for the next digest to its address.
    Queued,
    /// Sent in a digest.
    Sent,
    /// Superseded by a later reminder of the same kind (catch-up after downtime).
    Skipped,
}

impl ReminderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderStatus::Queued => "queued",
            ReminderStatus::Sent => "sent",
            ReminderStatus::Skipped => "skipped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Sent, Self::Skipped]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A reminder for one address.
#[derive(Clone, Debug)]
pub struct ReminderRow {
    /// The reminder's key (see `domain::schedule::Item`); the stored key adds the address.
    pub key: String,
    pub request: Option<RequestId>,
    pub platform: Platform,
    pub to: Address,
    /// The instant it was for.
    pub due_at: Timestamp,
    pub status: ReminderStatus,
    pub message: Message,
}

#[derive(Serialize, Deserialize)]
struct Body {
    to: Address,
    message: Message,
}

impl ReminderRow {
    /// Unique per reminder and address.
    pub fn row_key(&self) -> String {
        format!(
            "{}>{}:{}",
            self.key,
            self.platform.as_str(),
            self.to.target()
        )
    }

    pub(super) fn binds(&self, now: Timestamp) -> Vec<Bind> {
        vec![
            Bind::Text(self.row_key()),
            Bind::OptInt(self.request.map(RequestId::get)),
            Bind::Text(self.platform.as_str().into()),
            Bind::Text(self.to.target()),
            Bind::Int(self.due_at.millis()),
            Bind::Int(now.millis()),
            Bind::Text(self.status.as_str().into()),
            Bind::OptInt(None),
            Bind::Text(super::json(&Body {
                to: self.to.clone(),
                message: self.message.clone(),
            })),
        ]
    }
}

/// Composes one digest from the first queued items (as many as the service asked
/// for) and the number of items in all. The service supplies it; the store never
/// composes text.
pub type ComposeDigest = std::sync::Arc<dyn Fn(Vec<Message>, usize) -> Message + Send + Sync>;

/// How the service wants digests made.
#[derive(Clone)]
pub struct DigestPlan {
    /// Items read in full per digest; the rest are only counted.
    pub items: usize,
    pub compose: ComposeDigest,
}

/// An address with queued reminders: one digest sends them all.
#[derive(Clone, Debug)]
pub struct DigestGroup {
    pub platform: Platform,
    pub to: Address,
}

/// A digest that was queued for delivery.
#[derive(Clone, Debug)]
pub struct DigestSent {
    pub platform: Platform,
    pub to: Address,
    pub keys: Vec<String>,
    pub message: Message,
}

/// A reminder as stored, for status views and tests.
#[derive(Clone, Debug)]
pub struct ReminderRecord {
    pub key: String,
    pub request: Option<RequestId>,
    pub target: String,
    pub status: ReminderStatus,
    pub due_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub summary: String,
}

pub(super) struct Written {
    pub outbox: Vec<Outgoing>,
    pub audits: Vec<AuditRecord>,
    pub sent: Vec<DigestSent>,
}

/// Inside the writer's transaction: marks each address's still-queued reminders sent
/// and turns them into one digest message (plus one audit entry) per address.
pub(super) async fn write_digests(
    conn: &mut AnyConnection,
    groups: &[DigestGroup],
    plan: &DigestPlan,
    now: Timestamp,
) -> Result<Written> {
    let mut written = Written {
        outbox: Vec::new(),
        audits: Vec::new(),
        sent: Vec::new(),
    };
    for g in groups {
        // Whatever is queued for the address now, whoever queued it: once, since only
        // the statement that flips a row from queued owns it.
        let rows = sqlx::query(
            "UPDATE reminders SET status = 'sent', sent_at = $1 \
             WHERE status = 'queued' AND platform = $2 AND target = $3 RETURNING key, due_at",
        )
        .bind(now.millis())
        .bind(g.platform.as_str())
        .bind(g.to.target())
        .fetch_all(&mut *conn)
        .await?;
        let mut due: Vec<(i64, String)> = rows
            .iter()
            .map(|r| Ok((r.try_get("due_at")?, r.try_get("key")?)))
            .collect::<Result<_>>()?;
        if due.is_empty() {
            continue;
        }
        due.sort_unstable();
        let keys: Vec<String> = due.into_iter().map(|(_, k)| k).collect();
        // A digest shows its first items in full and counts the rest: read only those.
        let shown = &keys[..keys.len().min(plan.items)];
        let sql = format!(
            "SELECT key, body FROM reminders WHERE key IN ({})",
            Backend::of(conn).params(1, shown.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for k in shown {
            q = q.bind(k.clone());
        }
        let mut bodies: HashMap<String, Message> = HashMap::new();
        for row in q.fetch_all(&mut *conn).await? {
            let body: Body = parse("reminder", row.try_get::<&str, _>("body")?)?;
            bodies.insert(row.try_get("key")?, body.message);
        }
        let items: Vec<Message> = shown.iter().filter_map(|k| bodies.remove(k)).collect();
        let message = (plan.compose)(items, keys.len());
        written.outbox.push(Outgoing {
            request: None,
            platform: g.platform,
            to: g.to.clone(),
            card: None,
            message: message.clone(),
        });
        written.audits.push(AuditRecord {
            at: now,
            actor: "scheduler".into(),
            request: None,
            action: "remind".into(),
            outcome: Outcome::Applied,
            details: json!({
                "platform": g.platform.as_str(),
                "to": g.to.target(),
                "reminders": keys,
            }),
        });
        written.sent.push(DigestSent {
            platform: g.platform,
            to: g.to.clone(),
            keys,
            message,
        });
    }
    Ok(written)
}

impl Store {
    /// Requests the scheduler has something to do for at `now`, earliest first, after
    /// `after` (keyset order on due_at, id). Reads only due rows (partial index on
    /// `due_at`).
    pub async fn due_requests(
        &self,
        now: Timestamp,
        after: Option<(Timestamp, RequestId)>,
        limit: i64,
    ) -> Result<Vec<(Timestamp, RequestId)>> {
        let (due, id) = after.map_or((i64::MIN, 0), |(t, id)| (t.millis(), id.get()));
        let rows = sqlx::query(
            "SELECT due_at, id FROM requests WHERE due_at IS NOT NULL AND due_at <= $1 \
             AND due_at >= $2 AND (due_at > $2 OR id > $3) ORDER BY due_at, id LIMIT $4",
        )
        .bind(now.millis())
        .bind(due)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Timestamp::from_millis(r.try_get("due_at")?),
                    RequestId::new(r.try_get("id")?),
                ))
            })
            .collect()
    }

    /// The earliest instant anything is due, for the scheduler's next timer.
    pub async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let row = sqlx::query("SELECT MIN(due_at) AS due FROM requests WHERE due_at IS NOT NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(row
            .try_get::<Option<i64>, _>("due")?
            .map(Timestamp::from_millis))
    }

    /// Loads many requests at once (two queries per 500).
    pub async fn load_many(&self, ids: &[RequestId]) -> Result<Vec<ExceptionRequest>> {
        let mut conn = self.read.acquire().await?;
        load_requests(&mut conn, self.backend, ids).await
    }

    /// The reminder keys (without address) already queued, sent or skipped for `ids`.
    pub async fn handled_reminders(&self, ids: &[RequestId]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(500) {
            // The SQL text holds only placeholders.
            let sql = format!(
                "SELECT key FROM reminders WHERE request_id IN ({})",
                self.backend.params(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.get());
            }
            for row in q.fetch_all(&self.read).await? {
                let key: String = row.try_get("key")?;
                let item = key.split_once('>').map(|(k, _)| k).unwrap_or(&key);
                out.insert(item.to_string());
            }
        }
        Ok(out)
    }

    /// Queues (or records as skipped) reminders and moves the requests' next due
    /// instants on, in one transaction. A reminder whose key exists already is left
    /// alone (another sweep owns it); a request changed since it was read keeps its
    /// `due_at`, so the next sweep looks at it again.
    pub async fn queue_reminders(
        &self,
        rows: &[ReminderRow],
        reschedule: &[(RequestId, u64, Option<Timestamp>)],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        if !rows.is_empty() {
            writer::insert(
                &mut tx,
                &writer::REMINDERS,
                rows.iter().map(|r| r.binds(now)).collect(),
            )
            .await?;
        }
        // 100 rows a statement: SQLite's plan for UPDATE … FROM (VALUES …) turned
        // several times slower with 500.
        for chunk in reschedule.chunks(100) {
            let values = (0..chunk.len())
                .map(|i| {
                    let p = |k| self.backend.param(3 * i + k);
                    format!(
                        "(CAST({} AS BIGINT), CAST({} AS BIGINT), CAST({} AS BIGINT))",
                        p(1),
                        p(2),
                        p(3)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            // The SQL text holds only placeholders.
            let sql = format!(
                "UPDATE requests SET due_at = v.column3 FROM (VALUES {values}) AS v \
                 WHERE requests.id = v.column1 AND requests.revision = v.column2"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (id, revision, due) in chunk {
                q = q
                    .bind(id.get())
                    .bind(*revision as i64)
                    .bind(due.map(Timestamp::millis));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Addresses with reminders waiting for a digest.
    pub async fn queued_addresses(&self, limit: i64) -> Result<Vec<DigestGroup>> {
        let rows = sqlx::query(
            "SELECT DISTINCT platform, target FROM reminders WHERE status = 'queued' \
             ORDER BY platform, target LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DigestGroup {
                    platform: {
                        let p: &str = r.try_get("platform")?;
                        Platform::parse(p).ok_or_else(|| corrupt("platform", p))?
                    },
                    to: Address::from_target(r.try_get("target")?),
                })
            })
            .collect()
    }

    /// Sends each address's queued reminders as one digest (outbox + audit), in one
    /// transaction through the writer.
    pub async fn send_digests(
        &self,
        groups: Vec<DigestGroup>,
        plan: DigestPlan,
        now: Timestamp,
    ) -> Result<Vec<DigestSent>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let (job, rx) = writer::Job::digest(groups, plan, now);
        match self.writer.submit(job, rx).await? {
            writer::Done::Digests(sent) => Ok(sent),
            _ => Err(corrupt("digest", "the writer answered something else")),
        }
    }

    /// Makes every request in `states` due at `now` at the latest, so the next sweep
    /// plans it again under the governance file as loaded. Returns the rows touched.
    pub async fn due_now(&self, states: &[State], now: Timestamp) -> Result<u64> {
        if states.is_empty() {
            return Ok(0);
        }
        // The SQL text holds only placeholders.
        let sql = format!(
            "UPDATE requests SET due_at = $1 WHERE (due_at IS NULL OR due_at > $1) \
             AND state IN ({})",
            (2..2 + states.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now.millis());
        for s in states {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.write).await?.rows_affected())
    }

    /// Granted exceptions still in force under another version of `policy`.
    pub async fn granted_under_other_version(
        &self,
        policy: &str,
        version: &str,
    ) -> Result<Vec<RequestId>> {
        let rows = sqlx::query(
            "SELECT id FROM requests WHERE policy_id = $1 AND policy_version <> $2 \
             AND state IN ($3, $4, $5) ORDER BY id",
        )
        .bind(policy.to_string())
        .bind(version.to_string())
        .bind(State::Approved.as_str())
        .bind(State::Active.as_str())
        .bind(State::ReviewDue.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok(RequestId::new(r.try_get("id")?)))
            .collect()
    }

    /// Reminders of one request (or all), oldest first.
    pub async fn reminders(&self, request: Option<RequestId>) -> Result<Vec<ReminderRecord>> {
        let rows = sqlx::query(
            "SELECT key, request_id, target, status, due_at, sent_at, body FROM reminders \
             WHERE $1 IS NULL OR request_id = $1 ORDER BY due_at, key",
        )
        .bind(request.map(RequestId::get))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(reminder_from_row).collect()
    }
}

/// A `reminders` row (`key, request_id, target, status, due_at, sent_at, body`).
pub(super) fn reminder_from_row(r: &sqlx::any::AnyRow) -> Result<ReminderRecord> {
    let status: &str = r.try_get("status")?;
    let body: Body = parse("reminder", r.try_get::<&str, _>("body")?)?;
    Ok(ReminderRecord {
        key: r.try_get("key")?,
        request: r
            .try_get::<Option<i64>, _>("request_id")?
            .map(RequestId::new),
        target: r.try_get("target")?,
        status: ReminderStatus::parse(status).ok_or_else(|| corrupt("reminder status", status))?,
        due_at: Timestamp::from_millis(r.try_get("due_at")?),
        sent_at: r
            .try_get::<Option<i64>, _>("sent_at")?
            .map(Timestamp::from_millis),
        summary: body.message.summary,
    })
}

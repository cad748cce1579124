//! Sweeps: step 7 of the process, at an explicit `now`.
//!
//! A sweep reads only the requests that are due (`requests.due_at <= now`), applies
//! the scheduler's transitions through [`Service::act`] (optimistic concurrency: once,
//! whatever the number of replicas), queues the due reminders under unique keys (once),
//! moves each request's `due_at` on, and then sends every queued reminder in one digest
//! per recipient (each reminder is marked sent in the transaction that queues its
//! digest, so once). A replica killed at any point leaves either nothing or committed
//! work that the next sweep, on any replica, carries on from.

use std::collections::HashSet;

use super::{Acted, Attempt, Service, ServiceError};
use crate::chat::plan;
use crate::domain::schedule::{self, Due, Item};
use crate::domain::{Action, Actor, ExceptionRequest, RequestId, State, Timestamp};
use crate::message::{Address, Message, Platform};
use crate::store::{DigestPlan, DigestSent, ReminderRow, ReminderStatus};

/// Requests read per batch.
const BATCH: i64 = 2000;
/// Addresses sent their digests per writer round.
const DIGEST_ADDRESSES: i64 = 500;
/// Transitions applied to one request in one sweep (activate → review due → …).
const MAX_TRANSITIONS: usize = 4;

/// Due requests read together, with the reminder keys already handled for them.
struct DueBatch {
    requests: Vec<ExceptionRequest>,
    handled: HashSet<String>,
    /// The last (due_at, id) read: the next batch starts after it.
    cursor: (Timestamp, RequestId),
    /// The batch was full: more may be due.
    full: bool,
}

/// What a sweep did (or, dry, would do).
#[derive(Debug, Default)]
pub struct SweepReport {
    pub now: Option<Timestamp>,
    /// Due requests examined.
    pub examined: usize,
    /// Transitions applied: request, action.
    pub transitions: Vec<(RequestId, &'static str)>,
    /// Reminders queued: request, recipient address, text.
    pub reminders: Vec<(Option<RequestId>, String, String)>,
    /// Reminders superseded during catch-up (not sent).
    pub skipped: usize,
    /// Digests queued for delivery.
    pub digests: Vec<DigestSent>,
    /// Exceptions moved to reassessment because their policy's version changed.
    pub reassessed: Vec<RequestId>,
    pub dry_run: bool,
}

impl SweepReport {
    /// A readable account, one line per thing done.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verb =
            |done: &'static str, would: &'static str| if self.dry_run { would } else { done };
        if let Some(now) = self.now {
            out.push_str(&format!(
                "{} as of {now}: {} due request(s)\n",
                if self.dry_run { "Dry run" } else { "Sweep" },
                self.examined
            ));
        }
        for id in &self.reassessed {
            out.push_str(&format!(
                "  {id}: {} (policy version changed)\n",
                verb("moved to reassessment", "would move to reassessment")
            ));
        }
        for (id, action) in &self.transitions {
            out.push_str(&format!(
                "  {id}: {} {action}\n",
                verb("applied", "would apply")
            ));
        }
        for (id, to, text) in &self.reminders {
            let id = id.map(|i| i.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "  {id}: {} {to}: {text}\n",
                verb("reminder queued for", "would remind")
            ));
        }
        if self.skipped > 0 {
            out.push_str(&format!(
                "  {} earlier reminder(s) {} (superseded during catch-up)\n",
                self.skipped,
                verb("skipped", "would be skipped")
            ));
        }
        for d in &self.digests {
            out.push_str(&format!(
                "  digest to {} ({}): {} item(s)\n",
                d.to.target(),
                d.platform.as_str(),
                d.keys.len()
            ));
        }
        if self.transitions.is_empty()
            && self.reminders.is_empty()
            && self.digests.is_empty()
            && self.reassessed.is_empty()
        {
            out.push_str("  nothing due\n");
        }
        out
    }
}

impl Service {
    /// One sweep as of `now`. `dry_run` decides everything and writes nothing.
    pub async fn sweep(&self, now: Timestamp, dry_run: bool) -> Result<SweepReport, ServiceError> {
        let started = std::time::Instant::now();
        let report = self.sweep_at(now, dry_run).await;
        if !dry_run {
            let metrics = self.metrics();
            metrics.swept(report.is_ok(), started.elapsed());
            if let Ok(r) = &report {
                metrics.digests_queued(r.digests.len() as u64, r.reminders.len() as u64);
            }
        }
        report
    }

    async fn sweep_at(&self, now: Timestamp, dry_run: bool) -> Result<SweepReport, ServiceError> {
        let mut report = SweepReport {
            now: Some(now),
            dry_run,
            ..SweepReport::default()
        };
        // Batches are read while the previous one is written: the next batch's rows
        // are other requests (keyset order on due_at, id), so the two never overlap.
        let mut next = self.due_batch(now, None).await?;
        while let Some(batch) = next.take() {
            report.examined += batch.requests.len();
            let cursor = batch.cursor;
            let full = batch.full;
            let mut rows = Vec::new();
            let mut reschedule = Vec::new();
            for r in batch.requests {
                let Some((r, p)) = self
                    .transitions(r, now, dry_run, &batch.handled, &mut report)
                    .await?
                else {
                    continue;
                };
                for (item, status) in p
                    .send
                    .iter()
                    .map(|i| (i, ReminderStatus::Queued))
                    .chain(p.skip.iter().map(|i| (i, ReminderStatus::Skipped)))
                {
                    let item_rows = self.reminder_rows(&r, item, status, now);
                    if status == ReminderStatus::Queued {
                        for row in &item_rows {
                            report.reminders.push((
                                row.request,
                                row.to.target(),
                                row.message.summary.clone(),
                            ));
                        }
                    } else {
                        report.skipped += item_rows.len();
                    }
                    rows.extend(item_rows);
                }
                reschedule.push((r.id, r.revision, p.next));
            }
            let following = async {
                if full {
                    self.due_batch(now, Some(cursor)).await
                } else {
                    Ok(None)
                }
            };
            let queue = async {
                if dry_run {
                    Ok(())
                } else {
                    self.store.queue_reminders(&rows, &reschedule, now).await
                }
            };
            let (following, queued) = tokio::join!(following, queue);
            queued?;
            next = following?;
        }
        if !dry_run {
            report.digests = self.send_digests(now).await?;
            if !report.digests.is_empty() {
                self.outbox_ready.notify_one();
            }
        }
        Ok(report)
    }

    /// Applies the due transitions of `r` (expiry first). Returns the request as it is
    /// afterwards with its remaining plan, or `None` when someone else changed it first
    /// (the next sweep looks again).
    async fn transitions(
        &self,
        mut r: ExceptionRequest,
        now: Timestamp,
        dry_run: bool,
        handled: &HashSet<String>,
        report: &mut SweepReport,
    ) -> Result<Option<(ExceptionRequest, schedule::Plan)>, ServiceError> {
        for _ in 0..MAX_TRANSITIONS {
            let p = schedule::plan(&r, &self.gov, now, |k| handled.contains(k));
            let Some(Item {
                due: Due::Transition(action),
                ..
            }) = p.transition.clone()
            else {
                return Ok(Some((r, p)));
            };
            let name = action.name();
            if dry_run {
                // Decide purely, to show what would follow.
                match r.apply(&Actor::Scheduler, r.version(), action, &self.gov, now) {
                    Ok(t) => {
                        report.transitions.push((r.id, name));
                        r = t.request;
                        continue;
                    }
                    Err(_) => return Ok(None),
                }
            }
            let attempt = Attempt::new(Actor::Scheduler, r.id, r.version(), action);
            match self.act(attempt, now).await? {
                Acted::Applied { request, .. } => {
                    report.transitions.push((r.id, name));
                    r = *request;
                }
                Acted::Refused { error, .. } => {
                    tracing::debug!(request = %r.id, %error, "sweep: transition no longer applies");
                    return Ok(None);
                }
                Acted::Duplicate => return Ok(None),
            }
        }
        // Still transitions due after MAX_TRANSITIONS: reminders wait for the next sweep.
        tracing::warn!(request = %r.id, "sweep: too many transitions in one sweep");
        Ok(None)
    }

    /// One row per address the reminder reaches (roles sharing a channel: once).
    fn reminder_rows(
        &self,
        r: &ExceptionRequest,
        item: &Item,
        status: ReminderStatus,
        now: Timestamp,
    ) -> Vec<ReminderRow> {
        let Due::Remind { to, what } = &item.due else {
            return Vec::new();
        };
        let message: Message = plan::reminder(&self.gov, r, what, now);
        let mut seen: HashSet<(Platform, Address)> = HashSet::new();
        let mut rows = Vec::new();
        for who in to {
            let recipient = plan::recipient(who);
            for platform in self.platforms.iter() {
                let Some(address) = plan::resolve(&self.gov, *platform, &recipient) else {
                    continue;
                };
                if !seen.insert((*platform, address.clone())) {
                    continue;
                }
                rows.push(ReminderRow {
                    key: item.key.clone(),
                    request: Some(r.id),
                    platform: *platform,
                    to: address,
                    due_at: item.at,
                    status,
                    message: message.clone(),
                });
            }
        }
        rows
    }

    /// Sends every queued reminder: one digest per address.
    async fn send_digests(&self, now: Timestamp) -> Result<Vec<DigestSent>, ServiceError> {
        let mut sent = Vec::new();
        loop {
            let groups = self.store.queued_addresses(DIGEST_ADDRESSES).await?;
            let full = groups.len() as i64 == DIGEST_ADDRESSES;
            if groups.is_empty() {
                break;
            }
            let plan = DigestPlan {
                items: plan::DIGEST_ITEMS,
                compose: std::sync::Arc::new(plan::digest),
            };
            let round = self.store.send_digests(groups, plan, now).await?;
            let progressed = !round.is_empty();
            sent.extend(round);
            if !full || !progressed {
                break;
            }
        }
        Ok(sent)
    }

    /// The next batch of due requests after `cursor`, loaded with their handled
    /// reminder keys; `None` when nothing more is due.
    async fn due_batch(
        &self,
        now: Timestamp,
        cursor: Option<(Timestamp, RequestId)>,
    ) -> Result<Option<DueBatch>, ServiceError> {
        let due = self.store.due_requests(now, cursor, BATCH).await?;
        let Some(last) = due.last().copied() else {
            return Ok(None);
        };
        let ids: Vec<RequestId> = due.iter().map(|(_, id)| *id).collect();
        let (requests, handled) = tokio::try_join!(
            self.store.load_many(&ids),
            self.store.handled_reminders(&ids)
        )?;
        Ok(Some(DueBatch {
            requests,
            handled,
            cursor: last,
            full: due.len() as i64 == BATCH,
        }))
    }

    /// Run when the governance file is loaded: moves every exception granted under an
    /// older version of a policy than the file now names to reassessment, and makes the
    /// exceptions whose conditions are pending due for the next sweep (their timers may
    /// have changed with the file, e.g. a suspension grace period turned on).
    pub async fn reassess_policies(
        &self,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Vec<RequestId>, ServiceError> {
        if !dry_run {
            self.store
                .due_now(&[State::Approved, State::Suspended], now)
                .await?;
        }
        let mut moved = Vec::new();
        for policy in &self.gov.policies {
            let ids = self
                .store
                .granted_under_other_version(policy.id.as_str(), &policy.version)
                .await?;
            for id in ids {
                if dry_run {
                    moved.push(id);
                    continue;
                }
                let action = Action::RequireReassessment {
                    policy_version: policy.version.clone(),
                };
                if let Acted::Applied { .. } = self
                    .act(Attempt::new(Actor::Scheduler, id, 0, action), now)
                    .await?
                {
                    moved.push(id);
                }
            }
        }
        if !dry_run && !moved.is_empty() {
            // Their owners and requesters hear about it in a digest now.
            self.send_digests(now).await?;
        }
        Ok(moved)
    }
}

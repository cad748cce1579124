//! Sweeps: step 7 of the process, at an explicit `now`.
//!
//! A sweep reads only the requests that are due (`requests.due_at <= now`), applies
//! the scheduler's transitions through [`Service::act`] (optimistic concurrency: once,
//! whatever the number of replicas), queues the due reminders under unique keys (once),
//! moves each request's `due_at` on, and then sends every queued reminder in one digest
//! per recipient (each reminder is marked sent in the transaction that queues its
//! digest, so once). A replica killed at any point leaves either nothing or committed
//! work that the next sweep, on any replica, carries on from.

use std::collections::{HashMap, HashSet};

use super::{Acted, Attempt, Service, ServiceError};
use crate::chat::plan;
use crate::chat::{Address, Message, Platform};
use crate::domain::schedule::{self, Due, Item};
use crate::domain::{Action, Actor, ExceptionRequest, RequestId, Timestamp};
use crate::store::{DigestGroup, DigestSent, ReminderRow, ReminderStatus};

/// Requests read per batch.
const BATCH: i64 = 2000;
/// Queued reminders read per digest round.
const DIGEST_BATCH: i64 = 5000;
/// Transitions applied to one request in one sweep (activate → review due → …).
const MAX_TRANSITIONS: usize = 4;

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
        let mut report = SweepReport {
            now: Some(now),
            dry_run,
            ..SweepReport::default()
        };
        let mut seen: HashSet<RequestId> = HashSet::new();
        loop {
            let ids = self.store.due_requests(now, BATCH).await?;
            let fresh: Vec<RequestId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
            if fresh.is_empty() {
                break;
            }
            report.examined += fresh.len();
            let requests = self.store.load_many(&fresh).await?;
            let handled = self.store.handled_reminders(&fresh).await?;
            let mut rows = Vec::new();
            let mut reschedule = Vec::new();
            for r in requests {
                let Some((r, p)) = self
                    .transitions(r, now, dry_run, &handled, &mut report)
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
                    let item_rows = self.reminder_rows(&r, item, status);
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
            if !dry_run {
                self.store.queue_reminders(&rows, &reschedule, now).await?;
            }
            if (ids.len() as i64) < BATCH {
                break;
            }
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
    ) -> Vec<ReminderRow> {
        let Due::Remind { to, what } = &item.due else {
            return Vec::new();
        };
        let message: Message = plan::reminder(&self.gov, r, what);
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
            let queued = self.store.queued_reminders(DIGEST_BATCH).await?;
            let full = queued.len() as i64 == DIGEST_BATCH;
            let mut groups: Vec<DigestGroup> = Vec::new();
            let mut index: HashMap<(Platform, String), usize> = HashMap::new();
            for q in queued {
                let slot = *index.entry((q.platform, q.to.target())).or_insert_with(|| {
                    groups.push(DigestGroup {
                        platform: q.platform,
                        to: q.to.clone(),
                        keys: Vec::new(),
                    });
                    groups.len() - 1
                });
                groups[slot].keys.push(q.key);
            }
            if groups.is_empty() {
                break;
            }
            let round = self.store.send_digests(groups, now).await?;
            let progressed = !round.is_empty();
            sent.extend(round);
            if !full || !progressed {
                break;
            }
        }
        Ok(sent)
    }

    /// Moves every exception granted under an older version of a policy than the
    /// governance file now names to reassessment (run when the file is loaded).
    pub async fn reassess_policies(
        &self,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Vec<RequestId>, ServiceError> {
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

//! Timers that call the service's sweeps with `now`.
//!
//! tokio-cron-scheduler fires on the governance file's `[reminders] schedule`; between
//! two ticks a one-shot timer fires at the earliest `due_at` in the database, so an
//! exception expires at its instant whatever the schedule. Timers only wake the one
//! sweeper task, which runs one sweep at a time. Which replica does what is decided in
//! the database (unique reminder keys, optimistic concurrency), never here: with
//! several replicas every one sweeps, and each reminder still goes out once.
//!
//! At start-up the sweeper first moves exceptions granted under an older policy
//! version to reassessment, then catches up: whatever fell due while no replica ran
//! is handled at once, one reminder per item, in digests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::domain::Timestamp;
use crate::service::Service;

/// Starts the timers and the sweeper; they stop when `stopped` turns true.
pub async fn start(
    service: Service,
    schedule: &str,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    let mut cron = JobScheduler::new().await?;
    let tick = wake.clone();
    cron.add(Job::new_async(schedule, move |_, _| {
        let tick = tick.clone();
        Box::pin(async move { tick.notify_one() })
    })?)
    .await?;
    cron.start().await?;

    Ok(tokio::spawn(async move {
        let now = service.clock().now();
        match service.reassess_policies(now, false).await {
            Ok(moved) if !moved.is_empty() => {
                tracing::info!(
                    count = moved.len(),
                    "policy versions changed: exceptions moved to reassessment"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot check policy versions"),
        }
        let mut timer: Option<JoinHandle<()>> = None;
        loop {
            let now = service.clock().now();
            match service.sweep(now, false).await {
                Ok(report) => {
                    if !report.transitions.is_empty() || !report.digests.is_empty() {
                        tracing::info!(
                            transitions = report.transitions.len(),
                            reminders = report.reminders.len(),
                            digests = report.digests.len(),
                            "sweep"
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "sweep failed; retrying at the next tick"),
            }
            // A timer for the next due instant, if it comes before the next tick.
            if let Some(t) = timer.take() {
                t.abort();
            }
            if let Ok(Some(due)) = service.next_due_at().await {
                let wait = due.millis() - service.clock().now().millis();
                let wake = wake.clone();
                timer = Some(tokio::spawn(async move {
                    // Rows still past due (changed under the sweep): look again shortly,
                    // not in a loop.
                    let wait = if wait <= 0 {
                        5_000
                    } else {
                        wait.min(86_400_000)
                    };
                    let wait = Duration::from_millis(wait as u64);
                    tokio::time::sleep(wait).await;
                    wake.notify_one();
                }));
            }
            tokio::select! {
                () = wake.notified() => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
        if let Some(t) = timer {
            t.abort();
        }
        let _ = cron.shutdown().await;
    }))
}

/// When the next sweep after `now` would run under `schedule` (for `waiver sweep`
/// output and the README's examples).
pub fn next_tick(schedule: &str, now: Timestamp) -> Option<Timestamp> {
    let cron = crate::governance::Reminders::parse_schedule(schedule).ok()?;
    cron.find_next_occurrence(&now.to_datetime(), false)
        .ok()
        .map(Timestamp::from)
}

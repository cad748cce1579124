//! The one clock. Only this module reads the system clock; everything else is handed
//! `now` or a [`Clock`].
//!
//! Wiring (`app`, `main`) chooses [`Clock::System`]. Tests and `waiver demo` run the
//! real server on a [`Clock::Shifted`] clock that reads a chosen instant and then
//! advances in real time, so a test can fix the day it runs on (no calendar literal
//! the wall clock could overtake, no race at midnight) while retries, leases and
//! backoffs still come due. Nothing reads a shifted clock from the environment: the
//! product binary cannot be told to run at another time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::domain::Timestamp;

#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The wall clock.
    #[default]
    System,
    /// The wall clock plus an offset (milliseconds) that [`Clock::set`] moves.
    Shifted(Arc<AtomicI64>),
}

/// The wall clock, read in exactly one place.
#[allow(clippy::disallowed_methods)]
fn system_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Clock {
    /// A clock that reads `start` now and advances in real time from there.
    pub fn starting_at(start: Timestamp) -> Self {
        Clock::Shifted(Arc::new(AtomicI64::new(start.millis() - system_millis())))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::from_millis(system_millis()),
            Clock::Shifted(offset) => {
                Timestamp::from_millis(system_millis() + offset.load(Ordering::Relaxed))
            }
        }
    }

    /// Moves a shifted clock (and every copy of it) so that it reads `at` now. The
    /// system clock cannot be moved: this returns false and changes nothing.
    pub fn set(&self, at: Timestamp) -> bool {
        match self {
            Clock::System => false,
            Clock::Shifted(offset) => {
                offset.store(at.millis() - system_millis(), Ordering::Relaxed);
                true
            }
        }
    }

    /// Unix seconds now (Slack's request timestamps).
    pub fn unix_seconds(&self) -> i64 {
        self.now().millis().div_euclid(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_starts_where_it_is_told_and_moves_on() {
        let start = Timestamp::parse_rfc3339("2030-01-01T10:00:00Z").unwrap();
        let clock = Clock::starting_at(start);
        let read = clock.now();
        assert!(
            read >= start && read.millis() - start.millis() < 60_000,
            "{read}"
        );
        let copy = clock.clone();
        let later = start.plus_days(3);
        assert!(clock.set(later));
        assert!(copy.now() >= later && copy.now().millis() - later.millis() < 60_000);
    }

    #[test]
    fn the_system_clock_cannot_be_moved() {
        let clock = Clock::System;
        let before = clock.now();
        assert!(!clock.set(before.plus_days(30)));
        assert!(clock.now().millis() - before.millis() < 60_000);
    }
}

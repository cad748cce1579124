//! The workflow as a pure state machine: requests, their states, the actions people
//! and the scheduler take, and the rules that decide whether an action is allowed.
//!
//! PURE: no I/O, no clock, no async. Every function that depends on time takes `now`.
//! The service loads a request, calls [`ExceptionRequest::apply`], and commits what it
//! returns; everything a user can be refused is a [`WorkflowError`] decided here.

mod content;
mod request;
pub mod schedule;

use std::fmt;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use content::{ConditionPart, Field, FieldErrors, FormInput, RequestContent};
pub use request::*;

/// An instant, in milliseconds since the Unix epoch (UTC). Stored as BIGINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    /// Midnight UTC at the start of `date`.
    pub fn start_of(date: NaiveDate) -> Self {
        Self(
            date.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .timestamp_millis(),
        )
    }
    pub fn date(self) -> NaiveDate {
        self.to_datetime().date_naive()
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    pub fn plus_days(self, days: u32) -> Self {
        Self(self.0 + i64::from(days) * 86_400_000)
    }
    pub fn plus_hours(self, hours: u32) -> Self {
        Self(self.0 + i64::from(hours) * 3_600_000)
    }
    /// RFC 3339, to the second, in UTC.
    pub fn rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
    /// To the minute, for people: `2026-11-25 09:30 UTC`.
    pub fn minute(self) -> String {
        self.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string()
    }
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| Self(d.with_timezone(&Utc).timestamp_millis()))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(d: DateTime<Utc>) -> Self {
        Self(d.timestamp_millis())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// A request's number; people see it as its reference, `AIX-0042`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(i64);

impl RequestId {
    pub const PREFIX: &'static str = "AIX";

    pub const fn new(n: i64) -> Self {
        Self(n)
    }
    pub const fn get(self) -> i64 {
        self.0
    }
    /// Parses `AIX-0042`, `aix-42` or `42`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let digits = match s.get(..Self::PREFIX.len() + 1) {
            Some(head) if head.eq_ignore_ascii_case("AIX-") => &s[4..],
            _ => s,
        };
        if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|n| *n > 0).map(Self)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:04}", Self::PREFIX, self.0)
    }
}

/// Where a request is in the workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Submitted,
    NeedsInfo,
    InAssessment,
    InStakeholderReview,
    AwaitingDecision,
    Approved,
    Active,
    ReviewDue,
    /// A condition stayed open past the governance file's grace period: the exception
    /// may not be used until its overdue conditions are done.
    Suspended,
    ReassessmentRequired,
    Expired,
    Rejected,
    Withdrawn,
    Revoked,
    /// Closed early by its owner ("no longer needed").
    Closed,
}

impl State {
    pub const ALL: [State; 15] = [
        State::Submitted,
        State::NeedsInfo,
        State::InAssessment,
        State::InStakeholderReview,
        State::AwaitingDecision,
        State::Approved,
        State::Active,
        State::ReviewDue,
        State::Suspended,
        State::ReassessmentRequired,
        State::Expired,
        State::Rejected,
        State::Withdrawn,
        State::Revoked,
        State::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::NeedsInfo => "needs_info",
            State::InAssessment => "in_assessment",
            State::InStakeholderReview => "in_stakeholder_review",
            State::AwaitingDecision => "awaiting_decision",
            State::Approved => "approved",
            State::Active => "active",
            State::ReviewDue => "review_due",
            State::Suspended => "suspended",
            State::ReassessmentRequired => "reassessment_required",
            State::Expired => "expired",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
            State::Revoked => "revoked",
            State::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// What people read.
    pub fn label(self) -> &'static str {
        match self {
            State::Submitted => "Submitted: awaiting completeness review",
            State::NeedsInfo => "Needs information from the requester",
            State::InAssessment => "In risk and impact assessment",
            State::InStakeholderReview => "In stakeholder review",
            State::AwaitingDecision => "Awaiting decision",
            State::Approved => "Approved: conditions pending",
            State::Active => "Active",
            State::ReviewDue => "Active: review due",
            State::Suspended => "Suspended: a condition is overdue",
            State::ReassessmentRequired => "Reassessment required",
            State::Expired => "Expired",
            State::Rejected => "Rejected",
            State::Withdrawn => "Withdrawn",
            State::Revoked => "Revoked",
            State::Closed => "Closed early",
        }
    }

    /// No action changes a request in a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Expired | State::Rejected | State::Withdrawn | State::Revoked | State::Closed
        )
    }

    /// Before any decision: the requester may still withdraw.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            State::Submitted
                | State::NeedsInfo
                | State::InAssessment
                | State::InStakeholderReview
                | State::AwaitingDecision
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line about a request, for lists (what the register shows without loading the
/// whole request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub id: RequestId,
    pub state: State,
    pub version: u32,
    pub title: String,
    pub tier: Option<crate::governance::Tier>,
    pub expires_at: Option<Timestamp>,
    pub next_review_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests;

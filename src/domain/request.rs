//! The exception request aggregate and its transitions.
//!
//! [`ExceptionRequest::apply`] is the one place that decides whether an action is
//! allowed: role membership, separation of duties, one vote per person per stage,
//! quorum, outdated versions, terminal states. It returns the new request plus an
//! [`Event`] describing what happened (the audit trail and the ledger are written
//! from it), or a [`WorkflowError`] that the actor is shown.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::content::{self, ConditionPart, Field, FieldErrors};
use super::{FormInput, RequestContent, RequestId, State, Timestamp};
use crate::governance::{Dimension, Governance, GovernanceHash, PersonId, RoleId, Tier};

/// Who acts: a person (resolved from a verified platform identity) or the scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Person(PersonId),
    Scheduler,
}

impl Actor {
    pub fn person(&self) -> Option<&PersonId> {
        match self {
            Actor::Person(p) => Some(p),
            Actor::Scheduler => None,
        }
    }

    /// How the audit trail names the actor.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Person(p) => p.to_string(),
            Actor::Scheduler => "scheduler".into(),
        }
    }
}

/// One version of the request's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub number: u32,
    pub content: RequestContent,
    pub author: Actor,
    pub at: Timestamp,
    /// Why this version exists, when it is not the first ("answers to the questions",
    /// "policy aiup moved to version 2026.2").
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Complete,
    SentBack { questions: String },
}

/// A completeness reviewer's verdict on one version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub version: u32,
    pub reviewer: PersonId,
    pub at: Timestamp,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    Approve,
    ApproveWithConditions,
    Reject,
}

impl Recommendation {
    pub const ALL: [Recommendation; 3] = [
        Recommendation::Approve,
        Recommendation::ApproveWithConditions,
        Recommendation::Reject,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Approve => "approve",
            Recommendation::ApproveWithConditions => "approve_with_conditions",
            Recommendation::Reject => "reject",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            Recommendation::Approve => "Approve",
            Recommendation::ApproveWithConditions => "Approve with conditions",
            Recommendation::Reject => "Reject",
        }
    }
}

/// One assessing role's finding on one version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub version: u32,
    pub role: RoleId,
    pub assessor: PersonId,
    pub at: Timestamp,
    pub dimension: Dimension,
    pub likelihood: u8,
    pub impact: u8,
    pub findings: String,
    pub mitigations: String,
    pub recommendation: Recommendation,
}

impl Assessment {
    /// Likelihood × impact, 1–25.
    pub fn score(&self) -> u8 {
        self.likelihood * self.impact
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentVia {
    /// The stakeholder feedback button.
    Feedback,
    /// A reply in the card's thread.
    Thread,
}

/// Stakeholder feedback or a thread reply, linked to the version it was about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub version: u32,
    pub author: PersonId,
    pub at: Timestamp,
    /// The stakeholder role the feedback counts for (button feedback only).
    pub role: Option<RoleId>,
    pub recommendation: Option<Recommendation>,
    pub text: String,
    pub via: CommentVia,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionSpec {
    pub text: String,
    pub owner: PersonId,
    pub due: NaiveDate,
}

/// What an approver grants: dates inclusive, UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub start: NaiveDate,
    /// The last day the exception is valid.
    pub expiry: NaiveDate,
    pub monitoring_owner: PersonId,
    pub conditions: Vec<ConditionSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VoteVerdict {
    Approve { terms: Terms },
    Reject { reason: String },
}

/// One approver's decision for one of the tier's approver roles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub version: u32,
    pub approver: PersonId,
    pub role: RoleId,
    pub at: Timestamp,
    #[serde(flatten)]
    pub verdict: VoteVerdict,
}

/// The computed risk of one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub version: u32,
    /// Worst likelihood × impact per assessed dimension.
    pub dimensions: BTreeMap<Dimension, u8>,
    pub score: u8,
    pub tier: Tier,
}

/// The exception as granted once the quorum approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub version: u32,
    pub decided_at: Timestamp,
    pub tier: Tier,
    pub score: u8,
    pub starts_at: Timestamp,
    /// The first instant the exception is no longer valid (midnight after the expiry date).
    pub expires_at: Timestamp,
    pub monitoring_owner: PersonId,
    pub next_review_at: Option<Timestamp>,
    pub policy_version: String,
    pub governance_hash: GovernanceHash,
    pub approvers: Vec<PersonId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub by: PersonId,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// 1-based, in the order the approvers wrote them.
    pub id: u32,
    pub text: String,
    pub owner: PersonId,
    pub due: NaiveDate,
    pub done: Option<Done>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationAnswer {
    StillNeeded,
    Changed,
    NoLongerNeeded,
}

impl AttestationAnswer {
    pub const ALL: [AttestationAnswer; 3] = [
        AttestationAnswer::StillNeeded,
        AttestationAnswer::Changed,
        AttestationAnswer::NoLongerNeeded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationAnswer::StillNeeded => "still_needed",
            AttestationAnswer::Changed => "changed",
            AttestationAnswer::NoLongerNeeded => "no_longer_needed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    pub at: Timestamp,
    pub by: PersonId,
    pub answer: AttestationAnswer,
    pub note: String,
}

/// Why a request ended (rejected, withdrawn, revoked, expired, closed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closure {
    pub at: Timestamp,
    pub by: Actor,
    pub reason: String,
}

/// A request and everything that happened to it. Records are kept for every version;
/// the current stage looks at the records of the current version only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExceptionRequest {
    pub id: RequestId,
    /// Optimistic-concurrency counter: bumped by every committed change.
    pub revision: u64,
    pub state: State,
    pub requester: PersonId,
    pub created_at: Timestamp,
    /// When the current stage began (SLA clock).
    pub stage_since: Timestamp,
    pub renews: Option<RequestId>,
    pub versions: Vec<Version>,
    /// Roles that must assess the current version.
    pub required_roles: Vec<RoleId>,
    pub reviews: Vec<Review>,
    pub assessments: Vec<Assessment>,
    pub comments: Vec<Comment>,
    pub votes: Vec<Vote>,
    pub risk: Option<Risk>,
    pub grant: Option<Grant>,
    pub conditions: Vec<Condition>,
    pub attestations: Vec<Attestation>,
    pub closure: Option<Closure>,
}

/// What an action needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A new version of the content (requester or an editor).
    Update {
        content: Box<RequestContent>,
        note: Option<String>,
    },
    MarkComplete,
    SendBack {
        questions: String,
    },
    Assess(AssessmentInput),
    Feedback {
        recommendation: Recommendation,
        text: String,
    },
    /// A reply in a card's thread.
    Comment {
        text: String,
    },
    Approve {
        terms: Terms,
        confirmation: Option<String>,
    },
    Reject {
        reason: String,
    },
    CompleteCondition {
        condition: u32,
    },
    Attest {
        answer: AttestationAnswer,
        note: String,
    },
    Withdraw {
        reason: String,
    },
    Revoke {
        reason: String,
    },
    // Scheduler actions.
    Activate,
    MarkReviewDue,
    Expire,
    /// Condition `condition` is past the governance file's grace period.
    Suspend {
        condition: u32,
    },
    RequireReassessment {
        policy_version: String,
    },
}

impl Action {
    /// The name the audit trail uses.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Update { .. } => "update",
            Action::MarkComplete => "mark_complete",
            Action::SendBack { .. } => "send_back",
            Action::Assess(_) => "assess",
            Action::Feedback { .. } => "feedback",
            Action::Comment { .. } => "comment",
            Action::Approve { .. } => "approve",
            Action::Reject { .. } => "reject",
            Action::CompleteCondition { .. } => "complete_condition",
            Action::Attest { .. } => "attest",
            Action::Withdraw { .. } => "withdraw",
            Action::Revoke { .. } => "revoke",
            Action::Activate => "activate",
            Action::MarkReviewDue => "mark_review_due",
            Action::Expire => "expire",
            Action::Suspend { .. } => "suspend",
            Action::RequireReassessment { .. } => "require_reassessment",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AssessmentInput {
    pub role: RoleId,
    pub likelihood: u8,
    pub impact: u8,
    pub findings: String,
    pub mitigations: String,
    pub recommendation: Recommendation,
}

/// What happened, with the record it added. The audit entry, the ledger row and the
/// notifications are all derived from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Submitted {
        version: Version,
    },
    Updated {
        version: Version,
    },
    MarkedComplete {
        review: Review,
        required_roles: Vec<RoleId>,
    },
    SentBack {
        review: Review,
    },
    Assessed {
        assessment: Assessment,
        risk: Option<Risk>,
    },
    FeedbackGiven {
        comment: Comment,
        stage_complete: bool,
    },
    Commented {
        comment: Comment,
    },
    Voted {
        vote: Vote,
        snapshot: Box<Snapshot>,
        grant: Option<Grant>,
        conditions: Vec<Condition>,
    },
    ConditionCompleted {
        condition: Condition,
        activated: bool,
        /// It lifted a suspension: no condition is overdue beyond the grace any more.
        #[serde(default)]
        resumed: bool,
    },
    /// The exception is suspended: `condition` is overdue beyond the grace period.
    Suspended {
        condition: Condition,
    },
    Activated,
    ReviewDue,
    Attested {
        attestation: Attestation,
    },
    Expired {
        closure: Closure,
    },
    Withdrawn {
        closure: Closure,
    },
    Revoked {
        closure: Closure,
    },
    ReassessmentRequired {
        version: Version,
        required_roles: Vec<RoleId>,
    },
    /// A past exception brought in from a register kept elsewhere (`waiver import`):
    /// its content, the grant or rejection it had, and where it came from.
    Imported {
        version: Box<Version>,
        grant: Option<Grant>,
        conditions: Vec<Condition>,
        closure: Option<Closure>,
        /// The file (with its SHA-256) and line it came from.
        source: String,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Submitted { .. } => "submitted",
            Event::Updated { .. } => "updated",
            Event::MarkedComplete { .. } => "marked_complete",
            Event::SentBack { .. } => "sent_back",
            Event::Assessed { .. } => "assessed",
            Event::FeedbackGiven { .. } => "feedback_given",
            Event::Commented { .. } => "commented",
            Event::Voted { vote, .. } => match vote.verdict {
                VoteVerdict::Approve { .. } => "approved",
                VoteVerdict::Reject { .. } => "rejected",
            },
            Event::ConditionCompleted { .. } => "condition_completed",
            Event::Suspended { .. } => "suspended",
            Event::Activated => "activated",
            Event::ReviewDue => "review_due",
            Event::Attested { .. } => "attested",
            Event::Expired { .. } => "expired",
            Event::Withdrawn { .. } => "withdrawn",
            Event::Revoked { .. } => "revoked",
            Event::ReassessmentRequired { .. } => "reassessment_required",
            Event::Imported { .. } => "imported",
        }
    }
}

/// Exactly what an approver had in front of them when they decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub reference: String,
    pub version: u32,
    pub content: RequestContent,
    pub risk: Option<Risk>,
    pub assessments: Vec<Assessment>,
    pub comments: Vec<Comment>,
    pub earlier_votes: Vec<Vote>,
    pub tier_approvers: Vec<RoleId>,
    pub governance_hash: GovernanceHash,
}

/// The new request and what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub request: ExceptionRequest,
    pub event: Event,
}

/// Why an action was refused. The text is what the actor is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("{reference} is {}; nothing more can be done with it.", .state.label().to_lowercase())]
    Terminal { reference: String, state: State },
    #[error(
        "This card shows version {seen} of {reference}, but the request is now at version {current}. Use the latest card."
    )]
    OutdatedVersion {
        reference: String,
        seen: u32,
        current: u32,
    },
    #[error("{action} is not possible while {reference} is {}.", .state.label().to_lowercase())]
    WrongState {
        reference: String,
        action: &'static str,
        state: State,
    },
    #[error("Only members of {role} can do this, and you are not one.")]
    NotAMember { role: String },
    #[error("You filed, edited or own {reference}, so you cannot review, assess or approve it.")]
    OwnRequest { reference: String },
    #[error("You assessed {reference}, so you cannot also approve it.")]
    AssessorCannotApprove { reference: String },
    #[error("You have already acted on this stage of {reference}: one vote per person.")]
    AlreadyVoted { reference: String },
    #[error("{role} has already assessed this version of {reference}.")]
    AlreadyAssessed { reference: String, role: String },
    #[error("{role} is not asked to assess {reference}.")]
    RoleNotRequired { reference: String, role: String },
    #[error("Every approver role you hold has already decided on {reference}.")]
    RoleAlreadyDecided { reference: String },
    #[error("Only the requester or an editor of {reference} can do this.")]
    NotRequester { reference: String },
    #[error("Only the monitoring owner of {reference} can do this.")]
    NotMonitoringOwner { reference: String },
    #[error("Only the requester or the monitoring owner of {reference} can renew it.")]
    NotRenewer { reference: String },
    #[error("Only a revoker or an approver of {reference}'s tier can revoke it.")]
    NotARevoker { reference: String },
    #[error("A reason is required.")]
    MissingReason,
    #[error(
        "The expiry is beyond the {tier} tier's maximum of {max_days} days: the latest allowed expiry is {latest}."
    )]
    ExpiryBeyondMaximum {
        tier: Tier,
        max_days: u32,
        latest: NaiveDate,
    },
    #[error("Type {reference} exactly to confirm a {tier}-tier decision.")]
    ConfirmationMismatch { reference: String, tier: Tier },
    #[error("Please correct the highlighted fields.")]
    Invalid(FieldErrors),
    /// One input is wrong; `message` says why, for the person filling it in.
    #[error("{message}")]
    InvalidField { field: Field, message: String },
    #[error("There is no condition {id} on {reference}.")]
    UnknownCondition { reference: String, id: u32 },
    #[error("Condition {id} on {reference} is already done.")]
    ConditionAlreadyDone { reference: String, id: u32 },
    #[error("Likelihood and impact are scored from 1 to 5.")]
    ScoreOutOfRange,
    #[error("Nothing to do yet: {0}.")]
    NotDue(&'static str),
}

impl WorkflowError {
    /// The inputs this refusal is about, each with what to say next to it; empty when
    /// it concerns no particular input (the surface shows it on the form as a whole).
    pub fn field_errors(&self) -> FieldErrors {
        let one = |field: Field| FieldErrors::from([(field, self.to_string())]);
        match self {
            WorkflowError::Invalid(fields) => fields.clone(),
            WorkflowError::InvalidField { field, message } => {
                FieldErrors::from([(*field, message.clone())])
            }
            WorkflowError::ExpiryBeyondMaximum { .. } => one(Field::Expiry),
            WorkflowError::ConfirmationMismatch { .. } => one(Field::Confirm),
            WorkflowError::ScoreOutOfRange => one(Field::Likelihood),
            _ => FieldErrors::new(),
        }
    }
}

/// The latest expiry a tier allows for a given start.
pub fn latest_expiry(start: NaiveDate, max_days: u32) -> NaiveDate {
    start + chrono::Days::new(u64::from(max_days))
}

/// A decision taken before Waiver, as an imported register records it.
#[derive(Clone, Debug, PartialEq)]
pub enum PastDecision {
    Approved {
        approvers: Vec<PersonId>,
        decided_at: Timestamp,
        tier: Tier,
        monitoring_owner: PersonId,
        /// Days between reviews (the tier's cadence when the register has none).
        review_every_days: u32,
        conditions: Vec<(ConditionSpec, Option<Done>)>,
    },
    Rejected {
        by: PersonId,
        decided_at: Timestamp,
        reason: String,
    },
}

/// A past exception from a register kept elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Past {
    pub requester: PersonId,
    pub content: RequestContent,
    pub decision: PastDecision,
    /// The file (with its SHA-256) and line it came from.
    pub source: String,
}

impl ExceptionRequest {
    /// A past exception as Waiver would hold it had it been decided here: rejected;
    /// expired (its end has passed); active (started, no open condition); or approved
    /// (waiting for its start or its conditions). From then on the scheduler watches
    /// it like any other: reviews, expiry reminders, expiry.
    pub fn import(id: RequestId, past: Past, now: Timestamp) -> Transition {
        let (decided_at, author) = match &past.decision {
            PastDecision::Approved { decided_at, .. } => (*decided_at, past.requester.clone()),
            PastDecision::Rejected { decided_at, .. } => (*decided_at, past.requester.clone()),
        };
        let version = Version {
            number: 1,
            content: past.content,
            author: Actor::Person(author),
            at: decided_at,
            note: Some(format!("imported from {}", past.source)),
        };
        let mut r = ExceptionRequest {
            id,
            revision: 0,
            state: State::Rejected,
            requester: past.requester,
            created_at: decided_at,
            stage_since: decided_at,
            renews: None,
            versions: vec![version.clone()],
            required_roles: Vec::new(),
            reviews: Vec::new(),
            assessments: Vec::new(),
            comments: Vec::new(),
            votes: Vec::new(),
            risk: None,
            grant: None,
            conditions: Vec::new(),
            attestations: Vec::new(),
            closure: None,
        };
        match past.decision {
            PastDecision::Rejected { by, reason, .. } => {
                r.closure = Some(Closure {
                    at: decided_at,
                    by: Actor::Person(by),
                    reason,
                });
            }
            PastDecision::Approved {
                approvers,
                tier,
                monitoring_owner,
                review_every_days,
                conditions,
                ..
            } => {
                let content = r.content().clone();
                let starts_at = Timestamp::start_of(content.start);
                let expires_at = Timestamp::start_of(content.end.succ_opt().unwrap_or(content.end));
                // The first review on the cadence that is still ahead.
                let cadence = review_every_days.max(1);
                let mut review = starts_at.plus_days(cadence);
                while review <= now {
                    review = review.plus_days(cadence);
                }
                r.grant = Some(Grant {
                    version: 1,
                    decided_at,
                    tier,
                    score: 0,
                    starts_at,
                    expires_at,
                    monitoring_owner,
                    next_review_at: (review < expires_at).then_some(review),
                    policy_version: content.policy_version.clone(),
                    // Decided outside Waiver: under no governance file of ours.
                    governance_hash: GovernanceHash::new("imported"),
                    approvers,
                });
                r.conditions = conditions
                    .into_iter()
                    .enumerate()
                    .map(|(i, (spec, done))| Condition {
                        id: i as u32 + 1,
                        text: spec.text,
                        owner: spec.owner,
                        due: spec.due,
                        done,
                    })
                    .collect();
                let open = r.conditions.iter().any(|c| c.done.is_none());
                r.stage_since = decided_at.max(starts_at.min(now));
                r.state = if expires_at <= now {
                    r.closure = Some(Closure {
                        at: expires_at,
                        by: Actor::Scheduler,
                        reason: "expired before it was imported".into(),
                    });
                    r.stage_since = expires_at;
                    State::Expired
                } else if starts_at <= now && !open {
                    State::Active
                } else {
                    State::Approved
                };
            }
        }
        let event = Event::Imported {
            version: Box::new(version),
            grant: r.grant.clone(),
            conditions: r.conditions.clone(),
            closure: r.closure.clone(),
            source: past.source,
        };
        Transition { request: r, event }
    }

    /// Files a new request (version 1). Renewals name the request they renew.
    pub fn submit(
        id: RequestId,
        requester: PersonId,
        content: RequestContent,
        renews: Option<RequestId>,
        now: Timestamp,
    ) -> Transition {
        let version = Version {
            number: 1,
            content,
            author: Actor::Person(requester.clone()),
            at: now,
            note: renews.map(|r| format!("renewal of {r}")),
        };
        let request = ExceptionRequest {
            id,
            revision: 0,
            state: State::Submitted,
            requester,
            created_at: now,
            stage_since: now,
            renews,
            versions: vec![version.clone()],
            required_roles: Vec::new(),
            reviews: Vec::new(),
            assessments: Vec::new(),
            comments: Vec::new(),
            votes: Vec::new(),
            risk: None,
            grant: None,
            conditions: Vec::new(),
            attestations: Vec::new(),
            closure: None,
        };
        Transition {
            request,
            event: Event::Submitted { version },
        }
    }

    pub fn reference(&self) -> String {
        self.id.to_string()
    }

    pub fn version(&self) -> u32 {
        self.current().number
    }

    pub fn current(&self) -> &Version {
        self.versions
            .last()
            .expect("a request has at least one version")
    }

    pub fn content(&self) -> &RequestContent {
        &self.current().content
    }

    /// Everyone with a stake in the request: the requester, every author of a
    /// version, every business owner named. They may not review, assess or approve it.
    pub fn is_interested(&self, person: &PersonId) -> bool {
        &self.requester == person
            || self
                .versions
                .iter()
                .any(|v| v.author.person() == Some(person) || &v.content.business_owner == person)
    }

    /// May `person` edit, withdraw or renew this request?
    pub fn is_editor(&self, person: &PersonId) -> bool {
        &self.requester == person
            || self
                .versions
                .iter()
                .any(|v| v.author.person() == Some(person))
            || &self.content().business_owner == person
    }

    pub fn current_assessments(&self) -> impl Iterator<Item = &Assessment> {
        let v = self.version();
        self.assessments.iter().filter(move |a| a.version == v)
    }

    pub fn current_comments(&self) -> impl Iterator<Item = &Comment> {
        let v = self.version();
        self.comments.iter().filter(move |c| c.version == v)
    }

    pub fn current_votes(&self) -> impl Iterator<Item = &Vote> {
        let v = self.version();
        self.votes.iter().filter(move |c| c.version == v)
    }

    /// Required roles that have not assessed the current version yet.
    pub fn missing_assessments(&self) -> Vec<&RoleId> {
        self.required_roles
            .iter()
            .filter(|r| !self.current_assessments().any(|a| &a.role == *r))
            .collect()
    }

    /// The tier of the current version, once assessed.
    pub fn tier(&self) -> Option<Tier> {
        self.risk
            .as_ref()
            .filter(|r| r.version == self.version())
            .map(|r| r.tier)
    }

    /// Approver roles of the tier that have not approved the current version yet.
    pub fn missing_approvals<'g>(&self, gov: &'g Governance) -> Vec<&'g RoleId> {
        let Some(tier) = self.tier() else {
            return Vec::new();
        };
        gov.tier(tier)
            .approvers
            .iter()
            .filter(|r| {
                !self
                    .current_votes()
                    .any(|v| &v.role == *r && matches!(v.verdict, VoteVerdict::Approve { .. }))
            })
            .collect()
    }

    /// Stakeholder roles that have not given feedback on the current version yet.
    pub fn missing_feedback<'g>(&self, gov: &'g Governance) -> Vec<&'g RoleId> {
        gov.workflow
            .stakeholders
            .iter()
            .filter(|r| !self.current_comments().any(|c| c.role.as_ref() == Some(*r)))
            .collect()
    }

    /// What an approver sees, frozen into the decision record.
    pub fn snapshot(&self, gov: &Governance) -> Snapshot {
        Snapshot {
            reference: self.reference(),
            version: self.version(),
            content: self.content().clone(),
            risk: self.risk.clone().filter(|r| r.version == self.version()),
            assessments: self.current_assessments().cloned().collect(),
            comments: self.current_comments().cloned().collect(),
            earlier_votes: self.current_votes().cloned().collect(),
            tier_approvers: self
                .tier()
                .map(|t| gov.tier(t).approvers.clone())
                .unwrap_or_default(),
            governance_hash: gov.hash.clone(),
        }
    }

    /// Whether `person` may renew this exception (file a pre-filled follow-up).
    pub fn may_renew(&self, person: &PersonId) -> Result<(), WorkflowError> {
        let renewable = self.grant.is_some()
            && matches!(
                self.state,
                State::Approved
                    | State::Active
                    | State::ReviewDue
                    | State::Suspended
                    | State::ReassessmentRequired
                    | State::Expired
            );
        if !renewable {
            return Err(self.wrong_state("Renewal"));
        }
        let owner = self.grant.as_ref().map(|g| &g.monitoring_owner);
        if !self.is_editor(person) && owner != Some(person) {
            return Err(WorkflowError::NotRenewer {
                reference: self.reference(),
            });
        }
        Ok(())
    }

    /// The intake form of a renewal, pre-filled from this request: it starts where
    /// this exception ends (today if that has passed) and asks for as long as this one
    /// asked for.
    pub fn renewal_input(&self, today: NaiveDate) -> FormInput {
        let mut input = self.content().to_input();
        let start = match &self.grant {
            Some(g) if self.state != State::Expired => g.expires_at.date().max(today),
            _ => today,
        };
        input.start = start.to_string();
        input.end =
            (start + chrono::Days::new(self.content().requested_days().max(1) as u64)).to_string();
        input
    }

    fn wrong_state(&self, action: &'static str) -> WorkflowError {
        WorkflowError::WrongState {
            reference: self.reference(),
            action,
            state: self.state,
        }
    }

    /// Applies `action` by `actor`, who saw version `seen`, at `now` under `gov`.
    /// Pure: no I/O, no clock.
    pub fn apply(
        &self,
        actor: &Actor,
        seen: u32,
        action: Action,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Transition, WorkflowError> {
        if self.state.is_terminal() {
            return Err(WorkflowError::Terminal {
                reference: self.reference(),
                state: self.state,
            });
        }
        let person = match actor {
            Actor::Person(p) => {
                if seen != self.version() {
                    return Err(WorkflowError::OutdatedVersion {
                        reference: self.reference(),
                        seen,
                        current: self.version(),
                    });
                }
                Some(p)
            }
            Actor::Scheduler => None,
        };
        let mut next = self.clone();
        next.revision = self.revision + 1;
        let event = match (person, action) {
            (Some(p), Action::Update { content, note }) => {
                next.update(p, *content, note, gov, now)?
            }
            (Some(p), Action::MarkComplete) => next.review(p, Verdict::Complete, gov, now)?,
            (Some(p), Action::SendBack { questions }) => {
                let questions = required_text(Field::Questions, &questions)?;
                next.review(p, Verdict::SentBack { questions }, gov, now)?
            }
            (Some(p), Action::Assess(input)) => next.assess(p, input, gov, now)?,
            (
                Some(p),
                Action::Feedback {
                    recommendation,
                    text,
                },
            ) => next.feedback(p, recommendation, text, gov, now)?,
            (Some(p), Action::Comment { text }) => {
                let comment = Comment {
                    version: next.version(),
                    author: p.clone(),
                    at: now,
                    role: None,
                    recommendation: None,
                    text: required_text(Field::Comment, &text)?,
                    via: CommentVia::Thread,
                };
                next.comments.push(comment.clone());
                Event::Commented { comment }
            }
            (
                Some(p),
                Action::Approve {
                    terms,
                    confirmation,
                },
            ) => next.vote(p, VoteVerdict::Approve { terms }, confirmation, gov, now)?,
            (Some(p), Action::Reject { reason }) => {
                let reason = required_text(Field::Reason, &reason)?;
                next.vote(p, VoteVerdict::Reject { reason }, None, gov, now)?
            }
            (Some(p), Action::CompleteCondition { condition }) => {
                next.complete_condition(p, condition, gov, now)?
            }
            (Some(p), Action::Attest { answer, note }) => next.attest(p, answer, note, gov, now)?,
            (Some(p), Action::Withdraw { reason }) => {
                if !self.state.is_pending() {
                    return Err(self.wrong_state("Withdrawal"));
                }
                if !self.is_editor(p) {
                    return Err(WorkflowError::NotRequester {
                        reference: self.reference(),
                    });
                }
                next.close(State::Withdrawn, actor, reason, now, |closure| {
                    Event::Withdrawn { closure }
                })
            }
            (Some(p), Action::Revoke { reason }) => {
                let Some(grant) = &self.grant else {
                    return Err(self.wrong_state("Revocation"));
                };
                let approver = gov
                    .tier(grant.tier)
                    .approvers
                    .iter()
                    .any(|r| gov.has_role(p, r));
                if !approver && !gov.may_revoke(p) {
                    return Err(WorkflowError::NotARevoker {
                        reference: self.reference(),
                    });
                }
                let reason = required_text(Field::Reason, &reason)?;
                next.close(State::Revoked, actor, reason, now, |closure| {
                    Event::Revoked { closure }
                })
            }
            (None, Action::Activate) => next.activate(now)?,
            (None, Action::MarkReviewDue) => {
                let due = self.grant.as_ref().and_then(|g| g.next_review_at);
                if self.state != State::Active {
                    return Err(self.wrong_state("Review"));
                }
                if due.is_none_or(|d| d > now) {
                    return Err(WorkflowError::NotDue("the next review is not due"));
                }
                next.state = State::ReviewDue;
                next.stage_since = now;
                Event::ReviewDue
            }
            (None, Action::Expire) => {
                let Some(grant) = &self.grant else {
                    return Err(self.wrong_state("Expiry"));
                };
                if grant.expires_at > now {
                    return Err(WorkflowError::NotDue(
                        "the exception has not reached its expiry",
                    ));
                }
                let reason = format!("reached its expiry ({})", grant.expires_at);
                next.close(State::Expired, actor, reason, now, |closure| {
                    Event::Expired { closure }
                })
            }
            (None, Action::Suspend { condition }) => next.suspend(condition, gov, now)?,
            (None, Action::RequireReassessment { policy_version }) => {
                // A suspended exception is reassessed once its suspension is lifted
                // (the schedule lists the reassessment then).
                if !matches!(
                    self.state,
                    State::Approved | State::Active | State::ReviewDue
                ) {
                    return Err(self.wrong_state("Reassessment"));
                }
                if self.content().policy_version == policy_version {
                    return Err(WorkflowError::NotDue("the policy version is unchanged"));
                }
                let note = format!(
                    "policy {} moved from version {} to {}",
                    self.content().policy,
                    self.content().policy_version,
                    policy_version
                );
                let mut content = self.content().clone();
                content.policy_version = policy_version;
                next.reassess(content, Actor::Scheduler, note, gov, now)
            }
            (None, action) => {
                // People's actions need a person; the scheduler only runs its own.
                return Err(self.wrong_state(action.name()));
            }
            (Some(_), action) => return Err(self.wrong_state(action.name())),
        };
        Ok(Transition {
            request: next,
            event,
        })
    }

    fn update(
        &mut self,
        p: &PersonId,
        content: RequestContent,
        note: Option<String>,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if !matches!(
            self.state,
            State::Submitted | State::NeedsInfo | State::ReassessmentRequired
        ) {
            return Err(self.wrong_state("Updating the request"));
        }
        if !self.is_editor(p) {
            return Err(WorkflowError::NotRequester {
                reference: self.reference(),
            });
        }
        let version = Version {
            number: self.version() + 1,
            content,
            author: Actor::Person(p.clone()),
            at: now,
            note: note.filter(|n| !n.trim().is_empty()),
        };
        self.versions.push(version.clone());
        if self.state == State::NeedsInfo {
            self.state = State::Submitted;
            self.stage_since = now;
        }
        if self.state == State::ReassessmentRequired {
            // The reassessment restarts on the new content, with the roles it now needs.
            self.required_roles = gov.required_assessors(&self.content().rule_subject());
            self.stage_since = now;
        }
        Ok(Event::Updated { version })
    }

    fn require_member(
        &self,
        gov: &Governance,
        p: &PersonId,
        role: &RoleId,
    ) -> Result<(), WorkflowError> {
        if gov.has_role(p, role) {
            Ok(())
        } else {
            Err(WorkflowError::NotAMember {
                role: gov
                    .role(role)
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| role.to_string()),
            })
        }
    }

    fn require_disinterested(&self, p: &PersonId) -> Result<(), WorkflowError> {
        if self.is_interested(p) {
            Err(WorkflowError::OwnRequest {
                reference: self.reference(),
            })
        } else {
            Ok(())
        }
    }

    fn review(
        &mut self,
        p: &PersonId,
        verdict: Verdict,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if self.state != State::Submitted {
            return Err(self.wrong_state("Completeness review"));
        }
        self.require_member(gov, p, &gov.workflow.completeness_reviewers)?;
        self.require_disinterested(p)?;
        let review = Review {
            version: self.version(),
            reviewer: p.clone(),
            at: now,
            verdict,
        };
        self.reviews.push(review.clone());
        self.stage_since = now;
        Ok(match review.verdict {
            Verdict::Complete => {
                self.required_roles = gov.required_assessors(&self.content().rule_subject());
                self.state = State::InAssessment;
                Event::MarkedComplete {
                    review,
                    required_roles: self.required_roles.clone(),
                }
            }
            Verdict::SentBack { .. } => {
                self.state = State::NeedsInfo;
                Event::SentBack { review }
            }
        })
    }

    fn assess(
        &mut self,
        p: &PersonId,
        input: AssessmentInput,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if !matches!(
            self.state,
            State::InAssessment | State::ReassessmentRequired
        ) {
            return Err(self.wrong_state("Assessment"));
        }
        let role_name = || {
            gov.role(&input.role)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| input.role.to_string())
        };
        if !self.required_roles.contains(&input.role) {
            return Err(WorkflowError::RoleNotRequired {
                reference: self.reference(),
                role: role_name(),
            });
        }
        self.require_member(gov, p, &input.role)?;
        self.require_disinterested(p)?;
        if self.current_assessments().any(|a| a.role == input.role) {
            return Err(WorkflowError::AlreadyAssessed {
                reference: self.reference(),
                role: role_name(),
            });
        }
        if self.current_assessments().any(|a| &a.assessor == p) {
            return Err(WorkflowError::AlreadyVoted {
                reference: self.reference(),
            });
        }
        if !(1..=5).contains(&input.likelihood) || !(1..=5).contains(&input.impact) {
            return Err(WorkflowError::ScoreOutOfRange);
        }
        let mut errors = FieldErrors::new();
        let findings = content::text(&mut errors, Field::Findings, &input.findings, true, 3000);
        let mitigations = content::text(
            &mut errors,
            Field::Mitigations,
            &input.mitigations,
            false,
            3000,
        );
        if let Some(field) = errors.keys().next().copied() {
            let message = match field {
                Field::Mitigations => {
                    "Keep the mitigations under 3000 characters, without control characters."
                }
                _ => {
                    "Findings are required (and under 3000 characters, without control characters)."
                }
            };
            return Err(WorkflowError::InvalidField {
                field,
                message: message.into(),
            });
        }
        let dimension = gov
            .role(&input.role)
            .and_then(|r| r.dimension)
            .expect("governance guarantees assessing roles have a dimension");
        let assessment = Assessment {
            version: self.version(),
            role: input.role,
            assessor: p.clone(),
            at: now,
            dimension,
            likelihood: input.likelihood,
            impact: input.impact,
            findings,
            mitigations,
            recommendation: input.recommendation,
        };
        self.assessments.push(assessment.clone());
        let risk = if self.missing_assessments().is_empty() {
            let mut dimensions: BTreeMap<Dimension, u8> = BTreeMap::new();
            for a in self.current_assessments() {
                let d = dimensions.entry(a.dimension).or_insert(0);
                *d = (*d).max(a.score());
            }
            let score = gov
                .risk
                .combine(&dimensions)
                .expect("at least one assessment");
            let tier = gov.risk.tier(score);
            let risk = Risk {
                version: self.version(),
                dimensions,
                score,
                tier,
            };
            self.risk = Some(risk.clone());
            self.state =
                if gov.tier(tier).stakeholder_review && !gov.workflow.stakeholders.is_empty() {
                    State::InStakeholderReview
                } else {
                    State::AwaitingDecision
                };
            self.stage_since = now;
            Some(risk)
        } else {
            None
        };
        Ok(Event::Assessed { assessment, risk })
    }

    fn feedback(
        &mut self,
        p: &PersonId,
        recommendation: Recommendation,
        text: String,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if self.state != State::InStakeholderReview {
            return Err(self.wrong_state("Stakeholder feedback"));
        }
        let Some(role) = gov
            .workflow
            .stakeholders
            .iter()
            .find(|r| gov.has_role(p, r))
            .cloned()
        else {
            let names: Vec<String> = gov
                .workflow
                .stakeholders
                .iter()
                .filter_map(|r| gov.role(r).map(|r| r.name.clone()))
                .collect();
            return Err(WorkflowError::NotAMember {
                role: names.join(" or "),
            });
        };
        self.require_disinterested(p)?;
        if self
            .current_comments()
            .any(|c| &c.author == p && c.via == CommentVia::Feedback)
        {
            return Err(WorkflowError::AlreadyVoted {
                reference: self.reference(),
            });
        }
        // A person in several stakeholder roles counts for the first one still missing.
        let role = gov
            .workflow
            .stakeholders
            .iter()
            .find(|r| gov.has_role(p, r) && self.missing_feedback(gov).contains(r))
            .cloned()
            .unwrap_or(role);
        let mut errors = FieldErrors::new();
        let text = content::text(&mut errors, Field::Comment, &text, false, 3000);
        if !errors.is_empty() {
            return Err(WorkflowError::InvalidField {
                field: Field::Comment,
                message: "Keep feedback under 3000 characters, without control characters.".into(),
            });
        }
        let comment = Comment {
            version: self.version(),
            author: p.clone(),
            at: now,
            role: Some(role),
            recommendation: Some(recommendation),
            text,
            via: CommentVia::Feedback,
        };
        self.comments.push(comment.clone());
        let stage_complete = self.missing_feedback(gov).is_empty();
        if stage_complete {
            self.state = State::AwaitingDecision;
            self.stage_since = now;
        }
        Ok(Event::FeedbackGiven {
            comment,
            stage_complete,
        })
    }

    fn vote(
        &mut self,
        p: &PersonId,
        verdict: VoteVerdict,
        confirmation: Option<String>,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if self.state != State::AwaitingDecision {
            return Err(self.wrong_state("A decision"));
        }
        let tier = self.tier().expect("a request awaiting decision has a tier");
        let policy = gov.tier(tier);
        let held: Vec<&RoleId> = policy
            .approvers
            .iter()
            .filter(|r| gov.has_role(p, r))
            .collect();
        if held.is_empty() {
            let names: Vec<String> = policy
                .approvers
                .iter()
                .filter_map(|r| gov.role(r).map(|r| r.name.clone()))
                .collect();
            return Err(WorkflowError::NotAMember {
                role: names.join(" or "),
            });
        }
        self.require_disinterested(p)?;
        if !gov.workflow.assessor_may_approve && self.assessments.iter().any(|a| &a.assessor == p) {
            return Err(WorkflowError::AssessorCannotApprove {
                reference: self.reference(),
            });
        }
        if self.current_votes().any(|v| &v.approver == p) {
            return Err(WorkflowError::AlreadyVoted {
                reference: self.reference(),
            });
        }
        let missing = self.missing_approvals(gov);
        let Some(role) = held.into_iter().find(|r| missing.contains(r)).cloned() else {
            return Err(WorkflowError::RoleAlreadyDecided {
                reference: self.reference(),
            });
        };
        // Typed confirmation guards granting; refusing is always the safe outcome.
        if policy.typed_confirmation && matches!(verdict, VoteVerdict::Approve { .. }) {
            let typed = confirmation.as_deref().map(str::trim).unwrap_or_default();
            if !typed.eq_ignore_ascii_case(&self.reference()) {
                return Err(WorkflowError::ConfirmationMismatch {
                    reference: self.reference(),
                    tier,
                });
            }
        }
        if let VoteVerdict::Approve { terms } = &verdict {
            check_terms(terms, tier, policy.max_duration_days, now)?;
        }
        let snapshot = self.snapshot(gov);
        let vote = Vote {
            version: self.version(),
            approver: p.clone(),
            role,
            at: now,
            verdict,
        };
        self.votes.push(vote.clone());
        let mut grant = None;
        let mut conditions = Vec::new();
        match &vote.verdict {
            VoteVerdict::Reject { reason } => {
                self.state = State::Rejected;
                self.closure = Some(Closure {
                    at: now,
                    by: Actor::Person(p.clone()),
                    reason: reason.clone(),
                });
                // A re-decision that rejects ends the earlier grant too.
            }
            VoteVerdict::Approve { .. } if self.missing_approvals(gov).is_empty() => {
                let g = self.combine_grant(tier, gov, now);
                conditions = self.conditions.clone();
                self.state = State::Approved;
                self.stage_since = now;
                grant = Some(g);
                if self.conditions.is_empty()
                    && self.grant.as_ref().is_some_and(|g| g.starts_at <= now)
                {
                    self.state = State::Active;
                }
            }
            VoteVerdict::Approve { .. } => {}
        }
        Ok(Event::Voted {
            vote,
            snapshot: Box::new(snapshot),
            grant,
            conditions,
        })
    }

    /// Combines every approver's terms: the latest start, the earliest expiry, all
    /// conditions, and the first approver's monitoring owner.
    fn combine_grant(&mut self, tier: Tier, gov: &Governance, now: Timestamp) -> Grant {
        let approvals: Vec<(&PersonId, &Terms)> = self
            .current_votes()
            .filter_map(|v| match &v.verdict {
                VoteVerdict::Approve { terms } => Some((&v.approver, terms)),
                VoteVerdict::Reject { .. } => None,
            })
            .collect();
        let start = approvals
            .iter()
            .map(|(_, t)| t.start)
            .max()
            .expect("quorum has votes");
        let expiry = approvals
            .iter()
            .map(|(_, t)| t.expiry)
            .min()
            .expect("quorum has votes");
        let owner = approvals[0].1.monitoring_owner.clone();
        let approvers = approvals.iter().map(|(p, _)| (*p).clone()).collect();
        let mut conditions: Vec<Condition> = Vec::new();
        for spec in approvals.iter().flat_map(|(_, t)| t.conditions.iter()) {
            let duplicate = conditions
                .iter()
                .any(|c| c.text == spec.text && c.owner == spec.owner && c.due == spec.due);
            if !duplicate {
                conditions.push(Condition {
                    id: conditions.len() as u32 + 1,
                    text: spec.text.clone(),
                    owner: spec.owner.clone(),
                    due: spec.due,
                    done: None,
                });
            }
        }
        let starts_at = Timestamp::start_of(start);
        let expires_at = Timestamp::start_of(expiry.succ_opt().unwrap_or(expiry));
        let tier_policy = gov.tier(tier);
        let grant = Grant {
            version: self.version(),
            decided_at: now,
            tier,
            score: self.risk.as_ref().map(|r| r.score).unwrap_or_default(),
            starts_at,
            expires_at,
            monitoring_owner: owner,
            next_review_at: next_review(
                starts_at.max(now),
                tier_policy.review_every_days,
                expires_at,
            ),
            policy_version: self.content().policy_version.clone(),
            governance_hash: gov.hash.clone(),
            approvers,
        };
        self.conditions = conditions;
        self.grant = Some(grant.clone());
        grant
    }

    fn complete_condition(
        &mut self,
        p: &PersonId,
        id: u32,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if !matches!(
            self.state,
            State::Approved | State::Active | State::ReviewDue | State::Suspended
        ) {
            return Err(self.wrong_state("Completing a condition"));
        }
        let reference = self.reference();
        let owner = self.grant.as_ref().map(|g| g.monitoring_owner.clone());
        let Some(condition) = self.conditions.iter_mut().find(|c| c.id == id) else {
            return Err(WorkflowError::UnknownCondition { reference, id });
        };
        if &condition.owner != p && owner.as_ref() != Some(p) {
            return Err(WorkflowError::NotMonitoringOwner { reference });
        }
        if condition.done.is_some() {
            return Err(WorkflowError::ConditionAlreadyDone { reference, id });
        }
        condition.done = Some(Done {
            by: p.clone(),
            at: now,
        });
        let condition = condition.clone();
        let resumed =
            self.state == State::Suspended && self.overdue_beyond_grace(gov, now).is_none();
        if resumed {
            // Back to "conditions pending"; active at once if nothing else is open.
            self.state = State::Approved;
            self.stage_since = now;
        }
        let activated = self.ready_to_activate(now);
        if activated {
            self.state = State::Active;
            self.stage_since = now;
        }
        Ok(Event::ConditionCompleted {
            condition,
            activated,
            resumed,
        })
    }

    /// When an open condition suspends the exception, if governance suspends at all:
    /// the grace period after the condition became overdue (the day after its due date),
    /// or after the decision if that came later (a quorum that took longer than a
    /// condition's deadline still leaves the owner the whole grace).
    pub fn suspends_at(&self, c: &Condition, gov: &Governance) -> Option<Timestamp> {
        let grace = gov.reminders.suspend_after_overdue_days?;
        let overdue = Timestamp::start_of(c.due).plus_days(1);
        let from = match &self.grant {
            Some(g) => overdue.max(g.decided_at),
            None => overdue,
        };
        c.done.is_none().then(|| from.plus_days(grace))
    }

    /// The first open condition overdue beyond the grace period at `now`.
    pub fn overdue_beyond_grace(&self, gov: &Governance, now: Timestamp) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| self.suspends_at(c, gov).is_some_and(|at| at <= now))
    }

    fn suspend(
        &mut self,
        id: u32,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if !matches!(
            self.state,
            State::Approved | State::Active | State::ReviewDue
        ) {
            return Err(self.wrong_state("Suspension"));
        }
        let reference = self.reference();
        let Some(condition) = self.conditions.iter().find(|c| c.id == id) else {
            return Err(WorkflowError::UnknownCondition { reference, id });
        };
        if self.suspends_at(condition, gov).is_none_or(|at| at > now) {
            return Err(WorkflowError::NotDue(
                "the condition is done, not overdue long enough, or governance does not suspend",
            ));
        }
        let condition = condition.clone();
        self.state = State::Suspended;
        self.stage_since = now;
        Ok(Event::Suspended { condition })
    }

    fn ready_to_activate(&self, now: Timestamp) -> bool {
        self.state == State::Approved
            && self.conditions.iter().all(|c| c.done.is_some())
            && self.grant.as_ref().is_some_and(|g| g.starts_at <= now)
    }

    fn activate(&mut self, now: Timestamp) -> Result<Event, WorkflowError> {
        if self.state != State::Approved {
            return Err(self.wrong_state("Activation"));
        }
        if !self.ready_to_activate(now) {
            return Err(WorkflowError::NotDue(
                "conditions are open or the start is ahead",
            ));
        }
        self.state = State::Active;
        self.stage_since = now;
        Ok(Event::Activated)
    }

    fn attest(
        &mut self,
        p: &PersonId,
        answer: AttestationAnswer,
        note: String,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<Event, WorkflowError> {
        if !matches!(self.state, State::Active | State::ReviewDue) {
            return Err(self.wrong_state("A review attestation"));
        }
        let grant = self.grant.clone().expect("an active exception has a grant");
        if &grant.monitoring_owner != p {
            return Err(WorkflowError::NotMonitoringOwner {
                reference: self.reference(),
            });
        }
        let mut errors = FieldErrors::new();
        let note = content::text(&mut errors, Field::Note, &note, false, 3000);
        if !errors.is_empty() {
            return Err(WorkflowError::InvalidField {
                field: Field::Note,
                message: "Keep the note under 3000 characters, without control characters.".into(),
            });
        }
        let attestation = Attestation {
            at: now,
            by: p.clone(),
            answer,
            note,
        };
        self.attestations.push(attestation.clone());
        match answer {
            AttestationAnswer::StillNeeded => {
                let cadence = gov.tier(grant.tier).review_every_days;
                if let Some(g) = self.grant.as_mut() {
                    g.next_review_at = next_review(now, cadence, g.expires_at);
                }
                self.state = State::Active;
                self.stage_since = now;
            }
            AttestationAnswer::Changed => {
                let content = self.content().clone();
                let note = "the owner attested that the use has changed".to_string();
                self.reassess(content, Actor::Person(p.clone()), note, gov, now);
            }
            AttestationAnswer::NoLongerNeeded => {
                self.state = State::Closed;
                self.closure = Some(Closure {
                    at: now,
                    by: Actor::Person(p.clone()),
                    reason: "no longer needed (owner attestation)".into(),
                });
            }
        }
        Ok(Event::Attested { attestation })
    }

    /// Back to assessment on a new version; the grant stays in force until a new
    /// decision replaces it, a rejection ends it, or it expires.
    fn reassess(
        &mut self,
        content: RequestContent,
        author: Actor,
        note: String,
        gov: &Governance,
        now: Timestamp,
    ) -> Event {
        let version = Version {
            number: self.version() + 1,
            content,
            author,
            at: now,
            note: Some(note),
        };
        self.versions.push(version.clone());
        self.required_roles = gov.required_assessors(&self.content().rule_subject());
        self.state = State::ReassessmentRequired;
        self.stage_since = now;
        Event::ReassessmentRequired {
            version,
            required_roles: self.required_roles.clone(),
        }
    }

    fn close(
        &mut self,
        state: State,
        by: &Actor,
        reason: String,
        now: Timestamp,
        event: impl FnOnce(Closure) -> Event,
    ) -> Event {
        let closure = Closure {
            at: now,
            by: by.clone(),
            reason: reason.trim().to_string(),
        };
        self.state = state;
        self.stage_since = now;
        self.closure = Some(closure.clone());
        event(closure)
    }
}

/// Required free text for `field` (a reason, questions, a thread comment).
fn required_text(field: Field, s: &str) -> Result<String, WorkflowError> {
    let mut errors = FieldErrors::new();
    let text = content::text(&mut errors, field, s, true, 3000);
    if errors.is_empty() {
        Ok(text)
    } else if s.trim().is_empty() {
        Err(WorkflowError::MissingReason)
    } else {
        Err(WorkflowError::InvalidField {
            field,
            message: "Keep it under 3000 characters, without control characters.".into(),
        })
    }
}

/// The next review, unless the exception expires first.
fn next_review(from: Timestamp, cadence_days: u32, expires_at: Timestamp) -> Option<Timestamp> {
    let at = from.plus_days(cadence_days);
    (at < expires_at).then_some(at)
}

fn check_terms(
    terms: &Terms,
    tier: Tier,
    max_days: u32,
    now: Timestamp,
) -> Result<(), WorkflowError> {
    let today = now.date();
    if terms.start < today {
        return Err(WorkflowError::InvalidField {
            field: Field::Start,
            message: format!("The start cannot be in the past (today is {today})."),
        });
    }
    if terms.expiry <= terms.start {
        return Err(WorkflowError::InvalidField {
            field: Field::Expiry,
            message: "The expiry must be after the start.".into(),
        });
    }
    let latest = latest_expiry(terms.start, max_days);
    if terms.expiry > latest {
        return Err(WorkflowError::ExpiryBeyondMaximum {
            tier,
            max_days,
            latest,
        });
    }
    for (i, c) in terms.conditions.iter().enumerate() {
        let n = i + 1;
        let slot = u8::try_from(n).unwrap_or(u8::MAX);
        let mut errors = FieldErrors::new();
        let field = Field::Condition(slot, ConditionPart::Text);
        content::text(&mut errors, field, &c.text, true, 500);
        if !errors.is_empty() {
            return Err(WorkflowError::InvalidField {
                field,
                message: format!("Condition {n} needs a description (under 500 characters)."),
            });
        }
        if c.due < today || c.due > terms.expiry {
            return Err(WorkflowError::InvalidField {
                field: Field::Condition(slot, ConditionPart::Due),
                message: format!(
                    "Condition {n} must be due between today ({today}) and the expiry ({}).",
                    terms.expiry
                ),
            });
        }
    }
    Ok(())
}

/// Something a person can do on a request now (their pending work).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    ReviewCompleteness,
    Assess(RoleId),
    GiveFeedback,
    Decide,
    MarkDone(u32),
    Attest,
    Update,
}

impl Task {
    /// A harmless action with the same authority checks as the real one.
    pub fn probe(&self, r: &ExceptionRequest, person: &PersonId, now: Timestamp) -> Action {
        match self {
            Task::ReviewCompleteness => Action::MarkComplete,
            Task::Assess(role) => Action::Assess(AssessmentInput {
                role: role.clone(),
                likelihood: 1,
                impact: 1,
                findings: "probe".into(),
                mitigations: String::new(),
                recommendation: Recommendation::Approve,
            }),
            Task::GiveFeedback => Action::Feedback {
                recommendation: Recommendation::Approve,
                text: String::new(),
            },
            Task::Decide => Action::Approve {
                terms: Terms {
                    start: now.date(),
                    expiry: now.date() + chrono::Days::new(1),
                    monitoring_owner: person.clone(),
                    conditions: Vec::new(),
                },
                confirmation: Some(r.reference()),
            },
            Task::MarkDone(id) => Action::CompleteCondition { condition: *id },
            Task::Attest => Action::Attest {
                answer: AttestationAnswer::StillNeeded,
                note: String::new(),
            },
            Task::Update => Action::Update {
                content: Box::new(r.content().clone()),
                note: None,
            },
        }
    }
}

impl ExceptionRequest {
    /// Whether `person` may do `task` now: the same checks as the real action, run
    /// on a harmless probe (so the rules live in one place). Used before opening a
    /// modal, and to list pending work.
    pub fn may(
        &self,
        person: &PersonId,
        seen: u32,
        task: &Task,
        gov: &Governance,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let action = task.probe(self, person, now);
        self.apply(&Actor::Person(person.clone()), seen, action, gov, now)
            .map(|_| ())
    }

    /// Everything `person` can do on this request now.
    pub fn tasks_for(&self, person: &PersonId, gov: &Governance, now: Timestamp) -> Vec<Task> {
        let mut candidates = match self.state {
            State::Submitted => vec![Task::ReviewCompleteness],
            State::NeedsInfo => vec![Task::Update],
            State::InAssessment | State::ReassessmentRequired => self
                .missing_assessments()
                .into_iter()
                .cloned()
                .map(Task::Assess)
                .collect(),
            State::InStakeholderReview => vec![Task::GiveFeedback],
            State::AwaitingDecision => vec![Task::Decide],
            State::ReviewDue => vec![Task::Attest],
            _ => Vec::new(),
        };
        if matches!(
            self.state,
            State::Approved | State::Active | State::ReviewDue | State::Suspended
        ) {
            candidates.extend(
                self.conditions
                    .iter()
                    .filter(|c| c.done.is_none())
                    .map(|c| Task::MarkDone(c.id)),
            );
        }
        candidates
            .into_iter()
            .filter(|t| self.may(person, self.version(), t, gov, now).is_ok())
            .collect()
    }
}

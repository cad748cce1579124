//! The SOP as data: the typed governance rules that the workflow enforces.
//!
//! `governance.toml` is parsed and validated once, at the edge (`parse`), into a
//! [`Governance`] whose references are all known to resolve: every role named by a
//! tier, rule or SLA exists and has members, every person named by a role exists,
//! the tier thresholds tile the whole score range. Code that holds a `Governance`
//! therefore looks things up without handling "unknown id" cases.
//!
//! Limits: the model is immutable; a changed file is a new `Governance` with a new
//! [`GovernanceHash`] (decisions record the hash they were made under).

mod diagram;
mod parse;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use diagram::{mermaid, svg};
pub use parse::{FieldError, LoadError, ParseError, load, parse};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id that was already validated (by the governance parser or
            /// because it was read back from our own store).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A person: an id from the governance file, or `slack:<team>:<user>` /
    /// `teams:<tenant>:<aad object id>` for a platform user the file does not list
    /// (such a person may file requests but holds no role).
    PersonId
);
id_type!(
    /// A role defined in `[roles.<id>]`.
    RoleId
);
id_type!(
    /// A policy of the catalogue.
    PolicyId
);
id_type!(
    /// An option of the request form (exception type, data category, region, department).
    OptionId
);

impl PersonId {
    /// The id of a Slack user that the governance file does not list.
    pub fn external_slack(team: &str, user: &str) -> Self {
        Self(format!("slack:{team}:{user}"))
    }

    /// The id of a Teams user that the governance file does not list.
    pub fn external_teams(tenant: &str, aad_object_id: &str) -> Self {
        Self(format!("teams:{tenant}:{aad_object_id}"))
    }

    /// For an external Slack person, their (workspace, user) pair.
    pub fn as_external_slack(&self) -> Option<(&str, &str)> {
        let rest = self.0.strip_prefix("slack:")?;
        rest.split_once(':')
    }

    /// For an external Teams person, their (tenant, AAD object id) pair.
    pub fn as_external_teams(&self) -> Option<(&str, &str)> {
        let rest = self.0.strip_prefix("teams:")?;
        rest.split_once(':')
    }
}

/// SHA-256 (hex) of the governance file's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GovernanceHash(String);

impl GovernanceHash {
    pub fn new(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first 12 hex digits, for people to compare at a glance.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for GovernanceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The four risk dimensions of the risk model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Privacy,
    Security,
    Ethical,
    Regulatory,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Privacy,
        Dimension::Security,
        Dimension::Ethical,
        Dimension::Regulatory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Privacy => "privacy",
            Dimension::Security => "security",
            Dimension::Ethical => "ethical",
            Dimension::Regulatory => "regulatory",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Risk tiers, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Low,
    Medium,
    High,
    Critical,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Low, Tier::Medium, Tier::High, Tier::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stages that have a service-level agreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Completeness,
    Assessment,
    StakeholderReview,
    Decision,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Completeness,
        Stage::Assessment,
        Stage::StakeholderReview,
        Stage::Decision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Completeness => "completeness",
            Stage::Assessment => "assessment",
            Stage::StakeholderReview => "stakeholder_review",
            Stage::Decision => "decision",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::Completeness => "Completeness review",
            Stage::Assessment => "Risk and impact assessment",
            Stage::StakeholderReview => "Stakeholder review",
            Stage::Decision => "Decision",
        }
    }
}

/// A Slack identity: user id within a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlackIdentity {
    pub workspace: String,
    pub user: String,
}

/// A Teams identity: Azure AD object id within a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TeamsIdentity {
    pub tenant: String,
    pub aad_object_id: String,
}

#[derive(Clone, Debug)]
pub struct Person {
    pub id: PersonId,
    pub name: String,
    pub email: Option<String>,
    pub slack: Option<SlackIdentity>,
    pub teams: Option<TeamsIdentity>,
}

/// Where a role's or department's cards and announcements go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    pub slack: Option<String>,
    pub teams: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub members: Vec<PersonId>,
    /// The risk dimension this role scores when it assesses a request.
    pub dimension: Option<Dimension>,
    pub channels: Channels,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub id: PolicyId,
    pub title: String,
    pub version: String,
    pub frameworks: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct FormOption {
    pub id: OptionId,
    pub label: String,
}

#[derive(Clone, Debug)]
pub struct Department {
    pub id: OptionId,
    pub label: String,
    pub channels: Channels,
}

/// The choices offered by the intake form.
#[derive(Clone, Debug)]
pub struct Form {
    pub exception_types: Vec<FormOption>,
    pub data_categories: Vec<FormOption>,
    pub regions: Vec<FormOption>,
    pub departments: Vec<Department>,
}

impl Form {
    pub fn exception_type(&self, id: &OptionId) -> Option<&FormOption> {
        self.exception_types.iter().find(|o| &o.id == id)
    }
    pub fn data_category(&self, id: &OptionId) -> Option<&FormOption> {
        self.data_categories.iter().find(|o| &o.id == id)
    }
    pub fn region(&self, id: &OptionId) -> Option<&FormOption> {
        self.regions.iter().find(|o| &o.id == id)
    }
    pub fn department(&self, id: &OptionId) -> Option<&Department> {
        self.departments.iter().find(|o| &o.id == id)
    }
}

/// What a request looks like to the assessment rules.
pub struct RuleSubject<'a> {
    pub exception_type: &'a OptionId,
    pub data_categories: &'a [OptionId],
    pub regions: &'a [OptionId],
    pub department: &'a OptionId,
}

/// "When a request matches, these roles must assess it." Every listed criterion must
/// match (a criterion matches when the request has any of its values); a rule with
/// no criteria always applies.
#[derive(Clone, Debug)]
pub struct AssessmentRule {
    pub name: String,
    pub exception_types: Vec<OptionId>,
    pub data_categories: Vec<OptionId>,
    pub regions: Vec<OptionId>,
    pub departments: Vec<OptionId>,
    pub require: Vec<RoleId>,
}

impl AssessmentRule {
    pub fn matches(&self, s: &RuleSubject<'_>) -> bool {
        let any = |wanted: &[OptionId], have: &[OptionId]| {
            wanted.is_empty() || wanted.iter().any(|w| have.contains(w))
        };
        any(
            &self.exception_types,
            std::slice::from_ref(s.exception_type),
        ) && any(&self.data_categories, s.data_categories)
            && any(&self.regions, s.regions)
            && any(&self.departments, std::slice::from_ref(s.department))
    }

    pub fn is_unconditional(&self) -> bool {
        self.exception_types.is_empty()
            && self.data_categories.is_empty()
            && self.regions.is_empty()
            && self.departments.is_empty()
    }
}

/// How dimension scores (likelihood × impact, 1–25) combine into the request's score.
#[derive(Clone, Debug, PartialEq)]
pub enum Combine {
    /// The worst dimension decides.
    Max,
    /// Weighted mean of the assessed dimensions, rounded half up.
    WeightedMean(BTreeMap<Dimension, f64>),
}

#[derive(Clone, Debug)]
pub struct RiskModel {
    pub combine: Combine,
    /// Inclusive score ranges, one per tier, tiling 1..=25.
    pub thresholds: BTreeMap<Tier, (u8, u8)>,
}

impl RiskModel {
    pub const MAX_SCORE: u8 = 25;

    /// Combines per-dimension scores. `None` when nothing was scored.
    pub fn combine(&self, scores: &BTreeMap<Dimension, u8>) -> Option<u8> {
        if scores.is_empty() {
            return None;
        }
        match &self.combine {
            Combine::Max => scores.values().copied().max(),
            Combine::WeightedMean(weights) => {
                let (sum, total) = scores.iter().fold((0.0, 0.0), |(s, t), (d, v)| {
                    let w = weights.get(d).copied().unwrap_or(1.0);
                    (s + w * f64::from(*v), t + w)
                });
                let mean = (sum / total + 0.5).floor();
                Some(mean.clamp(1.0, f64::from(Self::MAX_SCORE)) as u8)
            }
        }
    }

    /// The tier a combined score falls in. Validation guarantees one exists.
    pub fn tier(&self, score: u8) -> Tier {
        self.thresholds
            .iter()
            .find(|(_, (lo, hi))| (*lo..=*hi).contains(&score))
            .map(|(t, _)| *t)
            .unwrap_or(Tier::Critical)
    }
}

/// The authority matrix row for one tier.
#[derive(Clone, Debug)]
pub struct TierPolicy {
    pub tier: Tier,
    /// Every one of these roles must approve (quorum); any rejection ends the request.
    pub approvers: Vec<RoleId>,
    pub max_duration_days: u32,
    pub review_every_days: u32,
    pub stakeholder_review: bool,
    /// Approvers must type the request's reference to confirm.
    pub typed_confirmation: bool,
}

#[derive(Clone, Debug)]
pub struct Sla {
    pub hours: u32,
    pub escalate_to: RoleId,
}

#[derive(Clone, Debug)]
pub struct Workflow {
    pub completeness_reviewers: RoleId,
    pub stakeholders: Vec<RoleId>,
    pub revokers: Vec<RoleId>,
    pub administrators: Vec<RoleId>,
    /// Whether one person may both assess and approve the same request.
    pub assessor_may_approve: bool,
}

#[derive(Clone, Debug)]
pub struct Reminders {
    /// Days before expiry at which the owner is reminded, largest first.
    pub expiry_lead_days: Vec<u32>,
    /// When the scheduler sweeps: a 6-field cron expression with seconds, in UTC.
    /// Transitions and reminders due between two sweeps also get a timer of their
    /// own, so expiry happens at its instant whatever the schedule.
    pub schedule: String,
    /// When set, an exception whose condition is still open this many days after it
    /// became overdue (the day after its due date) is suspended until the condition is
    /// done. `None`: overdue conditions are reminded and escalated, never suspended.
    pub suspend_after_overdue_days: Option<u32>,
}

impl Reminders {
    /// Every minute, at second 0.
    pub const DEFAULT_SCHEDULE: &'static str = "0 * * * * *";

    /// Parses a schedule the way the scheduler will (seconds required, UTC).
    pub fn parse_schedule(expr: &str) -> Result<croner::Cron, croner::errors::CronError> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
    }
}

/// The whole, validated governance file.
#[derive(Clone, Debug)]
pub struct Governance {
    pub hash: GovernanceHash,
    /// The file's text, exactly as hashed (kept with the decisions it governed).
    pub source: std::sync::Arc<str>,
    pub organisation: String,
    pub slack_workspaces: Vec<String>,
    pub teams_tenants: Vec<String>,
    pub people: Vec<Person>,
    pub roles: BTreeMap<RoleId, Role>,
    pub workflow: Workflow,
    pub policies: Vec<Policy>,
    pub form: Form,
    pub assessment_rules: Vec<AssessmentRule>,
    pub risk: RiskModel,
    pub tiers: BTreeMap<Tier, TierPolicy>,
    pub reminders: Reminders,
    pub slas: BTreeMap<Stage, Sla>,
}

impl Governance {
    /// The roles whose members see the whole register (the dashboard, evidence
    /// packs): the administrators and those who may revoke.
    pub fn auditor_roles(&self) -> Vec<&RoleId> {
        self.workflow
            .administrators
            .iter()
            .chain(&self.workflow.revokers)
            .collect()
    }

    /// Whether `person` holds one of the [auditor roles](Self::auditor_roles).
    pub fn may_audit(&self, person: &PersonId) -> bool {
        self.auditor_roles().into_iter().any(|r| {
            self.role(r)
                .is_some_and(|role| role.members.contains(person))
        })
    }

    pub fn person(&self, id: &PersonId) -> Option<&Person> {
        self.people.iter().find(|p| &p.id == id)
    }

    /// A display name for anyone: the listed name, or the platform id for others.
    pub fn name_of(&self, id: &PersonId) -> String {
        self.person(id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn role(&self, id: &RoleId) -> Option<&Role> {
        self.roles.get(id)
    }

    pub fn has_role(&self, person: &PersonId, role: &RoleId) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.members.contains(person))
    }

    pub fn roles_of<'a>(&'a self, person: &'a PersonId) -> impl Iterator<Item = &'a Role> + 'a {
        self.roles
            .values()
            .filter(move |r| r.members.contains(person))
    }

    pub fn policy(&self, id: &PolicyId) -> Option<&Policy> {
        self.policies.iter().find(|p| &p.id == id)
    }

    pub fn tier(&self, tier: Tier) -> &TierPolicy {
        // Validation guarantees all four tiers exist.
        &self.tiers[&tier]
    }

    /// The person a Slack user is, if the governance file lists them.
    pub fn person_by_slack(&self, workspace: &str, user: &str) -> Option<&Person> {
        self.people.iter().find(|p| {
            p.slack
                .as_ref()
                .is_some_and(|s| s.workspace == workspace && s.user == user)
        })
    }

    /// The person a Teams user is, if the governance file lists them.
    pub fn person_by_teams(&self, tenant: &str, aad_object_id: &str) -> Option<&Person> {
        self.people.iter().find(|p| {
            p.teams.as_ref().is_some_and(|t| {
                t.tenant.eq_ignore_ascii_case(tenant)
                    && t.aad_object_id.eq_ignore_ascii_case(aad_object_id)
            })
        })
    }

    /// The roles that must assess a request, in the order the rules name them.
    pub fn required_assessors(&self, subject: &RuleSubject<'_>) -> Vec<RoleId> {
        let mut roles: Vec<RoleId> = Vec::new();
        for rule in self.assessment_rules.iter().filter(|r| r.matches(subject)) {
            for role in &rule.require {
                if !roles.contains(role) {
                    roles.push(role.clone());
                }
            }
        }
        roles
    }

    /// Whether `person` holds a role that may revoke granted exceptions.
    pub fn may_revoke(&self, person: &PersonId) -> bool {
        self.workflow
            .revokers
            .iter()
            .any(|r| self.has_role(person, r))
    }
}

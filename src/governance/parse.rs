//! Reading `governance.toml`: TOML → raw serde structs → validated [`Governance`].
//!
//! Validation collects every problem, each with the dotted path of the field at fault
//! (`roles.privacy.members[1]`) and why, so that `waiver check` can list them all at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::*;

/// One problem in a governance file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `tiers.high.approvers[0]`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path} has {} problem(s):\n{}", .errors.len(), .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        errors: Vec<FieldError>,
    },
}

/// Reads and validates a governance file.
pub fn load(path: &Path) -> Result<Governance, LoadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| LoadError::Syntax {
        path: shown.clone(),
        message: "the file is not UTF-8".into(),
    })?;
    parse(&text).map_err(|e| match e {
        ParseError::Syntax(message) => LoadError::Syntax {
            path: shown,
            message,
        },
        ParseError::Invalid(errors) => LoadError::Invalid {
            path: shown,
            errors,
        },
    })
}

#[derive(Debug)]
pub enum ParseError {
    Syntax(String),
    Invalid(Vec<FieldError>),
}

/// Parses and validates governance TOML text.
pub fn parse(text: &str) -> Result<Governance, ParseError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    let hash = GovernanceHash::new(hex::encode(Sha256::digest(text.as_bytes())));
    let mut gov = Validator::default().run(raw, hash)?;
    gov.source = text.into();
    Ok(gov)
}

// ---------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    organisation: RawOrganisation,
    #[serde(default)]
    platforms: RawPlatforms,
    #[serde(default)]
    people: Vec<RawPerson>,
    #[serde(default)]
    roles: BTreeMap<String, RawRole>,
    workflow: RawWorkflow,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    form: RawForm,
    #[serde(default)]
    assessment_rules: Vec<RawRule>,
    risk: RawRisk,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    reminders: RawReminders,
    #[serde(default)]
    sla: BTreeMap<String, RawSla>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlatforms {
    #[serde(default)]
    slack_workspaces: Vec<String>,
    #[serde(default)]
    teams_tenants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    id: String,
    name: String,
    email: Option<String>,
    slack: Option<RawSlack>,
    teams: Option<RawTeams>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    user: String,
    workspace: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeams {
    aad_object_id: String,
    tenant: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    name: String,
    #[serde(default)]
    members: Vec<String>,
    dimension: Option<String>,
    slack_channel: Option<String>,
    teams_channel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    completeness_reviewers: String,
    #[serde(default)]
    stakeholders: Vec<String>,
    #[serde(default)]
    revokers: Vec<String>,
    #[serde(default)]
    administrators: Vec<String>,
    #[serde(default)]
    assessor_may_approve: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    id: String,
    title: String,
    version: String,
    #[serde(default)]
    frameworks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForm {
    #[serde(default)]
    exception_types: Vec<RawOption>,
    #[serde(default)]
    data_categories: Vec<RawOption>,
    #[serde(default)]
    regions: Vec<RawOption>,
    #[serde(default)]
    departments: Vec<RawDepartment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    id: String,
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepartment {
    id: String,
    label: String,
    slack_channel: Option<String>,
    teams_channel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    when: RawWhen,
    require: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    exception_types: Vec<String>,
    #[serde(default)]
    data_categories: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    departments: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    combine: String,
    #[serde(default)]
    weights: BTreeMap<String, f64>,
    thresholds: BTreeMap<String, [i64; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    #[serde(default)]
    approvers: Vec<String>,
    max_duration_days: i64,
    review_every_days: i64,
    #[serde(default)]
    stakeholder_review: bool,
    #[serde(default)]
    typed_confirmation: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReminders {
    #[serde(default = "default_lead_days")]
    expiry_lead_days: Vec<i64>,
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default)]
    suspend_after_overdue_days: Option<i64>,
}

impl Default for RawReminders {
    fn default() -> Self {
        Self {
            expiry_lead_days: default_lead_days(),
            schedule: default_schedule(),
            suspend_after_overdue_days: None,
        }
    }
}

fn default_schedule() -> String {
    crate::governance::Reminders::DEFAULT_SCHEDULE.into()
}

fn default_lead_days() -> Vec<i64> {
    vec![30, 7, 1]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    hours: i64,
    escalate_to: String,
}

// ---------------------------------------------------------------------------------
// Validation.

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

/// Ids are lowercase words: letters, digits, `.`, `_`, `-`; starting with a letter or digit.
fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && s.len() <= 64
}

/// Slack ids: a prefix letter then uppercase letters and digits.
fn is_slack_id(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| prefixes.contains(&c))
        && s.len() >= 3
        && s.len() <= 24
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// A GUID as Azure AD writes them: 8-4-4-4-12 hex digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A Teams channel conversation id, e.g. `19:abc…@thread.tacv2`.
fn is_teams_channel(s: &str) -> bool {
    s.starts_with("19:")
        && (s.ends_with("@thread.tacv2") || s.ends_with("@thread.skype"))
        && !s.contains(char::is_whitespace)
}

impl Validator {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.err(field, "must not be empty");
        }
    }

    fn id(&mut self, field: &str, value: &str) {
        if !is_id(value) {
            self.err(
                field,
                format!(
                    "{value:?} is not a valid id (lowercase letters, digits, '.', '_' or '-', at most 64)"
                ),
            );
        }
    }

    fn positive(&mut self, field: &str, value: i64, what: &str) -> u32 {
        if value <= 0 {
            self.err(field, format!("{what} must be at least 1 (got {value})"));
            0
        } else if value > 36_500 {
            self.err(field, format!("{what} must be at most 36500 (got {value})"));
            0
        } else {
            value as u32
        }
    }

    fn channels(
        &mut self,
        at: &str,
        slack: Option<String>,
        teams: Option<String>,
        slack_on: bool,
        teams_on: bool,
    ) -> Channels {
        if let Some(c) = &slack {
            if !is_slack_id(c, &['C', 'G']) {
                self.err(
                    format!("{at}.slack_channel"),
                    format!("{c:?} is not a Slack channel id (like C0123ABCD)"),
                );
            } else if !slack_on {
                self.err(
                    format!("{at}.slack_channel"),
                    "is set but platforms.slack_workspaces is empty",
                );
            }
        }
        if let Some(c) = &teams {
            if !is_teams_channel(c) {
                self.err(
                    format!("{at}.teams_channel"),
                    format!(
                        "{c:?} is not a Teams channel conversation id (like 19:…@thread.tacv2)"
                    ),
                );
            } else if !teams_on {
                self.err(
                    format!("{at}.teams_channel"),
                    "is set but platforms.teams_tenants is empty",
                );
            }
        }
        Channels { slack, teams }
    }

    /// Checks a list of unique, known ids and returns them typed.
    fn options(&mut self, at: &str, raw: Vec<RawOption>) -> Vec<FormOption> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (i, o) in raw.into_iter().enumerate() {
            let field = format!("{at}[{i}]");
            self.id(&format!("{field}.id"), &o.id);
            self.non_empty(&format!("{field}.label"), &o.label);
            if let Some(first) = seen.insert(o.id.clone(), i) {
                self.err(
                    format!("{field}.id"),
                    format!("duplicate id {:?} (first at {at}[{first}])", o.id),
                );
            }
            out.push(FormOption {
                id: OptionId::new(o.id),
                label: o.label,
            });
        }
        if out.is_empty() {
            self.err(at, "must list at least one option");
        }
        out
    }

    fn known_options(
        &mut self,
        at: &str,
        values: Vec<String>,
        known: &[&OptionId],
    ) -> Vec<OptionId> {
        let mut out = Vec::new();
        for (i, v) in values.into_iter().enumerate() {
            if !known.iter().any(|k| k.as_str() == v) {
                self.err(format!("{at}[{i}]"), format!("unknown option {v:?}"));
            }
            out.push(OptionId::new(v));
        }
        out
    }

    /// Resolves a role reference; `roles` holds only the roles that exist.
    fn role_ref(&mut self, field: &str, id: &str, roles: &BTreeMap<RoleId, Role>) -> RoleId {
        let role = RoleId::new(id);
        match roles.get(&role) {
            None => self.err(field, format!("unknown role {id:?}")),
            Some(r) if r.members.is_empty() => {
                self.err(field, format!("role {id:?} has no members"))
            }
            Some(_) => {}
        }
        role
    }

    fn run(mut self, raw: RawFile, hash: GovernanceHash) -> Result<Governance, ParseError> {
        self.non_empty("organisation.name", &raw.organisation.name);

        // Platforms.
        for (i, w) in raw.platforms.slack_workspaces.iter().enumerate() {
            if !is_slack_id(w, &['T', 'E']) {
                self.err(
                    format!("platforms.slack_workspaces[{i}]"),
                    format!("{w:?} is not a Slack workspace id (like T0123ABCD)"),
                );
            }
        }
        for (i, t) in raw.platforms.teams_tenants.iter().enumerate() {
            if !is_guid(t) {
                self.err(
                    format!("platforms.teams_tenants[{i}]"),
                    format!("{t:?} is not a tenant id (a GUID)"),
                );
            }
        }
        if raw.platforms.slack_workspaces.is_empty() && raw.platforms.teams_tenants.is_empty() {
            self.err(
                "platforms",
                "list at least one Slack workspace or Teams tenant",
            );
        }
        let slack_on = !raw.platforms.slack_workspaces.is_empty();
        let teams_on = !raw.platforms.teams_tenants.is_empty();

        // People.
        let mut people = Vec::new();
        let mut ids = HashMap::new();
        let mut slack_ids = HashMap::new();
        let mut teams_ids = HashMap::new();
        for (i, p) in raw.people.into_iter().enumerate() {
            let at = format!("people[{i}]");
            self.id(&format!("{at}.id"), &p.id);
            self.non_empty(&format!("{at}.name"), &p.name);
            if let Some(first) = ids.insert(p.id.clone(), i) {
                self.err(
                    format!("{at}.id"),
                    format!("duplicate person id {:?} (first at people[{first}])", p.id),
                );
            }
            if let Some(email) = &p.email
                && (!email.contains('@') || email.contains(char::is_whitespace))
            {
                self.err(
                    format!("{at}.email"),
                    format!("{email:?} is not an email address"),
                );
            }
            let slack = p.slack.map(|s| {
                if !is_slack_id(&s.user, &['U', 'W']) {
                    self.err(
                        format!("{at}.slack.user"),
                        format!("{:?} is not a Slack user id (like U0123ABCD)", s.user),
                    );
                }
                if !raw.platforms.slack_workspaces.contains(&s.workspace) {
                    self.err(
                        format!("{at}.slack.workspace"),
                        format!("{:?} is not one of platforms.slack_workspaces", s.workspace),
                    );
                }
                if let Some(first) = slack_ids.insert((s.workspace.clone(), s.user.clone()), i) {
                    self.err(
                        format!("{at}.slack.user"),
                        format!("Slack user {} is already people[{first}]", s.user),
                    );
                }
                SlackIdentity {
                    workspace: s.workspace,
                    user: s.user,
                }
            });
            let teams = p.teams.map(|t| {
                if !is_guid(&t.aad_object_id) {
                    self.err(
                        format!("{at}.teams.aad_object_id"),
                        format!("{:?} is not an AAD object id (a GUID)", t.aad_object_id),
                    );
                }
                if !raw
                    .platforms
                    .teams_tenants
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&t.tenant))
                {
                    self.err(
                        format!("{at}.teams.tenant"),
                        format!("{:?} is not one of platforms.teams_tenants", t.tenant),
                    );
                }
                let key = (
                    t.tenant.to_ascii_lowercase(),
                    t.aad_object_id.to_ascii_lowercase(),
                );
                if let Some(first) = teams_ids.insert(key, i) {
                    self.err(
                        format!("{at}.teams.aad_object_id"),
                        format!("Teams user {} is already people[{first}]", t.aad_object_id),
                    );
                }
                TeamsIdentity {
                    tenant: t.tenant,
                    aad_object_id: t.aad_object_id,
                }
            });
            if slack.is_none() && teams.is_none() {
                self.err(
                    at.clone(),
                    "has neither a slack nor a teams identity, so they could never act",
                );
            }
            people.push(Person {
                id: PersonId::new(p.id),
                name: p.name,
                email: p.email,
                slack,
                teams,
            });
        }
        if people.is_empty() {
            self.err("people", "must list at least one person");
        }

        // Roles.
        let mut roles = BTreeMap::new();
        for (id, r) in raw.roles {
            let at = format!("roles.{id}");
            self.id(&at, &id);
            self.non_empty(&format!("{at}.name"), &r.name);
            if r.members.is_empty() {
                self.err(format!("{at}.members"), "role has no members");
            }
            let mut members: Vec<PersonId> = Vec::new();
            for (i, m) in r.members.into_iter().enumerate() {
                let pid = PersonId::new(m.clone());
                if !people.iter().any(|p| p.id == pid) {
                    self.err(
                        format!("{at}.members[{i}]"),
                        format!("unknown person {m:?}"),
                    );
                } else if members.contains(&pid) {
                    self.err(
                        format!("{at}.members[{i}]"),
                        format!("{m:?} is listed twice"),
                    );
                }
                members.push(pid);
            }
            let dimension = r.dimension.as_deref().and_then(|d| {
                let parsed = Dimension::parse(d);
                if parsed.is_none() {
                    self.err(
                        format!("{at}.dimension"),
                        format!(
                            "unknown dimension {d:?} (expected privacy, security, ethical or regulatory)"
                        ),
                    );
                }
                parsed
            });
            let channels = self.channels(&at, r.slack_channel, r.teams_channel, slack_on, teams_on);
            roles.insert(
                RoleId::new(id.clone()),
                Role {
                    id: RoleId::new(id),
                    name: r.name,
                    members,
                    dimension,
                    channels,
                },
            );
        }

        // Every role that receives cards needs somewhere to receive them.
        let mut card_roles: BTreeSet<String> = BTreeSet::new();

        // Workflow.
        let w = raw.workflow;
        let completeness_reviewers = self.role_ref(
            "workflow.completeness_reviewers",
            &w.completeness_reviewers,
            &roles,
        );
        card_roles.insert(w.completeness_reviewers.clone());
        let mut list = |v: &mut Self, at: &str, ids: Vec<String>, cards: bool| -> Vec<RoleId> {
            ids.into_iter()
                .enumerate()
                .map(|(i, id)| {
                    if cards {
                        card_roles.insert(id.clone());
                    }
                    v.role_ref(&format!("{at}[{i}]"), &id, &roles)
                })
                .collect()
        };
        let stakeholders = list(&mut self, "workflow.stakeholders", w.stakeholders, true);
        let revokers = list(&mut self, "workflow.revokers", w.revokers, false);
        let administrators = list(
            &mut self,
            "workflow.administrators",
            w.administrators,
            false,
        );
        if revokers.is_empty() {
            self.err(
                "workflow.revokers",
                "name at least one role that may revoke exceptions",
            );
        }
        let workflow = Workflow {
            completeness_reviewers,
            stakeholders,
            revokers,
            administrators,
            assessor_may_approve: w.assessor_may_approve,
        };

        // Policies.
        let mut policies = Vec::new();
        let mut policy_ids = HashMap::new();
        for (i, p) in raw.policies.into_iter().enumerate() {
            let at = format!("policies[{i}]");
            self.id(&format!("{at}.id"), &p.id);
            self.non_empty(&format!("{at}.title"), &p.title);
            self.non_empty(&format!("{at}.version"), &p.version);
            if let Some(first) = policy_ids.insert(p.id.clone(), i) {
                self.err(
                    format!("{at}.id"),
                    format!(
                        "duplicate policy id {:?} (first at policies[{first}])",
                        p.id
                    ),
                );
            }
            policies.push(Policy {
                id: PolicyId::new(p.id),
                title: p.title,
                version: p.version,
                frameworks: p.frameworks,
            });
        }
        if policies.is_empty() {
            self.err(
                "policies",
                "the policy catalogue must list at least one policy",
            );
        }

        // Form.
        let exception_types = self.options("form.exception_types", raw.form.exception_types);
        let data_categories = self.options("form.data_categories", raw.form.data_categories);
        let regions = self.options("form.regions", raw.form.regions);
        let mut departments = Vec::new();
        let mut dept_ids = HashMap::new();
        for (i, d) in raw.form.departments.into_iter().enumerate() {
            let at = format!("form.departments[{i}]");
            self.id(&format!("{at}.id"), &d.id);
            self.non_empty(&format!("{at}.label"), &d.label);
            if let Some(first) = dept_ids.insert(d.id.clone(), i) {
                self.err(
                    format!("{at}.id"),
                    format!(
                        "duplicate id {:?} (first at form.departments[{first}])",
                        d.id
                    ),
                );
            }
            let channels = self.channels(&at, d.slack_channel, d.teams_channel, slack_on, teams_on);
            departments.push(Department {
                id: OptionId::new(d.id),
                label: d.label,
                channels,
            });
        }
        if departments.is_empty() {
            self.err("form.departments", "must list at least one option");
        }
        let form = Form {
            exception_types,
            data_categories,
            regions,
            departments,
        };

        // Assessment rules.
        let mut rules = Vec::new();
        for (i, r) in raw.assessment_rules.into_iter().enumerate() {
            let at = format!("assessment_rules[{i}]");
            self.non_empty(&format!("{at}.name"), &r.name);
            let types: Vec<&OptionId> = form.exception_types.iter().map(|o| &o.id).collect();
            let cats: Vec<&OptionId> = form.data_categories.iter().map(|o| &o.id).collect();
            let regs: Vec<&OptionId> = form.regions.iter().map(|o| &o.id).collect();
            let deps: Vec<&OptionId> = form.departments.iter().map(|o| &o.id).collect();
            let exception_types = self.known_options(
                &format!("{at}.when.exception_types"),
                r.when.exception_types,
                &types,
            );
            let data_categories = self.known_options(
                &format!("{at}.when.data_categories"),
                r.when.data_categories,
                &cats,
            );
            let regions = self.known_options(&format!("{at}.when.regions"), r.when.regions, &regs);
            let departments =
                self.known_options(&format!("{at}.when.departments"), r.when.departments, &deps);
            if r.require.is_empty() {
                self.err(format!("{at}.require"), "must name at least one role");
            }
            let mut require = Vec::new();
            for (j, id) in r.require.into_iter().enumerate() {
                let field = format!("{at}.require[{j}]");
                let role = self.role_ref(&field, &id, &roles);
                if roles.get(&role).is_some_and(|r| r.dimension.is_none()) {
                    self.err(
                        field,
                        format!("role {id:?} assesses requests but has no risk dimension"),
                    );
                }
                card_roles.insert(id);
                require.push(role);
            }
            rules.push(AssessmentRule {
                name: r.name,
                exception_types,
                data_categories,
                regions,
                departments,
                require,
            });
        }
        if !rules.iter().any(AssessmentRule::is_unconditional) {
            self.err(
                "assessment_rules",
                "add a rule without conditions, so that every request is assessed by at least one role",
            );
        }

        // Risk model.
        let combine = match raw.risk.combine.as_str() {
            "max" => {
                if !raw.risk.weights.is_empty() {
                    self.err(
                        "risk.weights",
                        "weights only apply when combine = \"weighted_mean\"",
                    );
                }
                Combine::Max
            }
            "weighted_mean" => {
                let mut weights = BTreeMap::new();
                for (name, w) in raw.risk.weights {
                    match Dimension::parse(&name) {
                        None => self.err(format!("risk.weights.{name}"), "unknown dimension"),
                        Some(_) if !(w.is_finite() && w > 0.0) => self.err(
                            format!("risk.weights.{name}"),
                            format!("weight must be a positive number (got {w})"),
                        ),
                        Some(d) => {
                            weights.insert(d, w);
                        }
                    }
                }
                for d in Dimension::ALL {
                    if !weights.contains_key(&d) {
                        self.err(
                            format!("risk.weights.{}", d.as_str()),
                            "missing: weighted_mean needs a weight for every dimension",
                        );
                    }
                }
                Combine::WeightedMean(weights)
            }
            other => {
                self.err(
                    "risk.combine",
                    format!("unknown method {other:?} (expected \"max\" or \"weighted_mean\")"),
                );
                Combine::Max
            }
        };
        let mut thresholds = BTreeMap::new();
        for (name, [lo, hi]) in raw.risk.thresholds {
            let at = format!("risk.thresholds.{name}");
            let Some(tier) = Tier::parse(&name) else {
                self.err(at, "unknown tier (expected low, medium, high or critical)");
                continue;
            };
            if lo < 1 || hi > i64::from(RiskModel::MAX_SCORE) || lo > hi {
                self.err(
                    at,
                    format!("[{lo}, {hi}] is not a range within 1..=25 (low end first)"),
                );
                continue;
            }
            thresholds.insert(tier, (lo as u8, hi as u8));
        }
        self.tile_thresholds(&thresholds);

        // Authority matrix.
        let mut tiers = BTreeMap::new();
        for (name, t) in raw.tiers {
            let at = format!("tiers.{name}");
            let Some(tier) = Tier::parse(&name) else {
                self.err(at, "unknown tier (expected low, medium, high or critical)");
                continue;
            };
            if t.approvers.is_empty() {
                self.err(format!("{at}.approvers"), "tier has no approvers");
            }
            let approvers: Vec<RoleId> = t
                .approvers
                .into_iter()
                .enumerate()
                .map(|(i, id)| {
                    card_roles.insert(id.clone());
                    self.role_ref(&format!("{at}.approvers[{i}]"), &id, &roles)
                })
                .collect();
            let mut seen = BTreeSet::new();
            for (i, a) in approvers.iter().enumerate() {
                if !seen.insert(a) {
                    self.err(
                        format!("{at}.approvers[{i}]"),
                        format!("role {a} is listed twice"),
                    );
                }
            }
            self.quorum_reachable(&at, &approvers, &roles);
            let max_duration_days = self.positive(
                &format!("{at}.max_duration_days"),
                t.max_duration_days,
                "duration",
            );
            let review_every_days = self.positive(
                &format!("{at}.review_every_days"),
                t.review_every_days,
                "cadence",
            );
            tiers.insert(
                tier,
                TierPolicy {
                    tier,
                    approvers,
                    max_duration_days,
                    review_every_days,
                    stakeholder_review: t.stakeholder_review,
                    typed_confirmation: t.typed_confirmation,
                },
            );
        }
        for tier in Tier::ALL {
            if !tiers.contains_key(&tier) {
                self.err(
                    format!("tiers.{tier}"),
                    "missing: the authority matrix needs every tier",
                );
            }
        }
        if tiers.values().any(|t: &TierPolicy| t.stakeholder_review)
            && workflow.stakeholders.is_empty()
        {
            self.err(
                "workflow.stakeholders",
                "a tier asks for stakeholder review but no stakeholder roles are named",
            );
        }

        // Reminders.
        let mut expiry_lead_days = Vec::new();
        for (i, d) in raw.reminders.expiry_lead_days.into_iter().enumerate() {
            let at = format!("reminders.expiry_lead_days[{i}]");
            let d = self.positive(&at, d, "lead time");
            if expiry_lead_days.contains(&d) {
                self.err(at, format!("{d} is listed twice"));
            }
            expiry_lead_days.push(d);
        }
        expiry_lead_days.sort_unstable_by(|a, b| b.cmp(a));
        let schedule = raw.reminders.schedule.trim().to_string();
        if let Err(e) = crate::governance::Reminders::parse_schedule(&schedule) {
            self.err(
                "reminders.schedule",
                format!(
                    "\"{schedule}\" is not a cron schedule with seconds \
                     (sec min hour day-of-month month day-of-week, UTC): {e}"
                ),
            );
        }
        let suspend_after_overdue_days = match raw.reminders.suspend_after_overdue_days {
            Some(d) if !(0..=365).contains(&d) => {
                self.err(
                    "reminders.suspend_after_overdue_days",
                    format!("must be between 0 and 365 days (got {d})"),
                );
                None
            }
            d => d.map(|d| d as u32),
        };

        // SLAs.
        let mut slas = BTreeMap::new();
        for (name, s) in raw.sla {
            let at = format!("sla.{name}");
            let Some(stage) = Stage::ALL.into_iter().find(|st| st.as_str() == name) else {
                self.err(
                    at,
                    "unknown stage (expected completeness, assessment, stakeholder_review or decision)",
                );
                continue;
            };
            let hours = self.positive(&format!("{at}.hours"), s.hours, "SLA");
            card_roles.insert(s.escalate_to.clone());
            let escalate_to = self.role_ref(&format!("{at}.escalate_to"), &s.escalate_to, &roles);
            slas.insert(stage, Sla { hours, escalate_to });
        }

        for id in card_roles {
            if let Some(role) = roles.get(&RoleId::new(id.clone()))
                && role.channels == Channels::default()
            {
                self.err(
                    format!("roles.{id}"),
                    "receives cards but has neither slack_channel nor teams_channel",
                );
            }
        }

        if !self.errors.is_empty() {
            return Err(ParseError::Invalid(self.errors));
        }
        Ok(Governance {
            hash,
            source: "".into(),
            organisation: raw.organisation.name,
            slack_workspaces: raw.platforms.slack_workspaces,
            teams_tenants: raw.platforms.teams_tenants,
            people,
            roles,
            workflow,
            policies,
            form,
            assessment_rules: rules,
            risk: RiskModel {
                combine,
                thresholds,
            },
            tiers,
            reminders: Reminders {
                expiry_lead_days,
                schedule,
                suspend_after_overdue_days,
            },
            slas,
        })
    }

    /// The tiers' score ranges must be ordered low → critical and cover 1..=25 with
    /// neither gap nor overlap, so every score has exactly one tier.
    fn tile_thresholds(&mut self, thresholds: &BTreeMap<Tier, (u8, u8)>) {
        for tier in Tier::ALL {
            if !thresholds.contains_key(&tier) {
                self.err(
                    format!("risk.thresholds.{tier}"),
                    "missing: every tier needs a score range",
                );
            }
        }
        let mut expected_next = 1u8;
        for (tier, (lo, hi)) in thresholds {
            let at = format!("risk.thresholds.{tier}");
            if *lo > expected_next {
                self.err(
                    at,
                    format!("gap: scores {expected_next}..={} belong to no tier", lo - 1),
                );
            } else if *lo < expected_next {
                self.err(
                    at,
                    format!(
                        "overlap: scores {lo}..={} already belong to a lower tier",
                        (expected_next - 1).min(*hi)
                    ),
                );
            }
            expected_next = expected_next.max(hi.saturating_add(1));
        }
        if thresholds.len() == Tier::ALL.len() && expected_next <= RiskModel::MAX_SCORE {
            self.err(
                "risk.thresholds.critical",
                format!("gap: scores {expected_next}..=25 belong to no tier"),
            );
        }
    }

    /// Each approver role must be filled by a different person (one vote per person),
    /// so the quorum is reachable only if the roles have distinct representatives.
    fn quorum_reachable(&mut self, at: &str, approvers: &[RoleId], roles: &BTreeMap<RoleId, Role>) {
        let members: Vec<&[PersonId]> = approvers
            .iter()
            .filter_map(|r| roles.get(r).map(|r| r.members.as_slice()))
            .collect();
        if members.len() != approvers.len() {
            return; // unknown roles are reported already
        }
        // Kuhn's augmenting paths: tiny inputs (a handful of roles).
        fn assign<'a>(
            role: usize,
            members: &[&'a [PersonId]],
            taken: &mut HashMap<&'a PersonId, usize>,
            visited: &mut BTreeSet<&'a PersonId>,
        ) -> bool {
            for person in members[role] {
                if !visited.insert(person) {
                    continue;
                }
                let free = match taken.get(person) {
                    None => true,
                    Some(&other) => assign(other, members, taken, visited),
                };
                if free {
                    taken.insert(person, role);
                    return true;
                }
            }
            false
        }
        let mut taken = HashMap::new();
        for role in 0..members.len() {
            if !assign(role, &members, &mut taken, &mut BTreeSet::new()) {
                self.err(
                    format!("{at}.approvers"),
                    format!(
                        "quorum can never be reached: roles {} need {} different people (one vote each) but fewer hold them",
                        approvers.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                        approvers.len()
                    ),
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_platform_ids_and_guids_are_recognised() {
        assert!(is_id("privacy-office") && is_id("j.doe") && !is_id("Privacy") && !is_id(""));
        assert!(is_slack_id("U0123ABCD", &['U', 'W']) && !is_slack_id("u0123", &['U']));
        assert!(!is_slack_id("C01 23", &['C']));
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf86f141af91ab2d7cd011db47"));
        assert!(
            is_teams_channel("19:abc123@thread.tacv2") && !is_teams_channel("abc@thread.tacv2")
        );
    }
}

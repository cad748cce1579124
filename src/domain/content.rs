//! The request form: what an employee files, parsed and validated once into
//! [`RequestContent`]. Errors are per field, so chat surfaces can show them inside
//! the form.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::governance::{Governance, OptionId, PersonId, PolicyId, RuleSubject};

/// The inputs a person fills in: the intake form's fields, then the inputs of the
/// other actions (a send-back's questions, an assessment, a decision's terms and
/// conditions, a reason, a note). Validation errors name the input they are about, so
/// every surface can show them next to it; their ids are the form field ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Title,
    Policy,
    ExceptionType,
    AiSystem,
    Justification,
    ScopeDepartments,
    ScopeUsers,
    ScopeSystems,
    DataCategories,
    Regions,
    Department,
    Start,
    End,
    Controls,
    BusinessOwner,
    /// A completeness reviewer's questions.
    Questions,
    Findings,
    Likelihood,
    Impact,
    Mitigations,
    Recommendation,
    /// Stakeholder feedback's comment.
    Comment,
    /// A decision's expiry (its start is [`Field::Start`]).
    Expiry,
    MonitoringOwner,
    /// The typed confirmation of a high-tier decision.
    Confirm,
    Reason,
    /// An attestation's note.
    Note,
    /// Part of a decision's condition `n` (from 1).
    Condition(u8, ConditionPart),
}

/// The parts of a condition as a decision states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionPart {
    Text,
    Owner,
    Due,
}

impl ConditionPart {
    const ALL: [ConditionPart; 3] = [
        ConditionPart::Text,
        ConditionPart::Owner,
        ConditionPart::Due,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ConditionPart::Text => "text",
            ConditionPart::Owner => "owner",
            ConditionPart::Due => "due",
        }
    }
}

impl Field {
    /// The intake form's fields, in form order.
    pub const INTAKE: [Field; 15] = [
        Field::Title,
        Field::Policy,
        Field::ExceptionType,
        Field::AiSystem,
        Field::Justification,
        Field::ScopeDepartments,
        Field::ScopeUsers,
        Field::ScopeSystems,
        Field::DataCategories,
        Field::Regions,
        Field::Department,
        Field::Start,
        Field::End,
        Field::Controls,
        Field::BusinessOwner,
    ];

    /// Every input but the condition parts.
    pub(crate) const FIXED: [Field; 27] = [
        Field::Title,
        Field::Policy,
        Field::ExceptionType,
        Field::AiSystem,
        Field::Justification,
        Field::ScopeDepartments,
        Field::ScopeUsers,
        Field::ScopeSystems,
        Field::DataCategories,
        Field::Regions,
        Field::Department,
        Field::Start,
        Field::End,
        Field::Controls,
        Field::BusinessOwner,
        Field::Questions,
        Field::Findings,
        Field::Likelihood,
        Field::Impact,
        Field::Mitigations,
        Field::Recommendation,
        Field::Comment,
        Field::Expiry,
        Field::MonitoringOwner,
        Field::Confirm,
        Field::Reason,
        Field::Note,
    ];

    fn fixed_id(self) -> Option<&'static str> {
        Some(match self {
            Field::Title => "title",
            Field::Policy => "policy",
            Field::ExceptionType => "exception_type",
            Field::AiSystem => "ai_system",
            Field::Justification => "justification",
            Field::ScopeDepartments => "scope_departments",
            Field::ScopeUsers => "scope_users",
            Field::ScopeSystems => "scope_systems",
            Field::DataCategories => "data_categories",
            Field::Regions => "regions",
            Field::Department => "department",
            Field::Start => "start",
            Field::End => "end",
            Field::Controls => "controls",
            Field::BusinessOwner => "business_owner",
            Field::Questions => "questions",
            Field::Findings => "findings",
            Field::Likelihood => "likelihood",
            Field::Impact => "impact",
            Field::Mitigations => "mitigations",
            Field::Recommendation => "recommendation",
            Field::Comment => "comment",
            Field::Expiry => "expiry",
            Field::MonitoringOwner => "owner",
            Field::Confirm => "confirm",
            Field::Reason => "reason",
            Field::Note => "note",
            Field::Condition(..) => return None,
        })
    }

    /// The id surfaces use for the input (a Slack `block_id`, a Teams input id):
    /// `title`, `expiry`, `c2_due`, ….
    pub fn id(self) -> String {
        match self {
            Field::Condition(n, part) => format!("c{n}_{}", part.as_str()),
            fixed => fixed.fixed_id().unwrap_or_default().to_string(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if let Some(f) = Self::FIXED.into_iter().find(|f| f.fixed_id() == Some(s)) {
            return Some(f);
        }
        let (n, part) = s.strip_prefix('c')?.split_once('_')?;
        let n: u8 = n.parse().ok().filter(|n| *n >= 1)?;
        let part = ConditionPart::ALL
            .into_iter()
            .find(|p| p.as_str() == part)?;
        Some(Field::Condition(n, part))
    }
}

/// Per-field messages, in form order.
pub type FieldErrors = BTreeMap<Field, String>;

/// The form as submitted: unvalidated strings and option ids.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FormInput {
    pub title: String,
    pub policy: String,
    pub exception_type: String,
    pub ai_system: String,
    pub justification: String,
    pub scope_departments: Vec<String>,
    pub scope_users: String,
    pub scope_systems: String,
    pub data_categories: Vec<String>,
    pub regions: Vec<String>,
    pub department: String,
    /// `YYYY-MM-DD`
    pub start: String,
    /// `YYYY-MM-DD`
    pub end: String,
    pub controls: String,
    /// Already resolved to a person by the chat surface (it knows the platform).
    pub business_owner: Option<PersonId>,
}

/// One version of a request's content, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestContent {
    pub title: String,
    pub policy: PolicyId,
    /// The catalogue version of the policy when this version was filed.
    pub policy_version: String,
    pub exception_type: OptionId,
    pub ai_system: String,
    pub justification: String,
    pub scope_departments: Vec<OptionId>,
    pub scope_users: String,
    pub scope_systems: String,
    pub data_categories: Vec<OptionId>,
    pub regions: Vec<OptionId>,
    pub department: OptionId,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub controls: String,
    pub business_owner: PersonId,
}

const SHORT: usize = 150;
const LONG: usize = 3000;

/// Bidirectional-override and isolate controls let text display differently from what
/// it says (Trojan Source); they are refused rather than silently dropped.
fn has_hidden_controls(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
            || (c.is_control() && c != '\n' && c != '\t')
    })
}

/// Checks free text: trims, enforces presence and length, refuses hidden controls.
pub(crate) fn text(
    errors: &mut FieldErrors,
    field: Field,
    value: &str,
    required: bool,
    max: usize,
) -> String {
    let value = value.trim();
    if required && value.is_empty() {
        errors.insert(field, "This field is required.".into());
    } else if value.chars().count() > max {
        errors.insert(field, format!("Keep this under {max} characters."));
    } else if has_hidden_controls(value) {
        errors.insert(
            field,
            "Remove invisible control characters (such as text-direction overrides).".into(),
        );
    }
    value.to_string()
}

pub(crate) fn date(errors: &mut FieldErrors, field: Field, value: &str) -> Option<NaiveDate> {
    let value = value.trim();
    if value.is_empty() {
        errors.insert(field, "Pick a date.".into());
        return None;
    }
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            errors.insert(field, format!("{value:?} is not a date (YYYY-MM-DD)."));
            None
        }
    }
}

impl RequestContent {
    /// Validates a submitted form against the governance catalogue. `today` is the
    /// filing date (UTC): a start in the past is refused.
    pub fn parse(
        input: &FormInput,
        gov: &Governance,
        today: NaiveDate,
    ) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        let title = text(&mut e, Field::Title, &input.title, true, SHORT);
        let ai_system = text(&mut e, Field::AiSystem, &input.ai_system, true, SHORT);
        let justification = text(
            &mut e,
            Field::Justification,
            &input.justification,
            true,
            LONG,
        );
        let scope_users = text(&mut e, Field::ScopeUsers, &input.scope_users, true, SHORT);
        let scope_systems = text(
            &mut e,
            Field::ScopeSystems,
            &input.scope_systems,
            false,
            SHORT,
        );
        let controls = text(&mut e, Field::Controls, &input.controls, true, LONG);

        let policy = gov.policy(&PolicyId::new(input.policy.trim()));
        if policy.is_none() {
            e.insert(Field::Policy, "Choose a policy from the catalogue.".into());
        }
        let one = |e: &mut FieldErrors, field: Field, value: &str, known: bool| {
            if !known {
                e.insert(field, "Choose one of the listed options.".into());
            }
            OptionId::new(value.trim())
        };
        let exception_type = one(
            &mut e,
            Field::ExceptionType,
            &input.exception_type,
            gov.form
                .exception_type(&OptionId::new(input.exception_type.trim()))
                .is_some(),
        );
        let department = one(
            &mut e,
            Field::Department,
            &input.department,
            gov.form
                .department(&OptionId::new(input.department.trim()))
                .is_some(),
        );
        let many = |e: &mut FieldErrors,
                    field: Field,
                    values: &[String],
                    known: &dyn Fn(&OptionId) -> bool| {
            let mut out: Vec<OptionId> = Vec::new();
            for v in values {
                let id = OptionId::new(v.trim());
                if !known(&id) {
                    e.insert(field, format!("{v:?} is not one of the listed options."));
                } else if !out.contains(&id) {
                    out.push(id);
                }
            }
            if out.is_empty() && !e.contains_key(&field) {
                e.insert(field, "Choose at least one.".into());
            }
            out
        };
        let scope_departments = many(
            &mut e,
            Field::ScopeDepartments,
            &input.scope_departments,
            &|id| gov.form.department(id).is_some(),
        );
        let data_categories = many(
            &mut e,
            Field::DataCategories,
            &input.data_categories,
            &|id| gov.form.data_category(id).is_some(),
        );
        let regions = many(&mut e, Field::Regions, &input.regions, &|id| {
            gov.form.region(id).is_some()
        });

        let start = date(&mut e, Field::Start, &input.start);
        let end = date(&mut e, Field::End, &input.end);
        if let Some(s) = start
            && s < today
        {
            e.insert(
                Field::Start,
                format!("The start cannot be in the past (today is {today})."),
            );
        }
        if let (Some(s), Some(en)) = (start, end)
            && en <= s
        {
            e.insert(Field::End, "The end must be after the start.".into());
        }
        let business_owner = match &input.business_owner {
            Some(p) => Some(p.clone()),
            None => {
                e.insert(Field::BusinessOwner, "Name the business owner.".into());
                None
            }
        };

        if !e.is_empty() {
            return Err(e);
        }
        let policy = policy.expect("checked above");
        Ok(Self {
            title,
            policy: policy.id.clone(),
            policy_version: policy.version.clone(),
            exception_type,
            ai_system,
            justification,
            scope_departments,
            scope_users,
            scope_systems,
            data_categories,
            regions,
            department,
            start: start.expect("checked above"),
            end: end.expect("checked above"),
            controls,
            business_owner: business_owner.expect("checked above"),
        })
    }

    /// The form pre-filled from this content (for "Update request" and renewals).
    pub fn to_input(&self) -> FormInput {
        let ids = |v: &[OptionId]| v.iter().map(|o| o.as_str().to_string()).collect();
        FormInput {
            title: self.title.clone(),
            policy: self.policy.as_str().into(),
            exception_type: self.exception_type.as_str().into(),
            ai_system: self.ai_system.clone(),
            justification: self.justification.clone(),
            scope_departments: ids(&self.scope_departments),
            scope_users: self.scope_users.clone(),
            scope_systems: self.scope_systems.clone(),
            data_categories: ids(&self.data_categories),
            regions: ids(&self.regions),
            department: self.department.as_str().into(),
            start: self.start.to_string(),
            end: self.end.to_string(),
            controls: self.controls.clone(),
            business_owner: Some(self.business_owner.clone()),
        }
    }

    pub fn rule_subject(&self) -> RuleSubject<'_> {
        RuleSubject {
            exception_type: &self.exception_type,
            data_categories: &self.data_categories,
            regions: &self.regions,
            department: &self.department,
        }
    }

    /// Requested duration in days.
    pub fn requested_days(&self) -> i64 {
        (self.end - self.start).num_days()
    }
}

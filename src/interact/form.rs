//! The forms people fill in, as neutral specs, and what they submit, parsed once into
//! domain input.
//!
//! A [`FormSpec`] lists its fields — each a domain [`Field`] (whose id the surface uses
//! for the input), a kind, its options from the governance file, its initial value and
//! limits — so a surface only renders it (a Slack modal, a Teams dialog card) and reads
//! what comes back into [`Values`]. Parsers turn values into domain input; their
//! errors, and the domain's refusals, name the field they are about
//! ([`FieldErrors`], [`WorkflowError::field_errors`]), never matched by text.
//!
//! A form's [`FormMeta`] says which request and version it was opened for — like a
//! button's value it selects the request and never grants authority.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{
    Action, AssessmentInput, AttestationAnswer, ConditionPart, ConditionSpec, ExceptionRequest,
    Field, FieldErrors, FormInput, Recommendation, RequestId, Terms, WorkflowError, latest_expiry,
};
use crate::governance::{Governance, PersonId, RoleId};

/// Condition slots on the approval form (blank slots are ignored).
pub const CONDITION_SLOTS: u8 = 5;

/// Which form. Its id is what a surface carries with the open form (Slack's
/// `callback_id`). Updates and renewals are the intake form with other metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FormKind {
    Intake,
    SendBack,
    Assess,
    Feedback,
    Approve,
    Reject,
    Revoke,
    Attest,
}

impl FormKind {
    pub const ALL: [FormKind; 8] = [
        FormKind::Intake,
        FormKind::SendBack,
        FormKind::Assess,
        FormKind::Feedback,
        FormKind::Approve,
        FormKind::Reject,
        FormKind::Revoke,
        FormKind::Attest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FormKind::Intake => "intake",
            FormKind::SendBack => "send_back",
            FormKind::Assess => "assess",
            FormKind::Feedback => "feedback",
            FormKind::Approve => "approve",
            FormKind::Reject => "reject",
            FormKind::Revoke => "revoke",
            FormKind::Attest => "attest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Where an error about the form as a whole is shown.
    pub fn first_field(self) -> Field {
        match self {
            FormKind::Intake => Field::Title,
            FormKind::SendBack => Field::Questions,
            FormKind::Assess => Field::Findings,
            FormKind::Feedback => Field::Recommendation,
            FormKind::Approve => Field::Start,
            FormKind::Reject | FormKind::Revoke => Field::Reason,
            FormKind::Attest => Field::Note,
        }
    }
}

/// What a form was opened for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormMeta {
    /// The request (updates, reviews) and the version shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    /// A selector: the assessing role, the attestation answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    /// For a renewal: the request it renews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<i64>,
}

impl FormMeta {
    fn of(r: &ExceptionRequest, a: Option<String>) -> Self {
        Self {
            r: Some(r.id.get()),
            v: Some(r.version()),
            a,
            renews: None,
        }
    }

    /// Parses what a surface stored with the form; anything unreadable is no metadata.
    pub fn parse(s: Option<&str>) -> Self {
        s.and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("form metadata serialises")
    }

    pub fn request(&self) -> Option<RequestId> {
        self.r.filter(|r| *r > 0).map(RequestId::new)
    }

    pub fn renews(&self) -> Option<RequestId> {
        self.renews.filter(|r| *r > 0).map(RequestId::new)
    }
}

/// One choice of a select.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

fn choice(value: impl Into<String>, label: impl Into<String>) -> Choice {
    Choice {
        value: value.into(),
        label: label.into(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text {
        multiline: bool,
        max: u32,
    },
    Select(Vec<Choice>),
    MultiSelect(Vec<Choice>),
    Date,
    /// Someone of the workspace or tenant.
    Person,
}

/// What a field shows when the form opens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Initial {
    #[default]
    Empty,
    Text(String),
    Choice(String),
    Choices(Vec<String>),
    /// `YYYY-MM-DD`
    Date(String),
    Person(PersonId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub field: Field,
    pub label: String,
    pub kind: FieldKind,
    pub optional: bool,
    pub hint: Option<String>,
    pub initial: Initial,
}

fn field(field: Field, label: &str, kind: FieldKind) -> FieldSpec {
    FieldSpec {
        field,
        label: label.into(),
        kind,
        optional: false,
        hint: None,
        initial: Initial::Empty,
    }
}

impl FieldSpec {
    fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    fn hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.into());
        self
    }
    fn initial(mut self, initial: Initial) -> Self {
        self.initial = initial;
        self
    }
}

fn text(multiline: bool, max: u32) -> FieldKind {
    FieldKind::Text { multiline, max }
}

fn initial_text(s: &str) -> Initial {
    if s.is_empty() {
        Initial::Empty
    } else {
        Initial::Text(s.to_string())
    }
}

fn initial_date(s: &str) -> Initial {
    if s.is_empty() {
        Initial::Empty
    } else {
        Initial::Date(s.to_string())
    }
}

/// A form to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormSpec {
    pub kind: FormKind,
    pub title: String,
    pub submit: String,
    pub meta: FormMeta,
    /// The request it is about: (reference, title), shown at the top.
    pub subject: Option<(String, String)>,
    /// Plain-text notes shown above the fields.
    pub notes: Vec<String>,
    pub fields: Vec<FieldSpec>,
}

fn subject(r: &ExceptionRequest) -> Option<(String, String)> {
    Some((r.reference(), r.content().title.clone()))
}

/// The intake form, blank or pre-filled (updates and renewals).
pub fn intake(gov: &Governance, prefill: Option<&FormInput>, meta: FormMeta) -> FormSpec {
    let p = prefill.cloned().unwrap_or_default();
    let options = |items: &[crate::governance::FormOption]| {
        items
            .iter()
            .map(|o| choice(o.id.to_string(), o.label.clone()))
            .collect::<Vec<_>>()
    };
    let policies = gov
        .policies
        .iter()
        .map(|x| choice(x.id.to_string(), format!("{} (v{})", x.title, x.version)))
        .collect();
    let departments: Vec<Choice> = gov
        .form
        .departments
        .iter()
        .map(|o| choice(o.id.to_string(), o.label.clone()))
        .collect();
    let fields = vec![
        field(Field::Title, "Title", text(false, 150)).initial(initial_text(&p.title)),
        field(Field::Policy, "Policy", FieldKind::Select(policies))
            .hint("The policy you need an exception from.")
            .initial(Initial::Choice(p.policy.clone())),
        field(
            Field::ExceptionType,
            "Exception type",
            FieldKind::Select(options(&gov.form.exception_types)),
        )
        .initial(Initial::Choice(p.exception_type.clone())),
        field(Field::AiSystem, "AI system or model", text(false, 150))
            .initial(initial_text(&p.ai_system)),
        field(
            Field::Justification,
            "Business justification",
            text(true, 3000),
        )
        .initial(initial_text(&p.justification)),
        field(
            Field::ScopeDepartments,
            "Teams affected",
            FieldKind::MultiSelect(departments.clone()),
        )
        .initial(Initial::Choices(p.scope_departments.clone())),
        field(Field::ScopeUsers, "Users", text(false, 150))
            .hint("Who will use it, and how many.")
            .initial(initial_text(&p.scope_users)),
        field(Field::ScopeSystems, "Systems", text(false, 150))
            .optional()
            .initial(initial_text(&p.scope_systems)),
        field(
            Field::DataCategories,
            "Data categories",
            FieldKind::MultiSelect(options(&gov.form.data_categories)),
        )
        .initial(Initial::Choices(p.data_categories.clone())),
        field(
            Field::Regions,
            "Regions",
            FieldKind::MultiSelect(options(&gov.form.regions)),
        )
        .initial(Initial::Choices(p.regions.clone())),
        field(
            Field::Department,
            "Your department",
            FieldKind::Select(departments),
        )
        .initial(Initial::Choice(p.department.clone())),
        field(Field::Start, "Requested start", FieldKind::Date).initial(initial_date(&p.start)),
        field(Field::End, "Requested end", FieldKind::Date).initial(initial_date(&p.end)),
        field(
            Field::Controls,
            "Proposed compensating controls",
            text(true, 3000),
        )
        .initial(initial_text(&p.controls)),
        field(Field::BusinessOwner, "Business owner", FieldKind::Person).initial(
            p.business_owner
                .clone()
                .map(Initial::Person)
                .unwrap_or_default(),
        ),
    ];
    let (title, submit) = match (meta.r, meta.renews) {
        (Some(_), _) => ("Update request", "Submit update"),
        (None, Some(_)) => ("Renew exception", "Submit renewal"),
        _ => ("AI policy exception", "Submit"),
    };
    FormSpec {
        kind: FormKind::Intake,
        title: title.into(),
        submit: submit.into(),
        meta,
        subject: None,
        notes: Vec::new(),
        fields,
    }
}

/// The intake form pre-filled with `r`'s current version, to update it.
pub fn update(gov: &Governance, r: &ExceptionRequest) -> FormSpec {
    intake(gov, Some(&r.content().to_input()), FormMeta::of(r, None))
}

/// The intake form pre-filled from `r`, to renew it from `today`.
pub fn renew(gov: &Governance, r: &ExceptionRequest, today: NaiveDate) -> FormSpec {
    let meta = FormMeta {
        renews: Some(r.id.get()),
        ..FormMeta::default()
    };
    intake(gov, Some(&r.renewal_input(today)), meta)
}

pub fn send_back(r: &ExceptionRequest) -> FormSpec {
    FormSpec {
        kind: FormKind::SendBack,
        title: "Send back".into(),
        submit: "Send back".into(),
        meta: FormMeta::of(r, None),
        subject: subject(r),
        notes: Vec::new(),
        fields: vec![
            field(
                Field::Questions,
                "What is missing or unclear?",
                text(true, 3000),
            )
            .hint("The requester gets these questions with an Update request button."),
        ],
    }
}

const LIKELIHOOD: [(&str, &str); 5] = [
    ("1", "1 · Rare"),
    ("2", "2 · Unlikely"),
    ("3", "3 · Possible"),
    ("4", "4 · Likely"),
    ("5", "5 · Almost certain"),
];
const IMPACT: [(&str, &str); 5] = [
    ("1", "1 · Negligible"),
    ("2", "2 · Minor"),
    ("3", "3 · Moderate"),
    ("4", "4 · Major"),
    ("5", "5 · Severe"),
];

fn scale(items: &[(&str, &str)]) -> FieldKind {
    FieldKind::Select(items.iter().map(|(v, l)| choice(*v, *l)).collect())
}

fn recommendations() -> FieldKind {
    FieldKind::Select(
        Recommendation::ALL
            .iter()
            .map(|r| choice(r.as_str(), r.label()))
            .collect(),
    )
}

pub fn assess(gov: &Governance, r: &ExceptionRequest, role: &RoleId) -> FormSpec {
    let role_name = gov
        .role(role)
        .map(|x| x.name.clone())
        .unwrap_or_else(|| role.to_string());
    let dimension = gov
        .role(role)
        .and_then(|x| x.dimension)
        .map(|d| d.as_str())
        .unwrap_or("?");
    FormSpec {
        kind: FormKind::Assess,
        title: "Assess".into(),
        submit: "Record assessment".into(),
        meta: FormMeta::of(r, Some(role.to_string())),
        subject: subject(r),
        notes: vec![format!(
            "You assess for {role_name}: the {dimension} dimension."
        )],
        fields: vec![
            field(Field::Findings, "Findings", text(true, 3000)),
            field(Field::Likelihood, "Likelihood", scale(&LIKELIHOOD)),
            field(Field::Impact, "Impact", scale(&IMPACT)),
            field(
                Field::Mitigations,
                "Recommended mitigations",
                text(true, 3000),
            )
            .optional(),
            field(Field::Recommendation, "Recommendation", recommendations()),
        ],
    }
}

pub fn feedback(r: &ExceptionRequest) -> FormSpec {
    FormSpec {
        kind: FormKind::Feedback,
        title: "Stakeholder feedback".into(),
        submit: "Send feedback".into(),
        meta: FormMeta::of(r, None),
        subject: subject(r),
        notes: Vec::new(),
        fields: vec![
            field(
                Field::Recommendation,
                "Your recommendation",
                recommendations(),
            ),
            field(Field::Comment, "Comment", text(true, 3000)).optional(),
        ],
    }
}

/// The decision form: terms capped by the tier, conditions, and the typed
/// confirmation high tiers need.
pub fn approve(gov: &Governance, r: &ExceptionRequest, today: NaiveDate) -> FormSpec {
    let tier = r.tier();
    let policy = tier.map(|t| gov.tier(t));
    let c = r.content();
    let start = c.start.max(today);
    let max_days = policy.map(|p| p.max_duration_days).unwrap_or(1);
    let latest = latest_expiry(start, max_days);
    let expiry = c.end.min(latest);
    let mut fields = vec![
        field(Field::Start, "Start", FieldKind::Date).initial(Initial::Date(start.to_string())),
        field(Field::Expiry, "Expiry (last valid day)", FieldKind::Date)
            .initial(Initial::Date(expiry.to_string())),
        field(
            Field::MonitoringOwner,
            "Monitoring owner",
            FieldKind::Person,
        )
        .hint("Gets the conditions checklist and the review reminders.")
        .initial(Initial::Person(c.business_owner.clone())),
    ];
    for i in 1..=CONDITION_SLOTS {
        fields.push(
            field(
                Field::Condition(i, ConditionPart::Text),
                &format!("Condition {i}"),
                text(false, 500),
            )
            .optional(),
        );
        fields.push(
            field(
                Field::Condition(i, ConditionPart::Owner),
                &format!("Condition {i} owner"),
                FieldKind::Person,
            )
            .optional(),
        );
        fields.push(
            field(
                Field::Condition(i, ConditionPart::Due),
                &format!("Condition {i} due"),
                FieldKind::Date,
            )
            .optional(),
        );
    }
    if policy.is_some_and(|p| p.typed_confirmation) {
        fields.push(
            field(
                Field::Confirm,
                &format!("Type {} to confirm", r.reference()),
                text(false, 20),
            )
            .hint("High-risk exceptions need a typed confirmation."),
        );
    }
    FormSpec {
        kind: FormKind::Approve,
        title: "Approve".into(),
        submit: "Approve".into(),
        meta: FormMeta::of(r, None),
        subject: subject(r),
        notes: vec![format!(
            "{} tier: at most {max_days} days (latest expiry {latest} for a start on {start}). Every approver role must approve.",
            tier.map(|t| t.to_string()).unwrap_or_default()
        )],
        fields,
    }
}

pub fn reject(r: &ExceptionRequest) -> FormSpec {
    FormSpec {
        kind: FormKind::Reject,
        title: "Reject".into(),
        submit: "Reject".into(),
        meta: FormMeta::of(r, None),
        subject: subject(r),
        notes: Vec::new(),
        fields: vec![field(
            Field::Reason,
            "Reason (shown to the requester)",
            text(true, 3000),
        )],
    }
}

/// Revoking a granted exception: the reason is told to its requester and owner and
/// announced to the affected teams.
pub fn revoke(r: &ExceptionRequest) -> FormSpec {
    FormSpec {
        kind: FormKind::Revoke,
        title: "Revoke".into(),
        submit: "Revoke".into(),
        meta: FormMeta::of(r, None),
        subject: subject(r),
        notes: vec![
            "Revoking ends the exception now: it may no longer be used, and its requester, owner and teams are told why.".into(),
        ],
        fields: vec![field(
            Field::Reason,
            "Reason (shown to the requester, the owner and the affected teams)",
            text(true, 3000),
        )],
    }
}

pub fn attest(r: &ExceptionRequest, answer: AttestationAnswer) -> FormSpec {
    let label = match answer {
        AttestationAnswer::StillNeeded => "Still needed",
        AttestationAnswer::Changed => "Use has changed",
        AttestationAnswer::NoLongerNeeded => "No longer needed",
    };
    let note = field(Field::Note, "Note for the record", text(true, 3000));
    FormSpec {
        kind: FormKind::Attest,
        title: "Review".into(),
        submit: label.into(),
        meta: FormMeta::of(r, Some(answer.as_str().to_string())),
        subject: subject(r),
        notes: Vec::new(),
        fields: vec![if answer == AttestationAnswer::StillNeeded {
            note.optional()
        } else {
            note
        }],
    }
}

// ---------------------------------------------------------------------------------
// What comes back.

/// What kind of value an input holds, whatever form it is on (for surfaces whose
/// submissions arrive as plain strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Choice,
    /// Several choices (a surface may send them comma-separated).
    Choices,
    Date,
    Person,
}

pub fn value_kind(field: Field) -> ValueKind {
    match field {
        Field::Policy
        | Field::ExceptionType
        | Field::Department
        | Field::Likelihood
        | Field::Impact
        | Field::Recommendation => ValueKind::Choice,
        Field::ScopeDepartments | Field::DataCategories | Field::Regions => ValueKind::Choices,
        Field::Start | Field::End | Field::Expiry | Field::Condition(_, ConditionPart::Due) => {
            ValueKind::Date
        }
        Field::BusinessOwner
        | Field::MonitoringOwner
        | Field::Condition(_, ConditionPart::Owner) => ValueKind::Person,
        _ => ValueKind::Text,
    }
}

impl FormSpec {
    /// The same form showing what was entered (to show it again with errors).
    pub fn with_values(mut self, v: &Values) -> Self {
        for f in &mut self.fields {
            if let Some(value) = v.get(f.field) {
                f.initial = match value.clone() {
                    Value::Text(t) => Initial::Text(t),
                    Value::Choice(c) => Initial::Choice(c),
                    Value::Choices(c) => Initial::Choices(c),
                    Value::Date(d) => Initial::Date(d),
                    Value::Person(p) => Initial::Person(p),
                };
            }
        }
        self
    }
}

/// One submitted value, as the surface read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Choice(String),
    Choices(Vec<String>),
    /// `YYYY-MM-DD`
    Date(String),
    /// Already resolved by the surface ([`super::identity::colleague`]).
    Person(PersonId),
}

/// A submitted form's values by field id; missing fields read as empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values(HashMap<String, Value>);

impl Values {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, id: impl Into<String>, value: Value) {
        self.0.insert(id.into(), value);
    }

    pub fn with(mut self, field: Field, value: Value) -> Self {
        self.set(field.id(), value);
        self
    }

    pub fn get(&self, field: Field) -> Option<&Value> {
        self.0.get(&field.id())
    }

    pub fn text(&self, field: Field) -> String {
        match self.get(field) {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        }
    }

    pub fn choice(&self, field: Field) -> String {
        match self.get(field) {
            Some(Value::Choice(c)) => c.clone(),
            _ => String::new(),
        }
    }

    pub fn choices(&self, field: Field) -> Vec<String> {
        match self.get(field) {
            Some(Value::Choices(c)) => c.clone(),
            _ => Vec::new(),
        }
    }

    pub fn date(&self, field: Field) -> String {
        match self.get(field) {
            Some(Value::Date(d)) => d.clone(),
            _ => String::new(),
        }
    }

    pub fn person(&self, field: Field) -> Option<PersonId> {
        match self.get(field) {
            Some(Value::Person(p)) => Some(p.clone()),
            _ => None,
        }
    }
}

/// The intake form as submitted (validated by the domain).
pub fn parse_intake(v: &Values) -> FormInput {
    FormInput {
        title: v.text(Field::Title),
        policy: v.choice(Field::Policy),
        exception_type: v.choice(Field::ExceptionType),
        ai_system: v.text(Field::AiSystem),
        justification: v.text(Field::Justification),
        scope_departments: v.choices(Field::ScopeDepartments),
        scope_users: v.text(Field::ScopeUsers),
        scope_systems: v.text(Field::ScopeSystems),
        data_categories: v.choices(Field::DataCategories),
        regions: v.choices(Field::Regions),
        department: v.choice(Field::Department),
        start: v.date(Field::Start),
        end: v.date(Field::End),
        controls: v.text(Field::Controls),
        business_owner: v.person(Field::BusinessOwner),
    }
}

pub fn parse_assessment(v: &Values, role: RoleId) -> Result<AssessmentInput, FieldErrors> {
    let mut e = FieldErrors::new();
    let score = |e: &mut FieldErrors, field: Field| match v.choice(field).parse::<u8>() {
        Ok(n) if (1..=5).contains(&n) => n,
        _ => {
            e.insert(field, "Choose 1 to 5.".into());
            0
        }
    };
    let likelihood = score(&mut e, Field::Likelihood);
    let impact = score(&mut e, Field::Impact);
    let recommendation = Recommendation::parse(&v.choice(Field::Recommendation));
    if recommendation.is_none() {
        e.insert(Field::Recommendation, "Choose a recommendation.".into());
    }
    if v.text(Field::Findings).trim().is_empty() {
        e.insert(Field::Findings, "Findings are required.".into());
    }
    match recommendation {
        Some(recommendation) if e.is_empty() => Ok(AssessmentInput {
            role,
            likelihood,
            impact,
            findings: v.text(Field::Findings),
            mitigations: v.text(Field::Mitigations),
            recommendation,
        }),
        _ => Err(e),
    }
}

fn parse_date(e: &mut FieldErrors, field: Field, value: &str) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            e.insert(field, "Pick a date.".into());
            None
        }
    }
}

/// The decision form as submitted: terms, the typed confirmation, and the form slot
/// each of the terms' conditions came from (blank slots are skipped, so the domain's
/// condition 2 may be the form's slot 3).
pub fn parse_approval(v: &Values) -> Result<(Terms, Option<String>, Vec<u8>), FieldErrors> {
    let mut e = FieldErrors::new();
    let start = parse_date(&mut e, Field::Start, &v.date(Field::Start));
    let expiry = parse_date(&mut e, Field::Expiry, &v.date(Field::Expiry));
    let owner = v.person(Field::MonitoringOwner);
    if owner.is_none() {
        e.insert(Field::MonitoringOwner, "Name the monitoring owner.".into());
    }
    let mut conditions = Vec::new();
    let mut slots = Vec::new();
    for i in 1..=CONDITION_SLOTS {
        let part = |p| Field::Condition(i, p);
        let text = v.text(part(ConditionPart::Text));
        let owner = v.person(part(ConditionPart::Owner));
        let due = v.date(part(ConditionPart::Due));
        if text.trim().is_empty() && owner.is_none() && due.is_empty() {
            continue;
        }
        if text.trim().is_empty() {
            e.insert(
                part(ConditionPart::Text),
                "Describe the condition (or clear its owner and date).".into(),
            );
        }
        let Some(owner) = owner else {
            e.insert(
                part(ConditionPart::Owner),
                "Every condition needs an owner.".into(),
            );
            continue;
        };
        let Some(due) = parse_date(&mut e, part(ConditionPart::Due), &due) else {
            continue;
        };
        conditions.push(ConditionSpec {
            text: text.trim().to_string(),
            owner,
            due,
        });
        slots.push(i);
    }
    match (start, expiry, owner) {
        (Some(start), Some(expiry), Some(monitoring_owner)) if e.is_empty() => {
            let confirmation = Some(v.text(Field::Confirm)).filter(|c| !c.is_empty());
            Ok((
                Terms {
                    start,
                    expiry,
                    monitoring_owner,
                    conditions,
                },
                confirmation,
                slots,
            ))
        }
        _ => Err(e),
    }
}

/// What a submitted review form asks for: the action, and the form slot of each of
/// its conditions (to put the domain's errors about condition `n` on the right slot).
#[derive(Debug)]
pub struct Submission {
    pub action: Action,
    pub slots: Vec<u8>,
}

/// The action a submitted review form asks for (every form but intake). `meta.a`
/// carries the assessing role or the attestation answer the form was opened with.
pub fn action(kind: FormKind, meta: &FormMeta, v: &Values) -> Result<Submission, Invalid> {
    let mut slots = Vec::new();
    let action = match kind {
        FormKind::Intake => return Err(Invalid::Malformed("the intake form files no action")),
        FormKind::SendBack => Action::SendBack {
            questions: v.text(Field::Questions),
        },
        FormKind::Assess => {
            let role = meta
                .a
                .clone()
                .map(RoleId::new)
                .ok_or(Invalid::Malformed("an assessment without a role"))?;
            Action::Assess(parse_assessment(v, role).map_err(Invalid::Fields)?)
        }
        FormKind::Feedback => {
            let Some(recommendation) = Recommendation::parse(&v.choice(Field::Recommendation))
            else {
                return Err(Invalid::Fields(FieldErrors::from([(
                    Field::Recommendation,
                    "Choose a recommendation.".to_string(),
                )])));
            };
            Action::Feedback {
                recommendation,
                text: v.text(Field::Comment),
            }
        }
        FormKind::Approve => {
            let (terms, confirmation, used) = parse_approval(v).map_err(Invalid::Fields)?;
            slots = used;
            Action::Approve {
                terms,
                confirmation,
            }
        }
        FormKind::Reject => Action::Reject {
            reason: v.text(Field::Reason),
        },
        FormKind::Revoke => Action::Revoke {
            reason: v.text(Field::Reason),
        },
        FormKind::Attest => {
            let answer = meta
                .a
                .as_deref()
                .and_then(AttestationAnswer::parse)
                .ok_or(Invalid::Malformed("an attestation without an answer"))?;
            Action::Attest {
                answer,
                note: v.text(Field::Note),
            }
        }
    };
    Ok(Submission { action, slots })
}

/// Why a submission did not become an action.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Show these next to their fields; the form stays open.
    Fields(FieldErrors),
    /// The surface sent something no form of ours produces.
    Malformed(&'static str),
}

/// A refusal, as errors next to the fields of `kind`'s form: the fields it names (a
/// condition's on the slot it was entered in, `slots` from [`Submission`]), or the
/// form's first field.
pub fn refusal_errors(kind: FormKind, error: &WorkflowError, slots: &[u8]) -> FieldErrors {
    let fields = error.field_errors();
    if fields.is_empty() {
        return FieldErrors::from([(kind.first_field(), error.to_string())]);
    }
    fields
        .into_iter()
        .map(|(field, message)| match field {
            Field::Condition(n, part) => {
                let slot = slots.get(usize::from(n).wrapping_sub(1)).copied();
                (Field::Condition(slot.unwrap_or(n), part), message)
            }
            other => (other, message),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_kinds_and_metadata_round_trip() {
        for k in FormKind::ALL {
            assert_eq!(FormKind::parse(k.as_str()), Some(k));
        }
        let meta = FormMeta {
            r: Some(42),
            v: Some(3),
            a: Some("privacy".into()),
            renews: None,
        };
        assert_eq!(meta.encode(), r#"{"r":42,"v":3,"a":"privacy"}"#);
        assert_eq!(FormMeta::parse(Some(&meta.encode())), meta);
        assert_eq!(FormMeta::parse(Some("not json")), FormMeta::default());
        assert_eq!(
            FormMeta {
                r: Some(-4),
                ..FormMeta::default()
            }
            .request(),
            None
        );
    }

    #[test]
    fn an_approval_names_every_wrong_field() {
        let v = Values::new()
            .with(Field::Start, Value::Date("soon".into()))
            .with(
                Field::Condition(2, ConditionPart::Text),
                Value::Text("Enable SSO".into()),
            );
        let errors = parse_approval(&v).unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            vec![
                Field::Start,
                Field::Expiry,
                Field::MonitoringOwner,
                Field::Condition(2, ConditionPart::Owner),
            ]
        );
    }

    #[test]
    fn refusals_land_on_the_field_they_name_or_the_first() {
        let beyond = WorkflowError::ExpiryBeyondMaximum {
            tier: crate::governance::Tier::Low,
            max_days: 90,
            latest: NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(),
        };
        assert_eq!(
            refusal_errors(FormKind::Approve, &beyond, &[])
                .keys()
                .collect::<Vec<_>>(),
            vec![&Field::Expiry]
        );
        // The domain's condition 2 was entered in slot 3 (slot 2 was left blank).
        let second = WorkflowError::InvalidField {
            field: Field::Condition(2, ConditionPart::Due),
            message: "Condition 2 must be due …".into(),
        };
        assert_eq!(
            refusal_errors(FormKind::Approve, &second, &[1, 3]),
            FieldErrors::from([(
                Field::Condition(3, ConditionPart::Due),
                "Condition 2 must be due …".to_string()
            )])
        );
        assert_eq!(
            refusal_errors(FormKind::Reject, &WorkflowError::MissingReason, &[]),
            FieldErrors::from([(Field::Reason, "A reason is required.".to_string())])
        );
    }
}

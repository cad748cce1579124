//! The modals people fill in, and parsing what they submit.
//!
//! Each input block's `block_id` names its field, so field errors can be returned
//! inside the modal (`response_action: errors`). A modal's `private_metadata` carries
//! the request and version it was opened for — like a button value, it selects the
//! request; it never grants authority.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use slack_morphism::prelude::*;

use super::render::{cut, mrkdwn, plain};
use crate::chat::plan::slack_user;
use crate::domain::{
    AssessmentInput, AttestationAnswer, ConditionSpec, ExceptionRequest, Field, FormInput,
    Recommendation, Terms, latest_expiry,
};
use crate::governance::{Governance, PersonId, RoleId};

pub mod callback {
    pub const INTAKE: &str = "intake";
    pub const SEND_BACK: &str = "send_back";
    pub const ASSESS: &str = "assess";
    pub const FEEDBACK: &str = "feedback";
    pub const APPROVE: &str = "approve";
    pub const REJECT: &str = "reject";
    pub const ATTEST: &str = "attest";
}

/// Condition slots in the approval modal (blank slots are ignored).
pub const CONDITION_SLOTS: usize = 5;
const VALUE: &str = "value";

/// What a modal was opened for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMeta {
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

impl ViewMeta {
    pub fn parse(s: Option<&str>) -> Self {
        s.and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

fn modal(
    callback_id: &str,
    title: &str,
    submit: &str,
    meta: &ViewMeta,
    blocks: Vec<SlackBlock>,
) -> SlackView {
    SlackView::Modal(
        SlackModalView::new(plain(title, 24), blocks)
            .with_submit(plain(submit, 24))
            .with_close(plain("Cancel", 24))
            .with_callback_id(SlackCallbackId::new(callback_id.into()))
            .with_private_metadata(serde_json::to_string(meta).expect("metadata serialises")),
    )
}

fn input(
    block_id: &str,
    label: &str,
    element: SlackInputBlockElement,
    optional: bool,
    hint: Option<&str>,
) -> SlackBlock {
    let mut block = SlackInputBlock::new(plain(label, 2000), element)
        .with_block_id(SlackBlockId::new(block_id.into()));
    if optional {
        block = block.with_optional(true);
    }
    if let Some(h) = hint {
        block = block.with_hint(plain(h, 2000));
    }
    SlackBlock::Input(block)
}

fn text_input(initial: Option<&str>, multiline: bool, max: u64) -> SlackInputBlockElement {
    let mut el = SlackBlockPlainTextInputElement::new()
        .with_action_id(SlackActionId::new(VALUE.into()))
        .with_multiline(multiline)
        .with_max_length(max);
    if let Some(v) = initial.filter(|v| !v.is_empty()) {
        el = el.with_initial_value(v.to_string());
    }
    SlackInputBlockElement::PlainTextInput(el)
}

fn choice(value: &str, label: &str) -> SlackBlockChoiceItem<SlackBlockPlainTextOnly> {
    SlackBlockChoiceItem::new(plain(label, 75), value.to_string())
}

fn select(options: &[(String, String)], initial: Option<&str>) -> SlackInputBlockElement {
    let items: Vec<_> = options.iter().map(|(v, l)| choice(v, l)).collect();
    let mut el = SlackBlockStaticSelectElement::new()
        .with_action_id(SlackActionId::new(VALUE.into()))
        .with_options(items.clone());
    if let Some(i) = initial.and_then(|i| items.iter().find(|o| o.value == i)) {
        el = el.with_initial_option(i.clone());
    }
    SlackInputBlockElement::StaticSelect(el)
}

fn multi(options: &[(String, String)], initial: &[String]) -> SlackInputBlockElement {
    let items: Vec<_> = options.iter().map(|(v, l)| choice(v, l)).collect();
    let mut el = SlackBlockMultiStaticSelectElement::new()
        .with_action_id(SlackActionId::new(VALUE.into()))
        .with_options(items.clone());
    let chosen: Vec<_> = items
        .iter()
        .filter(|o| initial.contains(&o.value))
        .cloned()
        .collect();
    if !chosen.is_empty() {
        el = el.with_initial_options(chosen);
    }
    SlackInputBlockElement::MultiStaticSelect(el)
}

fn date_input(initial: Option<String>) -> SlackInputBlockElement {
    let mut el =
        SlackBlockDatePickerElement::new().with_action_id(SlackActionId::new(VALUE.into()));
    if let Some(d) = initial.filter(|d| !d.is_empty()) {
        el = el.with_initial_date(d);
    }
    SlackInputBlockElement::DatePicker(el)
}

fn user_input(initial: Option<String>) -> SlackInputBlockElement {
    let mut el =
        SlackBlockUsersSelectElement::new().with_action_id(SlackActionId::new(VALUE.into()));
    if let Some(u) = initial {
        el = el.with_initial_user(u);
    }
    SlackInputBlockElement::UsersSelect(el)
}

fn context(text: String) -> SlackBlock {
    SlackBlock::Context(SlackContextBlock::new(vec![
        SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(cut(&text, 2900))),
    ]))
}

/// The intake form, blank or pre-filled (updates and renewals).
pub fn intake(gov: &Governance, prefill: Option<&FormInput>, meta: &ViewMeta) -> SlackView {
    let p = prefill.cloned().unwrap_or_default();
    let opts = |items: Vec<(String, String)>| items;
    let policies = opts(
        gov.policies
            .iter()
            .map(|x| (x.id.to_string(), format!("{} (v{})", x.title, x.version)))
            .collect(),
    );
    let types = opts(
        gov.form
            .exception_types
            .iter()
            .map(|o| (o.id.to_string(), o.label.clone()))
            .collect(),
    );
    let cats = opts(
        gov.form
            .data_categories
            .iter()
            .map(|o| (o.id.to_string(), o.label.clone()))
            .collect(),
    );
    let regions = opts(
        gov.form
            .regions
            .iter()
            .map(|o| (o.id.to_string(), o.label.clone()))
            .collect(),
    );
    let depts = opts(
        gov.form
            .departments
            .iter()
            .map(|o| (o.id.to_string(), o.label.clone()))
            .collect(),
    );
    let owner = p.business_owner.as_ref().and_then(|o| slack_user(gov, o));
    let f = |field: Field| field.as_str();
    let blocks = vec![
        input(
            f(Field::Title),
            "Title",
            text_input(Some(&p.title), false, 150),
            false,
            None,
        ),
        input(
            f(Field::Policy),
            "Policy",
            select(&policies, Some(&p.policy)),
            false,
            Some("The policy you need an exception from."),
        ),
        input(
            f(Field::ExceptionType),
            "Exception type",
            select(&types, Some(&p.exception_type)),
            false,
            None,
        ),
        input(
            f(Field::AiSystem),
            "AI system or model",
            text_input(Some(&p.ai_system), false, 150),
            false,
            None,
        ),
        input(
            f(Field::Justification),
            "Business justification",
            text_input(Some(&p.justification), true, 3000),
            false,
            None,
        ),
        input(
            f(Field::ScopeDepartments),
            "Teams affected",
            multi(&depts, &p.scope_departments),
            false,
            None,
        ),
        input(
            f(Field::ScopeUsers),
            "Users",
            text_input(Some(&p.scope_users), false, 150),
            false,
            Some("Who will use it, and how many."),
        ),
        input(
            f(Field::ScopeSystems),
            "Systems",
            text_input(Some(&p.scope_systems), false, 150),
            true,
            None,
        ),
        input(
            f(Field::DataCategories),
            "Data categories",
            multi(&cats, &p.data_categories),
            false,
            None,
        ),
        input(
            f(Field::Regions),
            "Regions",
            multi(&regions, &p.regions),
            false,
            None,
        ),
        input(
            f(Field::Department),
            "Your department",
            select(&depts, Some(&p.department)),
            false,
            None,
        ),
        input(
            f(Field::Start),
            "Requested start",
            date_input(Some(p.start.clone())),
            false,
            None,
        ),
        input(
            f(Field::End),
            "Requested end",
            date_input(Some(p.end.clone())),
            false,
            None,
        ),
        input(
            f(Field::Controls),
            "Proposed compensating controls",
            text_input(Some(&p.controls), true, 3000),
            false,
            None,
        ),
        input(
            f(Field::BusinessOwner),
            "Business owner",
            user_input(owner),
            false,
            None,
        ),
    ];
    let (title, submit) = match (meta.r, meta.renews) {
        (Some(_), _) => ("Update request", "Submit update"),
        (None, Some(_)) => ("Renew exception", "Submit renewal"),
        _ => ("AI policy exception", "Submit"),
    };
    modal(callback::INTAKE, title, submit, meta, blocks)
}

/// The person a Slack user in `team` is.
pub fn person_of(gov: &Governance, team: &str, user: &str) -> PersonId {
    gov.person_by_slack(team, user)
        .map(|p| p.id.clone())
        .unwrap_or_else(|| PersonId::external_slack(team, user))
}

type Values = std::collections::HashMap<
    SlackBlockId,
    std::collections::HashMap<SlackActionId, SlackViewStateValue>,
>;

/// Reads one input block's value.
pub struct Submitted<'a> {
    values: Option<&'a Values>,
}

impl<'a> Submitted<'a> {
    pub fn new(view: &'a SlackStatefulView) -> Self {
        Self {
            values: view.state_params.state.as_ref().map(|s| &s.values),
        }
    }

    fn get(&self, block: &str) -> Option<&'a SlackViewStateValue> {
        self.values?
            .get(&SlackBlockId::new(block.into()))?
            .get(&SlackActionId::new(VALUE.into()))
    }

    pub fn text(&self, block: &str) -> String {
        self.get(block)
            .and_then(|v| v.value.clone())
            .unwrap_or_default()
    }

    pub fn option(&self, block: &str) -> String {
        self.get(block)
            .and_then(|v| v.selected_option.as_ref().map(|o| o.value.clone()))
            .unwrap_or_default()
    }

    pub fn options(&self, block: &str) -> Vec<String> {
        self.get(block)
            .and_then(|v| v.selected_options.as_ref())
            .map(|o| o.iter().map(|o| o.value.clone()).collect())
            .unwrap_or_default()
    }

    pub fn date(&self, block: &str) -> String {
        self.get(block)
            .and_then(|v| v.selected_date.clone())
            .unwrap_or_default()
    }

    pub fn user(&self, block: &str) -> Option<String> {
        self.get(block)
            .and_then(|v| v.selected_user.as_ref().map(|u| u.to_string()))
    }
}

/// The intake form as submitted.
pub fn parse_intake(gov: &Governance, team: &str, s: &Submitted<'_>) -> FormInput {
    let f = |field: Field| field.as_str();
    FormInput {
        title: s.text(f(Field::Title)),
        policy: s.option(f(Field::Policy)),
        exception_type: s.option(f(Field::ExceptionType)),
        ai_system: s.text(f(Field::AiSystem)),
        justification: s.text(f(Field::Justification)),
        scope_departments: s.options(f(Field::ScopeDepartments)),
        scope_users: s.text(f(Field::ScopeUsers)),
        scope_systems: s.text(f(Field::ScopeSystems)),
        data_categories: s.options(f(Field::DataCategories)),
        regions: s.options(f(Field::Regions)),
        department: s.option(f(Field::Department)),
        start: s.date(f(Field::Start)),
        end: s.date(f(Field::End)),
        controls: s.text(f(Field::Controls)),
        business_owner: s
            .user(f(Field::BusinessOwner))
            .map(|u| person_of(gov, team, &u)),
    }
}

fn summary_block(r: &ExceptionRequest) -> SlackBlock {
    SlackBlock::Section(SlackSectionBlock::new().with_text(mrkdwn(format!(
        "*{}* · {}",
        r.reference(),
        super::render::escape(&r.content().title)
    ))))
}

fn meta_for(r: &ExceptionRequest, a: Option<String>) -> ViewMeta {
    ViewMeta {
        r: Some(r.id.get()),
        v: Some(r.version()),
        a,
        renews: None,
    }
}

pub fn send_back(r: &ExceptionRequest) -> SlackView {
    modal(
        callback::SEND_BACK,
        "Send back",
        "Send back",
        &meta_for(r, None),
        vec![
            summary_block(r),
            input(
                "questions",
                "What is missing or unclear?",
                text_input(None, true, 3000),
                false,
                Some("The requester gets these questions with an Update request button."),
            ),
        ],
    )
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

fn owned(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(v, l)| (v.to_string(), l.to_string()))
        .collect()
}

fn recommendations() -> Vec<(String, String)> {
    Recommendation::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), r.label().to_string()))
        .collect()
}

pub fn assess(gov: &Governance, r: &ExceptionRequest, role: &RoleId) -> SlackView {
    let role_name = gov
        .role(role)
        .map(|x| x.name.clone())
        .unwrap_or_else(|| role.to_string());
    let dimension = gov
        .role(role)
        .and_then(|x| x.dimension)
        .map(|d| d.as_str())
        .unwrap_or("?");
    modal(
        callback::ASSESS,
        "Assess",
        "Record assessment",
        &meta_for(r, Some(role.to_string())),
        vec![
            summary_block(r),
            context(format!(
                "You assess for *{}*: the {dimension} dimension.",
                super::render::escape(&role_name)
            )),
            input(
                "findings",
                "Findings",
                text_input(None, true, 3000),
                false,
                None,
            ),
            input(
                "likelihood",
                "Likelihood",
                select(&owned(&LIKELIHOOD), None),
                false,
                None,
            ),
            input(
                "impact",
                "Impact",
                select(&owned(&IMPACT), None),
                false,
                None,
            ),
            input(
                "mitigations",
                "Recommended mitigations",
                text_input(None, true, 3000),
                true,
                None,
            ),
            input(
                "recommendation",
                "Recommendation",
                select(&recommendations(), None),
                false,
                None,
            ),
        ],
    )
}

pub fn feedback(r: &ExceptionRequest) -> SlackView {
    modal(
        callback::FEEDBACK,
        "Stakeholder feedback",
        "Send feedback",
        &meta_for(r, None),
        vec![
            summary_block(r),
            input(
                "recommendation",
                "Your recommendation",
                select(&recommendations(), None),
                false,
                None,
            ),
            input(
                "comment",
                "Comment",
                text_input(None, true, 3000),
                true,
                None,
            ),
        ],
    )
}

pub fn approve(gov: &Governance, r: &ExceptionRequest, today: NaiveDate) -> SlackView {
    let tier = r.tier();
    let policy = tier.map(|t| gov.tier(t));
    let c = r.content();
    let start = c.start.max(today);
    let max_days = policy.map(|p| p.max_duration_days).unwrap_or(1);
    let latest = latest_expiry(start, max_days);
    let expiry = c.end.min(latest);
    let mut blocks = vec![
        summary_block(r),
        context(format!(
            "{} tier: at most {max_days} days (latest expiry {latest} for a start on {start}). Every approver role must approve.",
            tier.map(|t| t.to_string()).unwrap_or_default()
        )),
        input(
            "start",
            "Start",
            date_input(Some(start.to_string())),
            false,
            None,
        ),
        input(
            "expiry",
            "Expiry (last valid day)",
            date_input(Some(expiry.to_string())),
            false,
            None,
        ),
        input(
            "owner",
            "Monitoring owner",
            user_input(slack_user(gov, &c.business_owner)),
            false,
            Some("Gets the conditions checklist and the review reminders."),
        ),
    ];
    for i in 1..=CONDITION_SLOTS {
        blocks.push(input(
            &format!("c{i}_text"),
            &format!("Condition {i}"),
            text_input(None, false, 500),
            true,
            None,
        ));
        blocks.push(input(
            &format!("c{i}_owner"),
            &format!("Condition {i} owner"),
            user_input(None),
            true,
            None,
        ));
        blocks.push(input(
            &format!("c{i}_due"),
            &format!("Condition {i} due"),
            date_input(None),
            true,
            None,
        ));
    }
    if policy.is_some_and(|p| p.typed_confirmation) {
        blocks.push(input(
            "confirm",
            &format!("Type {} to confirm", r.reference()),
            text_input(None, false, 20),
            false,
            Some("High-risk exceptions need a typed confirmation."),
        ));
    }
    modal(
        callback::APPROVE,
        "Approve",
        "Approve",
        &meta_for(r, None),
        blocks,
    )
}

pub fn reject(r: &ExceptionRequest) -> SlackView {
    modal(
        callback::REJECT,
        "Reject",
        "Reject",
        &meta_for(r, None),
        vec![
            summary_block(r),
            input(
                "reason",
                "Reason (shown to the requester)",
                text_input(None, true, 3000),
                false,
                None,
            ),
        ],
    )
}

pub fn attest(r: &ExceptionRequest, answer: AttestationAnswer) -> SlackView {
    let label = match answer {
        AttestationAnswer::StillNeeded => "Still needed",
        AttestationAnswer::Changed => "Use has changed",
        AttestationAnswer::NoLongerNeeded => "No longer needed",
    };
    modal(
        callback::ATTEST,
        "Review",
        label,
        &meta_for(r, Some(answer.as_str().to_string())),
        vec![
            summary_block(r),
            input(
                "note",
                "Note for the record",
                text_input(None, true, 3000),
                answer == AttestationAnswer::StillNeeded,
                None,
            ),
        ],
    )
}

/// Field errors keyed by block id.
pub type BlockErrors = BTreeMap<String, String>;

pub fn parse_assessment(s: &Submitted<'_>, role: RoleId) -> Result<AssessmentInput, BlockErrors> {
    let mut e = BlockErrors::new();
    let score = |e: &mut BlockErrors, block: &str| match s.option(block).parse::<u8>() {
        Ok(n) if (1..=5).contains(&n) => n,
        _ => {
            e.insert(block.into(), "Choose 1 to 5.".into());
            0
        }
    };
    let likelihood = score(&mut e, "likelihood");
    let impact = score(&mut e, "impact");
    let recommendation = Recommendation::parse(&s.option("recommendation"));
    if recommendation.is_none() {
        e.insert("recommendation".into(), "Choose a recommendation.".into());
    }
    if s.text("findings").trim().is_empty() {
        e.insert("findings".into(), "Findings are required.".into());
    }
    if !e.is_empty() {
        return Err(e);
    }
    Ok(AssessmentInput {
        role,
        likelihood,
        impact,
        findings: s.text("findings"),
        mitigations: s.text("mitigations"),
        recommendation: recommendation.expect("checked"),
    })
}

fn parse_date(e: &mut BlockErrors, block: &str, value: &str) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            e.insert(block.into(), "Pick a date.".into());
            None
        }
    }
}

/// The approval modal as submitted: terms and the typed confirmation.
pub fn parse_approval(
    gov: &Governance,
    team: &str,
    s: &Submitted<'_>,
) -> Result<(Terms, Option<String>), BlockErrors> {
    let mut e = BlockErrors::new();
    let start = parse_date(&mut e, "start", &s.date("start"));
    let expiry = parse_date(&mut e, "expiry", &s.date("expiry"));
    let owner = s.user("owner").map(|u| person_of(gov, team, &u));
    if owner.is_none() {
        e.insert("owner".into(), "Name the monitoring owner.".into());
    }
    let mut conditions = Vec::new();
    for i in 1..=CONDITION_SLOTS {
        let text = s.text(&format!("c{i}_text"));
        let owner_user = s.user(&format!("c{i}_owner"));
        let due = s.date(&format!("c{i}_due"));
        if text.trim().is_empty() && owner_user.is_none() && due.is_empty() {
            continue;
        }
        if text.trim().is_empty() {
            e.insert(
                format!("c{i}_text"),
                "Describe the condition (or clear its owner and date).".into(),
            );
        }
        let Some(owner_user) = owner_user else {
            e.insert(
                format!("c{i}_owner"),
                "Every condition needs an owner.".into(),
            );
            continue;
        };
        let Some(due) = parse_date(&mut e, &format!("c{i}_due"), &due) else {
            continue;
        };
        conditions.push(ConditionSpec {
            text: text.trim().to_string(),
            owner: person_of(gov, team, &owner_user),
            due,
        });
    }
    if !e.is_empty() {
        return Err(e);
    }
    let confirmation = Some(s.text("confirm")).filter(|c| !c.is_empty());
    Ok((
        Terms {
            start: start.expect("checked"),
            expiry: expiry.expect("checked"),
            monitoring_owner: owner.expect("checked"),
            conditions,
        },
        confirmation,
    ))
}

//! Verified Slack requests → domain actions → Slack responses.
//!
//! Every click is re-checked here at click time: the Slack user and workspace map to
//! a person through the governance file, and the domain decides whether that person
//! may act. Button values and modal metadata only say which request and version the
//! card showed. Refusals are audited and explained ephemerally; HTTP stays 200 for
//! them, as Slack expects. Slow work (opening a modal, publishing App Home) runs after
//! the acknowledgement; state changes commit before it.

use std::collections::HashMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use slack_morphism::prelude::*;

use super::client::SlackApi;
use super::modals::{self, BlockErrors, Submitted as Form, ViewMeta, callback};
use super::render::{self, ButtonValue};
use crate::chat::plan::{actions, waiting_for};
use crate::chat::{Address, Message, Platform, Section};
use crate::config::Secret;
use crate::domain::{
    Action, Actor, AttestationAnswer, ExceptionRequest, Field, RequestId, State, Task, Timestamp,
    WorkflowError,
};
use crate::governance::{Governance, PersonId, RoleId};
use crate::service::{Acted, Attempt, Service, ServiceError, Submitted};
use crate::store::{Outcome, Summary};

/// What the Slack edge needs: the signing secret and the Web API client.
#[derive(Clone)]
pub struct SlackEdge {
    pub signing_secret: Secret,
    pub api: SlackApi,
}

fn bad_request(why: &str) -> Response {
    tracing::info!(reason = why, "refused a malformed Slack payload");
    (StatusCode::BAD_REQUEST, "bad request").into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "Slack request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// What a person is told when the database fails under their command: a temporary
/// failure, never an answer (the failure is logged once, here).
pub const UNAVAILABLE: &str = "Waiver cannot reach its database right now, so nothing was read or changed. Please try again in a minute.";

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a command failed on the database");
    ephemeral(&text_message(UNAVAILABLE, vec![]))
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

/// An ephemeral reply in the slash command's HTTP response.
fn ephemeral(message: &Message) -> Response {
    Json(json!({
        "response_type": "ephemeral",
        "text": render::fallback(message),
        "blocks": render::blocks(message),
    }))
    .into_response()
}

fn text_message(summary: impl Into<String>, sections: Vec<Section>) -> Message {
    let summary = summary.into();
    let sections = if sections.is_empty() {
        vec![Section::Text {
            label: None,
            text: summary.clone(),
        }]
    } else {
        sections
    };
    Message { summary, sections }
}

/// The person a Slack user is, if their workspace is one of ours.
fn person(gov: &Governance, team: &str, user: &str) -> Result<PersonId, String> {
    if !gov.slack_workspaces.iter().any(|w| w == team) {
        return Err(format!("Workspace {team} is not configured for Waiver."));
    }
    Ok(modals::person_of(gov, team, user))
}

// ---------------------------------------------------------------------------------
// Slash command.

/// `/ai-exception [subcommand]`.
#[derive(Debug, PartialEq, Eq)]
pub enum Subcommand {
    New,
    Help,
    List,
    Pending,
    Status(String),
    Withdraw { reference: String, reason: String },
    Unknown(String),
}

impl Subcommand {
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        let (head, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim();
        match head.to_ascii_lowercase().as_str() {
            "" | "new" | "file" => Subcommand::New,
            "help" | "?" => Subcommand::Help,
            "list" | "mine" => Subcommand::List,
            "pending" | "todo" => Subcommand::Pending,
            "status" => Subcommand::Status(rest.to_string()),
            "withdraw" => {
                let (reference, reason) =
                    rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                Subcommand::Withdraw {
                    reference: reference.to_string(),
                    reason: reason.trim().to_string(),
                }
            }
            _ => Subcommand::Unknown(head.to_string()),
        }
    }
}

fn help(prefix: Option<String>) -> Message {
    let mut sections = Vec::new();
    if let Some(p) = prefix {
        sections.push(Section::Text {
            label: None,
            text: p,
        });
    }
    sections.push(Section::Text {
        label: Some("/ai-exception".into()),
        text: [
            "/ai-exception: file a new AI policy exception (opens the form)",
            "/ai-exception list: your requests and their state",
            "/ai-exception status AIX-0042: one request's timeline",
            "/ai-exception pending: what is waiting on you",
            "/ai-exception withdraw AIX-0042 [reason]: withdraw your request before a decision",
            "/ai-exception help: this message",
        ]
        .join("\n"),
    });
    text_message("How to use /ai-exception", sections)
}

#[derive(Deserialize)]
struct SslCheck {
    ssl_check: Option<String>,
}

pub async fn command(svc: &Service, edge: &SlackEdge, body: &[u8]) -> Response {
    // Slack's SSL check: answered with an empty 200, never dispatched.
    if serde_urlencoded::from_bytes::<SslCheck>(body)
        .is_ok_and(|c| c.ssl_check.as_deref() == Some("1"))
    {
        return ok();
    }
    let Ok(cmd) = serde_urlencoded::from_bytes::<SlackCommandEvent>(body) else {
        return bad_request("slash command form");
    };
    let now = svc.clock().now();
    let gov = svc.governance().clone();
    let me = match person(&gov, cmd.team_id.as_ref(), cmd.user_id.as_ref()) {
        Ok(p) => p,
        Err(why) => {
            let actor = format!("slack:{}:{}", cmd.team_id, cmd.user_id);
            if let Err(e) = svc
                .record_refusal(&actor, None, "slash_command", &why, now, vec![])
                .await
            {
                return unavailable(e);
            }
            return ephemeral(&text_message(why, vec![]));
        }
    };
    match Subcommand::parse(cmd.text.as_deref().unwrap_or_default()) {
        Subcommand::New => {
            let view = modals::intake(&gov, None, &ViewMeta::default());
            open_view(edge, cmd.trigger_id, view);
            ok()
        }
        Subcommand::Help => ephemeral(&help(None)),
        Subcommand::Unknown(word) => {
            ephemeral(&help(Some(format!("Unknown subcommand \"{word}\"."))))
        }
        Subcommand::List => match list(svc, &me).await {
            Ok(m) => ephemeral(&m),
            Err(e) => unavailable(e),
        },
        Subcommand::Pending => match pending(svc, &me, now).await {
            Ok(m) => ephemeral(&m),
            Err(e) => unavailable(e),
        },
        Subcommand::Status(reference) => match status(svc, &me, &reference).await {
            Ok(m) => ephemeral(&m),
            Err(e) => unavailable(e),
        },
        Subcommand::Withdraw { reference, reason } => {
            let Some(id) = RequestId::parse(&reference) else {
                return ephemeral(&text_message(
                    format!("\"{reference}\" is not a reference like AIX-0042."),
                    vec![],
                ));
            };
            let r = match svc.store.load(id).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return ephemeral(&text_message(format!("{id} does not exist."), vec![]));
                }
                Err(e) => return unavailable(e),
            };
            let reason = if reason.is_empty() {
                "withdrawn by the requester".to_string()
            } else {
                reason
            };
            let attempt = Attempt::new(
                Actor::Person(me),
                id,
                r.version(),
                Action::Withdraw { reason },
            );
            match svc.act(attempt, now).await {
                Ok(Acted::Applied { .. }) => {
                    ephemeral(&text_message(format!("{id} was withdrawn."), vec![]))
                }
                Ok(Acted::Refused { error, .. }) => {
                    ephemeral(&text_message(error.to_string(), vec![]))
                }
                Ok(Acted::Duplicate) => ok(),
                Err(ServiceError::NotFound(id)) => {
                    ephemeral(&text_message(format!("{id} does not exist."), vec![]))
                }
                Err(e) => unavailable(e),
            }
        }
    }
}

/// Opens a modal after the acknowledgement (a trigger id lives 3 s and works once).
fn open_view(edge: &SlackEdge, trigger: SlackTriggerId, view: SlackView) {
    let api = edge.api.clone();
    tokio::spawn(async move {
        let req = SlackApiViewsOpenRequest::new(trigger, view);
        if let Err(e) = api.session().views_open(&req).await {
            tracing::warn!(error = %e, "views.open failed");
        }
    });
}

fn line(s: &Summary) -> String {
    let mut l = format!("{} {}: {}", s.id, s.title, s.state.label());
    if let Some(t) = s.tier {
        l.push_str(&format!(" ({t} tier)"));
    }
    if let Some(e) = s.expires_at {
        l.push_str(&format!(
            ", expires {}",
            Timestamp::from_millis(e.millis() - 1).date()
        ));
    }
    l
}

pub async fn list(svc: &Service, me: &PersonId) -> Result<Message, ServiceError> {
    let mine = svc.store.requests_by(me, 50).await?;
    if mine.is_empty() {
        return Ok(text_message(
            "You have not filed any requests. Use /ai-exception to file one.",
            vec![],
        ));
    }
    Ok(text_message(
        format!("Your {} request(s)", mine.len()),
        vec![Section::Text {
            label: Some("Your requests".into()),
            text: mine.iter().map(line).collect::<Vec<_>>().join("\n"),
        }],
    ))
}

/// Everything waiting on `me`: reviews, assessments, feedback, decisions, conditions,
/// attestations and updates.
pub async fn tasks(
    svc: &Service,
    me: &PersonId,
    now: Timestamp,
) -> Result<Vec<(ExceptionRequest, Task)>, ServiceError> {
    let gov = svc.governance();
    let mut candidates = svc
        .store
        .in_states(
            &[
                State::Submitted,
                State::InAssessment,
                State::ReassessmentRequired,
                State::InStakeholderReview,
                State::AwaitingDecision,
            ],
            500,
        )
        .await?;
    for s in svc.store.owned_by(me, 200).await? {
        if let Some(r) = svc.store.load(s.id).await? {
            candidates.push(r);
        }
    }
    for s in svc.store.requests_by(me, 50).await? {
        if s.state == State::NeedsInfo
            && let Some(r) = svc.store.load(s.id).await?
        {
            candidates.push(r);
        }
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in candidates {
        if !seen.insert(r.id) {
            continue;
        }
        for t in r.tasks_for(me, gov, now) {
            out.push((r.clone(), t));
        }
    }
    Ok(out)
}

fn task_label(gov: &Governance, t: &Task) -> String {
    match t {
        Task::ReviewCompleteness => "review completeness".into(),
        Task::Assess(role) => format!(
            "assess for {}",
            gov.role(role)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| role.to_string())
        ),
        Task::GiveFeedback => "give stakeholder feedback".into(),
        Task::Decide => "decide".into(),
        Task::MarkDone(id) => format!("complete condition {id}"),
        Task::Attest => "attest the review".into(),
        Task::Update => "answer the questions and update".into(),
    }
}

pub async fn pending(
    svc: &Service,
    me: &PersonId,
    now: Timestamp,
) -> Result<Message, ServiceError> {
    let gov = svc.governance();
    let work = tasks(svc, me, now).await?;
    if work.is_empty() {
        return Ok(text_message("Nothing is waiting on you.", vec![]));
    }
    let lines: Vec<String> = work
        .iter()
        .map(|(r, t)| {
            format!(
                "{} {}: {}",
                r.reference(),
                r.content().title,
                task_label(gov, t)
            )
        })
        .collect();
    Ok(text_message(
        format!("{} item(s) waiting on you", work.len()),
        vec![Section::Text {
            label: Some("Waiting on you".into()),
            text: lines.join("\n"),
        }],
    ))
}

pub async fn status(
    svc: &Service,
    me: &PersonId,
    reference: &str,
) -> Result<Message, ServiceError> {
    let gov = svc.governance();
    let Some(id) = RequestId::parse(reference) else {
        return Ok(text_message(
            format!("\"{}\" is not a reference like AIX-0042.", reference.trim()),
            vec![],
        ));
    };
    let Some(r) = svc.store.load(id).await? else {
        return Ok(text_message(format!("{id} does not exist."), vec![]));
    };
    // Requests are visible to the people on them and to role holders, not to everyone.
    if !r.is_interested(me) && gov.roles_of(me).next().is_none() {
        return Ok(text_message(
            format!("You are not involved in {id}."),
            vec![],
        ));
    }
    let timeline: Vec<String> = svc
        .store
        .audit_of(id)
        .await?
        .into_iter()
        .filter(|e| e.outcome == Outcome::Applied)
        .map(|e| {
            let who = if e.actor == "scheduler" {
                "Waiver".to_string()
            } else {
                gov.name_of(&PersonId::new(e.actor.clone()))
            };
            let event = e.details["event"]["event"]
                .as_str()
                .unwrap_or(&e.action)
                .replace('_', " ");
            format!("{} · {event} by {who}", e.at)
        })
        .collect();
    Ok(text_message(
        format!("{id}: {}", r.state.label()),
        vec![
            Section::Heading {
                text: format!("{id} · {}", r.content().title),
            },
            Section::Text {
                label: Some("Status".into()),
                text: format!(
                    "{} (version {}). {}",
                    r.state.label(),
                    r.version(),
                    waiting_for(gov, &r)
                ),
            },
            Section::Text {
                label: Some("Timeline".into()),
                text: timeline.join("\n"),
            },
        ],
    ))
}

// ---------------------------------------------------------------------------------
// Interactions.

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

pub async fn interaction(svc: &Service, edge: &SlackEdge, body: &[u8]) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<InteractionForm>(body) else {
        return bad_request("interaction form");
    };
    let event = match serde_json::from_str::<SlackInteractionEvent>(&form.payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "unparseable interaction payload");
            return bad_request("interaction payload");
        }
    };
    match event {
        SlackInteractionEvent::BlockActions(e) => block_action(svc, edge, e).await,
        SlackInteractionEvent::ViewSubmission(e) => view_submission(svc, e).await,
        SlackInteractionEvent::ViewClosed(_) => ok(),
        _ => bad_request("unsupported interaction type"),
    }
}

/// Refuses a click: audit entry plus an ephemeral explanation where they clicked.
async fn refuse(
    svc: &Service,
    attempt: Attempt,
    r: &ExceptionRequest,
    error: WorkflowError,
    now: Timestamp,
) -> Response {
    match svc.refuse_attempt(&attempt, r, &error, now).await {
        Ok(()) => ok(),
        Err(e) => internal(e),
    }
}

async fn block_action(
    svc: &Service,
    edge: &SlackEdge,
    e: SlackInteractionBlockActionsEvent,
) -> Response {
    let now = svc.clock().now();
    let gov = svc.governance().clone();
    let Some(user) = e.user.as_ref() else {
        return bad_request("block action without a user");
    };
    let Some(action) = e.actions.as_ref().and_then(|a| a.first()) else {
        return bad_request("block action without an action");
    };
    let action_id = action.action_id.to_string();
    let name = action_id.split(':').next().unwrap_or_default().to_string();
    let Some(value) = action.value.as_deref().and_then(ButtonValue::parse) else {
        return bad_request("button value");
    };
    // Where an explanation goes: ephemeral in the card's conversation, else a DM.
    let reply = match &e.container {
        SlackInteractionActionContainer::Message(m) => {
            m.channel_id.as_ref().map(|c| Address::Ephemeral {
                channel: c.to_string(),
                user: user.id.to_string(),
            })
        }
        _ => None,
    }
    .unwrap_or(Address::Direct {
        user: user.id.to_string(),
    });
    let me = match person(&gov, e.team.id.as_ref(), user.id.as_ref()) {
        Ok(p) => p,
        Err(why) => {
            let actor = format!("slack:{}:{}", e.team.id, user.id);
            let message = crate::service::refusal_message(
                Platform::Slack,
                reply,
                value.request(),
                &WorkflowError::InvalidTerms(why.clone()),
            );
            return match svc
                .record_refusal(
                    &actor,
                    Some(value.request()),
                    &name,
                    &why,
                    now,
                    vec![message],
                )
                .await
            {
                Ok(()) => ok(),
                Err(e) => internal(e),
            };
        }
    };
    let id = value.request();
    let r = match svc.store.load(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return bad_request("button for an unknown request"),
        Err(e) => return internal(e),
    };
    let attempt = |action: Action| {
        Attempt::new(Actor::Person(me.clone()), id, value.v, action)
            .reply_to(Platform::Slack, reply.clone())
    };
    // Buttons that change state at once.
    let direct = match name.as_str() {
        actions::COMPLETE => Some(Action::MarkComplete),
        actions::WITHDRAW => Some(Action::Withdraw {
            reason: "withdrawn by the requester".into(),
        }),
        actions::MARK_DONE => match value.a.as_deref().and_then(|a| a.parse().ok()) {
            Some(condition) => Some(Action::CompleteCondition { condition }),
            None => return bad_request("condition id"),
        },
        _ => None,
    };
    if let Some(action) = direct {
        return match svc.act(attempt(action), now).await {
            Ok(_) => ok(),
            Err(e) => internal(e),
        };
    }
    // Buttons that open a modal: check first, so nobody fills in a form they cannot submit.
    type View = Box<dyn Fn(&ExceptionRequest) -> SlackView + Send>;
    let (task, view): (Task, View) = match name.as_str() {
        actions::SEND_BACK => (Task::ReviewCompleteness, Box::new(modals::send_back)),
        actions::UPDATE => {
            let g = gov.clone();
            (
                Task::Update,
                Box::new(move |r: &ExceptionRequest| {
                    let meta = ViewMeta {
                        r: Some(r.id.get()),
                        v: Some(r.version()),
                        ..ViewMeta::default()
                    };
                    modals::intake(&g, Some(&r.content().to_input()), &meta)
                }),
            )
        }
        actions::ASSESS => {
            let Some(role) = value.a.clone().map(RoleId::new) else {
                return bad_request("assessing role");
            };
            let g = gov.clone();
            (
                Task::Assess(role.clone()),
                Box::new(move |r: &ExceptionRequest| modals::assess(&g, r, &role)),
            )
        }
        actions::FEEDBACK => (Task::GiveFeedback, Box::new(modals::feedback)),
        actions::APPROVE => {
            let g = gov.clone();
            let today = now.date();
            (
                Task::Decide,
                Box::new(move |r: &ExceptionRequest| modals::approve(&g, r, today)),
            )
        }
        actions::REJECT => (Task::Decide, Box::new(modals::reject)),
        actions::ATTEST => {
            let Some(answer) = value.a.as_deref().and_then(AttestationAnswer::parse) else {
                return bad_request("attestation answer");
            };
            (
                Task::Attest,
                Box::new(move |r: &ExceptionRequest| modals::attest(r, answer)),
            )
        }
        actions::RENEW => {
            if let Err(error) = r.may_renew(&me) {
                // Renew… has no action of its own: audit the refusal as a renewal (as
                // `Service::submit` does), not as the placeholder action's name.
                let a = attempt(Action::Comment {
                    text: String::new(),
                });
                return match svc.refuse(&a, "renew", &r, &error, now).await {
                    Ok(()) => ok(),
                    Err(e) => internal(e),
                };
            }
            let meta = ViewMeta {
                renews: Some(r.id.get()),
                ..ViewMeta::default()
            };
            let input = r.renewal_input(now.date());
            open_view(
                edge,
                e.trigger_id.clone(),
                modals::intake(&gov, Some(&input), &meta),
            );
            return ok();
        }
        _ => return bad_request("unknown action id"),
    };
    if let Err(error) = r.may(&me, value.v, &task, &gov, now) {
        // The audit trail names the button that was refused.
        let action = match name.as_str() {
            actions::REJECT => Action::Reject {
                reason: String::new(),
            },
            actions::SEND_BACK => Action::SendBack {
                questions: String::new(),
            },
            _ => task.probe(&r, &me, now),
        };
        return refuse(svc, attempt(action), &r, error, now).await;
    }
    open_view(edge, e.trigger_id.clone(), view(&r));
    ok()
}

/// A `view_submission` answer: close the modal, or show errors inside it.
fn errors(errors: BlockErrors) -> Response {
    let map: HashMap<String, String> = errors.into_iter().collect();
    Json(json!({ "response_action": "errors", "errors": map })).into_response()
}

/// Puts a refusal next to the field it is about (or on the modal's first input).
fn refusal_errors(error: &WorkflowError, first_block: &str) -> Response {
    let block = match error {
        WorkflowError::ExpiryBeyondMaximum { .. } => "expiry".to_string(),
        WorkflowError::ConfirmationMismatch { .. } => "confirm".into(),
        WorkflowError::InvalidTerms(t) if t.contains("expiry") => "expiry".into(),
        WorkflowError::InvalidTerms(t) if t.contains("start") => "start".into(),
        WorkflowError::InvalidTerms(t) if t.starts_with("Condition ") => {
            let n: String = t[10..].chars().take_while(char::is_ascii_digit).collect();
            format!("c{n}_text")
        }
        _ => first_block.to_string(),
    };
    errors([(block, error.to_string())].into())
}

async fn view_submission(svc: &Service, e: SlackInteractionViewSubmissionEvent) -> Response {
    let now = svc.clock().now();
    let gov = svc.governance().clone();
    let (callback_id, private_metadata) = match &e.view.view {
        SlackView::Modal(m) => (
            m.callback_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            m.private_metadata.clone(),
        ),
        SlackView::Home(_) => return bad_request("home view submission"),
    };
    let meta = ViewMeta::parse(private_metadata.as_deref());
    let team = e.team.id.to_string();
    let me = match person(&gov, &team, e.user.id.as_ref()) {
        Ok(p) => p,
        Err(why) => {
            let actor = format!("slack:{team}:{}", e.user.id);
            return match svc
                .record_refusal(
                    &actor,
                    meta.r.map(RequestId::new),
                    &callback_id,
                    &why,
                    now,
                    vec![],
                )
                .await
            {
                Ok(()) => errors([(first_block(&callback_id).to_string(), why)].into()),
                Err(e) => internal(e),
            };
        }
    };
    let form = Form::new(&e.view);
    let first = first_block(&callback_id);

    if callback_id == callback::INTAKE && meta.r.is_none() {
        let input = modals::parse_intake(&gov, &team, &form);
        return match svc
            .submit(&me, &input, meta.renews.map(RequestId::new), now)
            .await
        {
            Ok(Submitted::Filed(_)) => ok(),
            Ok(Submitted::Invalid(fields)) => errors(
                fields
                    .into_iter()
                    .map(|(f, m)| (f.as_str().to_string(), m))
                    .collect(),
            ),
            Ok(Submitted::Refused(error)) => {
                errors([(first.to_string(), error.to_string())].into())
            }
            Err(e) => internal(e),
        };
    }

    let (Some(r), Some(v)) = (meta.r, meta.v) else {
        return bad_request("modal without a request");
    };
    let id = RequestId::new(r);
    let action = match callback_id.as_str() {
        callback::INTAKE => {
            let input = modals::parse_intake(&gov, &team, &form);
            match crate::domain::RequestContent::parse(&input, &gov, now.date()) {
                Ok(content) => Action::Update {
                    content: Box::new(content),
                    note: Some("answers to the reviewer's questions".into()),
                },
                Err(fields) => {
                    return errors(
                        fields
                            .into_iter()
                            .map(|(f, m)| (f.as_str().to_string(), m))
                            .collect(),
                    );
                }
            }
        }
        callback::SEND_BACK => Action::SendBack {
            questions: form.text("questions"),
        },
        callback::ASSESS => {
            let Some(role) = meta.a.clone().map(RoleId::new) else {
                return bad_request("assessment without a role");
            };
            match modals::parse_assessment(&form, role) {
                Ok(input) => Action::Assess(input),
                Err(e) => return errors(e),
            }
        }
        callback::FEEDBACK => {
            let Some(recommendation) =
                crate::domain::Recommendation::parse(&form.option("recommendation"))
            else {
                return errors(
                    [(
                        "recommendation".to_string(),
                        "Choose a recommendation.".to_string(),
                    )]
                    .into(),
                );
            };
            Action::Feedback {
                recommendation,
                text: form.text("comment"),
            }
        }
        callback::APPROVE => match modals::parse_approval(&gov, &team, &form) {
            Ok((terms, confirmation)) => Action::Approve {
                terms,
                confirmation,
            },
            Err(e) => return errors(e),
        },
        callback::REJECT => Action::Reject {
            reason: form.text("reason"),
        },
        callback::ATTEST => {
            let Some(answer) = meta.a.as_deref().and_then(AttestationAnswer::parse) else {
                return bad_request("attestation without an answer");
            };
            Action::Attest {
                answer,
                note: form.text("note"),
            }
        }
        _ => return bad_request("unknown modal"),
    };
    let attempt = Attempt::new(Actor::Person(me), id, v, action);
    match svc.act(attempt, now).await {
        Ok(Acted::Applied { .. } | Acted::Duplicate) => ok(),
        Ok(Acted::Refused { error, .. }) => match error {
            WorkflowError::Invalid(fields) => errors(
                fields
                    .into_iter()
                    .map(|(f, m)| (f.as_str().to_string(), m))
                    .collect(),
            ),
            other => refusal_errors(&other, first),
        },
        Err(e) => internal(e),
    }
}

/// The first input block of each modal, where general errors are shown.
fn first_block(callback_id: &str) -> &'static str {
    match callback_id {
        callback::INTAKE => Field::Title.as_str(),
        callback::SEND_BACK => "questions",
        callback::ASSESS => "findings",
        callback::FEEDBACK => "recommendation",
        callback::APPROVE => "start",
        callback::REJECT => "reason",
        callback::ATTEST => "note",
        _ => "value",
    }
}

// ---------------------------------------------------------------------------------
// Events API.

pub async fn event(svc: &Service, edge: &SlackEdge, body: &[u8]) -> Response {
    let Ok(event) = serde_json::from_slice::<SlackPushEvent>(body) else {
        return bad_request("event payload");
    };
    match event {
        // Answered only after the signature verified, and never dispatched.
        SlackPushEvent::UrlVerification(v) => {
            Json(json!({ "challenge": v.challenge })).into_response()
        }
        SlackPushEvent::AppRateLimited(_) => ok(),
        SlackPushEvent::EventCallback(cb) => {
            let now = svc.clock().now();
            let key = format!("slack-event:{}", cb.event_id);
            match cb.event {
                SlackEventCallbackBody::Message(m) => {
                    thread_reply(svc, cb.team_id.as_ref(), m, key, now).await
                }
                SlackEventCallbackBody::AppHomeOpened(h) => {
                    match svc.store.claim_idempotency_key(&key, now).await {
                        Ok(true) => {
                            let svc = svc.clone();
                            let edge = edge.clone();
                            let team = cb.team_id.to_string();
                            tokio::spawn(async move {
                                if let Err(e) = publish_home(
                                    &svc,
                                    &edge,
                                    &team,
                                    h.user.as_ref(),
                                    svc.clock().now(),
                                )
                                .await
                                {
                                    tracing::warn!(error = %e, "could not publish App Home");
                                }
                            });
                            ok()
                        }
                        Ok(false) => ok(),
                        Err(e) => internal(e),
                    }
                }
                _ => ok(),
            }
        }
    }
}

/// A reply in a card's thread becomes a comment on the request.
async fn thread_reply(
    svc: &Service,
    team: &str,
    m: SlackMessageEvent,
    key: String,
    now: Timestamp,
) -> Response {
    // Ignore bots (ourselves included), edits, joins and top-level messages.
    if m.sender.bot_id.is_some() || m.subtype.is_some() {
        return ok();
    }
    let (Some(user), Some(thread_ts), Some(channel)) = (
        m.sender.user.as_ref(),
        m.origin.thread_ts.as_ref(),
        m.origin.channel.as_ref(),
    ) else {
        return ok();
    };
    if thread_ts == &m.origin.ts {
        return ok();
    }
    let text = m
        .content
        .as_ref()
        .and_then(|c| c.text.clone())
        .unwrap_or_default();
    if text.trim().is_empty() {
        return ok();
    }
    // A reply can beat the worker's record of where the card was posted by a few
    // milliseconds; in channels where cards go, wait briefly (Slack allows 3 s)
    // before deciding the thread is not a card's.
    let ours = svc
        .governance()
        .roles
        .values()
        .any(|r| r.channels.slack.as_deref() == Some(channel.as_ref()));
    let mut found = None;
    for attempt in 0..10 {
        match svc
            .store
            .request_of_message(Platform::Slack, channel.as_ref(), thread_ts.as_ref())
            .await
        {
            Ok(Some(id)) => {
                found = Some(id);
                break;
            }
            Ok(None) if attempt < 9 && ours => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(None) => break,
            Err(e) => return internal(e),
        }
    }
    let Some(id) = found else {
        return ok();
    };
    let gov = svc.governance();
    let Ok(me) = person(gov, team, user.as_ref()) else {
        return ok();
    };
    let version = match svc.store.load(id).await {
        Ok(Some(r)) => r.version(),
        Ok(None) => return ok(),
        Err(e) => return internal(e),
    };
    let attempt =
        Attempt::new(Actor::Person(me), id, version, Action::Comment { text }).idempotent(key);
    match svc.act(attempt, now).await {
        Ok(_) => ok(),
        Err(e) => internal(e),
    }
}

/// App Home: my requests, my pending tasks, the exceptions I own.
pub async fn publish_home(
    svc: &Service,
    edge: &SlackEdge,
    team: &str,
    user: &str,
    now: Timestamp,
) -> Result<(), String> {
    let gov = svc.governance();
    let me = person(gov, team, user)?;
    let mine = svc
        .store
        .requests_by(&me, 20)
        .await
        .map_err(|e| e.to_string())?;
    let work = tasks(svc, &me, now).await.map_err(|e| e.to_string())?;
    let owned = svc
        .store
        .owned_by(&me, 20)
        .await
        .map_err(|e| e.to_string())?;
    let or_none = |lines: Vec<String>, none: &str| {
        if lines.is_empty() {
            none.to_string()
        } else {
            lines.join("\n")
        }
    };
    let owned_lines: Vec<String> = owned
        .iter()
        .map(|s| {
            let mut l = line(s);
            if let Some(n) = s.next_review_at {
                l.push_str(&format!(", next review {}", n.date()));
            }
            l
        })
        .collect();
    let message = Message {
        summary: "Waiver".into(),
        sections: vec![
            Section::Heading {
                text: "AI policy exceptions".into(),
            },
            Section::Context {
                text: "File a new request with /ai-exception.".into(),
            },
            Section::Text {
                label: Some("Waiting on you".into()),
                text: or_none(
                    work.iter()
                        .map(|(r, t)| {
                            format!(
                                "{} {}: {}",
                                r.reference(),
                                r.content().title,
                                task_label(gov, t)
                            )
                        })
                        .collect(),
                    "Nothing is waiting on you.",
                ),
            },
            Section::Divider,
            Section::Text {
                label: Some("Your requests".into()),
                text: or_none(
                    mine.iter().map(line).collect(),
                    "You have not filed any requests.",
                ),
            },
            Section::Divider,
            Section::Text {
                label: Some("Exceptions you own".into()),
                text: or_none(owned_lines, "You do not monitor any exception."),
            },
        ],
    };
    let view = SlackView::Home(SlackHomeView::new(render::blocks(&message)));
    let req = SlackApiViewsPublishRequest::new(SlackUserId::new(user.to_string()), view);
    edge.api
        .session()
        .views_publish(&req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::Subcommand;

    #[test]
    fn subcommands_parse() {
        assert_eq!(Subcommand::parse(""), Subcommand::New);
        assert_eq!(Subcommand::parse("  HELP "), Subcommand::Help);
        assert_eq!(Subcommand::parse("list"), Subcommand::List);
        assert_eq!(Subcommand::parse("pending"), Subcommand::Pending);
        assert_eq!(
            Subcommand::parse("status AIX-0042"),
            Subcommand::Status("AIX-0042".into())
        );
        assert_eq!(
            Subcommand::parse("withdraw AIX-7 not needed anymore"),
            Subcommand::Withdraw {
                reference: "AIX-7".into(),
                reason: "not needed anymore".into()
            }
        );
        assert_eq!(
            Subcommand::parse("frobnicate now"),
            Subcommand::Unknown("frobnicate".into())
        );
    }
}

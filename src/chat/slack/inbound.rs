//! Verified Slack requests → neutral intents → Slack responses.
//!
//! This file only translates: a slash command's form, a `block_actions` or
//! `view_submission` payload, an Events API callback become a [`PlatformUser`] and an
//! intent for [`crate::interact`], which decides what it means; its [`Reply`] becomes
//! what Slack expects (an ephemeral message in the HTTP response, `response_action:
//! errors`, a modal opened with `views.open`, App Home published with
//! `views.publish`). Refusals of clicks go ephemerally through the outbox (Slack's
//! HTTP answer to a click cannot carry a message). Slow calls (opening a modal,
//! publishing Home) run after the acknowledgement, as tracked tasks that a graceful
//! shutdown waits for; state changes commit before it.

use std::collections::HashMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use slack_morphism::prelude::*;
use tokio_util::task::TaskTracker;

use super::client::SlackApi;
use super::modals;
use super::render::{self, ButtonValue};
use crate::config::Secret;
use crate::domain::FieldErrors;
use crate::interact::{self, Click, Origin, PlatformUser, Reply};
use crate::message::{Address, ButtonAction, Message};
use crate::service::{Service, ServiceError};

/// What the Slack edge needs: the signing secret, the Web API client, and the tasks
/// it started after acknowledging (graceful shutdown waits for them).
#[derive(Clone)]
pub struct SlackEdge {
    /// None in Socket Mode without a signing secret: the HTTP routes then refuse.
    pub signing_secret: Option<Secret>,
    pub api: SlackApi,
    pub tasks: TaskTracker,
}

fn bad_request(why: &str) -> Response {
    tracing::info!(reason = why, "refused a malformed Slack payload");
    (StatusCode::BAD_REQUEST, "bad request").into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "Slack request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
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

/// A `view_submission` answer that keeps the modal open with errors in it.
fn field_errors(errors: FieldErrors) -> Response {
    let map: HashMap<String, String> = errors.into_iter().map(|(f, m)| (f.id(), m)).collect();
    Json(json!({ "response_action": "errors", "errors": map })).into_response()
}

/// Opens a modal after the acknowledgement (a trigger id lives 3 s and works once).
fn open_form(svc: &Service, edge: &SlackEdge, trigger: SlackTriggerId, spec: &interact::FormSpec) {
    let view = modals::view(svc.governance(), spec);
    let api = edge.api.clone();
    edge.tasks.spawn(async move {
        let req = SlackApiViewsOpenRequest::new(trigger, view);
        if let Err(e) = api.session().views_open(&req).await {
            tracing::warn!(error = %e, "views.open failed");
        }
    });
}

/// What a slash command or a click is answered with.
fn answer(
    svc: &Service,
    edge: &SlackEdge,
    trigger: SlackTriggerId,
    reply: Result<Reply, ServiceError>,
    in_response: bool,
) -> Response {
    match reply {
        Ok(Reply::Form(spec)) => {
            open_form(svc, edge, trigger, &spec);
            ok()
        }
        Ok(Reply::Message(m) | Reply::Refused(m)) if in_response => ephemeral(&m),
        Ok(Reply::Message(_) | Reply::Refused(_) | Reply::Ack | Reply::FieldErrors(_)) => ok(),
        Ok(Reply::BadRequest(why)) => bad_request(why),
        Err(e) if in_response => {
            tracing::error!(error = %e, "a command failed on the database");
            ephemeral(&interact::command::text(interact::UNAVAILABLE))
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct SslCheck {
    ssl_check: Option<String>,
}

/// `POST /slack/commands`.
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
    command_event(svc, edge, cmd).await
}

/// A slash command, however it arrived (HTTP or Socket Mode).
pub async fn command_event(svc: &Service, edge: &SlackEdge, cmd: SlackCommandEvent) -> Response {
    let who = PlatformUser::Slack {
        workspace: cmd.team_id.to_string(),
        user: cmd.user_id.to_string(),
    };
    let now = svc.clock().now();
    let typed = cmd.text.as_deref().unwrap_or_default();
    let reply = interact::command(svc, &who, typed, now).await;
    answer(svc, edge, cmd.trigger_id, reply, true)
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// `POST /slack/interactions`.
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
    interaction_event(svc, edge, event).await
}

/// A click or a modal submission, however it arrived (HTTP or Socket Mode).
pub async fn interaction_event(
    svc: &Service,
    edge: &SlackEdge,
    event: SlackInteractionEvent,
) -> Response {
    match event {
        SlackInteractionEvent::BlockActions(e) => block_action(svc, edge, e).await,
        SlackInteractionEvent::ViewSubmission(e) => view_submission(svc, e).await,
        SlackInteractionEvent::ViewClosed(_) => ok(),
        _ => bad_request("unsupported interaction type"),
    }
}

async fn block_action(
    svc: &Service,
    edge: &SlackEdge,
    e: SlackInteractionBlockActionsEvent,
) -> Response {
    let Some(user) = e.user.as_ref() else {
        return bad_request("block action without a user");
    };
    let Some(action) = e.actions.as_ref().and_then(|a| a.first()) else {
        return bad_request("block action without an action");
    };
    let action_id = action.action_id.to_string();
    let name = action_id.split(':').next().unwrap_or_default();
    let Some(button) = ButtonAction::parse(name) else {
        return bad_request("unknown action id");
    };
    let Some(value) = action.value.as_deref().and_then(ButtonValue::parse) else {
        return bad_request("button value");
    };
    // Where an explanation goes: ephemeral in the card's conversation, else a DM.
    let reply_to = match &e.container {
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
    let origin = Origin {
        user: PlatformUser::Slack {
            workspace: e.team.id.to_string(),
            user: user.id.to_string(),
        },
        reply_to: Some(reply_to),
        // A click is delivered once over HTTP, but Socket Mode re-sends an envelope
        // whose acknowledgement was lost: its trigger id makes that a duplicate.
        idempotency_key: Some(format!("slack-trigger:{}", e.trigger_id)),
    };
    let click = Click {
        action: button,
        request: value.request(),
        version: value.v,
        arg: value.a.clone(),
    };
    let now = svc.clock().now();
    let reply = interact::click(svc, &origin, click, now).await;
    answer(svc, edge, e.trigger_id.clone(), reply, false)
}

async fn view_submission(svc: &Service, e: SlackInteractionViewSubmissionEvent) -> Response {
    if matches!(e.view.view, SlackView::Home(_)) {
        return bad_request("home view submission");
    }
    let who = PlatformUser::Slack {
        workspace: e.team.id.to_string(),
        user: e.user.id.to_string(),
    };
    let Some((kind, meta, values)) = modals::read(svc.governance(), &who, &e.view) else {
        return bad_request("unknown modal");
    };
    let now = svc.clock().now();
    // Over HTTP Slack does not re-send a view submission; Socket Mode re-sends an
    // envelope whose acknowledgement was lost, with the same trigger id.
    let origin = Origin {
        user: who,
        reply_to: None,
        idempotency_key: e.trigger_id.as_ref().map(|t| format!("slack-trigger:{t}")),
    };
    match interact::submit(svc, &origin, kind, meta, values, now).await {
        Ok(Reply::FieldErrors(errors)) => field_errors(errors),
        Ok(Reply::BadRequest(why)) => bad_request(why),
        Ok(_) => ok(),
        Err(e) => internal(e),
    }
}

/// `POST /slack/events`.
pub async fn event(svc: &Service, edge: &SlackEdge, body: &[u8]) -> Response {
    let Ok(event) = serde_json::from_slice::<SlackPushEvent>(body) else {
        return bad_request("event payload");
    };
    push_event(svc, edge, event).await
}

/// An Events API event, however it arrived (HTTP or Socket Mode).
pub async fn push_event(svc: &Service, edge: &SlackEdge, event: SlackPushEvent) -> Response {
    match event {
        // Answered only after the signature verified, and never dispatched.
        SlackPushEvent::UrlVerification(v) => {
            Json(json!({ "challenge": v.challenge })).into_response()
        }
        SlackPushEvent::AppRateLimited(_) => ok(),
        SlackPushEvent::EventCallback(cb) => {
            let now = svc.clock().now();
            let key = format!("slack-event:{}", cb.event_id);
            let team = cb.team_id.to_string();
            match cb.event {
                SlackEventCallbackBody::Message(m) => thread_reply(svc, team, m, key).await,
                SlackEventCallbackBody::AppHomeOpened(h) => match svc.claim(&key, now).await {
                    Ok(true) => {
                        let who = PlatformUser::Slack {
                            workspace: team,
                            user: h.user.to_string(),
                        };
                        publish_home(svc, edge, who);
                        ok()
                    }
                    Ok(false) => ok(),
                    Err(e) => internal(e),
                },
                _ => ok(),
            }
        }
    }
}

/// A reply in a card's thread becomes a comment on the request.
async fn thread_reply(svc: &Service, team: String, m: SlackMessageEvent, key: String) -> Response {
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
    let who = PlatformUser::Slack {
        workspace: team,
        user: user.to_string(),
    };
    let now = svc.clock().now();
    match interact::thread_reply(
        svc,
        &who,
        channel.as_ref(),
        thread_ts.as_ref(),
        text,
        key,
        now,
    )
    .await
    {
        Ok(_) => ok(),
        Err(e) => internal(e),
    }
}

/// Publishes `who`'s App Home after the acknowledgement.
fn publish_home(svc: &Service, edge: &SlackEdge, who: PlatformUser) {
    let (svc, api) = (svc.clone(), edge.api.clone());
    edge.tasks.spawn(async move {
        let now = svc.clock().now();
        let message = match interact::home(&svc, &who, now).await {
            Ok(Ok(m)) => m,
            Ok(Err(why)) => {
                tracing::info!(reason = %why, "no App Home for this user");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not build App Home");
                return;
            }
        };
        let view = SlackView::Home(SlackHomeView::new(render::blocks(&message)));
        let req = SlackApiViewsPublishRequest::new(SlackUserId::new(who.user_id().into()), view);
        if let Err(e) = api.session().views_publish(&req).await {
            tracing::warn!(error = %e, "could not publish App Home");
        }
    });
}

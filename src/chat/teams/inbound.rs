//! Verified Bot Framework activities → neutral intents → Bot Framework answers.
//!
//! This file only translates: a message to the bot becomes a command (or, in a
//! card's thread, a comment), `adaptiveCard/action` a click, `task/fetch` a click or
//! command that opens a form, `task/submit` a submitted form — for
//! [`crate::interact`] to decide. Invokes are answered in the HTTP response (a dialog,
//! field errors inside it, a message, a refusal); answers to messages are posted as
//! replies after the acknowledgement, as tracked tasks. Every activity's conversation
//! reference is remembered, so proactive messages can reach its people and channels;
//! an activity re-sent with the same id is processed once.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use super::auth::Verifier;
use super::cards;
use super::deliver::{ConversationRef, TeamsDelivery, tenant_key};
use crate::domain::{FieldErrors, RequestId};
use crate::interact::{self, Click, Origin, PlatformUser, Reply};
use crate::message::{Address, Platform};
use crate::service::{Service, ServiceError};

/// What the Teams edge needs.
#[derive(Clone)]
pub struct TeamsEdge {
    pub verifier: Arc<Verifier>,
    pub delivery: Arc<TeamsDelivery>,
    pub tasks: TaskTracker,
    /// The references remembered lately (address → reference): a reference that did
    /// not change is not written again.
    pub remembered: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Account {
    aad_object_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    #[serde(default)]
    id: String,
    conversation_type: Option<String>,
    tenant_id: Option<String>,
}

/// The parts of an activity Waiver reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activity {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    service_url: String,
    channel_id: String,
    #[serde(default)]
    from: Account,
    #[serde(default)]
    conversation: Conversation,
    text: Option<String>,
    name: Option<String>,
    reply_to_id: Option<String>,
    value: Option<Value>,
    #[serde(default)]
    channel_data: Value,
}

impl Activity {
    fn tenant(&self) -> Option<String> {
        self.conversation.tenant_id.clone().or_else(|| {
            self.channel_data["tenant"]["id"]
                .as_str()
                .map(str::to_string)
        })
    }

    fn who(&self) -> Option<PlatformUser> {
        Some(PlatformUser::Teams {
            tenant: self.tenant()?,
            aad_object_id: self.from.aad_object_id.clone()?,
        })
    }

    /// The channel it came from, if it came from one: (channel id, thread root).
    fn channel(&self) -> Option<(String, Option<String>)> {
        let channel = self.channel_data["channel"]["id"].as_str()?.to_string();
        let root = self
            .conversation
            .id
            .split_once(";messageid=")
            .map(|(_, root)| root.to_string());
        Some((channel, root))
    }
}

/// A refused token or activity: its status, and its reason for the metrics.
fn refused(e: &super::auth::AuthError) -> Response {
    let mut response = status(e.status());
    response.extensions_mut().insert(crate::metrics::Refused {
        platform: "teams",
        reason: e.reason(),
    });
    response
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::UNAUTHORIZED)
        .into_response()
}

fn bad_request(why: &str) -> Response {
    tracing::info!(reason = why, "refused a malformed Teams activity");
    (StatusCode::BAD_REQUEST, "bad request").into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "Teams activity failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// An `adaptiveCard/action` answer: a message shown to whoever clicked.
fn card_action_message(text: &str) -> Response {
    Json(json!({
        "statusCode": 200,
        "type": "application/vnd.microsoft.activity.message",
        "value": text,
    }))
    .into_response()
}

/// `POST /api/messages`.
pub async fn activity(
    svc: &Service,
    edge: &TeamsEdge,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let verified = match edge.verifier.verify(authorization).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(reason = %e, "refused a Teams request");
            return refused(&e);
        }
    };
    let Ok(a) = serde_json::from_slice::<Activity>(body) else {
        return bad_request("activity");
    };
    if let Err(e) = edge
        .verifier
        .check_activity(&verified, &a.channel_id, &a.service_url)
    {
        tracing::warn!(reason = %e, "refused a Teams request");
        return refused(&e);
    }
    let now = svc.clock().now();
    if let Err(e) = remember(svc, edge, &a).await {
        return internal(e);
    }
    // Teams re-sends an activity it got no answer to within 15 s: once only. Invokes
    // (card actions, dialog submissions) carry the activity id as the idempotency key
    // of the commit they make, so a crash between the two can lose nothing; a message
    // claims its id first (a command answered twice is worse than one unanswered).
    if let Some(id) = a.id.as_ref().filter(|_| a.kind != "invoke") {
        match svc.claim(&format!("teams-activity:{id}"), now).await {
            Ok(true) => {}
            Ok(false) => return StatusCode::OK.into_response(),
            Err(e) => return internal(e),
        }
    }
    let (kind, mut response) = match a.kind.as_str() {
        "message" => ("message", message(svc, edge, a).await),
        "invoke" => ("invoke", invoke(svc, a).await),
        // Installed, added to a team, members joined: the references are remembered.
        _ => ("update", StatusCode::OK.into_response()),
    };
    response
        .extensions_mut()
        .insert(crate::metrics::AckKind(kind));
    response
}

/// Remembers how to reach the activity's tenant, person and channel (written only
/// when it changed since this process last wrote it).
async fn remember(svc: &Service, edge: &TeamsEdge, a: &Activity) -> Result<(), ServiceError> {
    let Some(tenant) = a.tenant() else {
        return Ok(());
    };
    let now = svc.clock().now();
    let reference = |conversation_id: &str| {
        ConversationRef {
            service_url: a.service_url.clone(),
            conversation_id: conversation_id.to_string(),
            tenant_id: tenant.clone(),
        }
        .encode()
    };
    let mut learned = vec![(tenant_key(&tenant), reference(""))];
    if a.conversation.conversation_type.as_deref() == Some("personal")
        && let Some(aad) = &a.from.aad_object_id
    {
        let to = Address::Direct { user: aad.clone() };
        learned.push((to.target(), reference(&a.conversation.id)));
    }
    if let Some((channel, _)) = a.channel() {
        let to = Address::Channel {
            channel: channel.clone(),
        };
        learned.push((to.target(), reference(&channel)));
    }
    for (address, r) in learned {
        let known = {
            let seen = edge.remembered.lock().unwrap_or_else(|p| p.into_inner());
            seen.get(&address) == Some(&r)
        };
        if known {
            continue;
        }
        svc.remember(Platform::Teams, &address, &r, now).await?;
        let mut seen = edge.remembered.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.clear();
        }
        seen.insert(address, r);
    }
    Ok(())
}

/// The command someone typed: without the bot's @mention and without the command's
/// own name (`ai-exception status AIX-1` and `status AIX-1` are the same).
fn typed(text: &str) -> String {
    let mut out = text.to_string();
    while let (Some(start), Some(end)) = (out.find("<at>"), out.find("</at>")) {
        if end < start {
            break;
        }
        out.replace_range(start..end + 5, "");
    }
    let out = out.trim();
    let name = interact::command::invocation(Platform::Teams);
    match (out.get(..name.len()), out.get(name.len()..)) {
        (Some(head), Some(rest))
            if head.eq_ignore_ascii_case(name)
                && (rest.is_empty() || rest.starts_with(char::is_whitespace)) =>
        {
            rest.trim().to_string()
        }
        _ => out.to_string(),
    }
}

async fn message(svc: &Service, edge: &TeamsEdge, a: Activity) -> Response {
    let Some(who) = a.who() else {
        return StatusCode::OK.into_response();
    };
    let now = svc.clock().now();
    let text = typed(a.text.as_deref().unwrap_or_default());
    // A reply in a card's thread is a comment on its request.
    if let Some((channel, Some(root))) = a.channel() {
        let key = format!("teams-message:{}", a.id.clone().unwrap_or_default());
        return match interact::thread_reply(svc, &who, &channel, &root, text, key, now).await {
            Ok(_) => StatusCode::OK.into_response(),
            Err(e) => internal(e),
        };
    }
    let card = match interact::command(svc, &who, &text, now).await {
        Ok(Reply::Message(m) | Reply::Refused(m)) => cards::message(&m),
        Ok(Reply::Form(spec)) => cards::open_form_card(&spec, &text),
        Ok(_) => return StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a command failed on the database");
            cards::message(&interact::command::text(interact::UNAVAILABLE))
        }
    };
    let reply_to = ConversationRef {
        service_url: a.service_url.clone(),
        conversation_id: a.conversation.id.clone(),
        tenant_id: a.tenant().unwrap_or_default(),
    };
    let (delivery, activity_id) = (edge.delivery.clone(), a.id.clone());
    edge.tasks.spawn(async move {
        if let Err(e) = delivery
            .reply(&reply_to, activity_id.as_deref(), card)
            .await
        {
            tracing::warn!(error = ?e, "Teams: could not answer a message");
        }
    });
    StatusCode::OK.into_response()
}

/// A click's data as a neutral click.
fn click_of(data: &Value) -> Option<Click> {
    let (action, r, v, arg) = cards::read_button(data)?;
    Some(Click {
        action,
        request: RequestId::new(r),
        version: v,
        arg,
    })
}

/// An `adaptiveCard/action` answer that shows `o`'s card in place of the clicked one.
fn card_answer(o: &crate::message::Outgoing) -> Response {
    Json(json!({
        "statusCode": 200,
        "type": cards::CONTENT_TYPE,
        "value": cards::outgoing(o),
    }))
    .into_response()
}

/// The answer to a click that was taken: the card as it now stands, for whoever
/// clicked (the delivery worker updates it for everyone else).
async fn refreshed(svc: &Service, a: &Activity) -> Response {
    let conversation = a
        .conversation
        .id
        .split(";messageid=")
        .next()
        .unwrap_or_default();
    let card = match &a.reply_to_id {
        Some(id) => svc.card_now(Platform::Teams, conversation, id).await,
        None => Ok(None),
    };
    match card {
        Ok(Some(o)) => card_answer(&o),
        Ok(None) => card_action_message("Recorded. The card updates in a moment."),
        Err(e) => internal(e),
    }
}

/// A card viewed (its refresh action): the card as it now stands. Only where the
/// card goes — its channel, or the chat of the person it is for — so that no one
/// reads another conversation's card by naming its key.
async fn refresh(svc: &Service, a: &Activity, who: &PlatformUser, key: &str) -> Response {
    let outgoing = match svc.card_message(Platform::Teams, key).await {
        Ok(o) => o,
        Err(e) => return internal(e),
    };
    let here = a.conversation.id.split(";messageid=").next();
    let theirs = outgoing.filter(|o| match &o.to {
        Address::Channel { channel } => {
            a.channel().is_some_and(|(c, _)| &c == channel) || here == Some(channel.as_str())
        }
        Address::Direct { user } => a.channel().is_none() && who.user_id() == user,
        Address::Ephemeral { .. } => false,
    });
    match theirs {
        Some(o) => card_answer(&o),
        None => card_action_message("This card cannot be shown here."),
    }
}

async fn invoke(svc: &Service, a: Activity) -> Response {
    let Some(who) = a.who() else {
        return bad_request("invoke without a user");
    };
    let now = svc.clock().now();
    let value = a.value.clone().unwrap_or(Value::Null);
    let origin = Origin {
        user: who.clone(),
        reply_to: None,
        idempotency_key: a.id.as_ref().map(|id| format!("teams-activity:{id}")),
    };
    let gov = svc.governance().clone();
    match a.name.as_deref() {
        Some("adaptiveCard/action") => {
            if let Some(key) = cards::read_refresh(&value["action"]["data"]) {
                return refresh(svc, &a, &who, key).await;
            }
            let Some(click) = click_of(&value["action"]["data"]) else {
                return bad_request("card action data");
            };
            match interact::click(svc, &origin, click, now).await {
                Ok(Reply::Ack) => refreshed(svc, &a).await,
                Ok(Reply::Refused(m) | Reply::Message(m)) => card_action_message(&m.summary),
                Ok(Reply::Form(_)) => card_action_message("Open the form from the card's button."),
                Ok(Reply::FieldErrors(_)) => card_action_message("Please try again."),
                Ok(Reply::BadRequest(why)) => bad_request(why),
                Err(e) => internal(e),
            }
        }
        Some("task/fetch") => {
            let data = &value["data"];
            let reply = if let Some(typed) = data.get("command").and_then(Value::as_str) {
                interact::command(svc, &who, typed, now).await
            } else if let Some(click) = click_of(data) {
                interact::click(svc, &origin, click, now).await
            } else {
                return bad_request("dialog data");
            };
            match reply {
                Ok(Reply::Form(spec)) => Json(cards::dialog(
                    &spec.title,
                    cards::form(&gov, &spec, &FieldErrors::new()),
                ))
                .into_response(),
                Ok(Reply::Refused(m) | Reply::Message(m)) => {
                    Json(cards::dialog_message(&m.summary)).into_response()
                }
                Ok(Reply::Ack | Reply::FieldErrors(_)) => {
                    Json(cards::dialog_message("Done.")).into_response()
                }
                Ok(Reply::BadRequest(why)) => bad_request(why),
                Err(e) => internal(e),
            }
        }
        Some("task/submit") => {
            let data = &value["data"];
            let Some((kind, meta, values)) = cards::read(&gov, &who, data) else {
                return bad_request("dialog submission");
            };
            match interact::submit(svc, &origin, kind, meta.clone(), values.clone(), now).await {
                Ok(Reply::FieldErrors(errors)) => {
                    match interact::reopen(svc, kind, &meta, &values, now).await {
                        Ok(Some(spec)) => Json(cards::dialog(
                            &spec.title,
                            cards::form(&gov, &spec, &errors),
                        ))
                        .into_response(),
                        Ok(None) => bad_request("a form that cannot be shown again"),
                        Err(e) => internal(e),
                    }
                }
                Ok(Reply::BadRequest(why)) => bad_request(why),
                Ok(Reply::Refused(m) | Reply::Message(m)) => {
                    Json(cards::dialog_message(&m.summary)).into_response()
                }
                Ok(_) => Json(cards::dialog_message("Done.")).into_response(),
                Err(e) => internal(e),
            }
        }
        _ => bad_request("unsupported invoke"),
    }
}

#[cfg(test)]
mod tests {
    use super::typed;

    #[test]
    fn the_mention_and_the_command_name_are_not_part_of_the_command() {
        assert_eq!(
            typed("<at>Waiver</at> ai-exception status AIX-1"),
            "status AIX-1"
        );
        assert_eq!(typed("AI-Exception"), "");
        assert_eq!(typed("  pending "), "pending");
        assert_eq!(typed("ai-exceptional"), "ai-exceptional");
    }
}

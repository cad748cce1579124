//! Slack Socket Mode: for organisations that cannot expose a public URL. With
//! `SLACK_SOCKET_MODE=1` the bot opens websockets to Slack (slack-morphism's client:
//! `apps.connections.open` with the app token `SLACK_APP_TOKEN`, reconnecting when a
//! socket drops) and Slack sends slash commands, interactions and events down them as
//! envelopes. Each envelope is handled by the same code as the HTTP routes
//! ([`inbound::command_event`], [`inbound::interaction_event`],
//! [`inbound::push_event`]) and acknowledged through the envelope when the handler
//! returns, inside Slack's 3 s; what the HTTP route would answer in its body travels
//! as the acknowledgement's payload.
//!
//! Nothing acknowledged is lost or done twice: a handler that fails (the database is
//! down) leaves the envelope unacknowledged, so Slack sends it again; an envelope
//! whose acknowledgement was lost with its socket comes again on the new one and is
//! a duplicate by its trigger id (clicks, submissions) or event id (events).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use slack_morphism::prelude::*;
use tracing::Instrument;

use super::client::Connector;
use super::inbound::{self, SlackEdge};
use crate::config::Secret;
use crate::service::Service;

/// How the websockets are kept (tests reconnect quickly).
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// Websockets kept open at once (Slack spreads envelopes over them).
    pub connections: u32,
    /// Wait before reconnecting a socket that dropped.
    pub reconnect: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            connections: 2,
            reconnect: Duration::from_secs(5),
        }
    }
}

/// What every callback reaches (slack-morphism's callbacks are plain functions; their
/// state travels in its user-state map).
struct Handlers {
    service: Service,
    edge: SlackEdge,
}

/// The running Socket Mode listener.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<Connector>,
}

impl SocketMode {
    /// Opens the sockets and starts handling envelopes.
    pub async fn start(
        service: Service,
        edge: SlackEdge,
        app_token: &Secret,
        options: &SocketOptions,
    ) -> anyhow::Result<Self> {
        let client = edge.api.client();
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client)
                .with_error_handler(on_error)
                .with_user_state(Arc::new(Handlers { service, edge })),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_interaction_events(on_interaction)
            .with_push_events(on_push);
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(options.connections.max(1))
            .with_initial_backoff_in_seconds(0)
            .with_reconnect_timeout_in_seconds(options.reconnect.as_secs().max(1));
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        let token = SlackApiToken::new(SlackApiTokenValue::new(app_token.expose().to_string()));
        listener.listen_for(&token).await.map_err(|e| {
            anyhow::anyhow!("Slack Socket Mode: {}", without_tokens(&e.to_string()))
        })?;
        listener.start().await;
        tracing::info!("Slack Socket Mode: listening");
        Ok(Self { listener })
    }

    /// Closes the sockets (envelopes in flight finish first).
    pub async fn stop(&self) {
        self.listener.shutdown().await;
    }
}

/// An error text as it may be logged (slack-morphism's may quote a request).
fn without_tokens(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            if w.contains("xapp-") || w.contains("xoxb-") {
                "***"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a handler answered, when it is not an acknowledgement with a payload.
#[derive(Debug)]
enum Answer {
    /// Acknowledge with no payload (the HTTP route's empty 200).
    Bare,
    /// The handler refused the input (4xx): acknowledged, since it would be refused
    /// again, and nothing changed.
    Refused(StatusCode),
    /// The handler failed (5xx): not acknowledged, so Slack sends it again.
    Failed(StatusCode),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Answer {}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    match err.downcast_ref::<Answer>() {
        Some(Answer::Bare) => HttpStatusCode::OK,
        Some(Answer::Refused(status)) => {
            tracing::info!(
                status = status.as_u16(),
                "Slack Socket Mode: refused an envelope"
            );
            HttpStatusCode::OK
        }
        Some(Answer::Failed(status)) => {
            tracing::warn!(
                status = status.as_u16(),
                "Slack Socket Mode: an envelope failed; Slack will send it again"
            );
            HttpStatusCode::INTERNAL_SERVER_ERROR
        }
        None => {
            tracing::warn!(error = %without_tokens(&err.to_string()), "Slack Socket Mode error");
            HttpStatusCode::OK
        }
    }
}

type SlackHyperClient = SlackClient<Connector>;

async fn handlers(states: &SlackClientEventsUserState) -> Arc<Handlers> {
    states
        .read()
        .await
        .get_user_state::<Arc<Handlers>>()
        .expect("the Socket Mode state is set at start")
        .clone()
}

/// The span an envelope is handled in: an id of its own, like an HTTP request's.
fn span(kind: &'static str) -> tracing::Span {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    tracing::info_span!(
        "envelope",
        request_id = %hex::encode(bytes),
        kind,
        reference = tracing::field::Empty,
    )
}

/// The handler's answer as the envelope's acknowledgement: the body's JSON as
/// `T`, an empty body as a bare acknowledgement, 4xx as refused, 5xx as failed.
async fn acknowledgement<T: serde::de::DeserializeOwned>(
    response: Response,
) -> UserCallbackResult<T> {
    let status = response.status();
    if status.is_server_error() {
        return Err(Box::new(Answer::Failed(status)));
    }
    if !status.is_success() {
        return Err(Box::new(Answer::Refused(status)));
    }
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map_err(|_| Answer::Failed(StatusCode::INTERNAL_SERVER_ERROR))?;
    if body.is_empty() {
        return Err(Box::new(Answer::Bare));
    }
    serde_json::from_slice(&body).map_err(|e| {
        tracing::error!(error = %e, "Slack Socket Mode: an answer that is not a Slack payload");
        Box::new(Answer::Failed(StatusCode::INTERNAL_SERVER_ERROR)) as _
    })
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let h = handlers(&states).await;
    let started = Instant::now();
    let response = inbound::command_event(&h.service, &h.edge, event)
        .instrument(span("command"))
        .await;
    h.service
        .metrics()
        .acknowledged("slack", "command", started.elapsed());
    acknowledgement(response).await
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let h = handlers(&states).await;
    let started = Instant::now();
    let response = inbound::interaction_event(&h.service, &h.edge, event)
        .instrument(span("interaction"))
        .await;
    h.service
        .metrics()
        .acknowledged("slack", "interaction", started.elapsed());
    match acknowledgement::<SlackViewSubmissionResponse>(response).await {
        Ok(answer) => Ok(SlackInteractionResponse::ViewSubmission(answer)),
        Err(e) if matches!(e.downcast_ref::<Answer>(), Some(Answer::Bare)) => {
            Ok(SlackInteractionResponse::Empty)
        }
        Err(e) => Err(e),
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let h = handlers(&states).await;
    let started = Instant::now();
    let response = inbound::push_event(&h.service, &h.edge, SlackPushEvent::EventCallback(event))
        .instrument(span("event"))
        .await;
    h.service
        .metrics()
        .acknowledged("slack", "event", started.elapsed());
    match acknowledgement::<serde_json::Value>(response).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.downcast_ref::<Answer>(), Some(Answer::Bare)) => Ok(()),
        Err(e) => Err(e),
    }
}

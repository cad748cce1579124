//! The HTTP edge: the only place that lists routes. Handlers are thin: extract (the
//! Slack routes verify the signature over the raw body first) → the adapter → a
//! platform response.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::chat::slack::inbound::{self, SlackEdge};
use crate::chat::slack::verify::{BODY_LIMIT, SignedBody, SlackSecret};
use crate::chat::teams::inbound::{self as teams, TeamsEdge};
use crate::config::Secret;
use crate::service::Service;

/// What every handler can reach.
pub struct AppState {
    pub service: Service,
    pub slack: Option<SlackEdge>,
    pub teams: Option<TeamsEdge>,
    pub dashboard: crate::config::DashboardAccess,
}

impl SlackSecret for Arc<AppState> {
    fn signing_secret(&self) -> Option<&Secret> {
        self.slack.as_ref().and_then(|s| s.signing_secret.as_ref())
    }

    fn clock(&self) -> &crate::clock::Clock {
        self.service.clock()
    }
}

/// The routes a Slack app's manifest points at.
pub const SLACK_ROUTES: [&str; 3] = ["/slack/commands", "/slack/interactions", "/slack/events"];

/// The route the Bot Framework posts Teams activities to.
pub const TEAMS_ROUTE: &str = "/api/messages";

/// Every route Waiver serves.
pub fn router(state: Arc<AppState>) -> Router {
    let [commands, interactions, events] = SLACK_ROUTES;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(commands, post(slack_commands))
        .route(interactions, post(slack_interactions))
        .route(events, post(slack_events))
        .route(TEAMS_ROUTE, post(teams_activity))
        .route("/", get(dashboard))
        .route("/exceptions/{reference}", get(dashboard_exception))
        .route("/register.csv", get(dashboard_csv))
        .route("/sop.svg", get(dashboard_sop))
        .route("/login", get(dashboard_login_form).post(dashboard_login))
        .route(
            &format!("{}/{{token}}", crate::service::EVIDENCE_ROUTE),
            get(evidence_pack),
        )
        // The Slack extractor enforces its own limit (413) before verifying.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.service.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}

fn slack(state: &AppState) -> &SlackEdge {
    // SignedBody refuses requests (404) when Slack is not configured.
    state
        .slack
        .as_ref()
        .expect("verified Slack requests imply a Slack configuration")
}

async fn slack_commands(State(state): State<Arc<AppState>>, body: SignedBody) -> Response {
    inbound::command(&state.service, slack(&state), body.bytes()).await
}

async fn slack_interactions(State(state): State<Arc<AppState>>, body: SignedBody) -> Response {
    inbound::interaction(&state.service, slack(&state), body.bytes()).await
}

async fn slack_events(State(state): State<Arc<AppState>>, body: SignedBody) -> Response {
    inbound::event(&state.service, slack(&state), body.bytes()).await
}

async fn teams_activity(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(edge) = &state.teams else {
        return StatusCode::NOT_FOUND.into_response();
    };
    teams::activity(&state.service, edge, &headers, &body).await
}

type Query = axum::extract::Query<std::collections::HashMap<String, String>>;

async fn dashboard(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    query: Query,
) -> Response {
    crate::web::index(&state.service, &state.dashboard, &headers, &query.0).await
}

async fn dashboard_exception(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(reference): axum::extract::Path<String>,
) -> Response {
    crate::web::exception(&state.service, &state.dashboard, &headers, &reference).await
}

async fn dashboard_csv(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    query: Query,
) -> Response {
    crate::web::csv(&state.service, &state.dashboard, &headers, &query.0).await
}

async fn dashboard_sop(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    crate::web::sop(&state.service, &state.dashboard, &headers).await
}

async fn dashboard_login_form(State(state): State<Arc<AppState>>) -> Response {
    crate::web::login_form(&state.dashboard)
}

async fn dashboard_login(
    State(state): State<Arc<AppState>>,
    form: axum::extract::Form<std::collections::HashMap<String, String>>,
) -> Response {
    crate::web::login(
        &state.dashboard,
        &form.0,
        state.service.clock().unix_seconds(),
    )
}

async fn evidence_pack(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    crate::web::evidence(&state.service, &token).await
}

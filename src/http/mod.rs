//! The HTTP edge: the only place that lists routes. Handlers are thin: extract (the
//! Slack routes verify the signature over the raw body first) → the adapter → a
//! platform response.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

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
    /// `WAIVER_METRICS_TOKEN`: the bearer token `/metrics` asks for, if any.
    pub metrics_token: Option<Secret>,
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
        .route("/metrics", get(metrics))
        // Counted per matched route; unmatched paths are plain 404s.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        // The Slack extractor enforces its own limit (413) before verifying.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Every log line of a request carries its id (a proxy's `X-Request-Id`, or
        // one made here), and the response returns it. Layers wrap outward: the id is
        // set first, then the span opens, then the response gets the header.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
        .with_state(state)
}

/// Request ids made here: random, 16 hex digits.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
        axum::http::HeaderValue::from_str(&hex::encode(bytes))
            .ok()
            .map(RequestId::new)
    }
}

/// The span every line of a request is logged in. A proxy's id is shown only as far
/// as it is a plain token (at most 64 letters, digits and `-_.:`); the reference of
/// the request the call acts on is recorded once the service knows it.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id: String = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        .take(64)
        .collect();
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        reference = tracing::field::Empty,
    )
}

/// Counts every answered request, times chat acknowledgements, and counts refusals
/// by the reason their response carries.
async fn observe(
    State(state): State<Arc<AppState>>,
    matched: MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = matched.as_str().to_owned();
    let response = next.run(request).await;
    let metrics = state.service.metrics();
    metrics.request(&route, response.status().as_u16());
    let kind = match route.as_str() {
        r if r == SLACK_ROUTES[0] => Some(("slack", "command")),
        r if r == SLACK_ROUTES[1] => Some(("slack", "interaction")),
        r if r == SLACK_ROUTES[2] => Some(("slack", "event")),
        TEAMS_ROUTE => Some((
            "teams",
            response
                .extensions()
                .get::<crate::metrics::AckKind>()
                .map_or("activity", |k| k.0),
        )),
        _ => None,
    };
    if let Some((platform, kind)) = kind {
        metrics.acknowledged(platform, kind, started.elapsed());
    }
    if let Some(refused) = response.extensions().get::<crate::metrics::Refused>() {
        metrics.refused(refused.platform, refused.reason);
    }
    response
}

async fn metrics(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let same = token.matches(given);
        if !same {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the bearer token WAIVER_METRICS_TOKEN",
            )
                .into_response();
        }
    }
    match state.service.scrape_metrics().await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the figures for /metrics");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not answering",
            )
                .into_response()
        }
    }
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

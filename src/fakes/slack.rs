//! A stateful fake of the Slack Web API on loopback, for the integration tests,
//! `waiver demo` and the benchmark.
//!
//! [`FakeSlack::start`] binds `127.0.0.1:0` and serves `/api/<method>` like
//! `https://slack.com/api/<method>`: the answers deserialize into slack-morphism's
//! response structs, errors are `200 {"ok":false,"error":…}`, rate limits are `429`
//! with `Retry-After`. Conversations, DMs, ephemerals, modals and App Home views are
//! kept in memory so that tests can assert on what a user would see
//! ([`FakeSlack::messages`], [`FakeSlack::dms`], [`FakeSlack::views_opened`], …) and
//! inject faults ([`FakeSlack::fail_next`], [`FakeSlack::fail_channel`],
//! [`FakeSlack::set_latency`]).
//!
//! Timing: a call is recorded in [`FakeSlack::calls`] when it arrives (with status 0
//! until it is answered); latency and [`Fault::Hang`] delays use tokio's clock and
//! the call is then processed even if the client has given up meanwhile, as Slack
//! would. Trigger ids expire after 3 s of real time.

pub mod socket;
pub mod workspace;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// The workspace id used by [`FakeSlack::start`].
pub const DEFAULT_TEAM_ID: &str = "T0NWIND01";
/// The bot's user id (`auth.test` `user_id`; `user` of the bot's messages).
pub const BOT_USER_ID: &str = "U0WAIVERBOT";
/// The bot id (`auth.test` `bot_id`; `bot_id` of the bot's messages).
pub const BOT_ID: &str = "B0WAIVER";
/// The app id reported on the bot's messages and views.
pub const APP_ID: &str = "A0WAIVER";

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const BODY_LIMIT: usize = 1 << 20;
const TRIGGER_TTL: Duration = Duration::from_secs(3);
/// Microseconds between two consecutive generated `ts`.
const TS_STEP_MICROS: u128 = 100;
const DEFAULT_HISTORY_LIMIT: usize = 100;
const MAX_HISTORY_LIMIT: usize = 999;
const MAX_MESSAGE_BLOCKS: usize = 50;
const MAX_VIEW_BLOCKS: usize = 100;
const MAX_VIEW_TITLE_CHARS: usize = 24;
const MAX_PRIVATE_METADATA_CHARS: usize = 3000;
const MAX_CALLBACK_ID_CHARS: usize = 255;

/// A fault to answer the next call to a method with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: N` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// That HTTP status with a small `text/plain` body.
    ServerError(u16),
    /// HTTP 200 `{"ok":false,"error":code}`.
    ApiError(String),
    /// Waits this long, then answers (and applies the call) normally.
    Hang(Duration),
}

/// One Web API call received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    /// e.g. `chat.postMessage`; for a path outside `/api/`, the path itself.
    pub method: String,
    /// The JSON body, the form fields, or the query parameters, as a JSON object
    /// (`Null` when the body could not be read or parsed).
    pub body: Value,
    /// The HTTP status answered; 0 while the call is still being answered.
    pub status: u16,
    /// The `error` code answered, if any.
    pub error: Option<String>,
}

/// A message as it currently stands in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub ts: String,
    /// The conversation id (a `D…` id for DMs).
    pub channel: String,
    /// The poster; `None` for the bot.
    pub user: Option<String>,
    pub text: Option<String>,
    /// The blocks as posted (`Null` if none).
    pub blocks: Value,
    pub metadata: Option<Value>,
    /// The thread's root `ts` for a thread reply; `None` for a top-level message.
    pub thread_ts: Option<String>,
    /// How many `chat.update` calls were applied to it.
    pub edits: u32,
}

/// A modal opened with `views.open` (or `views.push`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenedView {
    pub trigger_id: String,
    pub view_id: String,
    /// The view as the app last sent it (`views.open`, then `views.update`).
    pub view: Value,
}

/// The fake Slack Web API server. Serves until dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    bot_token: String,
    team_id: String,
    clock: Clock,
    inner: Mutex<Inner>,
}

struct Stored {
    msg: Message,
    edited_ts: Option<String>,
    broadcast: bool,
}

struct ViewRec {
    id: String,
    trigger_id: Option<String>,
    view: Value,
    hash: String,
}

struct Trigger {
    issued: Instant,
    used: bool,
}

#[derive(Default)]
struct Inner {
    team_id: String,
    base_secs: u64,
    clock: Clock,
    /// The last `ts` handed out, in microseconds (each new one is later).
    last_ts_micros: u128,
    id_seq: u64,
    calls: Vec<Call>,
    conversations: BTreeMap<String, Vec<Stored>>,
    dm_by_user: BTreeMap<String, String>,
    mpims: BTreeMap<String, String>,
    ephemerals: BTreeMap<String, Vec<Message>>,
    views: Vec<ViewRec>,
    homes: BTreeMap<String, usize>,
    triggers: HashMap<String, Trigger>,
    faults: HashMap<String, VecDeque<Fault>>,
    failing_channels: HashMap<String, String>,
    latency: Duration,
    /// Socket Mode: the app token `apps.connections.open` takes, and the URL it gives.
    socket: Option<(String, String)>,
    /// Lean mode (benchmarks): answer like Slack but record and keep nothing.
    lean: bool,
    lean_calls: u64,
    /// What `auth.test`'s scopes, `conversations.info` and `users.info` report.
    directory: Directory,
}

/// The workspace as `waiver doctor` sees it. By default every `C…`/`G…` channel
/// exists with the bot in it, every `U…`/`W…` user exists and is active, and the token
/// has every bot scope of the app manifest; the knobs ([`FakeSlack::set_scopes`],
/// [`FakeSlack::remove_channel`], [`FakeSlack::remove_bot_from`],
/// [`FakeSlack::remove_user`], [`FakeSlack::deactivate_user`]) make each failure.
#[derive(Default)]
struct Directory {
    /// `None`: the manifest's bot scopes.
    scopes: Option<Vec<String>>,
    missing_channels: HashSet<String>,
    left_channels: HashSet<String>,
    missing_users: HashSet<String>,
    deactivated_users: HashSet<String>,
}

/// An HTTP answer, built outside the lock and turned into a response by the handler.
struct Reply {
    status: u16,
    body: String,
    json: bool,
    retry_after: Option<u64>,
    error: Option<String>,
}

impl Reply {
    fn ok(mut value: Value) -> Reply {
        if let Value::Object(map) = &mut value {
            map.insert("ok".into(), Value::Bool(true));
        }
        Reply {
            status: 200,
            body: value.to_string(),
            json: true,
            retry_after: None,
            error: None,
        }
    }

    fn error(code: &str) -> Reply {
        Reply {
            status: 200,
            body: json!({ "ok": false, "error": code }).to_string(),
            json: true,
            retry_after: None,
            error: Some(code.to_string()),
        }
    }

    fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            body: text.to_string(),
            json: false,
            retry_after: None,
            error: None,
        }
    }

    fn rate_limited(retry_after_secs: u64) -> Reply {
        Reply {
            status: 429,
            body: json!({ "ok": false, "error": "ratelimited" }).to_string(),
            json: true,
            retry_after: Some(retry_after_secs),
            error: Some("ratelimited".to_string()),
        }
    }

    /// `{"ok":false,"error":"missing_scope","needed":…,"provided":…}`, as Slack
    /// answers a call the token has no scope for.
    fn missing_scope(needed: &str, provided: &str) -> Reply {
        Reply {
            status: 200,
            body: json!({ "ok": false, "error": "missing_scope", "needed": needed, "provided": provided })
                .to_string(),
            json: true,
            retry_after: None,
            error: Some("missing_scope".to_string()),
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = status;
        let content_type = if self.json {
            JSON_CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        };
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An API answer: the fields of an `ok` response, or an error code.
type ApiResult = Result<Value, Code>;
type Code = std::borrow::Cow<'static, str>;

impl FakeSlack {
    /// Binds `127.0.0.1:0` and serves workspace [`DEFAULT_TEAM_ID`] until dropped.
    pub async fn start(bot_token: &str) -> FakeSlack {
        FakeSlack::start_with(bot_token, DEFAULT_TEAM_ID).await
    }

    /// Like [`FakeSlack::start`], for workspace `team_id`.
    pub async fn start_with(bot_token: &str, team_id: &str) -> FakeSlack {
        FakeSlack::start_at(bot_token, team_id, Clock::System).await
    }

    /// Like [`FakeSlack::start_with`], on `clock`: message `ts` and the signatures
    /// of the [`workspace::Workspace`] built on it follow that clock, as Slack's
    /// follow the wall clock (so a test can run Waiver and Slack on one fixed day).
    pub async fn start_at(bot_token: &str, team_id: &str, clock: Clock) -> FakeSlack {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake Slack: cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Slack: no local address");
        let shared = Arc::new(Shared {
            bot_token: bot_token.to_string(),
            team_id: team_id.to_string(),
            clock: clock.clone(),
            inner: Mutex::new(Inner {
                team_id: team_id.to_string(),
                base_secs: clock.unix_seconds().max(0) as u64,
                clock,
                ..Inner::default()
            }),
        });
        let router = Router::new()
            .fallback(serve_request)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!("fake Slack server stopped: {err}");
            }
        });
        FakeSlack {
            addr,
            shared,
            server,
        }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web API base, e.g. `http://127.0.0.1:41234/api/` (the value for
    /// `SLACK_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// The clock this Slack's `ts` and its workspace's signatures follow.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// The workspace id.
    pub fn team_id(&self) -> &str {
        &self.shared.team_id
    }

    /// Every Web API call received, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls to one method, in order of arrival.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|call| call.method == method)
            .cloned()
            .collect()
    }

    /// The current messages of a conversation (a `C…`/`G…`/`D…` id; a user id means
    /// that user's DM), oldest first, thread replies included.
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        let inner = self.lock();
        let id = if is_user_id(channel) {
            match inner.dm_by_user.get(channel) {
                Some(id) => id.clone(),
                None => return Vec::new(),
            }
        } else {
            channel.to_string()
        };
        inner
            .conversations
            .get(&id)
            .map(|msgs| msgs.iter().map(|s| s.msg.clone()).collect())
            .unwrap_or_default()
    }

    /// The `D…` id of the bot's DM with `user`, once one exists.
    pub fn dm_channel(&self, user: &str) -> Option<String> {
        self.lock().dm_by_user.get(user).cloned()
    }

    /// The messages of the bot's DM with `user`, oldest first.
    pub fn dms(&self, user: &str) -> Vec<Message> {
        match self.dm_channel(user) {
            Some(id) => self.messages(&id),
            None => Vec::new(),
        }
    }

    /// The ephemeral messages shown to `user` (any channel), oldest first.
    pub fn ephemerals(&self, user: &str) -> Vec<Message> {
        self.lock()
            .ephemerals
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// The modals opened, oldest first, as last updated.
    pub fn views_opened(&self) -> Vec<OpenedView> {
        self.lock()
            .views
            .iter()
            .filter_map(|rec| {
                rec.trigger_id.as_ref().map(|trigger_id| OpenedView {
                    trigger_id: trigger_id.clone(),
                    view_id: rec.id.clone(),
                    view: rec.view.clone(),
                })
            })
            .collect()
    }

    /// The App Home view last published for `user`, as the app sent it.
    pub fn home(&self, user: &str) -> Option<Value> {
        let inner = self.lock();
        inner
            .homes
            .get(user)
            .map(|&index| inner.views[index].view.clone())
    }

    /// Lean mode, for benchmarks: every call succeeds and nothing is recorded or kept
    /// (so memory stays flat under load); only [`FakeSlack::lean_calls`] counts.
    pub fn set_lean(&self, lean: bool) {
        self.shared.lock().lean = lean;
    }

    /// Calls answered in lean mode.
    pub fn lean_calls(&self) -> u64 {
        self.shared.lock().lean_calls
    }

    /// A fresh trigger id, good for one `views.open` (or `views.push`) within 3 s.
    pub fn issue_trigger(&self) -> String {
        let mut inner = self.lock();
        let n = inner.next_seq();
        let id = format!(
            "{}.{}.{:016x}",
            inner.base_secs,
            n,
            n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        inner.triggers.insert(
            id.clone(),
            Trigger {
                issued: Instant::now(),
                used: false,
            },
        );
        id
    }

    /// Queues a fault for the next call to `method` (one call per queued fault).
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.lock()
            .faults
            .entry(method.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Makes every post, update and ephemeral to `channel` answer
    /// `{"ok":false,"error":error}`.
    pub fn fail_channel(&self, channel: &str, error: &str) {
        self.lock()
            .failing_channels
            .insert(channel.to_string(), error.to_string());
    }

    /// Lets posts to `channel` through again after [`fail_channel`](Self::fail_channel).
    pub fn heal_channel(&self, channel: &str) {
        self.lock().failing_channels.remove(channel);
    }

    /// Turns Socket Mode on: starts a fake Socket Mode server whose URL
    /// `apps.connections.open` hands out to callers with `app_token`.
    pub async fn enable_socket_mode(&self, app_token: &str) -> socket::FakeSocket {
        let server = socket::FakeSocket::start().await;
        self.lock().socket = Some((app_token.to_string(), server.url()));
        server
    }

    /// Delays every answer by `d` (default 0).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Adds a message from `user` to `channel` (a user id means that user's DM, which
    /// is created if needed), in the thread `thread_ts` if given. Returns its `ts`.
    pub fn post_as_user(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> String {
        let mut inner = self.lock();
        let id = if is_user_id(channel) {
            inner.ensure_dm(channel)
        } else {
            inner.conversations.entry(channel.to_string()).or_default();
            channel.to_string()
        };
        let thread_ts =
            thread_ts.map(|t| inner.thread_root(&id, t).unwrap_or_else(|| t.to_string()));
        let ts = inner.next_ts();
        let stored = Stored {
            msg: Message {
                ts: ts.clone(),
                channel: id.clone(),
                user: Some(user.to_string()),
                text: Some(text.to_string()),
                blocks: Value::Null,
                metadata: None,
                thread_ts,
                edits: 0,
            },
            edited_ts: None,
            broadcast: false,
        };
        inner.conversations.entry(id).or_default().push(stored);
        ts
    }

    /// Polls `pred` every 10 ms until it holds (true) or `timeout` of real time
    /// passes (false).
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&FakeSlack) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSlack")
            .field("addr", &self.addr)
            .field("team_id", &self.shared.team_id)
            .finish_non_exhaustive()
    }
}

// What `waiver doctor` looks up: the token's scopes, channels and users.

impl FakeSlack {
    /// The scopes the token reports (the `x-oauth-scopes` header of every answer);
    /// by default every bot scope of the app manifest. Lookups the scopes do not
    /// cover answer `missing_scope`.
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.lock().directory.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
    }

    /// `channel` no longer exists: `conversations.info` and `conversations.history`
    /// answer `channel_not_found`.
    pub fn remove_channel(&self, channel: &str) {
        self.lock()
            .directory
            .missing_channels
            .insert(channel.to_string());
    }

    /// The bot is not a member of `channel` (`is_member: false`).
    pub fn remove_bot_from(&self, channel: &str) {
        self.lock()
            .directory
            .left_channels
            .insert(channel.to_string());
    }

    /// `user` does not exist: `users.info` answers `user_not_found`.
    pub fn remove_user(&self, user: &str) {
        self.lock().directory.missing_users.insert(user.to_string());
    }

    /// `user`'s account is deactivated (`deleted: true`).
    pub fn deactivate_user(&self, user: &str) {
        self.lock()
            .directory
            .deactivated_users
            .insert(user.to_string());
    }
}

impl Shared {
    /// `response` with the token's scopes in `x-oauth-scopes`, as Slack sends them.
    fn with_scopes(&self, mut response: Response) -> Response {
        let scopes = self.lock().scopes().join(",");
        if let Ok(value) = HeaderValue::from_str(&scopes) {
            response
                .headers_mut()
                .insert(crate::chat::slack::probe::SCOPES_HEADER, value);
        }
        response
    }
}

impl Inner {
    fn scopes(&self) -> Vec<String> {
        match &self.directory.scopes {
            Some(scopes) => scopes.clone(),
            None => crate::chat::slack::probe::bot_scopes()
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }

    /// The scope a lookup needs that the token lacks.
    fn lacks_scope(&self, method: &str, p: &Value) -> Option<&'static str> {
        let needed = match method {
            "conversations.info" if param(p, "channel").is_some_and(|c| c.starts_with('G')) => {
                "groups:read"
            }
            "conversations.info" => "channels:read",
            "users.info" => "users:read",
            _ => return None,
        };
        (!self.scopes().iter().any(|s| s == needed)).then_some(needed)
    }

    fn conversations_info(&self, p: &Value) -> ApiResult {
        let id = param(p, "channel").ok_or("channel_not_found")?;
        let is_channel = id.len() > 1 && (id.starts_with('C') || id.starts_with('G'));
        if !is_channel || self.directory.missing_channels.contains(&id) {
            return Err("channel_not_found".into());
        }
        let private = id.starts_with('G');
        Ok(json!({ "channel": {
            "id": id,
            "name": id.to_lowercase(),
            "created": self.base_secs,
            "is_channel": !private,
            "is_group": private,
            "is_private": private,
            "is_im": false,
            "is_mpim": false,
            "is_archived": false,
            "is_member": !self.directory.left_channels.contains(&id),
        }}))
    }

    fn users_info(&self, p: &Value) -> ApiResult {
        let id = param(p, "user").ok_or("user_not_found")?;
        if !is_user_id(&id) || self.directory.missing_users.contains(&id) {
            return Err("user_not_found".into());
        }
        Ok(json!({ "user": {
            "id": id,
            "team_id": self.team_id,
            "name": id.to_lowercase(),
            "deleted": self.directory.deactivated_users.contains(&id),
            "is_bot": id == BOT_USER_ID,
        }}))
    }
}

async fn serve_request(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let Some(method) = path
        .strip_prefix("/api/")
        .map(|rest| rest.trim_start_matches('/').to_string())
    else {
        let reply = Reply::text(404, "not found");
        shared.record(path, Value::Null, &reply);
        return reply.into_response();
    };
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let reply = Reply::text(413, "request body too large");
            shared.record(method, Value::Null, &reply);
            return reply.into_response();
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let params = parse_params(parts.uri.query(), &content_type, &bytes);
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let (index, fault, latency) = shared.begin(&method, &params);
    // Answered in a task of its own, so that a client giving up (dropping the
    // connection) does not stop a slow call from being applied, as on Slack.
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let shared = task_shared;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let reply = match fault {
            Some(Fault::RateLimited { retry_after_secs }) => Reply::rate_limited(retry_after_secs),
            Some(Fault::ServerError(status)) => {
                let status = StatusCode::from_u16(status).map_or(500, |s| s.as_u16());
                Reply::text(status, &format!("fake Slack: injected HTTP {status}"))
            }
            Some(Fault::ApiError(code)) => Reply::error(&code),
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                shared.process(&method, &params, auth.as_deref())
            }
            None => shared.process(&method, &params, auth.as_deref()),
        };
        shared.finish(index, &reply);
        reply
    });
    match task.await {
        Ok(reply) => shared.with_scopes(reply.into_response()),
        Err(_) => Reply::text(500, "fake Slack: handler failed").into_response(),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, method: String, body: Value, reply: &Reply) {
        self.lock().calls.push(Call {
            method,
            body,
            status: reply.status,
            error: reply.error.clone(),
        });
    }

    /// Records the call as in flight; takes its fault, if one is queued.
    fn begin(
        &self,
        method: &str,
        params: &Result<Value, &'static str>,
    ) -> (usize, Option<Fault>, Duration) {
        let mut inner = self.lock();
        if inner.lean {
            inner.lean_calls += 1;
            return (usize::MAX, None, inner.latency);
        }
        inner.calls.push(Call {
            method: method.to_string(),
            body: params.clone().unwrap_or(Value::Null),
            status: 0,
            error: None,
        });
        let fault = inner.faults.get_mut(method).and_then(VecDeque::pop_front);
        (inner.calls.len() - 1, fault, inner.latency)
    }

    fn finish(&self, index: usize, reply: &Reply) {
        if let Some(call) = self.lock().calls.get_mut(index) {
            call.status = reply.status;
            call.error = reply.error.clone();
        }
    }

    fn process(
        &self,
        method: &str,
        params: &Result<Value, &'static str>,
        auth: Option<&str>,
    ) -> Reply {
        let header_token = auth.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
        // Socket Mode's URL is asked for with the app-level token, not the bot's.
        if method == "apps.connections.open" {
            return match self.lock().socket.clone() {
                Some((token, url)) if header_token == Some(token.as_str()) => {
                    Reply::ok(json!({ "url": url }))
                }
                Some(_) => Reply::error("invalid_auth"),
                None => Reply::error("not_allowed_token_type"),
            };
        }
        let body_token = params
            .as_ref()
            .ok()
            .and_then(|p| p.get("token"))
            .and_then(Value::as_str);
        if header_token.or(body_token) != Some(self.bot_token.as_str()) {
            return Reply::error("invalid_auth");
        }
        let params = match params {
            Ok(p) => p,
            Err(code) => return Reply::error(code),
        };
        let mut inner = self.lock();
        if inner.lean {
            return inner.lean_reply(method, params);
        }
        if let Some(needed) = inner.lacks_scope(method, params) {
            return Reply::missing_scope(needed, &inner.scopes().join(","));
        }
        let result = match method {
            "auth.test" => Ok(inner.auth_test()),
            "chat.postMessage" => inner.post_message(params),
            "chat.update" => inner.update(params),
            "chat.postEphemeral" => inner.post_ephemeral(params),
            "chat.delete" => inner.delete(params),
            "views.open" | "views.push" => inner.views_open(params),
            "views.update" => inner.views_update(params),
            "views.publish" => inner.views_publish(params),
            "conversations.open" => inner.conversations_open(params),
            "conversations.history" => inner.history(params),
            "conversations.replies" => inner.replies(params),
            "conversations.info" => inner.conversations_info(params),
            "users.info" => inner.users_info(params),
            _ => Err(Code::Borrowed("unknown_method")),
        };
        drop(inner);
        match result {
            Ok(value) => Reply::ok(value),
            Err(code) => Reply::error(&code),
        }
    }
}

/// Where a post goes: an existing conversation, or one created on success.
enum Target {
    Existing(String),
    NewDm(String),
    NewChannel(String),
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.id_seq += 1;
        self.id_seq
    }

    fn next_id(&mut self, prefix: char) -> String {
        let n = self.next_seq();
        format!("{prefix}{n:09}")
    }

    fn next_ts(&mut self) -> String {
        let now = u128::try_from(self.clock.now().millis()).unwrap_or_default() * 1000;
        let micros = now.max(self.last_ts_micros + TS_STEP_MICROS);
        self.last_ts_micros = micros;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }

    fn next_hash(&mut self) -> String {
        let n = self.next_seq();
        format!(
            "{}.{:08x}",
            self.base_secs,
            n.wrapping_mul(0x9E37_79B9) & 0xffff_ffff
        )
    }

    fn ensure_dm(&mut self, user: &str) -> String {
        if let Some(id) = self.dm_by_user.get(user) {
            return id.clone();
        }
        let id = self.next_id('D');
        self.dm_by_user.insert(user.to_string(), id.clone());
        self.conversations.entry(id.clone()).or_default();
        id
    }

    fn dm_user(&self, id: &str) -> Option<&str> {
        self.dm_by_user
            .iter()
            .find(|(_, dm)| dm.as_str() == id)
            .map(|(user, _)| user.as_str())
    }

    fn resolve_target(&self, raw: &str) -> Result<Target, &'static str> {
        if is_user_id(raw) {
            return Ok(match self.dm_by_user.get(raw) {
                Some(id) => Target::Existing(id.clone()),
                None => Target::NewDm(raw.to_string()),
            });
        }
        if self.conversations.contains_key(raw) {
            return Ok(Target::Existing(raw.to_string()));
        }
        if raw.len() > 1 && (raw.starts_with('C') || raw.starts_with('G')) {
            return Ok(Target::NewChannel(raw.to_string()));
        }
        Err("channel_not_found")
    }

    fn commit_target(&mut self, target: Target) -> String {
        match target {
            Target::Existing(id) => id,
            Target::NewDm(user) => self.ensure_dm(&user),
            Target::NewChannel(id) => {
                self.conversations.entry(id.clone()).or_default();
                id
            }
        }
    }

    fn channel_fault(&self, raw: &str, target: Option<&Target>) -> Result<(), Code> {
        let resolved = match target {
            Some(Target::Existing(id)) => Some(id.as_str()),
            _ => None,
        };
        let error = self
            .failing_channels
            .get(raw)
            .or_else(|| resolved.and_then(|id| self.failing_channels.get(id)));
        match error {
            Some(code) => Err(Code::Owned(code.clone())),
            None => Ok(()),
        }
    }

    /// The root `ts` of the thread containing `ts` in conversation `id`, if `ts` exists.
    fn thread_root(&self, id: &str, ts: &str) -> Option<String> {
        self.conversations
            .get(id)?
            .iter()
            .find(|s| s.msg.ts == ts)
            .map(|s| s.msg.thread_ts.clone().unwrap_or_else(|| s.msg.ts.clone()))
    }

    fn auth_test(&self) -> Value {
        json!({
            "url": "https://waiver-fake.slack.com/",
            "team": "Waiver fake workspace",
            "user": "waiver",
            "team_id": self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false,
        })
    }

    fn post_message(&mut self, p: &Value) -> ApiResult {
        let raw = param(p, "channel").unwrap_or_default();
        let target = self.resolve_target(&raw);
        self.channel_fault(&raw, target.as_ref().ok())?;
        let target = target?;
        let text = param(p, "text");
        let blocks = message_blocks(p)?;
        check_has_content(text.as_deref(), &blocks, p)?;
        let metadata = message_metadata(p)?;
        let thread_ts = match param(p, "thread_ts") {
            None => None,
            Some(ts) => {
                let root = match &target {
                    Target::Existing(id) => self.thread_root(id, &ts),
                    _ => None,
                };
                Some(root.ok_or("thread_not_found")?)
            }
        };
        let broadcast = thread_ts.is_some() && flag(p, "reply_broadcast");
        let id = self.commit_target(target);
        let ts = self.next_ts();
        let stored = Stored {
            msg: Message {
                ts: ts.clone(),
                channel: id.clone(),
                user: None,
                text,
                blocks,
                metadata,
                thread_ts,
                edits: 0,
            },
            edited_ts: None,
            broadcast,
        };
        let message = self.message_json(&stored, true, None);
        self.conversations
            .entry(id.clone())
            .or_default()
            .push(stored);
        Ok(json!({ "channel": id, "ts": ts, "message": message }))
    }

    fn update(&mut self, p: &Value) -> ApiResult {
        let raw = param(p, "channel").unwrap_or_default();
        self.channel_fault(&raw, None)?;
        let ts = param(p, "ts").ok_or("message_not_found")?;
        let has_text = p.get("text").is_some_and(|v| !v.is_null());
        let blocks = message_blocks(p)?;
        let metadata = message_metadata(p)?;
        if !has_text && blocks.is_null() {
            return Err("no_text".into());
        }
        let messages = self.conversations.get(&raw).ok_or("channel_not_found")?;
        let index = messages
            .iter()
            .position(|s| s.msg.ts == ts)
            .ok_or("message_not_found")?;
        if messages[index].msg.user.is_some() {
            return Err("cant_update_message".into());
        }
        let edited_ts = self.next_ts();
        let Some(stored) = self
            .conversations
            .get_mut(&raw)
            .and_then(|messages| messages.get_mut(index))
        else {
            return Err("message_not_found".into());
        };
        if has_text {
            stored.msg.text = param(p, "text");
        }
        if !blocks.is_null() {
            stored.msg.blocks = blocks;
        }
        if metadata.is_some() {
            stored.msg.metadata = metadata;
        }
        stored.msg.edits += 1;
        stored.edited_ts = Some(edited_ts.clone());
        let msg = stored.msg.clone();
        let mut message = Map::new();
        message.insert("type".into(), json!("message"));
        message.insert("user".into(), json!(BOT_USER_ID));
        message.insert("bot_id".into(), json!(BOT_ID));
        message.insert("app_id".into(), json!(APP_ID));
        message.insert("text".into(), json!(msg.text.clone().unwrap_or_default()));
        if !msg.blocks.is_null() {
            message.insert("blocks".into(), msg.blocks.clone());
        }
        if let Some(metadata) = &msg.metadata {
            message.insert("metadata".into(), metadata.clone());
        }
        message.insert(
            "edited".into(),
            json!({ "user": BOT_USER_ID, "ts": edited_ts }),
        );
        let mut response = json!({
            "channel": raw,
            "ts": msg.ts,
            "text": msg.text.unwrap_or_default(),
            "message": message,
        });
        if let Some(thread_ts) = msg.thread_ts {
            response["thread_ts"] = json!(thread_ts);
        }
        Ok(response)
    }

    fn post_ephemeral(&mut self, p: &Value) -> ApiResult {
        let raw = param(p, "channel").unwrap_or_default();
        let target = self.resolve_target(&raw);
        self.channel_fault(&raw, target.as_ref().ok())?;
        let channel = match target? {
            Target::Existing(id) | Target::NewChannel(id) => id,
            Target::NewDm(_) => return Err("channel_not_found".into()),
        };
        let user = param(p, "user")
            .filter(|u| is_user_id(u))
            .ok_or("user_not_found")?;
        let text = param(p, "text");
        let blocks = message_blocks(p)?;
        check_has_content(text.as_deref(), &blocks, p)?;
        let ts = self.next_ts();
        let message = Message {
            ts: ts.clone(),
            channel,
            user: None,
            text,
            blocks,
            metadata: None,
            thread_ts: param(p, "thread_ts"),
            edits: 0,
        };
        self.ephemerals.entry(user).or_default().push(message);
        Ok(json!({ "message_ts": ts }))
    }

    fn delete(&mut self, p: &Value) -> ApiResult {
        let raw = param(p, "channel").unwrap_or_default();
        let ts = param(p, "ts").ok_or("message_not_found")?;
        let messages = self
            .conversations
            .get_mut(&raw)
            .ok_or("channel_not_found")?;
        let index = messages
            .iter()
            .position(|s| s.msg.ts == ts)
            .ok_or("message_not_found")?;
        if messages[index].msg.user.is_some() {
            return Err("cant_delete_message".into());
        }
        messages.remove(index);
        Ok(json!({ "channel": raw, "ts": ts }))
    }

    fn check_trigger(&self, trigger_id: &str) -> Result<(), &'static str> {
        let trigger = self.triggers.get(trigger_id).ok_or("invalid_trigger_id")?;
        if trigger.used || trigger.issued.elapsed() >= TRIGGER_TTL {
            return Err("expired_trigger_id");
        }
        Ok(())
    }

    /// Lean mode: a well-formed success for the methods Waiver calls, nothing kept.
    fn lean_reply(&mut self, method: &str, p: &Value) -> Reply {
        let channel = param(p, "channel").unwrap_or_default();
        match method {
            "chat.postMessage" => {
                let ts = self.next_ts();
                let channel = if channel.starts_with('U') || channel.starts_with('W') {
                    format!("D{}", &channel[1..])
                } else {
                    channel
                };
                Reply::ok(
                    json!({ "channel": channel, "ts": ts, "message": { "type": "message", "ts": ts, "text": "" } }),
                )
            }
            "chat.update" => {
                let ts = param(p, "ts").unwrap_or_default();
                Reply::ok(
                    json!({ "channel": channel, "ts": ts, "text": "", "message": { "type": "message", "ts": ts, "text": "" } }),
                )
            }
            "chat.postEphemeral" => Reply::ok(json!({ "message_ts": self.next_ts() })),
            "views.open" | "views.publish" => {
                let mut view = p.get("view").cloned().unwrap_or(Value::Null);
                if let Value::Object(v) = &mut view {
                    v.insert("id".into(), json!("V0LEAN"));
                    v.insert("team_id".into(), json!(self.team_id));
                    v.insert("hash".into(), json!("lean"));
                    v.insert("state".into(), json!({ "values": {} }));
                }
                Reply::ok(json!({ "view": view }))
            }
            _ => Reply::ok(json!({})),
        }
    }

    fn views_open(&mut self, p: &Value) -> ApiResult {
        let trigger_id = param(p, "trigger_id").ok_or("invalid_trigger_id")?;
        self.check_trigger(&trigger_id)?;
        let view = p.get("view").cloned().unwrap_or(Value::Null);
        validate_view(&view, "modal")?;
        if let Some(trigger) = self.triggers.get_mut(&trigger_id) {
            trigger.used = true;
        }
        let id = self.next_id('V');
        let hash = self.next_hash();
        self.views.push(ViewRec {
            id,
            trigger_id: Some(trigger_id),
            view,
            hash,
        });
        Ok(json!({ "view": self.stateful_view(self.views.len() - 1) }))
    }

    fn views_update(&mut self, p: &Value) -> ApiResult {
        let index = match (param(p, "view_id"), param(p, "external_id")) {
            (Some(view_id), _) => self.views.iter().position(|rec| rec.id == view_id),
            (None, Some(external_id)) => self.views.iter().position(|rec| {
                rec.view.get("external_id").and_then(Value::as_str) == Some(external_id.as_str())
            }),
            (None, None) => None,
        }
        .ok_or("not_found")?;
        if let Some(hash) = param(p, "hash")
            && hash != self.views[index].hash
        {
            return Err("hash_conflict".into());
        }
        let view = p.get("view").cloned().unwrap_or(Value::Null);
        let kind = self.views[index]
            .view
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("modal")
            .to_string();
        validate_view(&view, &kind)?;
        let hash = self.next_hash();
        let rec = &mut self.views[index];
        rec.view = view;
        rec.hash = hash;
        Ok(json!({ "view": self.stateful_view(index) }))
    }

    fn views_publish(&mut self, p: &Value) -> ApiResult {
        let user = param(p, "user_id")
            .filter(|u| is_user_id(u))
            .ok_or("user_not_found")?;
        let view = p.get("view").cloned().unwrap_or(Value::Null);
        validate_view(&view, "home")?;
        let existing = self.homes.get(&user).copied();
        if let (Some(hash), Some(index)) = (param(p, "hash"), existing)
            && hash != self.views[index].hash
        {
            return Err("hash_conflict".into());
        }
        let hash = self.next_hash();
        let index = match existing {
            Some(index) => {
                let rec = &mut self.views[index];
                rec.view = view;
                rec.hash = hash;
                index
            }
            None => {
                let id = self.next_id('V');
                self.views.push(ViewRec {
                    id,
                    trigger_id: None,
                    view,
                    hash,
                });
                let index = self.views.len() - 1;
                self.homes.insert(user, index);
                index
            }
        };
        Ok(json!({ "view": self.stateful_view(index) }))
    }

    fn stateful_view(&self, index: usize) -> Value {
        let rec = &self.views[index];
        let mut view = rec.view.as_object().cloned().unwrap_or_default();
        for key in ["private_metadata", "callback_id", "external_id"] {
            view.entry(key).or_insert_with(|| json!(""));
        }
        view.insert("id".into(), json!(rec.id));
        view.insert("team_id".into(), json!(self.team_id));
        view.insert("state".into(), json!({ "values": {} }));
        view.insert("hash".into(), json!(rec.hash));
        view.insert("previous_view_id".into(), Value::Null);
        view.insert("root_view_id".into(), json!(rec.id));
        view.insert("app_id".into(), json!(APP_ID));
        view.insert("app_installed_team_id".into(), json!(self.team_id));
        view.insert("bot_id".into(), json!(BOT_ID));
        Value::Object(view)
    }

    fn conversations_open(&mut self, p: &Value) -> ApiResult {
        if let Some(channel) = param(p, "channel") {
            if channel.starts_with('D') && self.conversations.contains_key(&channel) {
                return Ok(json!({
                    "channel": self.conversation_json(&channel),
                    "already_open": true,
                }));
            }
            if let Some(id) = self.mpims.values().find(|id| **id == channel).cloned() {
                return Ok(json!({ "channel": self.conversation_json(&id), "already_open": true }));
            }
            return Err("channel_not_found".into());
        }
        let users: Vec<String> = match p.get("users") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|u| u.as_str().map(|s| s.trim().to_string()))
                .collect(),
            Some(Value::String(list)) => list.split(',').map(|u| u.trim().to_string()).collect(),
            _ => Vec::new(),
        };
        let mut users: Vec<String> = users.into_iter().filter(|u| !u.is_empty()).collect();
        if users.is_empty() {
            return Err("users_list_not_supplied".into());
        }
        if users.iter().any(|u| !is_user_id(u)) {
            return Err("user_not_found".into());
        }
        users.sort();
        users.dedup();
        let (id, already_open) = if let [user] = users.as_slice() {
            let existed = self.dm_by_user.contains_key(user);
            (self.ensure_dm(user), existed)
        } else {
            let key = users.join(",");
            match self.mpims.get(&key) {
                Some(id) => (id.clone(), true),
                None => {
                    let id = self.next_id('G');
                    self.mpims.insert(key, id.clone());
                    self.conversations.entry(id.clone()).or_default();
                    (id, false)
                }
            }
        };
        Ok(json!({ "channel": self.conversation_json(&id), "already_open": already_open }))
    }

    fn conversation_json(&self, id: &str) -> Value {
        let mut channel = json!({
            "id": id,
            "created": self.base_secs,
            "is_open": true,
            "is_im": false,
            "is_mpim": false,
            "is_private": true,
        });
        if let Some(user) = self.dm_user(id) {
            channel["is_im"] = json!(true);
            channel["user"] = json!(user);
        } else {
            channel["is_mpim"] = json!(true);
        }
        channel
    }

    /// `conversations.history`: top-level messages (and broadcast replies), newest first.
    fn history(&self, p: &Value) -> ApiResult {
        let channel = param(p, "channel").ok_or("channel_not_found")?;
        // A channel the bot has not posted in yet is there, empty (as on Slack), unless
        // a fault says otherwise.
        let target = self.resolve_target(&channel);
        self.channel_fault(&channel, target.as_ref().ok())?;
        let empty = Vec::new();
        let messages = match (self.conversations.get(&channel), target) {
            (Some(messages), _) => messages,
            (None, Ok(Target::NewChannel(_)))
                if !self.directory.missing_channels.contains(&channel) =>
            {
                &empty
            }
            _ => return Err("channel_not_found".into()),
        };
        let window = Window::from_params(p)?;
        let selected = messages.iter().rev().filter(|s| {
            (s.msg.thread_ts.is_none() || s.broadcast) && window.admits(&s.msg.ts, true)
        });
        Ok(self.page(messages, selected, p))
    }

    /// `conversations.replies`: a thread, root first, oldest first.
    fn replies(&self, p: &Value) -> ApiResult {
        let channel = param(p, "channel").ok_or("channel_not_found")?;
        let messages = self
            .conversations
            .get(&channel)
            .ok_or("channel_not_found")?;
        let ts = param(p, "ts").ok_or("thread_not_found")?;
        let root = self.thread_root(&channel, &ts).ok_or("thread_not_found")?;
        let window = Window::from_params(p)?;
        let selected = messages.iter().filter(|s| {
            (s.msg.ts == root || s.msg.thread_ts.as_deref() == Some(root.as_str()))
                && window.admits(&s.msg.ts, false)
        });
        Ok(self.page(messages, selected, p))
    }

    /// One page of `selected` (at most `limit`), with `has_more` and the next cursor.
    fn page<'a>(
        &self,
        conversation: &[Stored],
        mut selected: impl Iterator<Item = &'a Stored>,
        p: &Value,
    ) -> Value {
        let include_metadata = flag(p, "include_all_metadata");
        let threads = thread_summaries(conversation);
        let page: Vec<&Stored> = selected.by_ref().take(history_limit(p)).collect();
        let has_more = selected.next().is_some();
        let rendered: Vec<Value> = page
            .iter()
            .map(|s| self.message_json(s, include_metadata, threads.get(&s.msg.ts)))
            .collect();
        let mut response = json!({ "messages": rendered, "has_more": has_more });
        if has_more && let Some(last) = page.last() {
            response["response_metadata"] =
                json!({ "next_cursor": format!("{CURSOR_PREFIX}{}", last.msg.ts) });
        }
        response
    }

    /// A message as Slack renders it in responses and history.
    fn message_json(
        &self,
        s: &Stored,
        include_metadata: bool,
        thread: Option<&ThreadSummary>,
    ) -> Value {
        let m = &s.msg;
        let mut o = Map::new();
        o.insert("type".into(), json!("message"));
        o.insert("ts".into(), json!(m.ts));
        match &m.user {
            Some(user) => {
                o.insert("user".into(), json!(user));
            }
            None => {
                o.insert("user".into(), json!(BOT_USER_ID));
                o.insert("bot_id".into(), json!(BOT_ID));
                o.insert("app_id".into(), json!(APP_ID));
            }
        }
        o.insert("team".into(), json!(self.team_id));
        o.insert("text".into(), json!(m.text.clone().unwrap_or_default()));
        if !m.blocks.is_null() {
            o.insert("blocks".into(), m.blocks.clone());
        }
        if include_metadata && let Some(metadata) = &m.metadata {
            o.insert("metadata".into(), metadata.clone());
        }
        if let Some(thread_ts) = &m.thread_ts {
            o.insert("thread_ts".into(), json!(thread_ts));
        }
        if let Some(edited_ts) = &s.edited_ts {
            o.insert(
                "edited".into(),
                json!({ "user": BOT_USER_ID, "ts": edited_ts }),
            );
        }
        if let Some(thread) = thread {
            o.insert("thread_ts".into(), json!(m.ts));
            o.insert("reply_count".into(), json!(thread.count));
            o.insert("reply_users_count".into(), json!(thread.users.len()));
            o.insert("reply_users".into(), json!(thread.users));
            o.insert("latest_reply".into(), json!(thread.latest));
        }
        Value::Object(o)
    }
}

const CURSOR_PREFIX: &str = "next_ts:";

/// The `oldest`/`latest`/`inclusive`/`cursor` bounds of a history request.
struct Window {
    oldest: Option<u128>,
    latest: Option<u128>,
    inclusive: bool,
    /// The `ts` of the last message of the previous page.
    cursor: Option<u128>,
}

impl Window {
    fn from_params(p: &Value) -> Result<Window, &'static str> {
        let cursor = match param(p, "cursor") {
            None => None,
            Some(cursor) => Some(
                cursor
                    .strip_prefix(CURSOR_PREFIX)
                    .and_then(parse_ts)
                    .ok_or("invalid_cursor")?,
            ),
        };
        Ok(Window {
            oldest: param_ts(p, "oldest", "invalid_ts_oldest")?,
            latest: param_ts(p, "latest", "invalid_ts_latest")?,
            inclusive: flag(p, "inclusive"),
            cursor,
        })
    }

    /// Whether `ts` is in the window; pages run newest first if `newest_first`.
    fn admits(&self, ts: &str, newest_first: bool) -> bool {
        let Some(ts) = parse_ts(ts) else {
            return false;
        };
        let inclusive = self.inclusive;
        self.oldest
            .is_none_or(|o| if inclusive { ts >= o } else { ts > o })
            && self
                .latest
                .is_none_or(|l| if inclusive { ts <= l } else { ts < l })
            && self
                .cursor
                .is_none_or(|c| if newest_first { ts < c } else { ts > c })
    }
}

struct ThreadSummary {
    count: usize,
    users: Vec<String>,
    latest: String,
}

/// Reply counts per thread root `ts`.
fn thread_summaries(messages: &[Stored]) -> HashMap<String, ThreadSummary> {
    let mut threads: HashMap<String, ThreadSummary> = HashMap::new();
    for s in messages {
        let Some(root) = &s.msg.thread_ts else {
            continue;
        };
        if *root == s.msg.ts {
            continue;
        }
        let user = s
            .msg
            .user
            .clone()
            .unwrap_or_else(|| BOT_USER_ID.to_string());
        let summary = threads
            .entry(root.clone())
            .or_insert_with(|| ThreadSummary {
                count: 0,
                users: Vec::new(),
                latest: String::new(),
            });
        summary.count += 1;
        summary.latest = s.msg.ts.clone();
        if !summary.users.contains(&user) {
            summary.users.push(user);
        }
    }
    threads
}

fn is_user_id(id: &str) -> bool {
    id.len() > 1 && (id.starts_with('U') || id.starts_with('W'))
}

/// A string parameter (numbers and booleans are accepted as text); empty is absent.
fn param(p: &Value, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flag(p: &Value, key: &str) -> bool {
    matches!(param(p, key).as_deref(), Some("true" | "1"))
}

fn param_ts(p: &Value, key: &str, error: &'static str) -> Result<Option<u128>, &'static str> {
    match param(p, key) {
        None => Ok(None),
        Some(ts) => parse_ts(&ts).map(Some).ok_or(error),
    }
}

fn history_limit(p: &Value) -> usize {
    match param(p, "limit").and_then(|l| l.parse::<usize>().ok()) {
        None | Some(0) => DEFAULT_HISTORY_LIMIT,
        Some(limit) => limit.min(MAX_HISTORY_LIMIT),
    }
}

/// A `ts` ("1764000000.000100", or whole seconds) as microseconds.
fn parse_ts(ts: &str) -> Option<u128> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u128 = secs.parse().ok()?;
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(secs * 1_000_000 + frac)
}

/// The `blocks` of a message request (`Null` if absent), checked like Slack does.
fn message_blocks(p: &Value) -> Result<Value, &'static str> {
    match p.get("blocks") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Array(blocks)) if blocks.len() <= MAX_MESSAGE_BLOCKS => {
            Ok(Value::Array(blocks.clone()))
        }
        Some(_) => Err("invalid_blocks"),
    }
}

fn check_has_content(text: Option<&str>, blocks: &Value, p: &Value) -> Result<(), &'static str> {
    let has_blocks = blocks.as_array().is_some_and(|b| !b.is_empty());
    let has_attachments = p
        .get("attachments")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if text.is_none() && !has_blocks && !has_attachments {
        return Err("no_text");
    }
    Ok(())
}

fn message_metadata(p: &Value) -> Result<Option<Value>, &'static str> {
    match p.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(metadata @ Value::Object(map))
            if map
                .get("event_type")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty()) =>
        {
            Ok(Some(metadata.clone()))
        }
        Some(_) => Err("invalid_metadata_format"),
    }
}

/// Checks a view as Slack does for the limits that bite in practice.
fn validate_view(view: &Value, kind: &str) -> Result<(), &'static str> {
    const INVALID: &str = "invalid_arguments";
    let map = view.as_object().ok_or(INVALID)?;
    if map.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(INVALID);
    }
    let blocks = map.get("blocks").and_then(Value::as_array).ok_or(INVALID)?;
    if blocks.len() > MAX_VIEW_BLOCKS {
        return Err(INVALID);
    }
    let text_len = |key: &str| {
        map.get(key)
            .and_then(|t| t.get("text"))
            .and_then(Value::as_str)
            .map(|t| t.chars().count())
    };
    if kind == "modal" {
        match text_len("title") {
            Some(n) if n <= MAX_VIEW_TITLE_CHARS => {}
            _ => return Err(INVALID),
        }
        for key in ["submit", "close"] {
            if text_len(key).is_some_and(|n| n > MAX_VIEW_TITLE_CHARS) {
                return Err(INVALID);
            }
        }
    }
    let str_len = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .map_or(0, |s| s.chars().count())
    };
    if str_len("private_metadata") > MAX_PRIVATE_METADATA_CHARS
        || str_len("callback_id") > MAX_CALLBACK_ID_CHARS
    {
        return Err(INVALID);
    }
    Ok(())
}

/// The call's parameters as a JSON object: the query string, overlaid with a JSON or
/// form body. Form fields holding JSON (`blocks`, `view`, …) are decoded.
fn parse_params(
    query: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Result<Value, &'static str> {
    let mut params = Map::new();
    if let Some(query) = query {
        for (key, value) in parse_urlencoded(query) {
            params.insert(key, Value::String(value));
        }
    }
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Ok(Value::Object(params));
    }
    let is_json = content_type.starts_with("application/json")
        || (content_type.is_empty() && trimmed.starts_with(b"{"));
    if is_json {
        match serde_json::from_slice::<Value>(trimmed) {
            Ok(Value::Object(map)) => params.extend(map),
            _ => return Err("invalid_json"),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded")
        || content_type.is_empty()
    {
        let text = std::str::from_utf8(trimmed).map_err(|_| "invalid_form_data")?;
        for (key, value) in parse_urlencoded(text) {
            let value = match key.as_str() {
                "blocks" | "view" | "metadata" | "attachments" => {
                    serde_json::from_str(&value).unwrap_or(Value::String(value))
                }
                _ => Value::String(value),
            };
            params.insert(key, value);
        }
    } else {
        return Err("invalid_form_data");
    }
    Ok(Value::Object(params))
}

fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use slack_morphism::errors::SlackClientError;
    use slack_morphism::prelude::*;

    use super::*;
    use crate::chat::slack::client::SlackApi;
    use crate::config::Secret;

    const TOKEN: &str = "xoxb-test";

    fn client(fake: &FakeSlack) -> SlackApi {
        SlackApi::new(&fake.api_url(), &Secret::new(TOKEN)).expect("client")
    }

    fn channel(id: &str) -> SlackChannelId {
        SlackChannelId::new(id.to_string())
    }

    fn user(id: &str) -> SlackUserId {
        SlackUserId::new(id.to_string())
    }

    fn text(t: &str) -> SlackMessageContent {
        SlackMessageContent::new().with_text(t.to_string())
    }

    fn section(t: &str) -> SlackBlock {
        SlackSectionBlock::new()
            .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                t.to_string(),
            )))
            .into()
    }

    fn modal(title: &str, callback_id: &str) -> SlackView {
        SlackView::Modal(
            SlackModalView::new(title.into(), vec![section("Tell us more")])
                .with_callback_id(SlackCallbackId::new(callback_id.to_string()))
                .with_private_metadata("req-1".to_string()),
        )
    }

    fn post(to: &str, content: SlackMessageContent) -> SlackApiChatPostMessageRequest {
        SlackApiChatPostMessageRequest::new(channel(to), content)
    }

    fn api_code(err: SlackClientError) -> String {
        match err {
            SlackClientError::ApiError(e) => e.code,
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn post_to_a_channel_then_update_it() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();

        let posted = session
            .chat_post_message(&post(
                "C0REVIEW",
                text("New request").with_blocks(vec![section("*New request*")]),
            ))
            .await
            .unwrap();
        assert_eq!(posted.channel, channel("C0REVIEW"));
        assert_eq!(posted.message.content.text.as_deref(), Some("New request"));
        assert_eq!(
            posted.message.sender.bot_id,
            Some(SlackBotId::new(BOT_ID.into()))
        );

        let updated = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel("C0REVIEW"),
                text("Approved"),
                posted.ts.clone(),
            ))
            .await
            .unwrap();
        assert_eq!(updated.ts, posted.ts);
        assert!(updated.message.edited.is_some());

        let messages = fake.messages("C0REVIEW");
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(m.ts, posted.ts.0);
        assert_eq!(m.channel, "C0REVIEW");
        assert_eq!(m.user, None);
        assert_eq!(m.text.as_deref(), Some("Approved"));
        assert_eq!(m.edits, 1);
        assert_eq!(m.blocks.as_array().map(Vec::len), Some(1), "blocks kept");

        let err = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel("C0REVIEW"),
                text("x"),
                SlackTs::new("1.000001".into()),
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "message_not_found");
    }

    #[tokio::test]
    async fn ts_strictly_increase() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();
        let mut last = 0;
        for to in ["C1", "C2", "U1", "C1"] {
            let ts = session
                .chat_post_message(&post(to, text("x")))
                .await
                .unwrap()
                .ts;
            let micros = parse_ts(&ts.0).unwrap();
            assert!(micros > last, "{} not after {last}", ts.0);
            assert!(ts.0.split_once('.').is_some_and(|(_, f)| f.len() == 6));
            last = micros;
        }
    }

    #[tokio::test]
    async fn posting_to_a_user_opens_a_dm() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();

        let posted = session
            .chat_post_message(&post("U0ALICE", text("Your request was filed")))
            .await
            .unwrap();
        let dm = posted.channel.0.clone();
        assert!(dm.starts_with('D'), "{dm}");
        assert_eq!(fake.dm_channel("U0ALICE"), Some(dm.clone()));
        assert_eq!(fake.dms("U0ALICE").len(), 1);
        assert_eq!(fake.messages(&dm), fake.dms("U0ALICE"));

        let opened = session
            .conversations_open(
                &SlackApiConversationsOpenRequest::new().with_users(vec![user("U0ALICE")]),
            )
            .await
            .unwrap();
        assert_eq!(opened.channel.id.0, dm);
        let full = session
            .conversations_open_full(
                &SlackApiConversationsOpenRequest::new().with_users(vec![user("U0ALICE")]),
            )
            .await
            .unwrap();
        assert_eq!(full.channel.id.0, dm);
        assert_eq!(full.channel.flags.is_im, Some(true));

        // A DM opened first is the one chat.postMessage then uses.
        let bob = session
            .conversations_open(
                &SlackApiConversationsOpenRequest::new().with_users(vec![user("U0BOB")]),
            )
            .await
            .unwrap();
        let to_bob = session
            .chat_post_message(&post("U0BOB", text("hi")))
            .await
            .unwrap();
        assert_eq!(to_bob.channel, bob.channel.id);
        assert_ne!(bob.channel.id.0, dm);

        // chat.update needs the conversation id, not the user id.
        let err = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel("U0ALICE"),
                text("edited"),
                posted.ts.clone(),
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "channel_not_found");
        session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel(&dm),
                text("edited"),
                posted.ts.clone(),
            ))
            .await
            .unwrap();
        assert_eq!(fake.dms("U0ALICE")[0].edits, 1);
        assert_eq!(fake.dms("U0ALICE")[0].text.as_deref(), Some("edited"));
    }

    #[tokio::test]
    async fn ephemerals_are_kept_per_user() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();
        let response = session
            .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
                channel("C0GENERAL"),
                user("U0ALICE"),
                text("Only you can see this"),
            ))
            .await;
        assert!(response.is_ok(), "{response:?}");
        let shown = fake.ephemerals("U0ALICE");
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].channel, "C0GENERAL");
        assert_eq!(shown[0].text.as_deref(), Some("Only you can see this"));
        assert!(fake.ephemerals("U0BOB").is_empty());
        assert!(fake.messages("C0GENERAL").is_empty());
        let call = fake.calls_to("chat.postEphemeral").remove(0);
        assert_eq!(call.status, 200);
        assert_eq!(call.body["user"], "U0ALICE");
    }

    #[tokio::test]
    async fn a_trigger_opens_one_modal_within_three_seconds() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();

        let trigger = fake.issue_trigger();
        let request = SlackApiViewsOpenRequest::new(
            SlackTriggerId::new(trigger.clone()),
            modal("Request", "req"),
        );
        let opened = session.views_open(&request).await.unwrap();
        let view_id = opened.view.state_params.id.clone();
        assert!(view_id.0.starts_with('V'));
        assert_eq!(opened.view.state_params.team_id.0, fake.team_id());
        match &opened.view.view {
            SlackView::Modal(m) => {
                assert_eq!(m.callback_id, Some(SlackCallbackId::new("req".into())));
                assert_eq!(m.private_metadata.as_deref(), Some("req-1"));
            }
            other => panic!("not a modal: {other:?}"),
        }

        let again = session.views_open(&request).await.unwrap_err();
        assert_eq!(api_code(again), "expired_trigger_id");
        let unknown = session
            .views_open(&SlackApiViewsOpenRequest::new(
                SlackTriggerId::new("123.456.abc".into()),
                modal("Request", "req"),
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(unknown), "invalid_trigger_id");

        let stale = fake.issue_trigger();
        if let Some(t) = fake.lock().triggers.get_mut(&stale) {
            t.issued = Instant::now()
                .checked_sub(Duration::from_secs(4))
                .expect("clock");
        }
        let err = session
            .views_open(&SlackApiViewsOpenRequest::new(
                SlackTriggerId::new(stale),
                modal("Request", "req"),
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "expired_trigger_id");

        let long_title = session
            .views_open(&SlackApiViewsOpenRequest::new(
                SlackTriggerId::new(fake.issue_trigger()),
                modal("A title much longer than Slack allows", "req"),
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(long_title), "invalid_arguments");

        let opened_views = fake.views_opened();
        assert_eq!(opened_views.len(), 1);
        assert_eq!(opened_views[0].trigger_id, trigger);
        assert_eq!(opened_views[0].view_id, view_id.0);
        assert_eq!(opened_views[0].view["callback_id"], "req");

        let updated = session
            .views_update(
                &SlackApiViewsUpdateRequest::new(modal("Request", "req-step-2"))
                    .with_view_id(view_id.clone())
                    .with_hash(opened.view.state_params.hash.clone()),
            )
            .await
            .unwrap();
        assert_eq!(updated.view.state_params.id, view_id);
        assert_ne!(
            updated.view.state_params.hash,
            opened.view.state_params.hash
        );
        assert_eq!(fake.views_opened()[0].view["callback_id"], "req-step-2");

        let stale_hash = session
            .views_update(
                &SlackApiViewsUpdateRequest::new(modal("Request", "req"))
                    .with_view_id(view_id.clone())
                    .with_hash(opened.view.state_params.hash.clone()),
            )
            .await
            .unwrap_err();
        assert_eq!(api_code(stale_hash), "hash_conflict");
        let missing = session
            .views_update(
                &SlackApiViewsUpdateRequest::new(modal("Request", "req"))
                    .with_view_id(SlackViewId::new("V404".into())),
            )
            .await
            .unwrap_err();
        assert_eq!(api_code(missing), "not_found");
    }

    #[tokio::test]
    async fn views_publish_sets_the_home_tab() {
        let fake = FakeSlack::start_with(TOKEN, "T0OTHER").await;
        let api = client(&fake);
        let session = api.session();
        assert_eq!(fake.home("U0ALICE"), None);
        let home = |t: &str| SlackView::Home(SlackHomeView::new(vec![section(t)]));

        let first = session
            .views_publish(&SlackApiViewsPublishRequest::new(
                user("U0ALICE"),
                home("v1"),
            ))
            .await
            .unwrap();
        assert_eq!(first.view.state_params.team_id.0, "T0OTHER");
        assert!(matches!(first.view.view, SlackView::Home(_)));
        let second = session
            .views_publish(&SlackApiViewsPublishRequest::new(
                user("U0ALICE"),
                home("v2"),
            ))
            .await
            .unwrap();
        assert_eq!(second.view.state_params.id, first.view.state_params.id);

        let shown = fake.home("U0ALICE").expect("home");
        assert_eq!(shown["type"], "home");
        assert_eq!(shown["blocks"][0]["text"]["text"], "v2");
        assert_eq!(fake.home("U0BOB"), None);
        assert!(fake.views_opened().is_empty());

        let err = session
            .views_publish(&SlackApiViewsPublishRequest::new(
                user("U0ALICE"),
                modal("Not a home", "x"),
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "invalid_arguments");
    }

    #[tokio::test]
    async fn history_returns_metadata_when_asked() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();
        let metadata =
            SlackMessageMetadata::new("waiver_request".into()).with_event_payload(HashMap::from([
                ("request_id".to_string(), "R-7".to_string()),
            ]));

        let first = session
            .chat_post_message(&post("C0H", text("one")))
            .await
            .unwrap();
        let second = session
            .chat_post_message(&post("C0H", text("two").with_metadata(metadata.clone())))
            .await
            .unwrap();
        let reply_ts = fake.post_as_user("C0H", "U0ALICE", "a reply", Some(&first.ts.0));
        let third = session
            .chat_post_message(&post("C0H", text("three")))
            .await
            .unwrap();
        assert_eq!(fake.messages("C0H").len(), 4);
        assert_eq!(
            fake.messages("C0H")[2].thread_ts.as_deref(),
            Some(first.ts.0.as_str())
        );

        let history = |req: SlackApiConversationsHistoryRequest| {
            let session = api.session();
            async move { session.conversations_history(&req).await }
        };
        let base = SlackApiConversationsHistoryRequest::new().with_channel(channel("C0H"));

        let all = history(base.clone().with_include_all_metadata(true))
            .await
            .unwrap();
        let ts: Vec<&str> = all
            .messages
            .iter()
            .map(|m| m.origin.ts.0.as_str())
            .collect();
        assert_eq!(
            ts,
            [&third.ts.0, &second.ts.0, &first.ts.0],
            "newest first, no replies"
        );
        assert_eq!(all.has_more, Some(false));
        assert_eq!(all.messages[1].content.metadata, Some(metadata));
        assert_eq!(all.messages[2].parent.reply_count, Some(1));
        assert_eq!(
            all.messages[2]
                .parent
                .latest_reply
                .as_ref()
                .map(|t| t.0.as_str()),
            Some(reply_ts.as_str())
        );

        let plain = history(base.clone()).await.unwrap();
        assert!(plain.messages.iter().all(|m| m.content.metadata.is_none()));

        let page = history(base.clone().with_limit(2)).await.unwrap();
        assert_eq!(page.messages.len(), 2);
        assert_eq!(page.has_more, Some(true));
        let cursor = page
            .response_metadata
            .and_then(|m| m.next_cursor)
            .expect("cursor");
        let rest = history(base.clone().with_limit(2).with_cursor(cursor))
            .await
            .unwrap();
        assert_eq!(rest.messages.len(), 1);
        assert_eq!(rest.messages[0].origin.ts, first.ts);
        assert_eq!(rest.has_more, Some(false));

        let after_first = history(base.clone().with_oldest(first.ts.clone()))
            .await
            .unwrap();
        assert_eq!(after_first.messages.len(), 2);
        let from_first = history(
            base.clone()
                .with_oldest(first.ts.clone())
                .with_inclusive(true),
        )
        .await
        .unwrap();
        assert_eq!(from_first.messages.len(), 3);
        let before_third = history(base.clone().with_latest(third.ts.clone()))
            .await
            .unwrap();
        assert_eq!(before_third.messages.len(), 2);

        let replies = session
            .conversations_replies(&SlackApiConversationsRepliesRequest::new(
                channel("C0H"),
                first.ts.clone(),
            ))
            .await
            .unwrap();
        assert_eq!(replies.messages.len(), 2);
        assert_eq!(replies.messages[1].sender.user, Some(user("U0ALICE")));

        // A channel not posted in yet is empty; one that does not exist is an error.
        let empty =
            history(SlackApiConversationsHistoryRequest::new().with_channel(channel("C0NEW")))
                .await
                .unwrap();
        assert!(empty.messages.is_empty());
        fake.remove_channel("C0NOPE");
        let err =
            history(SlackApiConversationsHistoryRequest::new().with_channel(channel("C0NOPE")))
                .await
                .unwrap_err();
        assert_eq!(api_code(err), "channel_not_found");
    }

    #[tokio::test]
    async fn faults_map_to_slack_morphism_errors_and_change_nothing() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();
        let req = post("C0F", text("hello"));

        fake.fail_next(
            "chat.postMessage",
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        );
        fake.fail_next("chat.postMessage", Fault::ServerError(503));
        fake.fail_next("chat.postMessage", Fault::ApiError("fatal_error".into()));

        match session.chat_post_message(&req).await.unwrap_err() {
            SlackClientError::RateLimitError(e) => {
                assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
                assert_eq!(e.code.as_deref(), Some("ratelimited"));
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        match session.chat_post_message(&req).await.unwrap_err() {
            SlackClientError::HttpError(e) => assert_eq!(e.status_code.as_u16(), 503),
            other => panic!("expected an HTTP error, got {other:?}"),
        }
        assert_eq!(
            api_code(session.chat_post_message(&req).await.unwrap_err()),
            "fatal_error"
        );
        assert!(fake.messages("C0F").is_empty());

        session.chat_post_message(&req).await.unwrap();
        assert_eq!(fake.messages("C0F").len(), 1);
        let calls = fake.calls_to("chat.postMessage");
        let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [429, 503, 200, 200]);
        let errors: Vec<Option<&str>> = calls.iter().map(|c| c.error.as_deref()).collect();
        assert_eq!(
            errors,
            [Some("ratelimited"), None, Some("fatal_error"), None]
        );
        assert_eq!(calls[0].body["channel"], "C0F");

        // A hung call is still applied once Slack gets to it, client or no client.
        fake.fail_next("chat.postMessage", Fault::Hang(Duration::from_millis(300)));
        let timed_out =
            tokio::time::timeout(Duration::from_millis(50), session.chat_post_message(&req)).await;
        assert!(timed_out.is_err());
        assert!(
            fake.wait_for(Duration::from_secs(5), |f| f.messages("C0F").len() == 2)
                .await
        );
        assert!(
            fake.wait_for(Duration::from_secs(5), |f| f
                .calls()
                .last()
                .is_some_and(|c| c.status == 200))
                .await
        );
    }

    #[tokio::test]
    async fn channel_faults_and_validation() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        let session = api.session();

        let posted = session
            .chat_post_message(&post("C0ARCH", text("x")))
            .await
            .unwrap();
        fake.fail_channel("C0ARCH", "is_archived");
        let err = session
            .chat_post_message(&post("C0ARCH", text("y")))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "is_archived");
        let err = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel("C0ARCH"),
                text("z"),
                posted.ts,
            ))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "is_archived");
        assert_eq!(fake.messages("C0ARCH")[0].text.as_deref(), Some("x"));

        let err = session
            .chat_post_message(
                &post("C0T", text("reply")).with_thread_ts(SlackTs::new("1.000001".into())),
            )
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "thread_not_found");
        let err = session
            .chat_post_message(&post("C0T", SlackMessageContent::new()))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "no_text");
        let err = session
            .chat_post_message(&post("", text("x")))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "channel_not_found");
        let err = session
            .chat_post_message(&post("D0NOPE", text("x")))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "channel_not_found");
        assert!(fake.messages("C0T").is_empty());

        let root = session
            .chat_post_message(&post("C0T", text("root")))
            .await
            .unwrap();
        let reply = session
            .chat_post_message(&post("C0T", text("reply")).with_thread_ts(root.ts.clone()))
            .await
            .unwrap();
        assert_eq!(reply.message.origin.thread_ts, Some(root.ts.clone()));
        assert_eq!(fake.messages("C0T")[1].thread_ts, Some(root.ts.0));
    }

    #[tokio::test]
    async fn wrong_token_is_invalid_auth() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = SlackApi::new(&fake.api_url(), &Secret::new("xoxb-wrong")).unwrap();
        let err = api
            .session()
            .chat_post_message(&post("C0X", text("hi")))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), "invalid_auth");
        assert!(fake.messages("C0X").is_empty());
        let calls = fake.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].method, "chat.postMessage");
        assert_eq!(calls[0].status, 200);
        assert_eq!(calls[0].error.as_deref(), Some("invalid_auth"));
    }

    #[tokio::test]
    async fn auth_test_and_latency() {
        let fake = FakeSlack::start(TOKEN).await;
        let api = client(&fake);
        fake.set_latency(Duration::from_millis(60));
        let started = Instant::now();
        let me = api.session().auth_test().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert_eq!(me.user_id, user(BOT_USER_ID));
        assert_eq!(me.team_id.0, DEFAULT_TEAM_ID);
        assert_eq!(me.bot_id, Some(SlackBotId::new(BOT_ID.into())));
    }

    #[tokio::test]
    async fn raw_http_form_bodies_and_unknown_paths() {
        let fake = FakeSlack::start(TOKEN).await;
        let http = reqwest::Client::new();
        let blocks = r#"[{"type":"section","text":{"type":"mrkdwn","text":"hi & bye"}}]"#;
        let form = format!(
            "channel=C0FORM&text=hi+%26+bye&blocks={}",
            blocks
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        );
        let response = http
            .post(format!("{}chat.postMessage", fake.api_url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["ok"], true, "{body}");
        let m = &fake.messages("C0FORM")[0];
        assert_eq!(m.text.as_deref(), Some("hi & bye"));
        assert_eq!(m.blocks[0]["text"]["text"], "hi & bye");

        let unknown: Value = http
            .post(format!("{}chat.frobnicate", fake.api_url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(unknown, json!({ "ok": false, "error": "unknown_method" }));

        let bad_json: Value = http
            .post(format!("{}chat.postMessage", fake.api_url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(bad_json["error"], "invalid_json");

        let too_big = http
            .post(format!("{}chat.postMessage", fake.api_url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(vec![b'a'; BODY_LIMIT + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(too_big.status(), 413);

        let outside = http
            .get(format!("http://{}/chat.postMessage", fake.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(outside.status(), 404);
        let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
        assert_eq!(
            methods,
            [
                "chat.postMessage",
                "chat.frobnicate",
                "chat.postMessage",
                "chat.postMessage",
                "/chat.postMessage"
            ]
        );
    }

    #[test]
    fn ts_and_form_parsing() {
        assert_eq!(parse_ts("1764000000.000100"), Some(1_764_000_000_000_100));
        assert_eq!(parse_ts("1764000000.1"), Some(1_764_000_000_100_000));
        assert_eq!(parse_ts("1764000000"), Some(1_764_000_000_000_000));
        assert_eq!(parse_ts("abc"), None);
        assert_eq!(percent_decode("a%20b+c%"), "a b c%");
        assert_eq!(
            parse_urlencoded("users=U1%2CU2&x"),
            [
                ("users".to_string(), "U1,U2".to_string()),
                ("x".to_string(), String::new())
            ]
        );
    }
}

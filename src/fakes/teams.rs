//! A fake of Microsoft's side of a Teams bot, on loopback: the token issuer (OpenID
//! metadata, a JWKS with its own RSA keys and their endorsements, and the
//! client-credentials token endpoint) and the Bot Connector (conversations and their
//! activities: post, reply, update in place). Tokens for inbound activities are signed
//! exactly as the Bot Framework Connector signs them (RS256, `kid`, issuer
//! `https://api.botframework.com`, audience the app id, `serviceurl`).
//!
//! Two keys: `endorsed` (endorsed for `msteams`) signs what Teams would send;
//! `unendorsed` is in the JWKS but endorsed only for `webchat`. Both are test-only keys,
//! kept in this folder; the product trusts only what the configured metadata names.
//!
//! State is kept in memory for tests to assert on what people would see
//! ([`FakeTeams::conversation`], [`FakeTeams::calls`]); faults can be injected
//! ([`FakeTeams::fail_next`]).

pub mod tenant;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::chat::teams::auth::{ISSUER, install_crypto_provider};
use crate::clock::Clock;

const ENDORSED_KEY: &[u8] = include_bytes!("teams/endorsed.pk8");
const UNENDORSED_KEY: &[u8] = include_bytes!("teams/unendorsed.pk8");
pub const ENDORSED_KID: &str = "fake-key-msteams";
pub const UNENDORSED_KID: &str = "fake-key-webchat";
/// The bot's id in conversations (`28:<app id>`).
pub fn bot_id(app_id: &str) -> String {
    format!("28:{app_id}")
}

/// Which key signs a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKey {
    Endorsed,
    Unendorsed,
}

/// A fault to answer the next connector call of a kind with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// That status (412, 500, 503, …).
    Status(u16),
    /// Waits this long, then applies the call and answers.
    Hang(Duration),
}

/// One call to the fake.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// `openid`, `keys`, `token`, `create_conversation`, `post`, `reply`, `update`.
    pub kind: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
}

/// An activity the bot posted, as it now stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted {
    pub id: String,
    pub conversation: String,
    /// The activity as last sent (updates replace it).
    pub activity: Value,
    pub reply_to: Option<String>,
    pub updates: u32,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    tokens: HashSet<String>,
    /// conversation id → posts, oldest first.
    conversations: BTreeMap<String, Vec<Posted>>,
    /// personal conversations created: member → conversation id.
    personal: HashMap<String, String>,
    /// Channels whose team the app was added to (posting elsewhere is refused).
    installed: HashSet<String>,
    faults: HashMap<String, VecDeque<Fault>>,
    seq: u64,
}

struct Shared {
    app_id: String,
    app_password: String,
    tenant: String,
    clock: Clock,
    endorsed: ring::rsa::KeyPair,
    unendorsed: ring::rsa::KeyPair,
    addr: SocketAddr,
    inner: Mutex<Inner>,
}

/// The fake issuer and connector. Serves until dropped.
pub struct FakeTeams {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeTeams {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn jwk(kid: &str, pair: &ring::rsa::KeyPair, endorsements: &[&str]) -> Value {
    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    json!({
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(&c.n),
        "e": URL_SAFE_NO_PAD.encode(&c.e),
        "endorsements": endorsements,
    })
}

impl FakeTeams {
    /// Binds `127.0.0.1:0` for a bot `app_id`/`app_password` registered in `tenant`,
    /// on `clock` (token lifetimes follow it, as Microsoft's follow the wall clock).
    pub async fn start(app_id: &str, app_password: &str, tenant: &str, clock: Clock) -> Self {
        install_crypto_provider();
        crate::chat::install_tls_provider();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake Teams: cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Teams: no address");
        let shared = Arc::new(Shared {
            app_id: app_id.into(),
            app_password: app_password.into(),
            tenant: tenant.into(),
            clock,
            endorsed: ring::rsa::KeyPair::from_pkcs8(ENDORSED_KEY).expect("test key"),
            unendorsed: ring::rsa::KeyPair::from_pkcs8(UNENDORSED_KEY).expect("test key"),
            addr,
            inner: Mutex::new(Inner::default()),
        });
        let router = Router::new().fallback(serve).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { shared, server }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The value for `TEAMS_OPENID_METADATA_URL`.
    pub fn openid_url(&self) -> String {
        format!("http://{}/openid", self.shared.addr)
    }

    /// The value for `TEAMS_TOKEN_URL`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.shared.addr)
    }

    /// The Bot Connector's serviceUrl (what activities carry; add it to
    /// `TEAMS_SERVICE_URLS`).
    pub fn service_url(&self) -> String {
        format!("http://{}/connector/", self.shared.addr)
    }

    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    pub fn tenant(&self) -> &str {
        &self.shared.tenant
    }

    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// A JWT with these `claims`, signed by `key` with header `kid`.
    pub fn sign(&self, claims: &Value, key: SigningKey, kid: &str) -> String {
        let pair = match key {
            SigningKey::Endorsed => ENDORSED_KEY,
            SigningKey::Unendorsed => UNENDORSED_KEY,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(pair),
        )
        .expect("the fake signs")
    }

    /// The claims the Bot Connector puts in a token for an activity to `service_url`,
    /// valid from now for an hour.
    pub fn claims(&self, service_url: &str) -> Value {
        let now = self.shared.clock.unix_seconds();
        json!({
            "iss": ISSUER,
            "aud": self.shared.app_id,
            "serviceurl": service_url,
            "nbf": now - 5,
            "exp": now + 3600,
            "iat": now - 5,
        })
    }

    /// What the Bot Connector sends: a valid token for an activity to `service_url`.
    pub fn token(&self, service_url: &str) -> String {
        self.sign(
            &self.claims(service_url),
            SigningKey::Endorsed,
            ENDORSED_KID,
        )
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Calls of one kind.
    pub fn calls_of(&self, kind: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect()
    }

    /// The bot's posts in a conversation, oldest first, as they now stand.
    pub fn conversation(&self, id: &str) -> Vec<Posted> {
        self.lock()
            .conversations
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every conversation the bot posted in.
    pub fn conversations(&self) -> Vec<String> {
        self.lock().conversations.keys().cloned().collect()
    }

    /// The personal conversation the bot created with `member` (an AAD object id or
    /// a `29:` id), if any.
    pub fn personal(&self, member: &str) -> Option<String> {
        let aad = member.strip_prefix("29:").unwrap_or(member);
        let inner = self.lock();
        [aad.to_string(), format!("29:{aad}")]
            .iter()
            .find_map(|k| inner.personal.get(k).cloned())
    }

    /// The app is added to the team of `channel`: the bot may post there. (Teams
    /// tells the bot about the team's General channel only; see
    /// [`tenant::Tenant::install_in_channel`] for a channel the bot is told about.)
    pub fn add_to_team(&self, channel: &str) {
        self.lock().installed.insert(channel.to_string());
    }

    /// Answers the next call of `kind` with `fault`.
    pub fn fail_next(&self, kind: &str, fault: Fault) {
        self.lock()
            .faults
            .entry(kind.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Polls until `pred` holds, or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&FakeTeams) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if status == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect()
            })
            .map(Value::Object)
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match (method.as_str(), segments.as_slice()) {
        ("GET", ["openid"]) => "openid",
        ("GET", ["keys"]) => "keys",
        ("POST", ["token"]) => "token",
        ("POST", ["connector", "v3", "conversations"]) => "create_conversation",
        ("POST", ["connector", "v3", "conversations", _, "activities"]) => "post",
        ("POST", ["connector", "v3", "conversations", _, "activities", _]) => "reply",
        ("PUT", ["connector", "v3", "conversations", _, "activities", _]) => "update",
        _ => "unknown",
    };
    let (fault, authorised) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let fault = inner.faults.get_mut(kind).and_then(VecDeque::pop_front);
        let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
        let authorised = token.is_some_and(|t| inner.tokens.contains(t));
        (fault, authorised)
    };
    // Answered in a task of its own, so that a client giving up (dropping the
    // connection) does not stop a slow call from being applied, as on Teams.
    let task = tokio::spawn(async move {
        if let Some(Fault::Hang(d)) = &fault {
            tokio::time::sleep(*d).await;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (status, answer) = match fault {
            Some(Fault::RateLimited { .. }) => (429, json!({"error": {"code": "TooManyRequests"}})),
            Some(Fault::Status(s)) => (s, json!({"error": {"code": "Fault"}})),
            _ => handle(&shared, kind, &segments, &body, authorised),
        };
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.calls.push(Call {
            kind: kind.into(),
            path,
            body,
            status,
        });
        drop(inner);
        (status, answer)
    });
    match task.await {
        Ok((status, answer)) => reply(status, answer),
        Err(_) => reply(500, json!({"error": {"code": "FakeFailed"}})),
    }
}

fn handle(
    shared: &Shared,
    kind: &str,
    segments: &[&str],
    body: &Value,
    authorised: bool,
) -> (u16, Value) {
    let base = format!("http://{}", shared.addr);
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let next = |inner: &mut Inner, prefix: &str| {
        inner.seq += 1;
        format!("{prefix}{}", inner.seq)
    };
    match kind {
        "openid" => (
            200,
            json!({
                "issuer": ISSUER,
                "authorization_endpoint": format!("{base}/authorize"),
                "jwks_uri": format!("{base}/keys"),
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }),
        ),
        "keys" => (
            200,
            json!({ "keys": [
                jwk(ENDORSED_KID, &shared.endorsed, &["msteams", "emulator"]),
                jwk(UNENDORSED_KID, &shared.unendorsed, &["webchat"]),
            ]}),
        ),
        "token" => {
            let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
            let ok = field("grant_type") == "client_credentials"
                && field("client_id") == shared.app_id
                && field("client_secret") == shared.app_password
                && field("scope") == "https://api.botframework.com/.default";
            if !ok {
                return (401, json!({"error": "invalid_client"}));
            }
            let token = next(&mut inner, "fake-connector-token-");
            inner.tokens.insert(token.clone());
            (
                200,
                json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": token}),
            )
        }
        _ if !authorised => (
            401,
            json!({"message": "Authorization has been denied for this request."}),
        ),
        "create_conversation" => {
            // Teams takes a member's AAD object id (or their `29:` id).
            let member = body["members"][0]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let member = member.strip_prefix("29:").unwrap_or(&member).to_string();
            let tenant = body["channelData"]["tenant"]["id"]
                .as_str()
                .or_else(|| body["tenantId"].as_str())
                .unwrap_or_default();
            if member.is_empty() || tenant != shared.tenant {
                return (400, json!({"error": {"code": "BadArgument"}}));
            }
            let existing = inner.personal.get(&member).cloned();
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = next(&mut inner, "a:personal-");
                    inner.personal.insert(member, id.clone());
                    id
                }
            };
            (201, json!({"id": id}))
        }
        "post" | "reply" => {
            let conversation = segments[3].to_string();
            let channel = conversation.split(";messageid=").next().unwrap_or_default();
            if channel.starts_with("19:") && !inner.installed.contains(channel) {
                return (
                    403,
                    json!({"error": {"code": "BotNotInConversationRoster", "message": "The bot is not part of the conversation roster."}}),
                );
            }
            let reply_to = (kind == "reply").then(|| segments[5].to_string());
            let id = next(&mut inner, "activity-");
            let mut activity = body.clone();
            activity["id"] = json!(id);
            inner
                .conversations
                .entry(conversation.clone())
                .or_default()
                .push(Posted {
                    id: id.clone(),
                    conversation,
                    activity,
                    reply_to,
                    updates: 0,
                });
            (201, json!({"id": id}))
        }
        "update" => {
            let (conversation, id) = (segments[3], segments[5]);
            let found = inner
                .conversations
                .get_mut(conversation)
                .and_then(|c| c.iter_mut().find(|p| p.id == id));
            match found {
                Some(p) => {
                    let mut activity = body.clone();
                    activity["id"] = json!(id);
                    p.activity = activity;
                    p.updates += 1;
                    (200, json!({"id": id}))
                }
                None => (404, json!({"error": {"code": "NotFound"}})),
            }
        }
        _ => (404, json!({"error": {"code": "NotFound"}})),
    }
}

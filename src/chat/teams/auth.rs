//! Inbound authentication of Bot Framework requests, as the Bot Framework specifies:
//! `Authorization: Bearer <JWT>`, RS256 only, issuer `https://api.botframework.com`,
//! audience the bot's app id, the key found by `kid` in the JWKS that the OpenID
//! metadata names, five minutes of clock skew, the activity's `channelId` among the
//! key's endorsements, and the token's `serviceurl` claim equal to the activity's
//! `serviceUrl`, itself one the bot is configured to call.
//!
//! Keys are cached: fetched at first use, refreshed at most once an hour, and on an
//! unknown `kid` at most once a minute (a flood of made-up kids cannot hammer the
//! metadata endpoint). Verification never fetches while the cache is fresh.
//!
//! jsonwebtoken does the JWS parsing and RS256 checks through our own
//! [`CryptoProvider`] on ring (the one provider in the tree); time (`exp`, `nbf`) is
//! checked here against the injected clock, not the system clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation, signature};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::config::TeamsConfig;

/// The issuer of the Bot Connector's tokens.
pub const ISSUER: &str = "https://api.botframework.com";
/// Clock skew allowed on `exp` and `nbf`.
pub const SKEW_SECS: i64 = 300;
/// Keys are refreshed after this long, and no sooner.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// An unknown `kid` refreshes the keys at most this often.
const UNKNOWN_KID_EVERY: Duration = Duration::from_secs(60);
/// After a failed fetch with no keys to fall back on, the next fetch waits this long.
const RETRY_FAILED: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// RS256 on ring, for jsonwebtoken.

struct RingVerifier(DecodingKey);

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        use jsonwebtoken::DecodingKeyKind;
        let ok = match self.0.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => ring::rsa::PublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok(),
            DecodingKeyKind::SecretOrDer(der) => ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                der,
            )
            .verify(msg, sig)
            .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

struct RingSigner(Arc<ring::rsa::KeyPair>);

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut out = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                msg,
                &mut out,
            )
            .map_err(|_| signature::Error::new())?;
        Ok(out)
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

fn unsupported() -> jsonwebtoken::errors::Error {
    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()
}

/// RS256 only: every other algorithm (`none`, HS256 keyed with a public key, …) is
/// refused before any check.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key: &EncodingKey| match alg {
        Algorithm::RS256 => {
            let pair = ring::rsa::KeyPair::from_pkcs8(key.as_bytes())
                .map_err(|e| jsonwebtoken::errors::ErrorKind::InvalidRsaKey(e.to_string()))?;
            Ok(Box::new(RingSigner(Arc::new(pair))) as Box<dyn JwtSigner>)
        }
        _ => Err(unsupported()),
    },
    verifier_factory: |alg, key: &DecodingKey| match alg {
        Algorithm::RS256 => Ok(Box::new(RingVerifier(key.clone())) as Box<dyn JwtVerifier>),
        _ => Err(unsupported()),
    },
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |der| {
            let pair = ring::rsa::KeyPair::from_pkcs8(der)
                .map_err(|e| jsonwebtoken::errors::ErrorKind::InvalidRsaKey(e.to_string()))?;
            let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
            Ok((c.n, c.e))
        },
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_,
                                             _: Algorithm|
         -> jsonwebtoken::errors::Result<(
            EllipticCurve,
            Vec<u8>,
            Vec<u8>,
        )> { Err(unsupported()) },
        ed_pub_components_from_private_key: |_, _| Err(unsupported()),
        compute_digest: |data, hash| {
            let alg = match hash {
                ThumbprintHash::SHA256 => &ring::digest::SHA256,
                ThumbprintHash::SHA384 => &ring::digest::SHA384,
                ThumbprintHash::SHA512 => &ring::digest::SHA512,
                _ => return Err(unsupported()),
            };
            Ok(ring::digest::digest(alg, data).as_ref().to_vec())
        },
    },
};

/// Installs the ring provider for jsonwebtoken (idempotent).
pub fn install_crypto_provider() {
    let _ = PROVIDER.install_default();
}

// ---------------------------------------------------------------------------------
// The keys.

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: String,
}

/// A key as the Bot Framework publishes it; jsonwebtoken's `Jwk` drops
/// `endorsements`, so this is our own.
#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

struct Key {
    decoding: DecodingKey,
    endorsements: Vec<String>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<Key>>,
    fetched: Option<Instant>,
    /// The last refresh an unknown kid caused.
    unknown_kid_refresh: Option<Instant>,
    /// The last fetch that failed with no keys to fall back on: the next one waits
    /// (a flood of requests while the endpoint is down must not hammer it).
    failed: Option<Instant>,
}

/// Why a request was refused. Every refusal is 401, but a valid token for another
/// bot (wrong audience) is 403.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    Malformed,
    #[error("the token is not a well-formed JWT")]
    BadToken,
    #[error("the token is not RS256")]
    Algorithm,
    #[error("the token's key id is unknown")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token's issuer is not the Bot Framework")]
    Issuer,
    #[error("the token is for another bot")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the signing key is not endorsed for channel {0:?}")]
    NotEndorsed(String),
    #[error("the activity comes from channel {0:?}, not Microsoft Teams")]
    Channel(String),
    #[error("the token's serviceurl is not the activity's serviceUrl")]
    ServiceUrl,
    #[error("the activity's serviceUrl is not one the bot may call")]
    ServiceUrlNotAllowed,
    #[error("the signing keys cannot be fetched")]
    KeysUnavailable,
}

impl AuthError {
    /// The refusal's label in `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed => "malformed_authorization",
            AuthError::BadToken => "malformed_token",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Signature => "bad_signature",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::NotEndorsed(_) => "not_endorsed",
            AuthError::Channel(_) => "channel",
            AuthError::ServiceUrl => "service_url_claim",
            AuthError::ServiceUrlNotAllowed => "service_url_not_allowed",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }

    /// 403 for a valid token meant for someone else, 401 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Audience => 403,
            _ => 401,
        }
    }
}

/// The claims checked here (jsonwebtoken checks issuer, audience and signature).
#[derive(Deserialize)]
struct Claims {
    exp: Option<i64>,
    nbf: Option<i64>,
    serviceurl: Option<String>,
}

/// What a verified token vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The channels its key is endorsed for (`msteams`).
    pub endorsements: Vec<String>,
    pub service_url: Option<String>,
}

/// The verifier, with its cache of keys.
pub struct Verifier {
    config: TeamsConfig,
    http: reqwest::Client,
    clock: Clock,
    cache: Mutex<Cache>,
    /// How many times the keys were fetched (for tests and metrics).
    fetches: std::sync::atomic::AtomicU64,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Why the signing keys could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("the OpenID metadata cannot be fetched ({0})")]
    Metadata(String),
    #[error("the OpenID metadata is not JSON with a jwks_uri")]
    MetadataUnreadable,
    #[error("the signing keys at {uri} cannot be fetched ({why})")]
    Keys { uri: String, why: String },
    #[error("the signing keys at {0} are not a JWKS")]
    KeysUnreadable(String),
}

/// Why a GET failed, without its URL (the caller names it) but with its causes.
fn fetch_error(e: reqwest::Error) -> String {
    if let Some(status) = e.status() {
        return format!("HTTP {}", status.as_u16());
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    crate::chat::error_chain(&e.without_url())
}

/// The keys the OpenID metadata at `metadata_url` names, by kid (RSA keys only).
async fn load_keys(
    http: &reqwest::Client,
    metadata_url: &str,
) -> Result<HashMap<String, Arc<Key>>, KeysError> {
    let get = |url: String| {
        let http = http.clone();
        async move {
            http.get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .and_then(|r| r.error_for_status())
        }
    };
    let metadata: Metadata = get(metadata_url.to_string())
        .await
        .map_err(|e| KeysError::Metadata(fetch_error(e)))?
        .json()
        .await
        .map_err(|_| KeysError::MetadataUnreadable)?;
    let uri = metadata.jwks_uri;
    let jwks: Jwks = get(uri.clone())
        .await
        .map_err(|e| KeysError::Keys {
            uri: uri.clone(),
            why: fetch_error(e),
        })?
        .json()
        .await
        .map_err(|_| KeysError::KeysUnreadable(uri.clone()))?;
    let mut keys = HashMap::new();
    for k in jwks.keys {
        let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
            continue;
        };
        if k.kty != "RSA" {
            continue;
        }
        if let Ok(decoding) = DecodingKey::from_rsa_components(&n, &e) {
            keys.insert(
                kid,
                Arc::new(Key {
                    decoding,
                    endorsements: k.endorsements,
                }),
            );
        }
    }
    Ok(keys)
}

/// What `waiver doctor` learns of the signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysReport {
    /// Usable RSA keys.
    pub keys: usize,
    /// Of those, the keys endorsed for Microsoft Teams (`msteams`).
    pub for_teams: usize,
}

/// Fetches the OpenID metadata at `metadata_url` and the keys it names, as the
/// verifier does at first use (`http` built after
/// [`crate::chat::install_tls_provider`]).
pub async fn check_keys(
    http: &reqwest::Client,
    metadata_url: &str,
) -> Result<KeysReport, KeysError> {
    install_crypto_provider();
    let keys = load_keys(http, metadata_url).await?;
    Ok(KeysReport {
        keys: keys.len(),
        for_teams: keys
            .values()
            .filter(|k| k.endorsements.iter().any(|e| e == "msteams"))
            .count(),
    })
}

impl Verifier {
    /// A verifier for `config`'s bot; `http` must be built after
    /// [`crate::chat::install_tls_provider`].
    pub fn new(config: TeamsConfig, http: reqwest::Client, clock: Clock) -> Self {
        install_crypto_provider();
        Self {
            config,
            http,
            clock,
            cache: Mutex::new(Cache::default()),
            fetches: Default::default(),
            metrics: Default::default(),
        }
    }

    /// Counts key fetches in `metrics` (the server's).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// How many times the OpenID metadata and keys were fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, AuthError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        load_keys(&self.http, &self.config.openid_metadata_url)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "Teams: cannot fetch the signing keys");
                AuthError::KeysUnavailable
            })
    }

    /// The key `kid`, from the cache (refreshed when stale, or once in a while when
    /// the kid is unknown).
    async fn key(&self, kid: &str) -> Result<Arc<Key>, AuthError> {
        let mut cache = self.cache.lock().await;
        let stale = cache.fetched.is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
        if !stale && let Some(k) = cache.keys.get(kid) {
            return Ok(k.clone());
        }
        let may_refresh = stale
            || cache
                .unknown_kid_refresh
                .is_none_or(|t| t.elapsed() >= UNKNOWN_KID_EVERY);
        let may_refresh = may_refresh && cache.failed.is_none_or(|t| t.elapsed() >= RETRY_FAILED);
        if cache.keys.is_empty() && !may_refresh {
            return Err(AuthError::KeysUnavailable);
        }
        if may_refresh {
            if !stale {
                cache.unknown_kid_refresh = Some(Instant::now());
            }
            let fetched = self.fetch().await;
            self.metrics.teams_keys(fetched.is_ok());
            match fetched {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched = Some(Instant::now());
                    cache.failed = None;
                }
                // Keep the old keys: the metadata endpoint may be briefly down.
                Err(e) if cache.keys.is_empty() => {
                    cache.failed = Some(Instant::now());
                    return Err(e);
                }
                Err(_) => cache.fetched = Some(Instant::now()),
            }
        }
        cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }

    /// Checks the `Authorization` header's token.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Verified, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
            .ok_or(AuthError::Malformed)?;
        let head = jsonwebtoken::decode_header(token).map_err(|_| AuthError::BadToken)?;
        if head.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm);
        }
        let kid = head.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[self.config.app_id.as_str()]);
        // Time is checked below, on our clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iss", "aud"]
            .into_iter()
            .map(String::from)
            .collect();
        use jsonwebtoken::errors::ErrorKind as E;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                E::InvalidSignature => AuthError::Signature,
                E::InvalidIssuer => AuthError::Issuer,
                E::InvalidAudience => AuthError::Audience,
                E::InvalidAlgorithm | E::MissingAlgorithm => AuthError::Algorithm,
                _ => AuthError::BadToken,
            })?
            .claims;
        let now = self.clock.unix_seconds();
        match claims.exp {
            Some(exp) if exp + SKEW_SECS < now => return Err(AuthError::Expired),
            None => return Err(AuthError::BadToken),
            _ => {}
        }
        if claims.nbf.is_some_and(|nbf| nbf - SKEW_SECS > now) {
            return Err(AuthError::NotYetValid);
        }
        Ok(Verified {
            endorsements: key.endorsements.clone(),
            service_url: claims.serviceurl,
        })
    }

    /// Checks what the token vouches for against the activity it came with.
    pub fn check_activity(
        &self,
        verified: &Verified,
        channel_id: &str,
        service_url: &str,
    ) -> Result<(), AuthError> {
        // Only Teams: other Bot Framework channels (Direct Line, Web Chat) let the
        // client write the sender's identity.
        if channel_id != "msteams" {
            return Err(AuthError::Channel(channel_id.to_string()));
        }
        if !verified.endorsements.iter().any(|e| e == channel_id) {
            return Err(AuthError::NotEndorsed(channel_id.to_string()));
        }
        if verified.service_url.as_deref() != Some(service_url) {
            return Err(AuthError::ServiceUrl);
        }
        if !self.config.allows_service_url(service_url) {
            return Err(AuthError::ServiceUrlNotAllowed);
        }
        Ok(())
    }
}

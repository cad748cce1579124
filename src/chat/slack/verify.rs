//! Slack request signing: `v0=` + hex(HMAC-SHA256(secret, `v0:{timestamp}:{raw body}`)).
//!
//! [`SignedBody`] is an axum extractor: the only way to get a Slack payload in a
//! handler is through it, so an unverified payload cannot be parsed by accident.
//! Headers are parsed strictly (exactly one of each, digits only, `v0=` + 64 lowercase
//! hex digits); timestamps more than 300 s off in either direction are refused; the
//! MAC is compared in constant time (`hmac`'s `verify_slice`). slack-morphism's own
//! verifier reads the system clock and accepts malformed headers, so the checks are
//! done here, on the same hmac/sha2 crates.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Slack's replay window, in seconds, applied in both directions.
pub const MAX_SKEW_SECS: i64 = 300;
/// Larger bodies are refused with 413 before they are read.
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("malformed request timestamp")]
    MalformedTimestamp,
    #[error("malformed signature")]
    MalformedSignature,
    #[error("request timestamp is too old")]
    Stale,
    #[error("request timestamp is in the future")]
    Future,
    #[error("signature mismatch")]
    Mismatch,
    #[error("body too large")]
    TooLarge,
    #[error("cannot read the body")]
    Unreadable,
}

impl VerifyError {
    /// The refusal's label in `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::DuplicateHeader(_) => "duplicate_header",
            VerifyError::MalformedTimestamp => "malformed_timestamp",
            VerifyError::MalformedSignature => "malformed_signature",
            VerifyError::Stale => "stale_timestamp",
            VerifyError::Future => "future_timestamp",
            VerifyError::Mismatch => "bad_signature",
            VerifyError::TooLarge => "too_large",
            VerifyError::Unreadable => "unreadable",
        }
    }
}

impl IntoResponse for VerifyError {
    fn into_response(self) -> Response {
        let status = match self {
            VerifyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            VerifyError::Unreadable => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        tracing::info!(reason = %self, "refused a Slack request");
        // The reason stays in the log and the metrics; the caller learns only the status.
        let mut response = (status, status.canonical_reason().unwrap_or("refused")).into_response();
        response.extensions_mut().insert(crate::metrics::Refused {
            platform: "slack",
            reason: self.reason(),
        });
        response
    }
}

fn one<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h [u8], VerifyError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(VerifyError::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(VerifyError::DuplicateHeader(name));
    }
    Ok(first.as_bytes())
}

/// The signature Slack would send for `body` at `timestamp` (for tests and drivers).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mac = mac(secret, timestamp.to_string().as_bytes(), body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac(secret: &Secret, timestamp: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp);
    mac.update(b":");
    mac.update(body);
    mac
}

/// Checks a request's signature headers against its raw body at `now` (unix seconds).
pub fn verify(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let ts = one(headers, TIMESTAMP_HEADER)?;
    let sig = one(headers, SIGNATURE_HEADER)?;
    if ts.is_empty() || ts.len() > 12 || !ts.iter().all(u8::is_ascii_digit) {
        return Err(VerifyError::MalformedTimestamp);
    }
    let timestamp: i64 = std::str::from_utf8(ts)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(VerifyError::MalformedTimestamp)?;
    let hex_sig = sig
        .strip_prefix(b"v0=")
        .ok_or(VerifyError::MalformedSignature)?;
    if hex_sig.len() != 64
        || !hex_sig
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(VerifyError::MalformedSignature);
    }
    let expected = hex::decode(hex_sig).map_err(|_| VerifyError::MalformedSignature)?;
    if now - timestamp > MAX_SKEW_SECS {
        return Err(VerifyError::Stale);
    }
    if timestamp - now > MAX_SKEW_SECS {
        return Err(VerifyError::Future);
    }
    mac(secret, ts, body)
        .verify_slice(&expected)
        .map_err(|_| VerifyError::Mismatch)
}

/// The raw body of a request whose Slack signature verified.
pub struct SignedBody {
    body: Bytes,
    headers: HeaderMap,
}

impl SignedBody {
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// `X-Slack-Retry-Num`, when Slack is re-sending an event.
    pub fn retry_num(&self) -> Option<&str> {
        self.headers
            .get("x-slack-retry-num")
            .and_then(|v| v.to_str().ok())
    }
}

/// Handler state that can verify Slack requests.
pub trait SlackSecret {
    fn signing_secret(&self) -> Option<&Secret>;
    /// The clock a request's timestamp is checked against.
    fn clock(&self) -> &crate::clock::Clock;
}

impl<S> FromRequest<S> for SignedBody
where
    S: SlackSecret + Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(secret) = state.signing_secret() else {
            return Err(StatusCode::NOT_FOUND.into_response());
        };
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT) {
            return Err(VerifyError::TooLarge.into_response());
        }
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                VerifyError::TooLarge
            } else {
                VerifyError::Unreadable
            }
            .into_response()
        })?;
        verify(secret, &parts.headers, &body, state.clock().unix_seconds())
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            body,
            headers: parts.headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Slack's published example ("Verifying requests from Slack").
    const EXAMPLE_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const EXAMPLE_TS: i64 = 1531420618;
    const EXAMPLE_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const EXAMPLE_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(ts).unwrap());
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
        h
    }

    fn secret() -> Secret {
        Secret::new(EXAMPLE_SECRET)
    }

    #[test]
    fn slacks_published_example_verifies() {
        assert_eq!(
            sign(&secret(), EXAMPLE_TS, EXAMPLE_BODY.as_bytes()),
            EXAMPLE_SIG
        );
        let h = headers("1531420618", EXAMPLE_SIG);
        assert_eq!(
            verify(&secret(), &h, EXAMPLE_BODY.as_bytes(), EXAMPLE_TS),
            Ok(())
        );
    }

    #[test]
    fn every_deviation_is_refused() {
        let body = EXAMPLE_BODY.as_bytes();
        let ok = headers("1531420618", EXAMPLE_SIG);
        let cases: Vec<(&str, HeaderMap, &[u8], i64, VerifyError)> = vec![
            (
                "tampered body",
                ok.clone(),
                b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&text=approve",
                EXAMPLE_TS,
                VerifyError::Mismatch,
            ),
            (
                "stale by 301 s",
                ok.clone(),
                body,
                EXAMPLE_TS + 301,
                VerifyError::Stale,
            ),
            (
                "future by 301 s",
                ok.clone(),
                body,
                EXAMPLE_TS - 301,
                VerifyError::Future,
            ),
            (
                "missing timestamp",
                {
                    let mut h = ok.clone();
                    h.remove(TIMESTAMP_HEADER);
                    h
                },
                body,
                EXAMPLE_TS,
                VerifyError::MissingHeader(TIMESTAMP_HEADER),
            ),
            (
                "missing signature",
                {
                    let mut h = ok.clone();
                    h.remove(SIGNATURE_HEADER);
                    h
                },
                body,
                EXAMPLE_TS,
                VerifyError::MissingHeader(SIGNATURE_HEADER),
            ),
            (
                "duplicated signature",
                {
                    let mut h = ok.clone();
                    h.append(SIGNATURE_HEADER, HeaderValue::from_static(EXAMPLE_SIG));
                    h
                },
                body,
                EXAMPLE_TS,
                VerifyError::DuplicateHeader(SIGNATURE_HEADER),
            ),
            (
                "duplicated timestamp",
                {
                    let mut h = ok.clone();
                    h.append(TIMESTAMP_HEADER, HeaderValue::from_static("1531420618"));
                    h
                },
                body,
                EXAMPLE_TS,
                VerifyError::DuplicateHeader(TIMESTAMP_HEADER),
            ),
            (
                "signed timestamp",
                headers("+1531420618", EXAMPLE_SIG),
                body,
                EXAMPLE_TS,
                VerifyError::MalformedTimestamp,
            ),
            (
                "fractional timestamp",
                headers("1531420618.5", EXAMPLE_SIG),
                body,
                EXAMPLE_TS,
                VerifyError::MalformedTimestamp,
            ),
            (
                "huge timestamp",
                headers("99999999999999999999", EXAMPLE_SIG),
                body,
                EXAMPLE_TS,
                VerifyError::MalformedTimestamp,
            ),
            (
                "v1 scheme",
                headers("1531420618", &EXAMPLE_SIG.replace("v0=", "v1=")),
                body,
                EXAMPLE_TS,
                VerifyError::MalformedSignature,
            ),
            (
                "uppercase hex",
                headers(
                    "1531420618",
                    &EXAMPLE_SIG.to_uppercase().replace("V0=", "v0="),
                ),
                body,
                EXAMPLE_TS,
                VerifyError::MalformedSignature,
            ),
            (
                "short signature",
                headers("1531420618", &EXAMPLE_SIG[..60]),
                body,
                EXAMPLE_TS,
                VerifyError::MalformedSignature,
            ),
            (
                "wrong secret",
                headers(
                    "1531420618",
                    &sign(&Secret::new("not-the-secret"), EXAMPLE_TS, body),
                ),
                body,
                EXAMPLE_TS,
                VerifyError::Mismatch,
            ),
            (
                "signature for another timestamp",
                headers("1531420619", EXAMPLE_SIG),
                body,
                EXAMPLE_TS,
                VerifyError::Mismatch,
            ),
        ];
        for (name, h, body, now, expected) in cases {
            assert_eq!(verify(&secret(), &h, body, now), Err(expected), "{name}");
        }
        // The window is inclusive at 300 s in both directions.
        assert_eq!(verify(&secret(), &ok, body, EXAMPLE_TS + 300), Ok(()));
        assert_eq!(verify(&secret(), &ok, body, EXAMPLE_TS - 300), Ok(()));
    }
}

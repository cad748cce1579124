//! The register dashboard: read-only, server-rendered HTML and SVG (no JavaScript, no
//! front-end build), for compliance owners, auditors and leadership. Every figure
//! comes from the service's read side — the same queries chat answers from.
//!
//! Access (`config::DashboardAccess`): a bearer token (`Authorization: Bearer …`, or
//! the cookie the login form sets), or a reverse proxy's user header naming a person
//! in the governance file's compliance or admin roles, or open for local use; with
//! none configured every page refuses with 403 and says how to turn it on.

mod render;

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::DashboardAccess;
use crate::domain::{RequestId, State};
use crate::governance::{Governance, Tier};
use crate::service::Service;
use crate::store::RegisterFilter;

/// The login form's cookie.
pub const COOKIE: &str = "waiver_dashboard";

/// Rows of the register shown (and downloaded) at most.
const ROWS: i64 = 500;

/// How long a sign-in lasts.
const SESSION_SECS: i64 = 12 * 3600;

/// The cookie's value for a sign-in at `issued` (Unix seconds): the time and a MAC of
/// it keyed by the token, so the token itself never sits in a browser's cookie jar and
/// a cookie stops working after [`SESSION_SECS`] whatever the browser does.
fn session(token: &str, issued: i64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(format!("waiver-dashboard-session:{issued}").as_bytes());
    format!("{issued}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `cookie` is a sign-in for `token` still in force at `now`.
fn valid_session(token: &str, cookie: &str, now: i64) -> bool {
    let Some(issued) = cookie
        .split_once('.')
        .and_then(|(t, _)| t.parse::<i64>().ok())
    else {
        return false;
    };
    (0..SESSION_SECS).contains(&(now - issued)) && same(cookie, &session(token, issued))
}

/// Equal by digest, so the comparison's timing says nothing about the token.
fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

fn page(status: StatusCode, title: &str, body: String) -> Response {
    let mut r = (status, render::layout(title, &body)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(&mut r);
    r
}

/// No framing, no sniffing, no scripts, no referrer: the pages need none of them.
fn harden(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Whether the request may see the dashboard; the refusal page otherwise.
fn authorize(
    access: &DashboardAccess,
    gov: &Governance,
    headers: &HeaderMap,
    now: i64,
) -> Result<(), Box<Response>> {
    if access.open {
        return Ok(());
    }
    if access.token.is_none() && access.user_header.is_none() {
        return Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Dashboard off",
            render::notice(
                "The register dashboard is off",
                "Set WAIVER_DASHBOARD_TOKEN (a bearer token, or sign in with it at /login), or WAIVER_DASHBOARD_USER_HEADER behind a reverse proxy that signs people in, or WAIVER_DASHBOARD_OPEN=1 for local use.",
            ),
        )));
    }
    if let Some(token) = &access.token {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| token.matches(b)) {
            return Ok(());
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .any(|v| valid_session(token.expose(), v, now));
        if cookie {
            return Ok(());
        }
    }
    if let Some(name) = &access.user_header
        && let Some(who) = headers.get(name.as_str()).and_then(|v| v.to_str().ok())
    {
        // A proxy that appends instead of replacing would let the client's own value
        // through: more than one is refused.
        if headers.get_all(name.as_str()).iter().count() > 1 {
            return Err(Box::new(page(
                StatusCode::FORBIDDEN,
                "Not for you",
                render::notice(
                    "Signed in twice",
                    "The sign-in header came more than once; the proxy must replace it, not add to it.",
                ),
            )));
        }
        let who = who.trim();
        let person = gov.people.iter().find(|p| {
            p.id.as_str() == who
                || p.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(who))
        });
        return match person {
            Some(p) if gov.may_audit(&p.id) => Ok(()),
            Some(p) => Err(Box::new(page(
                StatusCode::FORBIDDEN,
                "Not for you",
                render::notice(
                    "The register is for compliance and administrators",
                    &format!(
                        "{} holds none of the roles that may see it ({}).",
                        p.name,
                        viewer_roles(gov).join(", ")
                    ),
                ),
            ))),
            None => Err(Box::new(page(
                StatusCode::FORBIDDEN,
                "Not for you",
                render::notice(
                    "Unknown person",
                    "The signed-in person is not in the governance file.",
                ),
            ))),
        };
    }
    let mut r = page(
        StatusCode::UNAUTHORIZED,
        "Sign in",
        render::login(access.token.is_some(), true),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(Box::new(r))
}

fn viewer_roles(gov: &Governance) -> Vec<String> {
    gov.auditor_roles()
        .into_iter()
        .map(|r| gov.role(r).map(|r| r.name.clone()).unwrap_or(r.to_string()))
        .collect()
}

/// The filter a query string asks for; a clear 400 for a value that is not one.
fn filter(gov: &Governance, q: &HashMap<String, String>) -> Result<RegisterFilter, String> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut f = RegisterFilter::default();
    if let Some(s) = get("state") {
        f.state = Some(State::parse(s).ok_or_else(|| format!("state {s:?} is not a state"))?);
    }
    if let Some(t) = get("tier") {
        f.tier = Some(Tier::parse(t).ok_or_else(|| format!("tier {t:?} is not a tier"))?);
    }
    if let Some(p) = get("policy") {
        if !gov.policies.iter().any(|x| x.id.as_str() == p) {
            return Err(format!("policy {p:?} is not in the governance file"));
        }
        f.policy = Some(p.into());
    }
    if let Some(d) = get("department") {
        if !gov.form.departments.iter().any(|x| x.id.as_str() == d) {
            return Err(format!("department {d:?} is not in the governance file"));
        }
        f.department = Some(d.into());
    }
    if let Some(r) = get("region") {
        if !gov.form.regions.iter().any(|x| x.id.as_str() == r) {
            return Err(format!("region {r:?} is not in the governance file"));
        }
        f.region = Some(r.into());
    }
    if let Some(m) = get("month") {
        if chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").is_err()
            || m.len() != 7
        {
            return Err(format!("month {m:?} is not a month like 2026-11"));
        }
        f.month = Some(m.into());
    }
    Ok(f)
}

fn bad_request(why: String) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        render::notice("That filter is not one the register knows", &why),
    )
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard: the database did not answer");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        render::notice(
            "The register is unavailable",
            "The database did not answer; try again in a moment.",
        ),
    )
}

/// `GET /`: the register at a glance, narrowed by the query string.
pub async fn index(
    svc: &Service,
    access: &DashboardAccess,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Response {
    let gov = svc.governance().clone();
    if let Err(r) = authorize(access, &gov, headers, svc.clock().unix_seconds()) {
        return *r;
    }
    let f = match filter(&gov, q) {
        Ok(f) => f,
        Err(why) => return bad_request(why),
    };
    match register_page(svc, &f).await {
        Ok(body) => page(StatusCode::OK, "AI exception register", body),
        Err(e) => unavailable(e),
    }
}

/// The register page's body for `filter`, as of the service's clock (what `GET /`
/// serves; the dashboard benchmark times it).
pub async fn register_page(
    svc: &Service,
    filter: &RegisterFilter,
) -> Result<String, crate::service::ServiceError> {
    let now = svc.clock().now();
    let register = svc.register(filter, now, ROWS).await?;
    Ok(render::register(svc.governance(), filter, &register, now))
}

/// `GET /register.csv`: the rows of the current filter.
pub async fn csv(
    svc: &Service,
    access: &DashboardAccess,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Response {
    let gov = svc.governance().clone();
    if let Err(r) = authorize(access, &gov, headers, svc.clock().unix_seconds()) {
        return *r;
    }
    let f = match filter(&gov, q) {
        Ok(f) => f,
        Err(why) => return bad_request(why),
    };
    let rows = match svc.register(&f, svc.clock().now(), i64::MAX).await {
        Ok(r) => r.rows,
        Err(e) => return unavailable(e),
    };
    match render::csv(&rows) {
        Ok(body) => {
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"waiver-register.csv\""),
            );
            harden(&mut r);
            r
        }
        Err(e) => unavailable(e),
    }
}

/// `GET /exceptions/AIX-0042`: one exception's full timeline.
pub async fn exception(
    svc: &Service,
    access: &DashboardAccess,
    headers: &HeaderMap,
    reference: &str,
) -> Response {
    let gov = svc.governance().clone();
    if let Err(r) = authorize(access, &gov, headers, svc.clock().unix_seconds()) {
        return *r;
    }
    let Some(id) = RequestId::parse(reference) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            render::notice(
                "No such exception",
                &format!("{reference:?} is not a reference like AIX-0042."),
            ),
        );
    };
    let loaded = tokio::try_join!(
        svc.request(id),
        svc.decisions(id),
        svc.reminders_of(id),
        svc.audit_chain_of(id),
    );
    match loaded {
        Ok((Some(r), decisions, reminders, audit)) => page(
            StatusCode::OK,
            &format!("{} · {}", r.reference(), r.content().title),
            render::exception(&gov, &r, &decisions, &reminders, &audit),
        ),
        Ok((None, ..)) => page(
            StatusCode::NOT_FOUND,
            "Not found",
            render::notice("No such exception", &format!("{id} does not exist.")),
        ),
        Err(e) => unavailable(e),
    }
}

/// `GET /sop.svg`: the workflow the governance file enforces.
pub async fn sop(svc: &Service, access: &DashboardAccess, headers: &HeaderMap) -> Response {
    let gov = svc.governance().clone();
    if let Err(r) = authorize(access, &gov, headers, svc.clock().unix_seconds()) {
        return *r;
    }
    let mut r = crate::governance::svg(&gov).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    harden(&mut r);
    r
}

/// `GET /login`: the sign-in form.
pub fn login_form(access: &DashboardAccess) -> Response {
    page(
        StatusCode::OK,
        "Sign in",
        render::login(access.token.is_some(), false),
    )
}

/// `POST /login`: a right token sets the session cookie (Secure, HttpOnly,
/// SameSite=Strict) and goes to the register; a wrong one is 401 and the form again.
pub fn login(access: &DashboardAccess, form: &HashMap<String, String>, now: i64) -> Response {
    let Some(token) = &access.token else {
        return page(
            StatusCode::NOT_FOUND,
            "Sign in",
            render::login(false, false),
        );
    };
    let given = form.get("token").map(String::as_str).unwrap_or_default();
    if !token.matches(given) {
        tracing::warn!("dashboard: a sign-in with a wrong token");
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            render::login(true, true),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}",
        session(token.expose(), now)
    );
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    harden(&mut r);
    r
}

/// `GET /evidence/{token}`: the evidence pack a chat `export` link asks for, made now,
/// for the person it names while they hold an auditor role; 403 for a link that is
/// not ours, has expired, or whose person no longer may.
pub async fn evidence(svc: &Service, token: &str) -> Response {
    let Some((person, since)) = svc.evidence_link(token) else {
        tracing::warn!("evidence: a link that is not valid (forged, expired or revoked)");
        return page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            render::notice(
                "This link does not work any more",
                "Evidence links work for 15 minutes, for the person they were sent to. Ask for a new one with the export command.",
            ),
        );
    };
    let mut body = Vec::new();
    match svc.write_evidence(&person, since, &mut body).await {
        Ok(manifest) => {
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let name = format!(
                "attachment; filename=\"waiver-evidence-{}.json\"",
                manifest.exported_at.date()
            );
            if let Ok(v) = HeaderValue::from_str(&name) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            harden(&mut r);
            r
        }
        Err(e) => unavailable(e),
    }
}

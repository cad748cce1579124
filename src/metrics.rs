//! What `GET /metrics` shows, in Prometheus' text exposition format (0.0.4).
//!
//! One [`Metrics`] per running server (tests run many in one process), held by the
//! store so that every layer that commits, delivers or sweeps can count. Counters
//! and histograms are updated where things happen; what the database knows (outbox
//! depth, the oldest pending message, exceptions by state) is read at each scrape,
//! so several replicas report the same database-wide figures: aggregate those with
//! `max`, not `sum`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels with values from a fixed set.
type Fixed<const N: usize> = [(&'static str, &'static str); N];
/// Labels whose last value comes from the platform (an error code), bounded by
/// [`error_class`].
type WithError = [(&'static str, String); 2];

/// Attached to a response that refused a request, so that the HTTP layer counts the
/// refusal by its reason.
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    pub platform: &'static str,
    pub reason: &'static str,
}

/// What kind of activity a response answered (Teams: `invoke`, `message`, …), for
/// the acknowledgement histogram.
#[derive(Clone, Copy, Debug)]
pub struct AckKind(pub &'static str);

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric Waiver exposes.
pub struct Metrics {
    registry: Registry,
    requests: Family<[(&'static str, String); 2], Counter>,
    ack: Family<Fixed<2>, Histogram>,
    refusals: Family<[(&'static str, String); 2], Counter>,
    commits: Counter,
    conflicts: Counter,
    writer_queue: Gauge,
    writer_capacity: Gauge,
    outbox: Family<Fixed<2>, Gauge>,
    outbox_oldest: Gauge<f64, AtomicU64>,
    deliveries: Family<Fixed<2>, Counter>,
    retries: Family<WithError, Counter>,
    in_doubt: Family<Fixed<2>, Counter>,
    parked: Family<WithError, Counter>,
    reminders: Counter,
    digests: Counter,
    sweeps: Family<Fixed<1>, Counter>,
    sweep_seconds: Histogram,
    exceptions: Family<Fixed<1>, Gauge>,
    teams_tokens: Family<Fixed<1>, Counter>,
    teams_keys: Family<Fixed<1>, Counter>,
}

fn ack_histogram() -> Histogram {
    // From 100 µs (a click on a warm server) to past Slack's 3 s deadline.
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        3.0, 5.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("waiver");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        let ack = Family::new_with_constructor(ack_histogram as fn() -> Histogram);
        registry.register(
            "ack_seconds",
            "Time to acknowledge a chat request, by platform and kind",
            ack.clone(),
        );
        let refusals = Family::default();
        registry.register(
            "refusals",
            "Requests and actions refused, by platform and reason",
            refusals.clone(),
        );
        let commits = Counter::default();
        registry.register(
            "commits",
            "Changes committed by the writer",
            commits.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "conflicts",
            "Changes refused because the request changed since it was read",
            conflicts.clone(),
        );
        let writer_queue = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "Changes waiting for the writer",
            writer_queue.clone(),
        );
        let writer_capacity = Gauge::default();
        registry.register(
            "writer_queue_capacity",
            "Room in the writer's queue",
            writer_capacity.clone(),
        );
        let outbox = Family::default();
        registry.register(
            "outbox_messages",
            "Outbound messages not delivered, by platform and status (pending, parked)",
            outbox.clone(),
        );
        let outbox_oldest = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest message waiting to be delivered (0: none)",
            outbox_oldest.clone(),
        );
        let deliveries = Family::default();
        registry.register(
            "deliveries",
            "Delivery attempts, by platform and outcome",
            deliveries.clone(),
        );
        let retries = Family::default();
        registry.register(
            "delivery_retries",
            "Deliveries to be tried again, by platform and error",
            retries.clone(),
        );
        let in_doubt = Family::default();
        registry.register(
            "in_doubt_lookups",
            "Searches for the message of an interrupted post, by platform and outcome",
            in_doubt.clone(),
        );
        let parked = Family::default();
        registry.register(
            "parked",
            "Messages parked after a permanent error, by platform and error",
            parked.clone(),
        );
        let reminders = Counter::default();
        registry.register(
            "reminders_sent",
            "Reminders queued for delivery (each in a digest)",
            reminders.clone(),
        );
        let digests = Counter::default();
        registry.register(
            "digests_sent",
            "Reminder digests queued, one per recipient per sweep",
            digests.clone(),
        );
        let sweeps = Family::default();
        registry.register("sweeps", "Scheduler sweeps, by outcome", sweeps.clone());
        let sweep_seconds = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "sweep_seconds",
            "Duration of scheduler sweeps",
            sweep_seconds.clone(),
        );
        let exceptions = Family::default();
        registry.register(
            "exceptions",
            "Stored exceptions by state",
            exceptions.clone(),
        );
        let teams_tokens = Family::default();
        registry.register(
            "teams_token_refreshes",
            "Bot Framework access tokens obtained, by outcome",
            teams_tokens.clone(),
        );
        let teams_keys = Family::default();
        registry.register(
            "teams_jwks_refreshes",
            "Bot Framework signing-key (OpenID metadata + JWKS) fetches, by outcome",
            teams_keys.clone(),
        );
        Self {
            registry,
            requests,
            ack,
            refusals,
            commits,
            conflicts,
            writer_queue,
            writer_capacity,
            outbox,
            outbox_oldest,
            deliveries,
            retries,
            in_doubt,
            parked,
            reminders,
            digests,
            sweeps,
            sweep_seconds,
            exceptions,
            teams_tokens,
            teams_keys,
        }
    }

    /// An HTTP request answered (`route` is the matched route pattern).
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&[("route", route.to_string()), ("status", status.to_string())])
            .inc();
    }

    /// A chat request acknowledged after `elapsed`.
    pub fn acknowledged(&self, platform: &'static str, kind: &'static str, elapsed: Duration) {
        self.ack
            .get_or_create(&[("platform", platform), ("kind", kind)])
            .observe(elapsed.as_secs_f64());
    }

    /// A request or action refused, for `reason` (a snake_case word from a fixed set).
    pub fn refused(&self, platform: &'static str, reason: &str) {
        self.refusals
            .get_or_create(&[
                ("platform", platform.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// What one writer batch did.
    pub fn committed(&self, commits: u64, conflicts: u64) {
        self.commits.inc_by(commits);
        self.conflicts.inc_by(conflicts);
    }

    /// One delivery attempt's outcome (`sent`, `superseded`, `retried`, `parked`,
    /// `waiting`, `deferred`), with the error of a retry or a parking.
    pub fn delivered(&self, platform: &'static str, outcome: &'static str, error: Option<&str>) {
        self.deliveries
            .get_or_create(&[("platform", platform), ("outcome", outcome)])
            .inc();
        let labels = || {
            [
                ("platform", platform.to_string()),
                ("error", error_class(error.unwrap_or_default())),
            ]
        };
        match outcome {
            "retried" => {
                self.retries.get_or_create(&labels()).inc();
            }
            "parked" => {
                self.parked.get_or_create(&labels()).inc();
            }
            _ => {}
        }
    }

    /// A search for an interrupted post (`found`, `not_found`, `failed`).
    pub fn in_doubt_lookup(&self, platform: &'static str, outcome: &'static str) {
        self.in_doubt
            .get_or_create(&[("platform", platform), ("outcome", outcome)])
            .inc();
    }

    /// Digests queued by a sweep, holding `reminders` reminders.
    pub fn digests_queued(&self, digests: u64, reminders: u64) {
        self.digests.inc_by(digests);
        self.reminders.inc_by(reminders);
    }

    /// A scheduler sweep finished (or failed) after `elapsed`.
    pub fn swept(&self, ok: bool, elapsed: Duration) {
        self.sweeps
            .get_or_create(&[("outcome", if ok { "ok" } else { "failed" })])
            .inc();
        self.sweep_seconds.observe(elapsed.as_secs_f64());
    }

    /// A Bot Framework access token requested.
    pub fn teams_token(&self, ok: bool) {
        self.teams_tokens
            .get_or_create(&[("outcome", if ok { "ok" } else { "failed" })])
            .inc();
    }

    /// The Bot Framework's signing keys fetched.
    pub fn teams_keys(&self, ok: bool) {
        self.teams_keys
            .get_or_create(&[("outcome", if ok { "ok" } else { "failed" })])
            .inc();
    }

    /// The figures read from the database at a scrape.
    pub fn observe(&self, now: &Observed) {
        self.writer_queue.set(now.writer_queue as i64);
        self.writer_capacity.set(now.writer_capacity as i64);
        self.outbox.clear();
        for (platform, status, n) in &now.outbox {
            self.outbox
                .get_or_create(&[("platform", *platform), ("status", *status)])
                .set(*n);
        }
        self.outbox_oldest.set(now.oldest_pending_seconds);
        self.exceptions.clear();
        for (state, n) in &now.exceptions {
            self.exceptions.get_or_create(&[("state", *state)]).set(*n);
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What the database and the writer say at a scrape.
#[derive(Debug, Default)]
pub struct Observed {
    pub writer_queue: usize,
    pub writer_capacity: usize,
    /// (platform, status, messages) for messages not delivered.
    pub outbox: Vec<(&'static str, &'static str, i64)>,
    pub oldest_pending_seconds: f64,
    /// (state, exceptions).
    pub exceptions: Vec<(&'static str, i64)>,
}

/// An enum variant's name in snake_case (`NotAMember { .. }` → `not_a_member`): a
/// bounded label for an error's kind, from its `Debug` text.
pub fn variant_label(debug: &str) -> String {
    let mut out = String::new();
    for c in debug.chars().take_while(char::is_ascii_alphanumeric) {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A delivery error as a bounded label: the platform's error code when it gave one
/// (`channel_not_found`, `invalid_auth`), else its class (`http_503`, `timeout`,
/// `rate_limited`, `transport`, `store`).
pub fn error_class(error: &str) -> String {
    let error = match error.strip_prefix("gave up after ") {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, e)| e),
        None => error,
    };
    if let Some(rest) = error.strip_prefix("token: ") {
        return format!("token_{}", error_class(rest));
    }
    let lower = error.to_ascii_lowercase();
    if let Some(code) = lower.strip_prefix("http ") {
        let digits: String = code.chars().take_while(char::is_ascii_digit).collect();
        if digits.len() == 3 {
            return format!("http_{digits}");
        }
    }
    if lower.contains("rate limited") || lower.contains("ratelimited") || lower.contains("429") {
        return "rate_limited".into();
    }
    if lower.contains("timed out") || lower.contains("timeout") {
        return "timeout".into();
    }
    if lower.starts_with("store") {
        return "store".into();
    }
    // A platform error code: one snake_case word, maybe followed by details.
    let word: String = lower
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
        .collect();
    if word.contains('_') && word.len() <= 40 {
        return word;
    }
    if lower.contains("not configured") {
        return "not_configured".into();
    }
    "other".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_a_bounded_set_of_labels() {
        for (error, label) in [
            ("channel_not_found", "channel_not_found"),
            ("invalid_auth", "invalid_auth"),
            ("gave up after 12 attempts: HTTP 503", "http_503"),
            ("HTTP 500 Internal Server Error", "http_500"),
            ("rate limited", "rate_limited"),
            ("timed out", "timeout"),
            ("store: database is locked", "store"),
            ("Teams delivery is not configured", "not_configured"),
            ("a free-text complaint from somewhere", "other"),
            ("", "other"),
            (
                "token: HTTP 401 (check TEAMS_APP_ID and TEAMS_APP_PASSWORD)",
                "token_http_401",
            ),
        ] {
            assert_eq!(error_class(error), label, "{error}");
        }
    }

    #[test]
    fn variant_names_become_snake_case() {
        assert_eq!(variant_label("NotAMember { role: \"x\" }"), "not_a_member");
        assert_eq!(variant_label("MissingReason"), "missing_reason");
    }

    #[test]
    fn the_exposition_names_every_family_once_with_its_type() {
        let m = Metrics::new();
        m.request("/slack/commands", 200);
        m.acknowledged("slack", "command", Duration::from_micros(700));
        m.delivered("slack", "parked", Some("channel_not_found"));
        let text = m.encode();
        assert!(
            text.contains("# TYPE waiver_http_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("waiver_http_requests_total{route=\"/slack/commands\",status=\"200\"} 1")
        );
        assert!(
            text.contains(
                "waiver_ack_seconds_bucket{platform=\"slack\",kind=\"command\",le=\"0.001\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("waiver_parked_total{platform=\"slack\",error=\"channel_not_found\"} 1")
        );
    }
}

//! Chat: planning what each transition tells whom (`plan`, platform-neutral), and one
//! adapter per surface (`slack`; Teams comes next) that translates its wire format to
//! and from the neutral layer (`crate::interact`, `crate::message`).
//!
//! [`Surface`] is the closed set of surfaces the delivery worker sends through: each
//! supplies post, update, find-in-doubt, its error classification ([`Failure`]) and
//! its pacing limit.

use std::time::Duration;

use crate::domain::Timestamp;
use crate::message::{Outgoing, Platform, Posted};

pub mod plan;
pub mod slack;
pub mod teams;

/// Installs ring as the process-wide rustls provider (idempotent). Every TLS user in
/// this binary (the Slack and Teams clients, sqlx) is built on ring, and reqwest is
/// built without a provider of its own: it needs one installed before a client is
/// built.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error and its causes, each said once (`a: b: c`): reqwest's own text ("error
/// sending request") hides what happened. Call it on an error without its URL.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Why a delivery attempt did not succeed, as the surface classified its error.
#[derive(Debug)]
pub enum Failure {
    /// Try again (after `after`, when the platform said); `doubt`: the call may have
    /// taken effect.
    Transient {
        after: Option<Duration>,
        error: String,
        doubt: bool,
    },
    /// Will never succeed (`channel_not_found`, `invalid_auth`, …).
    Permanent(String),
    /// The message a card update targets no longer exists.
    MessageGone,
    /// The surface cannot reach the recipient yet (the app is not installed for
    /// them): the message waits, it is never dropped.
    Unreachable(String),
}

/// A surface the delivery worker can send through.
#[derive(Clone)]
pub enum Surface {
    Slack(slack::deliver::SlackDelivery),
    Teams(std::sync::Arc<teams::deliver::TeamsDelivery>),
}

impl Surface {
    pub fn platform(&self) -> Platform {
        match self {
            Surface::Slack(_) => Platform::Slack,
            Surface::Teams(_) => Platform::Teams,
        }
    }

    /// The least time between two posts to one conversation.
    pub fn pace(&self) -> Duration {
        match self {
            Surface::Slack(_) => slack::deliver::PACE,
            Surface::Teams(_) => teams::deliver::PACE,
        }
    }

    /// Whether posting `m` counts against the conversation's pace (Slack: an
    /// ephemeral does not, and is never looked for after an interruption).
    pub fn is_paced(&self, m: &Outgoing) -> bool {
        match self {
            Surface::Slack(_) => !matches!(m.to, crate::message::Address::Ephemeral { .. }),
            Surface::Teams(_) => true,
        }
    }

    /// The conversation a message lands in (deliveries to it are paced).
    pub fn conversation<'a>(&self, m: &'a Outgoing) -> &'a str {
        match self {
            Surface::Slack(_) => slack::deliver::SlackDelivery::conversation(&m.to),
            Surface::Teams(_) => match &m.to {
                crate::message::Address::Channel { channel } => channel,
                crate::message::Address::Direct { user } => user,
                crate::message::Address::Ephemeral { channel, .. } => channel,
            },
        }
    }

    /// The addresses whose stored conversation reference a post to `m.to` needs, in
    /// order of preference (none: the surface reaches addresses by their ids).
    pub fn reference_keys(&self, m: &Outgoing) -> Vec<String> {
        match self {
            Surface::Slack(_) => Vec::new(),
            Surface::Teams(t) => t.reference_keys(m),
        }
    }

    /// Posts `m` (with the first stored reference of [`Surface::reference_keys`], as
    /// (address, reference)); where it now is, unless it leaves no message to update
    /// (an ephemeral). A reference the post created is in the returned `Posted`.
    pub async fn post(
        &self,
        m: &Outgoing,
        outbox_id: i64,
        reference: Option<&(String, String)>,
    ) -> Result<Option<Posted>, Failure> {
        match self {
            Surface::Slack(s) => {
                let _ = reference;
                s.post(m, outbox_id).await
            }
            Surface::Teams(t) => t.post(m, reference).await,
        }
    }

    /// Updates the card posted at `at` to show `m`.
    pub async fn update(&self, at: &Posted, m: &Outgoing) -> Result<Posted, Failure> {
        match self {
            Surface::Slack(s) => s.update(at, m).await,
            Surface::Teams(t) => t.update(at, m).await,
        }
    }

    /// The post an interrupted attempt of outbox row `outbox_id` (created at `since`)
    /// may have made.
    pub async fn find(
        &self,
        m: &Outgoing,
        outbox_id: i64,
        since: Timestamp,
    ) -> Result<Option<Posted>, Failure> {
        match self {
            Surface::Slack(s) => s.find(m, outbox_id, since).await,
            // The Bot Connector cannot list a conversation's messages.
            Surface::Teams(_) => Err(Failure::Permanent(
                "the Bot Connector cannot look up a post".into(),
            )),
        }
    }
}

//! What each transition tells whom: pure planning of outgoing messages.

use super::{Address, Message, Outgoing, Platform, Section};
use crate::domain::{Event, ExceptionRequest};
use crate::governance::{Governance, PersonId};

/// The Slack user a person is reached at, listed or not.
pub fn slack_user(gov: &Governance, person: &PersonId) -> Option<String> {
    match gov.person(person) {
        Some(p) => p.slack.as_ref().map(|s| s.user.clone()),
        None => person.as_external_slack().map(|(_, user)| user.to_string()),
    }
}

/// The messages a transition causes.
pub fn plan(
    gov: &Governance,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
) -> Vec<Outgoing> {
    let moved = before.is_none_or(|b| b.state != after.state);
    let mut out = Vec::new();
    if moved && let Some(user) = slack_user(gov, &after.requester) {
        let summary = format!(
            "{} \u{2014} {}: {}",
            after.reference(),
            after.content().title,
            after.state.label()
        );
        out.push(Outgoing {
            request: Some(after.id),
            platform: Platform::Slack,
            to: Address::Direct { user },
            card: None,
            message: Message {
                summary: summary.clone(),
                sections: vec![
                    Section::Text { text: summary },
                    Section::Context {
                        text: format!("{} (version {})", event.name(), after.version()),
                    },
                ],
            },
        });
    }
    out
}

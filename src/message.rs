//! Platform-neutral messages: what to say to whom, and the buttons people press.
//!
//! A leaf: it names the chat platforms and holds the shapes that planning produces,
//! the store keeps in its outbox and each surface renders, and it depends on nothing
//! but the domain's ids. All text here is plain: renderers escape it for their
//! markup, so user-supplied text can never ping, mention or link.

use serde::{Deserialize, Serialize};

use crate::domain::RequestId;

/// The chat platforms Waiver speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Slack,
    Teams,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Teams => "teams",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Platform::Slack, Platform::Teams]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Where a message goes, in platform ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Address {
    /// A channel (Slack `C…`/`G…`, Teams `19:…@thread.tacv2`).
    Channel { channel: String },
    /// A direct message to a user (Slack `U…`, Teams AAD object id).
    Direct { user: String },
    /// Visible only to `user`, in `channel`.
    Ephemeral { channel: String, user: String },
}

impl Address {
    /// A short form for logs and the outbox's `target` column.
    pub fn target(&self) -> String {
        match self {
            Address::Channel { channel } => channel.clone(),
            Address::Direct { user } => format!("@{user}"),
            Address::Ephemeral { channel, user } => format!("{channel}/@{user}"),
        }
    }

    /// The address a [`target`](Self::target) string names.
    pub fn from_target(target: &str) -> Self {
        match target.split_once("/@") {
            Some((channel, user)) => Address::Ephemeral {
                channel: channel.into(),
                user: user.into(),
            },
            None => match target.strip_prefix('@') {
                Some(user) => Address::Direct { user: user.into() },
                None => Address::Channel {
                    channel: target.into(),
                },
            },
        }
    }
}

/// Buttons' visual weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Default,
    Primary,
    Danger,
}

/// What a button asks for. Surfaces carry its id in the button (Slack's `action_id`,
/// a Teams card action's data) and hand it back to the interaction layer on a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonAction {
    Complete,
    SendBack,
    #[serde(rename = "update_request")]
    Update,
    Withdraw,
    Assess,
    Feedback,
    Approve,
    Reject,
    MarkDone,
    Attest,
    Renew,
}

impl ButtonAction {
    pub const ALL: [ButtonAction; 11] = [
        ButtonAction::Complete,
        ButtonAction::SendBack,
        ButtonAction::Update,
        ButtonAction::Withdraw,
        ButtonAction::Assess,
        ButtonAction::Feedback,
        ButtonAction::Approve,
        ButtonAction::Reject,
        ButtonAction::MarkDone,
        ButtonAction::Attest,
        ButtonAction::Renew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ButtonAction::Complete => "complete",
            ButtonAction::SendBack => "send_back",
            ButtonAction::Update => "update_request",
            ButtonAction::Withdraw => "withdraw",
            ButtonAction::Assess => "assess",
            ButtonAction::Feedback => "feedback",
            ButtonAction::Approve => "approve",
            ButtonAction::Reject => "reject",
            ButtonAction::MarkDone => "mark_done",
            ButtonAction::Attest => "attest",
            ButtonAction::Renew => "renew",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the button opens a form (the rest change state at once).
    pub fn opens_form(self) -> bool {
        !matches!(
            self,
            ButtonAction::Complete | ButtonAction::Withdraw | ButtonAction::MarkDone
        )
    }
}

/// What a button does when clicked. The value it carries identifies the request and
/// the version the card showed, never the clicker's authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub action: ButtonAction,
    pub label: String,
    pub style: Style,
    pub request: RequestId,
    pub version: u32,
    /// Extra selector (an assessing role, a condition id, an attestation answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
    /// A question to confirm before the click counts (for irreversible actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// A block of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Section {
    Heading {
        text: String,
    },
    /// Plain text under an optional bold label.
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        text: String,
    },
    Fields {
        fields: Vec<(String, String)>,
    },
    Context {
        text: String,
    },
    Divider,
    Actions {
        buttons: Vec<Button>,
    },
    /// A small note naming the `ai-exception` command, which each surface spells its
    /// own way: `{before}{the command} {args}{after}`.
    CommandHint {
        before: String,
        args: String,
        after: String,
    },
    /// A list of items (a digest's reminders), each shown in full while the surface
    /// has room; the surface counts the rest of `total` and says where to see them.
    Items {
        items: Vec<Vec<Section>>,
        total: usize,
    },
}

/// A neutral message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Plain-text summary: notification text and fallback.
    pub summary: String,
    pub sections: Vec<Section>,
}

/// One message to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub request: Option<RequestId>,
    pub platform: Platform,
    pub to: Address,
    /// Cards are posted once and updated in place under this key; `None` is a
    /// one-off message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
    pub message: Message,
}

/// Where a posted message is, in its surface's own terms: the ids it is looked up by
/// (Slack: channel and `ts`; Teams: conversation and activity id), plus the surface's
/// own JSON for whatever else it needs to update it (Teams: the serviceUrl). Opaque to
/// everyone but the surface that posted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    pub conversation: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_actions_round_trip_through_their_ids_and_serde() {
        for a in ButtonAction::ALL {
            assert_eq!(ButtonAction::parse(a.as_str()), Some(a));
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json, serde_json::Value::String(a.as_str().into()));
        }
        assert_eq!(ButtonAction::parse("frobnicate"), None);
    }

    #[test]
    fn platforms_and_addresses_round_trip() {
        for p in [Platform::Slack, Platform::Teams] {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
        for a in [
            Address::Channel {
                channel: "C1".into(),
            },
            Address::Direct { user: "U1".into() },
            Address::Ephemeral {
                channel: "C1".into(),
                user: "U1".into(),
            },
        ] {
            assert_eq!(Address::from_target(&a.target()), a);
        }
    }
}

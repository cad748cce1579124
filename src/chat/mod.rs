//! Platform-neutral chat messages: what to say to whom.
//!
//! The service decides *what* each transition tells people ([`Outgoing`]); the
//! platform adapters (`slack`, later `teams`) decide *how* it looks. Messages are
//! stored in the outbox exactly as planned, so the outbox is also the record of who
//! was told what.
//!
//! All text here is plain: renderers escape it for their markup, so user-supplied
//! text can never ping, mention or link.

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

/// What a button does when clicked. The value it carries identifies the request and
/// the version the card showed, never the clicker's authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub action: String,
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

pub mod plan;
pub mod slack;

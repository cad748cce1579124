//! The Slack adapter: request verification, payload parsing, Block Kit rendering and
//! Web API delivery.

pub mod client;
pub mod deliver;
pub mod inbound;
pub mod modals;
pub mod probe;
pub mod render;
pub mod socket;
pub mod verify;

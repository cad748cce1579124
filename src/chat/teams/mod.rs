//! The Microsoft Teams adapter: Bot Framework authentication, activity parsing,
//! Adaptive Card rendering and Bot Connector delivery.

pub mod auth;
pub mod cards;
pub mod deliver;
pub mod inbound;

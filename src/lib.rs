//! Waiver: a self-hosted Slack and Microsoft Teams bot that runs an organisation's AI
//! policy exception process, from `/ai-exception` to expiry, with a tamper-evident
//! audit trail.
//!
//! Dependencies point inward: edges (`http`, `chat`, `store`, CLI) → `service` →
//! `domain`. See `DESIGN.md` §3.

pub mod app;
pub mod chat;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod export;
pub mod fake_slack;
pub mod governance;
pub mod http;
pub mod interact;
pub mod message;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod testkit;

//! Waiver: a self-hosted Slack and Microsoft Teams bot that runs an organisation's AI
//! policy exception process, from `/ai-exception` to expiry, with a tamper-evident
//! audit trail.
//!
//! Dependencies point inward: edges (`http`, `chat/<surface>`, CLI) → `interact` →
//! `service` → `domain`, with `store` below the service and `message` and `clock` as
//! leaves. See `DESIGN.md` §3; `tests/architecture.rs` keeps the rules true.

pub mod app;
pub mod chat;
pub mod clock;
pub mod config;
pub mod delivery;
#[cfg(feature = "fakes")]
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod export;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod governance;
pub mod http;
pub mod import;
pub mod interact;
pub mod message;
pub mod metrics;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod teams_package;
pub mod web;

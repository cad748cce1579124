//! Test-only code: protocol-level fakes of the chat platforms and sample data, for the
//! integration tests, the benchmarks and `waiver demo`.
//!
//! Compiled only with the `fakes` cargo feature (on by default so that `waiver demo`
//! and `cargo test` work from a fresh clone; build the production binary with
//! `--no-default-features`). Nothing in the product imports this module but the demo;
//! `tests/architecture.rs` keeps it that way.

pub mod slack;
pub mod teams;
pub mod testkit;

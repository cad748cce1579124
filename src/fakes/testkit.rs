//! Sample data for the shipped governance file, shared by `waiver demo`, the unit
//! tests and the integration tests.

use chrono::{Months, NaiveDate};

use crate::domain::{FormInput, Timestamp};
use crate::governance::PersonId;
use crate::store::{Result, Store};

/// A complete, valid intake form filed on `today`: an engineering team adopting a
/// coding assistant (internal data, US), owned by Marcus Webb, from `today` for six
/// months.
pub fn sample_form(today: NaiveDate) -> FormInput {
    let end = today.checked_add_months(Months::new(6)).unwrap_or(today);
    FormInput {
        title: "Use an LLM coding assistant".into(),
        policy: "aiup".into(),
        exception_type: "tool_adoption".into(),
        ai_system: "CodeHelper Pro".into(),
        justification: "Speeds up test writing for the ingestion team.".into(),
        scope_departments: vec!["engineering".into()],
        scope_users: "12 engineers".into(),
        scope_systems: "ingestion repositories".into(),
        data_categories: vec!["internal".into()],
        regions: vec!["us".into()],
        department: "engineering".into(),
        start: today.to_string(),
        end: end.to_string(),
        controls: "No customer data in prompts; secrets scanner on.".into(),
        business_owner: Some(PersonId::new("marcus.webb")),
    }
}

/// Fills a register for benchmarks and replica tests: copies request 1 (its row and
/// versions) into requests 2..=`n` in SQL, monitoring owners taken in turn from
/// `owners` (runs of `due_every`), one in `due_every` due at `due` and the rest at
/// `later`. Request 1 itself is made due at `later`.
pub async fn copy_register(
    store: &Store,
    n: u64,
    owners: &[&str],
    due_every: u64,
    due: Timestamp,
    later: Timestamp,
) -> Result<()> {
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    let count = owners.len();
    let owners = owners
        .iter()
        .enumerate()
        .map(|(k, o)| format!("({k}, '{}')", o.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let requests = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}), \
         owners(k, who) AS (VALUES {owners}) \
         INSERT INTO requests (id, revision, state, version, requester, business_owner, title, \
           ai_system, policy_id, policy_version, tier, risk_score, renews, created_at, updated_at, \
           stage_since, starts_at, expires_at, next_review_at, monitoring_owner, body, ai_system_key, due_at, \
           department, regions, created_month) \
         SELECT seq.i, t.revision, t.state, t.version, t.requester, t.business_owner, t.title, \
           t.ai_system, t.policy_id, t.policy_version, t.tier, t.risk_score, t.renews, t.created_at, \
           t.updated_at, t.stage_since, t.starts_at, t.expires_at, t.next_review_at, \
           CASE WHEN t.monitoring_owner IS NULL THEN NULL ELSE owners.who END, \
           CASE WHEN t.monitoring_owner IS NULL THEN t.body ELSE \
             replace(t.body, '\"monitoring_owner\":\"' || t.monitoring_owner || '\"', \
                     '\"monitoring_owner\":\"' || owners.who || '\"') END, \
           t.ai_system_key, CASE WHEN seq.i % {due_every} = 0 THEN {due} ELSE {later} END, \
           t.department, t.regions, t.created_month \
         FROM seq JOIN owners ON owners.k = (seq.i / {due_every}) % {count} \
           JOIN requests t ON t.id = 1",
        due = due.millis(),
        later = later.millis(),
    );
    store.execute_raw(leak(requests)).await?;
    let versions = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) \
         INSERT INTO request_versions (request_id, version, author, created_at, body) \
         SELECT seq.i, v.version, v.author, v.created_at, v.body \
         FROM seq JOIN request_versions v ON v.request_id = 1"
    );
    store.execute_raw(leak(versions)).await?;
    store
        .execute_raw(leak(format!(
            "UPDATE counters SET value = {n} WHERE name = 'request'; \
             UPDATE requests SET due_at = {} WHERE id = 1; ANALYZE",
            later.millis()
        )))
        .await?;
    // A register at rest: the copy's WAL moved into the database file, as the
    // server's background checkpoint leaves it, so a benchmark measures its own work.
    if store.backend() == crate::store::Backend::Sqlite {
        store.execute_raw("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    }
    Ok(())
}

//! `waiver export`: one record per exception with its full history, for auditors.
//!
//! JSON carries everything (every version, assessment, comment, decision with the
//! snapshot the approver saw, condition, attestation and audit entry). CSV carries
//! one row per exception with the facts auditors filter on and the history as text.
//! Records stream out one at a time, so exports of large registers run in bounded
//! memory.

pub mod pack;

use std::io::Write;

use serde::Serialize;

use crate::domain::{ExceptionRequest, RequestId, Timestamp};
use crate::store::{AuditEntry, DecisionRecord, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// One exception with everything that happened to it.
#[derive(Serialize)]
pub struct Record {
    pub reference: String,
    pub request: ExceptionRequest,
    pub decisions: Vec<DecisionRecord>,
    pub audit: Vec<AuditEntry>,
}

/// Writes every exception changed at or after `since` to `out`; returns how many.
pub async fn export(
    store: &Store,
    format: Format,
    since: Option<Timestamp>,
    out: &mut dyn Write,
) -> Result<usize, ExportError> {
    let ids = store.changed_since(since).await?;
    let mut count = 0;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(COLUMNS)?;
            for id in ids {
                if let Some(record) = record(store, id).await? {
                    w.write_record(row(&record).iter().map(|c| guard(c)))?;
                    count += 1;
                }
            }
            w.flush()?;
        }
        Format::Json => {
            out.write_all(b"[")?;
            for id in ids {
                if let Some(record) = record(store, id).await? {
                    out.write_all(if count == 0 { b"\n" } else { b",\n" })?;
                    serde_json::to_writer_pretty(&mut *out, &record)
                        .map_err(std::io::Error::from)?;
                    count += 1;
                }
            }
            out.write_all(b"\n]\n")?;
            out.flush()?;
        }
    }
    Ok(count)
}

async fn record(store: &Store, id: RequestId) -> Result<Option<Record>, ExportError> {
    let Some(request) = store.load(id).await? else {
        return Ok(None);
    };
    Ok(Some(Record {
        reference: request.reference(),
        decisions: store.decisions(id).await?,
        audit: store.audit_of(id).await?,
        request,
    }))
}

const COLUMNS: [&str; 26] = [
    "reference",
    "title",
    "state",
    "requester",
    "business_owner",
    "department",
    "policy",
    "policy_version",
    "exception_type",
    "ai_system",
    "data_categories",
    "regions",
    "filed_at",
    "version",
    "risk_score",
    "tier",
    "decided_at",
    "approvers",
    "starts_at",
    "expires_at",
    "monitoring_owner",
    "conditions",
    "governance_hash",
    "closed_reason",
    "renews",
    "history",
];

fn row(r: &Record) -> Vec<String> {
    let q = &r.request;
    let c = q.content();
    let ids = |v: &[crate::governance::OptionId]| {
        v.iter().map(|o| o.as_str()).collect::<Vec<_>>().join("; ")
    };
    let grant = q.grant.as_ref();
    let conditions = q
        .conditions
        .iter()
        .map(|k| {
            let done = match &k.done {
                Some(d) => format!("done {} by {}", d.at, d.by),
                None => "open".into(),
            };
            format!(
                "{}. {} (owner {}, due {}, {done})",
                k.id, k.text, k.owner, k.due
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let history = r
        .audit
        .iter()
        .map(|e| {
            format!(
                "#{} {} {} by {}: {}",
                e.seq,
                e.at,
                e.action,
                e.actor,
                e.outcome.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        q.reference(),
        c.title.clone(),
        q.state.as_str().into(),
        q.requester.to_string(),
        c.business_owner.to_string(),
        c.department.to_string(),
        c.policy.to_string(),
        c.policy_version.clone(),
        c.exception_type.to_string(),
        c.ai_system.clone(),
        ids(&c.data_categories),
        ids(&c.regions),
        q.created_at.to_string(),
        q.version().to_string(),
        q.risk
            .as_ref()
            .map(|k| k.score.to_string())
            .unwrap_or_default(),
        q.risk
            .as_ref()
            .map(|k| k.tier.to_string())
            .unwrap_or_default(),
        grant.map(|g| g.decided_at.to_string()).unwrap_or_default(),
        grant
            .map(|g| {
                g.approvers
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        grant.map(|g| g.starts_at.to_string()).unwrap_or_default(),
        grant.map(|g| g.expires_at.to_string()).unwrap_or_default(),
        grant
            .map(|g| g.monitoring_owner.to_string())
            .unwrap_or_default(),
        conditions,
        grant
            .map(|g| g.governance_hash.to_string())
            .unwrap_or_default(),
        q.closure
            .as_ref()
            .map(|k| k.reason.clone())
            .unwrap_or_default(),
        q.renews.map(|r| r.to_string()).unwrap_or_default(),
        history,
    ]
}

/// Spreadsheets run cells that start with `=`, `+`, `-`, `@`, tab or CR as formulas;
/// a leading apostrophe keeps user text inert (OWASP CSV injection).
/// A cell a spreadsheet would run as a formula, quoted as text.
pub fn guard(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(super::guard("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(super::guard("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(super::guard("Plain"), "Plain");
    }
}

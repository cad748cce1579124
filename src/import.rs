//! `waiver import --csv FILE`: past exceptions from a register kept elsewhere (the
//! spreadsheet an organisation already has), validated against the governance file
//! row by row. Any bad row and nothing is imported: every bad row is named by line
//! and column, with the reason. Each imported row is audited as `import` (who ran it,
//! the file's SHA-256, the line) and, once imported, is watched like any exception:
//! reviews, expiry reminders, expiry; it shows as precedent on new requests about the
//! same AI system. Rows are keyed by `external_id`, so importing the same sheet again
//! adds nothing.
//!
//! The columns (a header row; `manifests/import-template.csv` is a filled-in example):
//! the intake form's fields by their ids (`title`, `policy`, `exception_type`,
//! `ai_system`, `justification`, `scope_departments`, `scope_users`, `scope_systems`,
//! `data_categories`, `regions`, `department`, `start`, `end`, `controls`,
//! `business_owner`), then `external_id`, `policy_version` (the version it was granted
//! under; default the catalogue's), `requester`, `decision` (`approved` or
//! `rejected`), `risk_tier`, `approvers`, `decided_on`, `monitoring_owner`,
//! `review_every_days` (default the tier's), `conditions` and `reason` (why it was
//! rejected). Lists are separated by `;`; people are governance ids or emails; dates
//! are `YYYY-MM-DD`; a condition is `text | owner | due` with `| done YYYY-MM-DD` when
//! it was met.

use std::collections::HashSet;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::domain::{
    ConditionSpec, Done, FormInput, Past, PastDecision, RequestContent, Timestamp,
};
use crate::governance::{Governance, PersonId, Tier};
use crate::service::{Service, ServiceError};

/// The columns, in the template's order.
pub const COLUMNS: [&str; 26] = [
    "external_id",
    "title",
    "policy",
    "policy_version",
    "exception_type",
    "ai_system",
    "justification",
    "scope_departments",
    "scope_users",
    "scope_systems",
    "data_categories",
    "regions",
    "department",
    "requester",
    "business_owner",
    "controls",
    "decision",
    "risk_tier",
    "approvers",
    "decided_on",
    "start",
    "end",
    "monitoring_owner",
    "review_every_days",
    "conditions",
    "reason",
];

/// One thing wrong with one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} problem(s); nothing was imported:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Rows(Vec<RowError>),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A row that validated.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    pub external_id: String,
    pub past: Past,
}

/// What an import did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub rows: usize,
    pub imported: Vec<(String, crate::domain::RequestId)>,
    /// Rows whose external id was imported before.
    pub already: Vec<String>,
    pub dry_run: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dry_run {
            return write!(
                f,
                "{} row(s) valid; nothing imported (--dry-run)",
                self.rows
            );
        }
        write!(
            f,
            "imported {} of {} row(s)",
            self.imported.len(),
            self.rows
        )?;
        if !self.already.is_empty() {
            write!(
                f,
                "; {} imported before: {}",
                self.already.len(),
                self.already.join(", ")
            )?;
        }
        for (ext, id) in &self.imported {
            write!(f, "\n  {ext} → {id}")?;
        }
        Ok(())
    }
}

fn person(gov: &Governance, s: &str) -> Option<PersonId> {
    let s = s.trim();
    gov.people
        .iter()
        .find(|p| {
            p.id.as_str() == s
                || p.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(s))
        })
        .map(|p| p.id.clone())
}

fn list(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Validates every row of `text` (CSV with a header) against `gov`, as of `today`;
/// every problem of every row, or the rows.
pub fn parse(
    gov: &Governance,
    text: &str,
    file: &str,
    today: NaiveDate,
) -> Result<Vec<Row>, Vec<RowError>> {
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                column: "-".into(),
                reason: format!("not CSV: {e}"),
            }]);
        }
    };
    for c in COLUMNS {
        if !header.iter().any(|h| h == c) {
            errors.push(RowError {
                line: 1,
                column: c.into(),
                reason: "missing from the header row".into(),
            });
        }
    }
    for h in &header {
        if !COLUMNS.contains(&h.as_str()) {
            errors.push(RowError {
                line: 1,
                column: h.clone(),
                reason: format!(
                    "not a column Waiver knows (the columns: {})",
                    COLUMNS.join(", ")
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(RowError {
                    line,
                    column: "-".into(),
                    reason: format!("not a well-formed row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let get = |c: &str| -> String {
            header
                .iter()
                .position(|h| h == c)
                .and_then(|i| record.get(i))
                .unwrap_or_default()
                .to_string()
        };
        let mut bad = |column: &str, reason: String| {
            errors.push(RowError {
                line,
                column: column.into(),
                reason,
            })
        };
        let external_id = get("external_id");
        if external_id.is_empty() {
            bad(
                "external_id",
                "required: the id the row has in the register it comes from".into(),
            );
        } else if !seen.insert(external_id.clone()) {
            bad(
                "external_id",
                format!("{external_id:?} is on an earlier row too"),
            );
        }
        let mut who = |column: &str, required: bool| -> Option<PersonId> {
            let v = get(column);
            if v.is_empty() {
                if required {
                    bad(column, "required".into());
                }
                return None;
            }
            let p = person(gov, &v);
            if p.is_none() {
                bad(
                    column,
                    format!("{v:?} is not a person in the governance file (an id or an email)"),
                );
            }
            p
        };
        let requester = who("requester", true);
        let business_owner = who("business_owner", true);
        let date = |column: &str, errors: &mut Vec<RowError>| -> Option<NaiveDate> {
            let v = get(column);
            match NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push(RowError {
                        line,
                        column: column.into(),
                        reason: if v.is_empty() {
                            "required (YYYY-MM-DD)".into()
                        } else {
                            format!("{v:?} is not a date (YYYY-MM-DD)")
                        },
                    });
                    None
                }
            }
        };
        let decided_on = date("decided_on", &mut errors);
        let start_date = date("start", &mut errors);
        // The form's own checks, as of the start it was filed for (a past start is
        // what an imported exception has).
        let input = FormInput {
            title: get("title"),
            policy: get("policy"),
            exception_type: get("exception_type"),
            ai_system: get("ai_system"),
            justification: get("justification"),
            scope_departments: list(&get("scope_departments")),
            scope_users: get("scope_users"),
            scope_systems: get("scope_systems"),
            data_categories: list(&get("data_categories")),
            regions: list(&get("regions")),
            department: get("department"),
            start: get("start"),
            end: get("end"),
            controls: get("controls"),
            business_owner: business_owner.clone(),
        };
        let filed = start_date.unwrap_or(NaiveDate::MIN);
        let content = match RequestContent::parse(&input, gov, filed) {
            Ok(mut c) => {
                let v = get("policy_version");
                if !v.is_empty() {
                    c.policy_version = v;
                }
                Some(c)
            }
            Err(fields) => {
                for (field, why) in fields.iter() {
                    let column = field.id();
                    // Dates already named above.
                    if (column == "start" && start_date.is_none()) || column == "business_owner" {
                        continue;
                    }
                    errors.push(RowError {
                        line,
                        column,
                        reason: why.clone(),
                    });
                }
                None
            }
        };
        let decision = match get("decision").to_ascii_lowercase().as_str() {
            "approved" => {
                let tier = match Tier::parse(&get("risk_tier")) {
                    Some(t) => Some(t),
                    None => {
                        errors.push(RowError {
                            line,
                            column: "risk_tier".into(),
                            reason: format!(
                                "{:?} is not a tier (low, medium, high, critical)",
                                get("risk_tier")
                            ),
                        });
                        None
                    }
                };
                let mut approvers = Vec::new();
                for a in list(&get("approvers")) {
                    match person(gov, &a) {
                        Some(p) => approvers.push(p),
                        None => errors.push(RowError {
                            line,
                            column: "approvers".into(),
                            reason: format!("{a:?} is not a person in the governance file"),
                        }),
                    }
                }
                if list(&get("approvers")).is_empty() {
                    errors.push(RowError {
                        line,
                        column: "approvers".into(),
                        reason: "required for an approved exception".into(),
                    });
                }
                let monitoring_owner = {
                    let v = get("monitoring_owner");
                    if v.is_empty() {
                        business_owner.clone()
                    } else {
                        let p = person(gov, &v);
                        if p.is_none() {
                            errors.push(RowError {
                                line,
                                column: "monitoring_owner".into(),
                                reason: format!("{v:?} is not a person in the governance file"),
                            });
                        }
                        p
                    }
                };
                let cadence = {
                    let v = get("review_every_days");
                    if v.is_empty() {
                        tier.map(|t| gov.tier(t).review_every_days)
                    } else {
                        match v.parse::<u32>() {
                            Ok(n) if (1..=3650).contains(&n) => Some(n),
                            _ => {
                                errors.push(RowError {
                                    line,
                                    column: "review_every_days".into(),
                                    reason: format!("{v:?} is not a number of days (1–3650)"),
                                });
                                None
                            }
                        }
                    }
                };
                let mut conditions = Vec::new();
                for item in list(&get("conditions")) {
                    let parts: Vec<&str> = item.split('|').map(str::trim).collect();
                    let owner = parts.get(1).and_then(|o| person(gov, o));
                    let due = parts
                        .get(2)
                        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                    let done = match parts.get(3) {
                        None => Some(None),
                        Some(d) => d
                            .strip_prefix("done ")
                            .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
                            .map(Some),
                    };
                    match (parts.first().filter(|t| !t.is_empty()), owner, due, done, parts.len() <= 4) {
                        (Some(text), Some(owner), Some(due), Some(done), true) => conditions.push((
                            ConditionSpec {
                                text: text.to_string(),
                                owner: owner.clone(),
                                due,
                            },
                            done.map(|d| Done {
                                by: owner,
                                at: Timestamp::start_of(d),
                            }),
                        )),
                        _ => errors.push(RowError {
                            line,
                            column: "conditions".into(),
                            reason: format!(
                                "{item:?} is not `text | owner | YYYY-MM-DD` (with `| done YYYY-MM-DD` when met), the owner a person in the governance file"
                            ),
                        }),
                    }
                }
                match (tier, monitoring_owner, cadence, decided_on) {
                    (Some(tier), Some(monitoring_owner), Some(review_every_days), Some(d)) => {
                        Some(PastDecision::Approved {
                            approvers,
                            decided_at: Timestamp::start_of(d),
                            tier,
                            monitoring_owner,
                            review_every_days,
                            conditions,
                        })
                    }
                    _ => None,
                }
            }
            "rejected" => {
                let reason = get("reason");
                if reason.is_empty() {
                    errors.push(RowError {
                        line,
                        column: "reason".into(),
                        reason: "required for a rejected exception".into(),
                    });
                }
                let by = list(&get("approvers")).first().and_then(|a| person(gov, a));
                if by.is_none() {
                    errors.push(RowError {
                        line,
                        column: "approvers".into(),
                        reason:
                            "the person who rejected it: required, a person in the governance file"
                                .into(),
                    });
                }
                match (by, decided_on) {
                    (Some(by), Some(d)) if !reason.is_empty() => Some(PastDecision::Rejected {
                        by,
                        decided_at: Timestamp::start_of(d),
                        reason,
                    }),
                    _ => None,
                }
            }
            other => {
                errors.push(RowError {
                    line,
                    column: "decision".into(),
                    reason: format!("{other:?} is not approved or rejected"),
                });
                None
            }
        };
        if let Some(d) = decided_on
            && d > today
        {
            errors.push(RowError {
                line,
                column: "decided_on".into(),
                reason: format!("{d} is in the future: only decisions already taken are imported"),
            });
        }
        if let (Some(d), Some(c)) = (decided_on, &content)
            && d > c.end
        {
            errors.push(RowError {
                line,
                column: "decided_on".into(),
                reason: format!("{d} is after the exception's end ({})", c.end),
            });
        }
        if let (
            Some(PastDecision::Approved {
                tier, conditions, ..
            }),
            Some(c),
        ) = (&decision, &content)
        {
            let days = (c.end - c.start).num_days();
            let max = gov.tier(*tier).max_duration_days;
            if days > i64::from(max) {
                errors.push(RowError {
                    line,
                    column: "end".into(),
                    reason: format!(
                        "{} to {} is {days} days; the {tier} tier allows at most {max}",
                        c.start, c.end
                    ),
                });
            }
            for (spec, done) in conditions {
                if let Some(d) = done
                    && d.at.date() > today
                {
                    errors.push(RowError {
                        line,
                        column: "conditions".into(),
                        reason: format!(
                            "{:?} is marked done on {}, in the future",
                            spec.text,
                            d.at.date()
                        ),
                    });
                }
            }
        }
        if let (Some(requester), Some(content), Some(decision)) = (requester, content, decision) {
            rows.push(Row {
                line,
                external_id: external_id.clone(),
                past: Past {
                    requester,
                    content,
                    decision,
                    source: format!(
                        "{file} (sha256 {hash}), line {line}, external id {external_id}"
                    ),
                },
            });
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Validates every row, then (unless `dry_run`) imports them all, audited under
/// `actor`. Any bad row and nothing is imported.
pub async fn import(
    svc: &Service,
    text: &str,
    file: &str,
    actor: &str,
    dry_run: bool,
    now: Timestamp,
) -> Result<Report, ImportError> {
    let rows = parse(svc.governance(), text, file, now.date()).map_err(ImportError::Rows)?;
    let mut report = Report {
        rows: rows.len(),
        dry_run,
        ..Report::default()
    };
    if dry_run {
        return Ok(report);
    }
    for row in rows {
        let key = format!("import:{}", row.external_id);
        match svc.import_past(row.past, actor, key, now).await? {
            Some(r) => report.imported.push((row.external_id, r.id)),
            None => report.already.push(row.external_id),
        }
    }
    Ok(report)
}

//! Read queries for the service's read side: what waits on a person, a request's
//! recorded events, and the register's figures. Each is a fixed number of statements
//! over indexes, whatever the size of the register.

use sqlx::{AssertSqlSafe, Row};

use super::{Result, Store, corrupt, summary};
use crate::domain::{RequestId, State, Summary, Timestamp};
use crate::governance::{PersonId, Tier};

/// The columns [`summary`] reads.
const SUMMARY: &str = "id, state, version, title, tier, expires_at, next_review_at, updated_at";

/// Where a person's work can be: the states their roles act in, the tiers they
/// decide, and what they own or filed.
#[derive(Clone, Debug)]
pub struct TaskQuery<'a> {
    pub person: &'a PersonId,
    /// States a role the person holds acts in (completeness, assessment, stakeholder
    /// review), oldest stage first.
    pub states: Vec<State>,
    /// Tiers whose decision needs a role the person holds.
    pub decides: Vec<Tier>,
    /// Candidates per kind, at most.
    pub per_kind: i64,
}

/// Requests that may hold work for a person.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    pub ids: Vec<RequestId>,
    /// Some kind of work had more than `per_kind` candidates: these are the oldest.
    pub truncated: bool,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// One recorded event of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub revision: u64,
    pub at: Timestamp,
    /// The audit trail's name of who acted (`scheduler` for Waiver itself).
    pub actor: String,
    /// The event's name (`submitted`, `sent_back`, `approved`, …).
    pub kind: String,
    pub version: u32,
}

/// An open condition past its due date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverdueCondition {
    pub request: RequestId,
    pub condition: u32,
    pub owner: PersonId,
    pub due: chrono::NaiveDate,
}

impl Store {
    /// The requests that may hold work for a person (the domain decides which do):
    /// one statement of index range scans, each capped at `per_kind`.
    pub async fn task_candidates(&self, q: &TaskQuery<'_>) -> Result<Candidates> {
        /// The statement's text and its binds, in textual order (SQLite's `?`).
        struct Sql {
            backend: super::Backend,
            parts: Vec<String>,
            binds: Vec<Bind>,
        }
        impl Sql {
            fn bind(&mut self, b: Bind) -> String {
                self.binds.push(b);
                self.backend.param(self.binds.len())
            }
            fn texts(&mut self, values: impl IntoIterator<Item = String>) -> String {
                values
                    .into_iter()
                    .map(|v| self.bind(Bind::Text(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            /// One kind of work: at most `per_kind + 1` rows, tagged with the kind, so
            /// that a kind with more than `per_kind` is known to be cut.
            fn branch(&mut self, select: String) {
                let n = self.parts.len();
                self.parts.push(format!(
                    "SELECT id, CAST({n} AS BIGINT) AS kind FROM ({select}) AS k{n}"
                ));
            }
        }
        let mut sql = Sql {
            backend: self.backend,
            parts: Vec::new(),
            binds: Vec::new(),
        };
        let person = || q.person.as_str().to_string();
        let limit = q.per_kind + 1;
        // One branch per state, so that each is one range of (state, stage_since).
        for state in &q.states {
            let s = sql.bind(Bind::Text(state.as_str().into()));
            let l = sql.bind(Bind::Int(limit));
            sql.branch(format!(
                "SELECT id FROM requests WHERE state = {s} ORDER BY stage_since LIMIT {l}"
            ));
        }
        if !q.decides.is_empty() {
            let s = sql.bind(Bind::Text(State::AwaitingDecision.as_str().into()));
            let tiers = sql.texts(q.decides.iter().map(|t| t.as_str().to_string()));
            let l = sql.bind(Bind::Int(limit));
            sql.branch(format!(
                "SELECT id FROM requests WHERE state = {s} AND tier IN ({tiers}) \
                 ORDER BY stage_since LIMIT {l}"
            ));
        }
        // Owned exceptions in the states where owners act: attest a review, complete
        // the conditions of an approved or suspended one (an active one has none open).
        for state in [State::ReviewDue, State::Approved, State::Suspended] {
            let p = sql.bind(Bind::Text(person()));
            let s = sql.bind(Bind::Text(state.as_str().into()));
            let l = sql.bind(Bind::Int(limit));
            sql.branch(format!(
                "SELECT id FROM requests WHERE monitoring_owner = {p} AND state = {s} \
                 ORDER BY stage_since LIMIT {l}"
            ));
        }
        // Open conditions the person owns, of exceptions where they can still be done.
        let p = sql.bind(Bind::Text(person()));
        let states = sql.texts(
            [
                State::Approved,
                State::Active,
                State::ReviewDue,
                State::Suspended,
            ]
            .map(|s| s.as_str().to_string()),
        );
        let l = sql.bind(Bind::Int(limit));
        sql.branch(format!(
            "SELECT DISTINCT c.request_id AS id FROM conditions c \
             JOIN requests r ON r.id = c.request_id \
             WHERE c.owner = {p} AND c.done_at IS NULL AND r.state IN ({states}) \
             ORDER BY c.request_id LIMIT {l}"
        ));
        // Requests sent back to the person.
        let p = sql.bind(Bind::Text(person()));
        let s = sql.bind(Bind::Text(State::NeedsInfo.as_str().into()));
        let l = sql.bind(Bind::Int(limit));
        sql.branch(format!(
            "SELECT id FROM requests WHERE requester = {p} AND state = {s} LIMIT {l}"
        ));

        let mut query = sqlx::query(AssertSqlSafe(sql.parts.join(" UNION ALL ")));
        for b in sql.binds {
            query = match b {
                Bind::Text(t) => query.bind(t),
                Bind::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.read).await?;
        let mut per_kind: std::collections::HashMap<i64, i64> = Default::default();
        let mut truncated = false;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let seen = per_kind.entry(r.try_get::<i64, _>("kind")?).or_default();
            *seen += 1;
            if *seen > q.per_kind {
                truncated = true;
                continue;
            }
            ids.push(RequestId::new(r.try_get("id")?));
        }
        ids.sort();
        ids.dedup();
        Ok(Candidates { ids, truncated })
    }

    /// A request's recorded events, oldest first.
    pub async fn events_of(&self, id: RequestId) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT revision, at, actor, kind, version FROM request_events \
             WHERE request_id = $1 ORDER BY revision",
        )
        .bind(id.get())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRecord {
                    revision: r.try_get::<i64, _>("revision")? as u64,
                    at: Timestamp::from_millis(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    version: r.try_get::<i64, _>("version")? as u32,
                })
            })
            .collect()
    }

    /// How many requests are in each state (states with none are left out).
    pub async fn counts_by_state(&self) -> Result<Vec<(State, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
            .fetch_all(&self.read)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let s: &str = r.try_get("state")?;
                let state = State::parse(s).ok_or_else(|| corrupt("state", s))?;
                Ok((state, r.try_get::<i64, _>("n")? as u64))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|(s, _)| State::ALL.iter().position(|x| x == s));
        Ok(out)
    }

    /// Granted exceptions still in force that expire in `[from, until)`, soonest first.
    pub async fn expiring(
        &self,
        from: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<Summary>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY} FROM requests WHERE expires_at >= $1 AND expires_at < $2 \
             ORDER BY expires_at, id LIMIT $3"
        )))
        .bind(from.millis())
        .bind(until.millis())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(summary).collect()
    }

    /// Requests in `state`, oldest stage first.
    pub async fn summaries_in(&self, state: State, limit: i64) -> Result<Vec<Summary>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY} FROM requests WHERE state = $1 ORDER BY stage_since LIMIT $2"
        )))
        .bind(state.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(summary).collect()
    }

    /// Open conditions due before `today`, most overdue first.
    pub async fn overdue_conditions(
        &self,
        today: chrono::NaiveDate,
        limit: i64,
    ) -> Result<Vec<OverdueCondition>> {
        // `due` is an ISO date: text order is date order.
        let rows = sqlx::query(
            "SELECT c.request_id, c.condition_id, c.owner, c.due FROM conditions c \
             JOIN requests r ON r.id = c.request_id \
             WHERE c.done_at IS NULL AND c.due < $1 AND r.state IN ('approved', 'active', 'review_due', 'suspended') \
             ORDER BY c.due, c.request_id, c.condition_id LIMIT $2",
        )
        .bind(today.to_string())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let due: &str = r.try_get("due")?;
                Ok(OverdueCondition {
                    request: RequestId::new(r.try_get("request_id")?),
                    condition: r.try_get::<i64, _>("condition_id")? as u32,
                    owner: PersonId::new(r.try_get::<String, _>("owner")?),
                    due: chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d")
                        .map_err(|_| corrupt("condition due date", due))?,
                })
            })
            .collect()
    }
}

/// What the register dashboard is narrowed to (every field optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterFilter {
    pub state: Option<State>,
    pub tier: Option<Tier>,
    pub policy: Option<String>,
    pub department: Option<String>,
    pub region: Option<String>,
    /// `YYYY-MM`: filed in that month (UTC).
    pub month: Option<String>,
}

impl RegisterFilter {
    /// The WHERE clause for this filter (placeholders from `$1`) and what it binds.
    fn clause(&self) -> (String, Vec<String>) {
        self.clause_on("")
    }

    /// [`clause`](Self::clause) with each column written `{mark}column`: on SQLite,
    /// `+column` keeps a term from choosing the index (a skip-scan of the covering
    /// index and a sort, where a plain scan of it is many times faster).
    fn clause_on(&self, mark: &str) -> (String, Vec<String>) {
        let mut parts = Vec::new();
        let mut binds = Vec::new();
        let mut add = |sql: &str, value: String| {
            binds.push(value);
            let sql = sql.replacen("(',' || regions", &format!("(',' || {mark}regions"), 1);
            let sql = match sql.split_once(' ') {
                Some((column, rest)) if !column.starts_with('(') => {
                    format!("{mark}{column} {rest}")
                }
                _ => sql,
            };
            parts.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(s) = self.state {
            add("state = ?", s.as_str().into());
        }
        if let Some(t) = self.tier {
            add("tier = ?", t.as_str().into());
        }
        if let Some(p) = &self.policy {
            add("policy_id = ?", p.clone());
        }
        if let Some(d) = &self.department {
            add("department = ?", d.clone());
        }
        if let Some(r) = &self.region {
            // Regions are stored comma-separated: match a whole id.
            add("(',' || regions || ',') LIKE ?", format!("%,{r},%"));
        }
        if let Some(m) = &self.month {
            add("created_month = ?", m.clone());
        }
        if parts.is_empty() {
            (String::new(), binds)
        } else {
            (format!(" WHERE {}", parts.join(" AND ")), binds)
        }
    }
}

/// How many requests share one combination of the register's dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterGroup {
    pub month: String,
    pub department: String,
    pub policy: String,
    pub tier: Option<Tier>,
    /// Region ids, as filed.
    pub regions: Vec<String>,
    pub state: State,
    pub count: u64,
}

/// One line of the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRow {
    pub summary: Summary,
    pub policy: String,
    pub department: String,
    pub regions: Vec<String>,
    pub requester: PersonId,
    pub monitoring_owner: Option<PersonId>,
    pub created_at: Timestamp,
}

/// How many requests of one stage and tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageCount {
    pub state: State,
    pub tier: Option<Tier>,
    pub count: u64,
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// The register's counts by every dimension at once (one grouped scan): the
    /// dashboard sums them by month, department, policy, tier, region and state.
    pub async fn register_groups(&self, filter: &RegisterFilter) -> Result<Vec<RegisterGroup>> {
        // The covering index holds every column read, in the grouping's order: a scan
        // of it alone beats any index a filter's column would tempt SQLite into (with
        // a table lookup per row, or a skip-scan and a sort).
        let (index, (clause, binds)) = match self.backend {
            super::Backend::Sqlite => (" INDEXED BY requests_register", filter.clause_on("+")),
            super::Backend::Postgres => ("", filter.clause()),
        };
        let sql = format!(
            "SELECT created_month, department, policy_id, tier, regions, state, COUNT(*) AS n \
             FROM requests{index}{clause} GROUP BY created_month, department, policy_id, tier, regions, state"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let state: &str = r.try_get("state")?;
                let tier: Option<String> = r.try_get("tier")?;
                Ok(RegisterGroup {
                    month: r.try_get("created_month")?,
                    department: r.try_get("department")?,
                    policy: r.try_get("policy_id")?,
                    tier: match tier.as_deref() {
                        Some(t) => Some(Tier::parse(t).ok_or_else(|| corrupt("tier", t))?),
                        None => None,
                    },
                    regions: split(r.try_get("regions")?),
                    state: State::parse(state).ok_or_else(|| corrupt("state", state))?,
                    count: r.try_get::<i64, _>("n")? as u64,
                })
            })
            .collect()
    }

    /// The newest `limit` requests the filter lets through.
    pub async fn register_rows(
        &self,
        filter: &RegisterFilter,
        limit: i64,
    ) -> Result<Vec<RegisterRow>> {
        let (clause, binds) = filter.clause();
        // Newest first along the primary key, stopping at `limit`: on SQLite an index
        // on a filtered column would read every match and sort them.
        let scan = match self.backend {
            super::Backend::Sqlite => " NOT INDEXED",
            super::Backend::Postgres => "",
        };
        let sql = format!(
            "SELECT {SUMMARY}, policy_id, department, regions, requester, monitoring_owner, created_at \
             FROM requests{scan}{clause} ORDER BY id DESC LIMIT ${}",
            binds.len() + 1
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(limit).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                Ok(RegisterRow {
                    summary: summary(r)?,
                    policy: r.try_get("policy_id")?,
                    department: r.try_get("department")?,
                    regions: split(r.try_get("regions")?),
                    requester: PersonId::new(r.try_get::<String, _>("requester")?),
                    monitoring_owner: r
                        .try_get::<Option<String>, _>("monitoring_owner")?
                        .map(PersonId::new),
                    created_at: Timestamp::from_millis(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// For each `(state, since)`: requests in `state` that entered it before `since`
    /// (past their stage's SLA), by tier. One statement of index-only range scans.
    pub async fn overdue_by_stage(
        &self,
        filter: &RegisterFilter,
        cutoffs: &[(State, Timestamp)],
    ) -> Result<Vec<StageCount>> {
        if cutoffs.is_empty() {
            return Ok(Vec::new());
        }
        let (clause, binds) = filter.clause();
        let from = binds.len();
        let ranges = (0..cutoffs.len())
            .map(|i| {
                format!(
                    "(state = ${} AND stage_since < ${})",
                    from + 2 * i + 1,
                    from + 2 * i + 2
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let clause = if clause.is_empty() {
            format!(" WHERE ({ranges})")
        } else {
            format!("{clause} AND ({ranges})")
        };
        let sql =
            format!("SELECT state, tier, COUNT(*) AS n FROM requests{clause} GROUP BY state, tier");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        for (state, since) in cutoffs {
            q = q.bind(state.as_str()).bind(since.millis());
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let state: &str = r.try_get("state")?;
                let tier: Option<String> = r.try_get("tier")?;
                Ok(StageCount {
                    state: State::parse(state).ok_or_else(|| corrupt("state", state))?,
                    tier: match tier.as_deref() {
                        Some(t) => Some(Tier::parse(t).ok_or_else(|| corrupt("tier", t))?),
                        None => None,
                    },
                    count: r.try_get::<i64, _>("n")? as u64,
                })
            })
            .collect()
    }

    /// A request's audit entries as stored, with their hashes.
    pub async fn audit_chain_of(&self, id: RequestId) -> Result<Vec<super::ChainedEntry>> {
        let rows = sqlx::query(
            "SELECT seq, prev_hash, hash, entry FROM audit WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id.get())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(super::ChainedEntry {
                    seq: r.try_get::<i64, _>("seq")? as u64,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                    entry: r.try_get("entry")?,
                })
            })
            .collect()
    }
}

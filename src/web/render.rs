//! The dashboard's HTML and SVG, written out as text: semantic tables with captions
//! and headers, labelled form controls, charts with titles and per-bar labels, and
//! colours with enough contrast; one stylesheet inline, no scripts.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::domain::{ExceptionRequest, State, Summary, Timestamp};
use crate::governance::{Governance, PersonId, RoleId, Tier};
use crate::service::{Register, Waiting};
use crate::store::{ChainedEntry, DecisionRecord, RegisterFilter, RegisterRow, ReminderRecord};

/// Text for HTML (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
:root{color-scheme:light;--ink:#1f2328;--muted:#57606a;--line:#d0d7de;--accent:#0b57d0;--late:#a40e26;--bg:#ffffff;--soft:#f6f8fa}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{padding:12px 20px;border-bottom:1px solid var(--line);display:flex;flex-wrap:wrap;gap:12px;align-items:baseline}
header strong{font-size:18px}nav a{margin-right:14px}a{color:var(--accent)}
main{padding:16px 20px;max-width:1280px;margin:0 auto}h1{font-size:22px;margin:8px 0 12px}h2{font-size:17px;margin:22px 0 8px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
table{border-collapse:collapse;width:100%;margin:4px 0 12px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}th{background:var(--soft);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.late{color:var(--late);font-weight:600}.muted{color:var(--muted)}
.scroll{overflow-x:auto}form.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;background:var(--soft);padding:10px;border:1px solid var(--line);border-radius:6px}
form.filters label{display:flex;flex-direction:column;font-size:13px;color:var(--muted)}select,input,button{font:inherit;padding:4px 6px}
button{background:var(--accent);color:#fff;border:0;border-radius:4px;padding:6px 12px}dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px}dt{color:var(--muted)}dd{margin:0}
code{font-size:12px;word-break:break-all}figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}svg.chart{width:100%;height:auto}
@media (max-width:640px){main{padding:10px}th,td{padding:4px}}
";

pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · Waiver</title><style>{STYLE}</style></head>\n<body><header><strong>Waiver</strong><nav aria-label=\"Dashboard\"><a href=\"/\">Register</a><a href=\"/sop.svg\">SOP diagram</a></nav></header>\n<main>{body}</main></body></html>\n",
        esc(title)
    )
}

pub fn notice(heading: &str, text: &str) -> String {
    format!("<h1>{}</h1><p>{}</p>", esc(heading), esc(text))
}

pub fn login(enabled: bool, failed: bool) -> String {
    if !enabled {
        return notice(
            "Sign-in is not enabled",
            "This dashboard is reached through the organisation's sign-in proxy.",
        );
    }
    let mut s = String::from("<h1>Sign in to the register</h1>");
    if failed {
        s.push_str("<p class=\"late\" role=\"alert\">That token is not right, or you have not signed in yet.</p>");
    }
    s.push_str(
        "<form method=\"post\" action=\"/login\"><p><label for=\"token\">Dashboard token</label><br>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></p>\
         <p><button type=\"submit\">Sign in</button></p></form>",
    );
    s
}

fn person(gov: &Governance, id: &PersonId) -> String {
    gov.person(id)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.to_string())
}

fn roles(gov: &Governance, roles: &[RoleId]) -> String {
    roles
        .iter()
        .map(|r| gov.role(r).map(|r| r.name.clone()).unwrap_or(r.to_string()))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn day(t: Timestamp) -> String {
    t.date().to_string()
}

fn link(r: &crate::domain::RequestId) -> String {
    format!("<a href=\"/exceptions/{r}\">{r}</a>")
}

/// A horizontal bar chart: one bar per (label, count), in the order given.
fn chart(id: &str, title: &str, data: &[(String, u64)]) -> String {
    let max = data.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let row = 22;
    let height = 10 + row * data.len().max(1) as i32;
    let mut s = format!(
        "<figure><figcaption id=\"{id}-title\">{}</figcaption><svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 360 {height}\" role=\"img\" aria-labelledby=\"{id}-title\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"13\" font-family=\"system-ui, sans-serif\">",
        esc(title)
    );
    if data.is_empty() {
        let _ = write!(
            s,
            "<text x=\"0\" y=\"20\" fill=\"#57606a\">No exceptions.</text>"
        );
    }
    for (i, (label, n)) in data.iter().enumerate() {
        let y = 5 + row * i as i32;
        let w = (*n as f64 / max as f64 * 170.0).round().max(1.0) as i32;
        let _ = write!(
            s,
            "<g class=\"bar\" data-label=\"{l}\" data-count=\"{n}\"><title>{l}: {n}</title><text x=\"0\" y=\"{}\" fill=\"#1f2328\">{}</text><rect x=\"140\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"#0b57d0\"/><text x=\"{}\" y=\"{}\" fill=\"#1f2328\">{n}</text></g>",
            y + 12,
            esc(&truncate(label, 18)),
            140 + w + 6,
            y + 12,
            l = esc(label),
        );
    }
    s.push_str("</svg></figure>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn summary_table(
    caption: &str,
    id: &str,
    rows: &[Summary],
    when: impl Fn(&Summary) -> String,
) -> String {
    let mut s = format!(
        "<table id=\"{id}\"><caption>{} ({})</caption><thead><tr><th scope=\"col\">Reference</th><th scope=\"col\">Title</th><th scope=\"col\">Tier</th><th scope=\"col\">When</th></tr></thead><tbody>",
        esc(caption),
        rows.len()
    );
    if rows.is_empty() {
        s.push_str("<tr><td colspan=\"4\" class=\"muted\">None.</td></tr>");
    }
    for r in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            link(&r.id),
            esc(&r.title),
            r.tier.map(|t| t.to_string()).unwrap_or_default(),
            esc(&when(r))
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn options<'a>(
    name: &str,
    label: &str,
    current: Option<&str>,
    choices: impl Iterator<Item = (String, String)> + 'a,
) -> String {
    let mut s = format!(
        "<label for=\"f-{name}\">{label}<select id=\"f-{name}\" name=\"{name}\"><option value=\"\">All</option>"
    );
    for (value, text) in choices {
        let selected = if current == Some(value.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            s,
            "<option value=\"{}\"{selected}>{}</option>",
            esc(&value),
            esc(&text)
        );
    }
    s.push_str("</select></label>");
    s
}

fn query(f: &RegisterFilter) -> String {
    let mut parts = Vec::new();
    if let Some(s) = f.state {
        parts.push(format!("state={}", s.as_str()));
    }
    if let Some(t) = f.tier {
        parts.push(format!("tier={}", t.as_str()));
    }
    for (k, v) in [
        ("policy", &f.policy),
        ("department", &f.department),
        ("region", &f.region),
        ("month", &f.month),
    ] {
        if let Some(v) = v {
            parts.push(format!(
                "{k}={}",
                v.replace(
                    |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                    ""
                )
            ));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn waiting_on(gov: &Governance, w: &Waiting) -> String {
    match w.state {
        State::NeedsInfo => "the requester".into(),
        State::InAssessment => "the required assessors".into(),
        State::ReviewDue => "the monitoring owner".into(),
        _ => roles(gov, &w.roles),
    }
}

/// `/`: the register.
pub fn register(gov: &Governance, f: &RegisterFilter, r: &Register, now: Timestamp) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<h1>AI exception register — {}</h1><p class=\"muted\">As of {} · governance sha256 {} · every figure from the same queries chat answers from.</p>",
        esc(&gov.organisation),
        now.minute(),
        gov.hash.short()
    );
    // Filters.
    let months: std::collections::BTreeSet<String> =
        r.groups.iter().map(|g| g.month.clone()).collect();
    s.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/\" aria-label=\"Filter the register\">",
    );
    s.push_str(&options(
        "state",
        "State",
        f.state.map(State::as_str),
        State::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), s.label().to_string())),
    ));
    s.push_str(&options(
        "tier",
        "Risk tier",
        f.tier.map(Tier::as_str),
        Tier::ALL
            .iter()
            .map(|t| (t.as_str().to_string(), t.to_string())),
    ));
    s.push_str(&options(
        "policy",
        "Policy",
        f.policy.as_deref(),
        gov.policies
            .iter()
            .map(|p| (p.id.to_string(), p.title.clone())),
    ));
    s.push_str(&options(
        "department",
        "Department",
        f.department.as_deref(),
        gov.form
            .departments
            .iter()
            .map(|d| (d.id.to_string(), d.label.clone())),
    ));
    s.push_str(&options(
        "region",
        "Region",
        f.region.as_deref(),
        gov.form
            .regions
            .iter()
            .map(|o| (o.id.to_string(), o.label.clone())),
    ));
    let mut month_choices: Vec<String> = months.iter().cloned().collect();
    if let Some(m) = &f.month
        && !month_choices.contains(m)
    {
        month_choices.push(m.clone());
    }
    s.push_str(&options(
        "month",
        "Filed in",
        f.month.as_deref(),
        month_choices.into_iter().rev().map(|m| (m.clone(), m)),
    ));
    let _ = write!(
        s,
        "<button type=\"submit\">Apply</button><a href=\"/\">Clear</a><a href=\"/register.csv{}\">Download CSV</a></form>",
        query(f)
    );

    // Counts by state (of the filter).
    let mut by_state: BTreeMap<usize, (State, u64)> = BTreeMap::new();
    for g in &r.groups {
        let k = State::ALL
            .iter()
            .position(|x| *x == g.state)
            .unwrap_or(usize::MAX);
        by_state.entry(k).or_insert((g.state, 0)).1 += g.count;
    }
    let total: u64 = by_state.values().map(|(_, n)| n).sum();
    s.push_str("<div class=\"grid\"><section aria-labelledby=\"h-states\"><h2 id=\"h-states\">By state</h2>");
    let _ = write!(
        s,
        "<table id=\"by-state\"><caption>{total} exception(s)</caption><thead><tr><th scope=\"col\">State</th><th scope=\"col\" class=\"n\">Count</th></tr></thead><tbody>"
    );
    for (state, n) in by_state.values() {
        let _ = write!(
            s,
            "<tr data-state=\"{}\"><th scope=\"row\">{}</th><td class=\"n\">{n}</td></tr>",
            state.as_str(),
            esc(state.label())
        );
    }
    s.push_str("</tbody></table></section>");

    // Waiting on whom.
    s.push_str("<section aria-labelledby=\"h-waiting\"><h2 id=\"h-waiting\">Waiting on whom</h2><table id=\"waiting\"><thead><tr><th scope=\"col\">Stage</th><th scope=\"col\">Who acts</th><th scope=\"col\">Tier</th><th scope=\"col\" class=\"n\">Waiting</th><th scope=\"col\" class=\"n\">Past SLA</th></tr></thead><tbody>");
    if r.waiting.is_empty() {
        s.push_str("<tr><td colspan=\"5\" class=\"muted\">Nothing waits.</td></tr>");
    }
    for w in &r.waiting {
        let late = if w.overdue > 0 {
            format!("<span class=\"late\">{}</span>", w.overdue)
        } else {
            "0".into()
        };
        let sla = w
            .sla_hours
            .map(|h| format!(" <span class=\"muted\">(SLA {h} h)</span>"))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr data-state=\"{}\"><td>{}{sla}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{late}</td></tr>",
            w.state.as_str(),
            esc(w.state.label()),
            esc(&waiting_on(gov, w)),
            w.tier.map(|t| t.to_string()).unwrap_or_default(),
            w.count
        );
    }
    s.push_str("</tbody></table></section></div>");

    // What needs attention.
    let o = &r.overview;
    s.push_str("<h2>Needs attention</h2><div class=\"grid\">");
    s.push_str(&summary_table(
        "Expiring in the next 30 days",
        "expiring",
        &o.expiring,
        |x| {
            x.expires_at
                .map(|t| format!("expires {}", t.minute()))
                .unwrap_or_default()
        },
    ));
    s.push_str(&summary_table(
        "Reviews due",
        "reviews-due",
        &o.reviews_due,
        |x| {
            x.next_review_at
                .map(|t| format!("review was due {}", day(t)))
                .unwrap_or_default()
        },
    ));
    let _ = write!(
        s,
        "<table id=\"overdue-conditions\"><caption>Overdue conditions ({})</caption><thead><tr><th scope=\"col\">Reference</th><th scope=\"col\">Condition</th><th scope=\"col\">Owner</th><th scope=\"col\">Due</th></tr></thead><tbody>",
        o.overdue_conditions.len()
    );
    if o.overdue_conditions.is_empty() {
        s.push_str("<tr><td colspan=\"4\" class=\"muted\">None.</td></tr>");
    }
    for c in &o.overdue_conditions {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"late\">{}</td></tr>",
            link(&c.request),
            c.condition,
            esc(&person(gov, &c.owner)),
            c.due
        );
    }
    s.push_str("</tbody></table>");
    s.push_str(&summary_table(
        "Suspended",
        "suspended",
        &o.suspended,
        |x| format!("since {}", day(x.updated_at)),
    ));
    s.push_str(&summary_table(
        "Reassessment required",
        "reassessment",
        &o.reassessment,
        |x| format!("since {}", day(x.updated_at)),
    ));
    s.push_str("</div>");

    // Trends.
    let mut month: BTreeMap<String, u64> = BTreeMap::new();
    let mut region: BTreeMap<String, u64> = BTreeMap::new();
    let mut department: BTreeMap<String, u64> = BTreeMap::new();
    let mut policy: BTreeMap<String, u64> = BTreeMap::new();
    let mut tier: BTreeMap<usize, (String, u64)> = BTreeMap::new();
    for g in &r.groups {
        *month.entry(g.month.clone()).or_default() += g.count;
        for x in &g.regions {
            let label = gov
                .form
                .regions
                .iter()
                .find(|o| o.id.as_str() == x)
                .map(|o| o.label.clone())
                .unwrap_or(x.clone());
            *region.entry(label).or_default() += g.count;
        }
        let d = gov
            .form
            .departments
            .iter()
            .find(|o| o.id.as_str() == g.department)
            .map(|o| o.label.clone())
            .unwrap_or(g.department.clone());
        *department.entry(d).or_default() += g.count;
        let p = gov
            .policies
            .iter()
            .find(|p| p.id.as_str() == g.policy)
            .map(|p| p.title.clone())
            .unwrap_or(g.policy.clone());
        *policy.entry(p).or_default() += g.count;
        let (k, label) = match g.tier {
            Some(t) => (
                Tier::ALL.iter().position(|x| *x == t).unwrap_or(0),
                t.to_string(),
            ),
            None => (usize::MAX, "not scored yet".to_string()),
        };
        tier.entry(k).or_insert((label, 0)).1 += g.count;
    }
    let list = |m: BTreeMap<String, u64>| m.into_iter().collect::<Vec<_>>();
    let mut months: Vec<(String, u64)> = list(month);
    if months.len() > 24 {
        months.drain(..months.len() - 24);
    }
    s.push_str("<h2>Trends</h2><div class=\"grid\">");
    s.push_str(&chart("chart-month", "Filed by month", &months));
    s.push_str(&chart("chart-region", "By region", &list(region)));
    s.push_str(&chart(
        "chart-department",
        "By department",
        &list(department),
    ));
    s.push_str(&chart("chart-policy", "By policy", &list(policy)));
    s.push_str(&chart(
        "chart-tier",
        "By risk tier",
        &tier.into_values().collect::<Vec<_>>(),
    ));
    s.push_str("</div>");

    // The register itself.
    let _ = write!(
        s,
        "<h2 id=\"h-register\">Exceptions</h2><div class=\"scroll\"><table id=\"register\"><caption>The newest {} of {total}</caption><thead><tr><th scope=\"col\">Reference</th><th scope=\"col\">Title</th><th scope=\"col\">State</th><th scope=\"col\">Tier</th><th scope=\"col\">Policy</th><th scope=\"col\">Department</th><th scope=\"col\">Regions</th><th scope=\"col\">Requester</th><th scope=\"col\">Filed</th><th scope=\"col\">Expires</th></tr></thead><tbody>",
        r.rows.len()
    );
    for row in &r.rows {
        let x = &row.summary;
        let _ = write!(
            s,
            "<tr data-ref=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            x.id,
            link(&x.id),
            esc(&x.title),
            esc(x.state.label()),
            x.tier.map(|t| t.to_string()).unwrap_or_default(),
            esc(&row.policy),
            esc(&row.department),
            esc(&row.regions.join(", ")),
            esc(&person(gov, &row.requester)),
            day(row.created_at),
            x.expires_at.map(day).unwrap_or_default()
        );
    }
    s.push_str("</tbody></table></div>");
    s.push_str("<h2>The process</h2><p><a href=\"/sop.svg\">The SOP diagram</a>, drawn from the governance file in force.</p>");
    s
}

/// The content fields that differ between two versions.
fn changed(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.replace('_', " "))
        .collect()
}

/// `/exceptions/AIX-0042`: everything that happened to one exception.
pub fn exception(
    gov: &Governance,
    r: &ExceptionRequest,
    decisions: &[DecisionRecord],
    reminders: &[ReminderRecord],
    audit: &[ChainedEntry],
) -> String {
    let c = r.content();
    let mut s = String::new();
    let _ = write!(
        s,
        "<p><a href=\"/\">← Register</a></p><h1>{} · {}</h1>",
        r.reference(),
        esc(&c.title)
    );
    s.push_str("<dl class=\"facts\" id=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    fact(
        "State",
        format!(
            "<strong data-state=\"{}\">{}</strong>",
            r.state.as_str(),
            esc(r.state.label())
        ),
    );
    fact("Requester", esc(&person(gov, &r.requester)));
    fact("Business owner", esc(&person(gov, &c.business_owner)));
    fact(
        "Policy",
        esc(&format!("{} (version {})", c.policy, c.policy_version)),
    );
    fact("AI system", esc(&c.ai_system));
    fact("Department", esc(c.department.as_str()));
    fact(
        "Regions",
        esc(&c
            .regions
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
    );
    if let Some(k) = &r.risk {
        fact("Risk", esc(&format!("score {} · {} tier", k.score, k.tier)));
    }
    if let Some(g) = &r.grant {
        fact(
            "Granted",
            esc(&format!(
                "{} to {} · monitored by {} · under governance sha256 {}",
                g.starts_at.minute(),
                g.expires_at.minute(),
                person(gov, &g.monitoring_owner),
                g.governance_hash.short()
            )),
        );
    }
    if let Some(renews) = r.renews {
        fact("Renews", link(&renews));
    }
    s.push_str("</dl>");

    // Versions and what changed.
    s.push_str("<h2>Versions</h2><table id=\"versions\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">By</th><th scope=\"col\">When</th><th scope=\"col\">What changed</th></tr></thead><tbody>");
    let mut previous: Option<serde_json::Value> = None;
    for v in &r.versions {
        let content = serde_json::to_value(&v.content).unwrap_or_default();
        let what = match &previous {
            None => "filed".to_string(),
            Some(p) => {
                let fields = changed(p, &content);
                if fields.is_empty() {
                    "nothing".into()
                } else {
                    fields.join(", ")
                }
            }
        };
        let note = v
            .note
            .as_deref()
            .map(|n| format!(" — {}", esc(n)))
            .unwrap_or_default();
        let by = match &v.author {
            crate::domain::Actor::Person(p) => person(gov, p),
            crate::domain::Actor::Scheduler => "Waiver".into(),
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{note}</td></tr>",
            v.number,
            esc(&by),
            v.at.minute(),
            esc(&what)
        );
        previous = Some(content);
    }
    s.push_str("</tbody></table>");

    // Reviews, assessments, comments.
    s.push_str("<h2>Completeness reviews</h2><table id=\"reviews\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Reviewer</th><th scope=\"col\">When</th><th scope=\"col\">Verdict</th></tr></thead><tbody>");
    for rv in &r.reviews {
        let verdict = match &rv.verdict {
            crate::domain::Verdict::Complete => "complete".to_string(),
            crate::domain::Verdict::SentBack { questions } => format!("sent back: {questions}"),
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rv.version,
            esc(&person(gov, &rv.reviewer)),
            rv.at.minute(),
            esc(&verdict)
        );
    }
    s.push_str("</tbody></table>");
    s.push_str("<h2>Findings and scores</h2><table id=\"assessments\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Role</th><th scope=\"col\">Assessor</th><th scope=\"col\">Dimension</th><th scope=\"col\" class=\"n\">Likelihood × impact</th><th scope=\"col\">Recommendation</th><th scope=\"col\">Findings</th><th scope=\"col\">Mitigations</th></tr></thead><tbody>");
    for a in &r.assessments {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{} × {} = {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.version,
            esc(&roles(gov, std::slice::from_ref(&a.role))),
            esc(&person(gov, &a.assessor)),
            esc(a.dimension.as_str()),
            a.likelihood,
            a.impact,
            a.score(),
            esc(&serde_json::to_value(a.recommendation)
                .ok()
                .and_then(|v| v.as_str().map(|r| r.replace('_', " ")))
                .unwrap_or_default()),
            esc(&a.findings),
            esc(&a.mitigations)
        );
    }
    s.push_str("</tbody></table>");
    if !r.comments.is_empty() {
        s.push_str("<h2>Feedback and comments</h2><table id=\"comments\"><thead><tr><th scope=\"col\">By</th><th scope=\"col\">When</th><th scope=\"col\">Text</th></tr></thead><tbody>");
        for cm in &r.comments {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&person(gov, &cm.author)),
                cm.at.minute(),
                esc(&cm.text)
            );
        }
        s.push_str("</tbody></table>");
    }

    // Decisions with what each approver saw.
    s.push_str("<h2>Decisions</h2><table id=\"decisions\"><thead><tr><th scope=\"col\">Approver</th><th scope=\"col\">Role</th><th scope=\"col\">When</th><th scope=\"col\">Decision</th><th scope=\"col\">What they saw</th></tr></thead><tbody>");
    if decisions.is_empty() {
        s.push_str("<tr><td colspan=\"5\" class=\"muted\">None yet.</td></tr>");
    }
    for d in decisions {
        let vote = serde_json::to_value(&d.vote).unwrap_or_default();
        let verdict = vote["verdict"].as_str().unwrap_or_default().to_string();
        let reason = vote["reason"]
            .as_str()
            .map(|x| format!(": {x}"))
            .unwrap_or_default();
        let snap = &d.snapshot;
        let saw = format!(
            "version {}, risk score {}, {} assessment(s), {} comment(s), approvers {}; policy version {}; governance sha256 {}",
            snap["version"],
            snap["risk"]["score"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or("—".into()),
            snap["assessments"].as_array().map(Vec::len).unwrap_or(0),
            snap["comments"].as_array().map(Vec::len).unwrap_or(0),
            snap["tier_approvers"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" + "))
                .unwrap_or_default(),
            d.policy_version,
            d.governance_hash
        );
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            esc(&person(gov, &d.vote.approver)),
            esc(&roles(gov, std::slice::from_ref(&d.vote.role))),
            d.vote.at.minute(),
            esc(&verdict),
            esc(&reason),
            esc(&saw)
        );
    }
    s.push_str("</tbody></table>");

    // Conditions, reminders, attestations.
    s.push_str("<h2>Conditions</h2><table id=\"conditions\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Condition</th><th scope=\"col\">Owner</th><th scope=\"col\">Due</th><th scope=\"col\">Done</th></tr></thead><tbody>");
    if r.conditions.is_empty() {
        s.push_str("<tr><td colspan=\"5\" class=\"muted\">None.</td></tr>");
    }
    for k in &r.conditions {
        let done = match &k.done {
            Some(d) => format!("{} by {}", d.at.minute(), person(gov, &d.by)),
            None => "open".into(),
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            k.id,
            esc(&k.text),
            esc(&person(gov, &k.owner)),
            k.due,
            esc(&done)
        );
    }
    s.push_str("</tbody></table>");
    s.push_str("<h2>Reminders</h2><table id=\"reminders\"><thead><tr><th scope=\"col\">Due</th><th scope=\"col\">To</th><th scope=\"col\">Status</th><th scope=\"col\">Sent</th><th scope=\"col\">Text</th></tr></thead><tbody>");
    if reminders.is_empty() {
        s.push_str("<tr><td colspan=\"5\" class=\"muted\">None.</td></tr>");
    }
    for m in reminders {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.due_at.minute(),
            esc(&m.target),
            m.status.as_str(),
            m.sent_at.map(|t| t.minute()).unwrap_or_default(),
            esc(&m.summary)
        );
    }
    s.push_str("</tbody></table>");
    if !r.attestations.is_empty() {
        s.push_str("<h2>Attestations</h2><table id=\"attestations\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">By</th><th scope=\"col\">Answer</th><th scope=\"col\">Note</th></tr></thead><tbody>");
        for a in &r.attestations {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.at.minute(),
                esc(&person(gov, &a.by)),
                esc(&format!("{:?}", a.answer)),
                esc(&a.note)
            );
        }
        s.push_str("</tbody></table>");
    }

    // The audit trail, with its hashes.
    s.push_str("<h2>Audit trail</h2><div class=\"scroll\"><table id=\"audit\"><caption>Each entry is chained to the one before: hash = SHA-256(previous hash ‖ entry)</caption><thead><tr><th scope=\"col\" class=\"n\">#</th><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">What</th><th scope=\"col\">Outcome</th><th scope=\"col\">Hash</th></tr></thead><tbody>");
    for e in audit {
        let entry: serde_json::Value = serde_json::from_str(&e.entry).unwrap_or_default();
        let at = entry["at"]
            .as_i64()
            .map(|t| Timestamp::from_millis(t).minute())
            .unwrap_or_default();
        let what = match entry["details"]["event"]["event"].as_str() {
            Some(ev) => format!("{} ({ev})", entry["action"].as_str().unwrap_or_default()),
            None => entry["action"].as_str().unwrap_or_default().to_string(),
        };
        let _ = write!(
            s,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code title=\"previous {}\">{}</code></td></tr>",
            e.seq,
            at,
            esc(entry["actor"].as_str().unwrap_or_default()),
            esc(&what),
            esc(entry["outcome"].as_str().unwrap_or_default()),
            esc(&e.prev_hash),
            esc(&e.hash)
        );
    }
    s.push_str("</tbody></table></div>");
    s
}

/// The register's rows as CSV (cells a spreadsheet would run as formulas are quoted
/// as text).
pub fn csv(rows: &[RegisterRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "reference",
        "title",
        "state",
        "tier",
        "policy",
        "department",
        "regions",
        "requester",
        "monitoring_owner",
        "filed_at",
        "expires_at",
        "next_review_at",
    ])?;
    for r in rows {
        let x = &r.summary;
        let cells = [
            x.id.to_string(),
            x.title.clone(),
            x.state.as_str().to_string(),
            x.tier.map(|t| t.to_string()).unwrap_or_default(),
            r.policy.clone(),
            r.department.clone(),
            r.regions.join("; "),
            r.requester.to_string(),
            r.monitoring_owner
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            r.created_at.to_string(),
            x.expires_at.map(|t| t.to_string()).unwrap_or_default(),
            x.next_review_at.map(|t| t.to_string()).unwrap_or_default(),
        ];
        w.write_record(cells.iter().map(|c| crate::export::guard(c)))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

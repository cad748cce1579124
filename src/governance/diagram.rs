//! `waiver diagram`: the workflow a governance file enforces, as Mermaid text.
//!
//! Drawn from the parsed rules (roles, assessment rules, risk thresholds, authority
//! matrix, SLAs), so the SOP diagram cannot drift from the running process.

use std::fmt::Write;

use super::{Combine, Governance, RoleId, Stage, Tier};

/// Mermaid labels are double-quoted; quotes and angle brackets must be entities.
fn label(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn role_names(gov: &Governance, roles: &[RoleId]) -> String {
    roles
        .iter()
        .map(|r| gov.role(r).map(|r| r.name.as_str()).unwrap_or(r.as_str()))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn sla(gov: &Governance, stage: Stage) -> String {
    match gov.slas.get(&stage) {
        Some(s) => format!(
            "<br/>{}",
            label(&format!(
                "SLA {} h, then escalates to {}",
                s.hours,
                role_names(gov, std::slice::from_ref(&s.escalate_to))
            ))
        ),
        None => String::new(),
    }
}

/// The Mermaid flowchart of the workflow `gov` enforces.
pub fn mermaid(gov: &Governance) -> String {
    let mut m = String::new();
    let w = &gov.workflow;
    let _ = writeln!(m, "flowchart TD");
    let _ = writeln!(
        m,
        "    %% {} — governance sha256 {}",
        gov.organisation,
        gov.hash.short()
    );
    let _ = writeln!(
        m,
        "    submit([\"1 · Submission<br/>/ai-exception, by anyone in the listed workspaces\"])"
    );
    let _ = writeln!(
        m,
        "    completeness{{\"2 · Completeness review<br/>{}{}\"}}",
        label(&role_names(
            gov,
            std::slice::from_ref(&w.completeness_reviewers)
        )),
        sla(gov, Stage::Completeness)
    );
    let _ = writeln!(
        m,
        "    needs_info[\"Needs information<br/>the requester answers with a new version\"]"
    );
    let _ = writeln!(
        m,
        "    assessment[\"3 · Risk and impact assessment<br/>every required role scores likelihood × impact{}\"]",
        sla(gov, Stage::Assessment)
    );
    let _ = writeln!(m, "    subgraph rules[\"Required assessors\"]");
    for (i, rule) in gov.assessment_rules.iter().enumerate() {
        let _ = writeln!(
            m,
            "        rule{i}[\"{} → {}\"]",
            label(&rule.name),
            label(&role_names(gov, &rule.require))
        );
    }
    let _ = writeln!(m, "    end");
    let combine = match &gov.risk.combine {
        Combine::Max => "the worst dimension".to_string(),
        Combine::WeightedMean(weights) => format!(
            "weighted mean ({})",
            weights
                .iter()
                .map(|(d, w)| format!("{} {w}", d.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let _ = writeln!(
        m,
        "    score{{\"Risk score 1–25<br/>{}\"}}",
        label(&combine)
    );
    let stakeholder_tiers: Vec<Tier> = Tier::ALL
        .into_iter()
        .filter(|t| gov.tier(*t).stakeholder_review)
        .collect();
    if !stakeholder_tiers.is_empty() {
        let _ = writeln!(
            m,
            "    stakeholders[\"4 · Stakeholder review<br/>{}{}\"]",
            label(&role_names(gov, &w.stakeholders)),
            sla(gov, Stage::StakeholderReview)
        );
    }
    for tier in Tier::ALL {
        let t = gov.tier(tier);
        let confirm = if t.typed_confirmation {
            "<br/>typed confirmation of the reference"
        } else {
            ""
        };
        let _ = writeln!(
            m,
            "    decide_{tier}[\"5 · Decision, {tier} tier<br/>all of: {}<br/>at most {} days, review every {} days{confirm}{}\"]",
            label(&role_names(gov, &t.approvers)),
            t.max_duration_days,
            t.review_every_days,
            sla(gov, Stage::Decision)
        );
    }
    let _ = writeln!(
        m,
        "    approved[\"6 · Approved<br/>requester, teams and owner told; owner completes conditions\"]"
    );
    let _ = writeln!(m, "    active([\"Active\"])");
    let _ = writeln!(
        m,
        "    review[\"7 · Review due<br/>the monitoring owner attests\"]"
    );
    let _ = writeln!(
        m,
        "    reassessment[\"Reassessment required<br/>history kept, assessors asked again\"]"
    );
    if let Some(days) = gov.reminders.suspend_after_overdue_days {
        let _ = writeln!(
            m,
            "    suspended[\"Suspended<br/>a condition open {days} day(s) past overdue; owner, requester and teams told\"]"
        );
    }
    let _ = writeln!(m, "    expired([\"Expired\"])");
    let _ = writeln!(m, "    rejected([\"Rejected\"])");
    let _ = writeln!(m, "    withdrawn([\"Withdrawn\"])");
    let _ = writeln!(m, "    closed([\"Closed early\"])");
    let _ = writeln!(
        m,
        "    revoked([\"Revoked<br/>by {} or the tier's approvers\"])",
        label(&role_names(gov, &w.revokers))
    );

    let _ = writeln!(m, "    submit --> completeness");
    let _ = writeln!(m, "    completeness -->|send back| needs_info");
    let _ = writeln!(m, "    needs_info -->|update| completeness");
    let _ = writeln!(m, "    completeness -->|complete| assessment");
    let _ = writeln!(m, "    assessment -.- rules");
    let _ = writeln!(m, "    assessment -->|all required roles assessed| score");
    for tier in Tier::ALL {
        let (lo, hi) = gov.risk.thresholds[&tier];
        if gov.tier(tier).stakeholder_review {
            let _ = writeln!(m, "    score -->|\"{tier}: {lo}–{hi}\"| stakeholders");
            let _ = writeln!(m, "    stakeholders -->|{tier}| decide_{tier}");
        } else {
            let _ = writeln!(m, "    score -->|\"{tier}: {lo}–{hi}\"| decide_{tier}");
        }
        let _ = writeln!(m, "    decide_{tier} -->|every role approves| approved");
        let _ = writeln!(
            m,
            "    decide_{tier} -->|any rejection, with a reason| rejected"
        );
    }
    let _ = writeln!(
        m,
        "    approved -->|conditions done and start reached| active"
    );
    if gov.reminders.suspend_after_overdue_days.is_some() {
        let _ = writeln!(
            m,
            "    approved -->|condition overdue past the grace| suspended"
        );
        let _ = writeln!(m, "    suspended -->|overdue conditions done| approved");
        let _ = writeln!(m, "    suspended -->|expiry| expired");
        let _ = writeln!(m, "    suspended -->|revoke| revoked");
    }
    let _ = writeln!(m, "    active -->|review cadence| review");
    let _ = writeln!(m, "    review -->|still needed| active");
    let _ = writeln!(m, "    review -->|changed| reassessment");
    let _ = writeln!(m, "    review -->|no longer needed| closed");
    let _ = writeln!(m, "    active -->|policy version changes| reassessment");
    let _ = writeln!(m, "    reassessment --> score");
    let leads = gov
        .reminders
        .expiry_lead_days
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        m,
        "    active -->|\"expiry; reminders {leads} days before\"| expired"
    );
    let _ = writeln!(m, "    active -->|revoke| revoked");
    let _ = writeln!(m, "    completeness -->|requester withdraws| withdrawn");
    m
}

// ---------------------------------------------------------------------------------
// SVG, drawn here (no browser, no JavaScript): the same stages, rules, tiers,
// durations, reminders and transitions as the Mermaid text, on a fixed layout.

const WIDTH: i32 = 1180;
const LINE: i32 = 16;
const PAD: i32 = 10;
/// Average glyph width of 12 px sans-serif, for wrapping.
const GLYPH: f32 = 6.6;

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `text` in lines of at most `width` pixels.
fn wrap(text: &str, width: i32) -> Vec<String> {
    let max = ((width - 2 * PAD) as f32 / GLYPH) as usize;
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Stage,
    State,
    End,
    Panel,
}

struct Node {
    id: &'static str,
    x: i32,
    y: i32,
    w: i32,
    title: String,
    lines: Vec<String>,
    shape: Shape,
}

impl Node {
    fn h(&self) -> i32 {
        PAD * 2 + LINE * (1 + self.lines.len() as i32)
    }
    fn cx(&self) -> i32 {
        self.x + self.w / 2
    }
}

struct Layout {
    nodes: Vec<Node>,
    edges: Vec<(&'static str, &'static str, String, bool)>,
}

impl Layout {
    fn node(
        &mut self,
        id: &'static str,
        (x, y, w): (i32, i32, i32),
        shape: Shape,
        title: impl Into<String>,
        body: &[String],
    ) -> i32 {
        let lines = body.iter().flat_map(|t| wrap(t, w)).collect();
        let n = Node {
            id,
            x,
            y,
            w,
            title: title.into(),
            lines,
            shape,
        };
        let bottom = n.y + n.h();
        self.nodes.push(n);
        bottom
    }
    fn edge(&mut self, from: &'static str, to: &'static str, label: impl Into<String>) {
        self.edges.push((from, to, label.into(), false));
    }
    fn get(&self, id: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("a laid-out node")
    }
}

fn sla_line(gov: &Governance, stage: Stage) -> Vec<String> {
    gov.slas
        .get(&stage)
        .map(|s| {
            format!(
                "SLA {} h, then escalates to {}",
                s.hours,
                role_names(gov, std::slice::from_ref(&s.escalate_to))
            )
        })
        .into_iter()
        .collect()
}

/// The SVG picture of the workflow `gov` enforces.
pub fn svg(gov: &Governance) -> String {
    let w = &gov.workflow;
    let mut l = Layout {
        nodes: Vec::new(),
        edges: Vec::new(),
    };
    let main = (40, 720);
    let side_x = 800;
    let side_w = 340;
    let gap = 46;

    let mut y = 70;
    y = l.node(
        "submit",
        (main.0 + 200, y, 320),
        Shape::State,
        "1 · Submission",
        &["anyone in the listed workspaces and tenants files /ai-exception".into()],
    ) + gap;
    let completeness_y = y;
    let mut body = vec![role_names(
        gov,
        std::slice::from_ref(&w.completeness_reviewers),
    )];
    body.extend(sla_line(gov, Stage::Completeness));
    y = l.node(
        "completeness",
        (main.0 + 160, y, 400),
        Shape::Stage,
        "2 · Completeness review",
        &body,
    ) + gap;
    l.node(
        "needs_info",
        (main.0 + 660, completeness_y, 160),
        Shape::Stage,
        "Needs information",
        &["the requester answers with a new version".into()],
    );
    let assessment_y = y;
    let mut body = vec!["every required role scores likelihood × impact".into()];
    body.extend(sla_line(gov, Stage::Assessment));
    y = l.node(
        "assessment",
        (main.0 + 160, y, 400),
        Shape::Stage,
        "3 · Risk and impact assessment",
        &body,
    ) + gap;
    let rules: Vec<String> = gov
        .assessment_rules
        .iter()
        .map(|r| format!("• {} → {}", r.name, role_names(gov, &r.require)))
        .collect();
    let rules_bottom = l.node(
        "rules",
        (side_x + 40, assessment_y, side_w - 40),
        Shape::Panel,
        "Required assessors",
        &rules,
    );
    let combine = match &gov.risk.combine {
        Combine::Max => "the worst dimension".to_string(),
        Combine::WeightedMean(weights) => format!(
            "weighted mean ({})",
            weights
                .iter()
                .map(|(d, w)| format!("{} {w}", d.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let thresholds = Tier::ALL
        .iter()
        .map(|t| {
            let (lo, hi) = gov.risk.thresholds[t];
            format!("{t} {lo}–{hi}")
        })
        .collect::<Vec<_>>()
        .join(" · ");
    y = l.node(
        "score",
        (main.0 + 160, y, 400),
        Shape::Stage,
        "Risk score 1–25",
        &[combine, thresholds],
    ) + gap;
    let stakeholder_tiers: Vec<Tier> = Tier::ALL
        .into_iter()
        .filter(|t| gov.tier(*t).stakeholder_review)
        .collect();
    if !stakeholder_tiers.is_empty() {
        let mut body = vec![
            role_names(gov, &w.stakeholders),
            format!(
                "for the {} tier(s)",
                stakeholder_tiers
                    .iter()
                    .map(Tier::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ];
        body.extend(sla_line(gov, Stage::StakeholderReview));
        // Right of the line from the score to the tiers that skip it.
        y = l.node(
            "stakeholders",
            (main.0 + 200, y.max(rules_bottom + 20), 360),
            Shape::Stage,
            "4 · Stakeholder review",
            &body,
        ) + gap;
    }
    let tier_w = 172;
    let mut decide_bottom = y;
    for (i, tier) in Tier::ALL.into_iter().enumerate() {
        let t = gov.tier(tier);
        let mut body = vec![
            format!("all of: {}", role_names(gov, &t.approvers)),
            format!(
                "at most {} days; review every {} days",
                t.max_duration_days, t.review_every_days
            ),
        ];
        if t.typed_confirmation {
            body.push("typed confirmation of the reference".into());
        }
        let id = [
            "decide_low",
            "decide_medium",
            "decide_high",
            "decide_critical",
        ][i];
        decide_bottom = decide_bottom.max(l.node(
            id,
            (main.0 + i as i32 * (tier_w + 10), y, tier_w),
            Shape::Stage,
            format!("5 · Decision, {tier}"),
            &body,
        ));
    }
    let decision_sla = sla_line(gov, Stage::Decision);
    y = decide_bottom + gap;
    let approved_y = y;
    y = l.node(
        "approved",
        (main.0 + 160, y, 400),
        Shape::Stage,
        "6 · Approved",
        &["requester, teams and owner told; the owner completes the conditions".into()],
    ) + gap;
    l.node(
        "rejected",
        (side_x, approved_y, 180),
        Shape::End,
        "Rejected",
        &["any approver, with a reason".into()],
    );
    let active_y = y;
    let leads = gov
        .reminders
        .expiry_lead_days
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    y = l.node(
        "active",
        (main.0 + 160, y, 400),
        Shape::State,
        "Active",
        &[format!("the owner is reminded {leads} days before expiry")],
    ) + gap;
    if let Some(days) = gov.reminders.suspend_after_overdue_days {
        l.node(
            "suspended",
            (side_x, active_y - 30, side_w),
            Shape::Stage,
            "Suspended",
            &[format!(
                "a condition still open {days} day(s) after it became overdue; owner, requester and teams told"
            )],
        );
    }
    let review_y = y;
    let mut row = l.node(
        "review",
        (main.0, y, 280),
        Shape::Stage,
        "7 · Review due",
        &["on the tier's cadence the monitoring owner attests".into()],
    );
    row = row.max(
        l.node(
            "reassessment",
            (main.0 + 360, review_y, 300),
            Shape::Stage,
            "Reassessment required",
            &[
                "the use changed or the policy version moved; history kept, assessors asked again"
                    .into(),
            ],
        ),
    );
    row = row.max(l.node(
        "expired",
        (main.0 + 720, review_y, 180),
        Shape::End,
        "Expired",
        &["at the end of its last day".into()],
    ));
    row = row.max(l.node(
        "revoked",
        (main.0 + 920, review_y, 180),
        Shape::End,
        "Revoked",
        &[format!(
            "by {} or the tier's approvers",
            role_names(gov, &w.revokers)
        )],
    ));
    let y = row + gap;
    let mut bottom = l.node(
        "closed",
        (main.0, y, 280),
        Shape::End,
        "Closed early",
        &["the owner attests it is no longer needed".into()],
    );
    bottom = bottom.max(l.node(
        "withdrawn",
        (main.0 + 360, y, 300),
        Shape::End,
        "Withdrawn",
        &["by the requester, at any stage before a decision".into()],
    ));

    l.edge("submit", "completeness", "");
    l.edge("completeness", "needs_info", "send back");
    l.edge("needs_info", "completeness", "update");
    l.edge("completeness", "assessment", "complete");
    l.edges.push(("assessment", "rules", String::new(), true));
    l.edge("assessment", "score", "all required roles assessed");
    for (i, tier) in Tier::ALL.into_iter().enumerate() {
        let id = [
            "decide_low",
            "decide_medium",
            "decide_high",
            "decide_critical",
        ][i];
        let from = if gov.tier(tier).stakeholder_review {
            "stakeholders"
        } else {
            "score"
        };
        l.edge(from, id, "");
        l.edge(id, "approved", "");
    }
    if !stakeholder_tiers.is_empty() {
        l.edge("score", "stakeholders", "");
    }
    l.edge("decide_critical", "rejected", "any rejection");
    l.edge("approved", "active", "conditions done, start reached");
    if gov.reminders.suspend_after_overdue_days.is_some() {
        l.edge("approved", "suspended", "condition overdue past the grace");
    }
    l.edge("active", "review", "review cadence");
    l.edge("active", "reassessment", "policy version changes");
    l.edge("review", "reassessment", "changed");
    l.edge("review", "closed", "no longer needed");
    l.edge("active", "expired", "expiry");
    l.edge("active", "revoked", "revoke");

    let height = bottom + 80;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-labelledby=\"sop-title sop-desc\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<title id=\"sop-title\">AI policy exception workflow of {}</title>",
        xml(&gov.organisation)
    );
    let _ = writeln!(
        s,
        "<desc id=\"sop-desc\">Drawn by waiver diagram from governance file sha256 {}: stages, the roles that act at each and their SLAs, the assessment rules, the risk tiers with their approvers, durations and review cadence, reminders{}.</desc>",
        gov.hash.as_str(),
        if gov.reminders.suspend_after_overdue_days.is_some() {
            " and suspension"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#3b4252\"/></marker></defs>"
    );
    let _ = writeln!(
        s,
        "<rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"40\" y=\"34\" font-size=\"18\" font-weight=\"600\" fill=\"#1f2328\">{} — AI policy exception workflow</text>",
        xml(&gov.organisation)
    );
    let _ = writeln!(
        s,
        "<text x=\"40\" y=\"54\" fill=\"#57606a\">governance sha256 {} · decision SLA: {}</text>",
        gov.hash.short(),
        xml(&decision_sla
            .first()
            .cloned()
            .unwrap_or_else(|| "none".into()))
    );
    // Edges under the nodes.
    let _ = writeln!(
        s,
        "<g class=\"edges\" stroke=\"#3b4252\" stroke-width=\"1.4\" fill=\"none\">"
    );
    let mut labels = String::new();
    for (from, to, label, dashed) in &l.edges {
        let (a, b) = (l.get(from), l.get(to));
        // Downwards: from the point of the source's bottom nearest the target's centre.
        let near = |n: &Node, x: i32| x.clamp(n.x + 20, n.x + n.w - 20);
        let (x1, y1, x2, y2) = if b.y >= a.y + a.h() {
            (near(a, b.cx()), a.y + a.h(), b.cx(), b.y)
        } else if b.y + b.h() <= a.y {
            (a.cx() + 40, a.y, b.cx() + 40, b.y + b.h())
        } else if b.x >= a.x + a.w {
            let y = a.y.max(b.y) + 18;
            (a.x + a.w, y, b.x, y)
        } else {
            let y = a.y.max(b.y) + 42;
            (a.x, y, b.x + b.w, y)
        };
        let dash = if *dashed {
            " stroke-dasharray=\"5 4\""
        } else {
            " marker-end=\"url(#arrow)\""
        };
        let _ = writeln!(
            s,
            "<path data-from=\"{from}\" data-to=\"{to}\" d=\"M{x1},{y1} L{x2},{y2}\"{dash}/>"
        );
        if !label.is_empty() {
            let (mx, my) = ((x1 + x2) / 2, (y1 + y2) / 2);
            let tw = (label.chars().count() as f32 * GLYPH) as i32 + 8;
            let _ = writeln!(
                labels,
                "<g class=\"edge-label\"><rect x=\"{}\" y=\"{}\" width=\"{tw}\" height=\"16\" rx=\"3\" fill=\"#ffffff\" stroke=\"#d0d7de\"/><text x=\"{mx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#3b4252\">{}</text></g>",
                mx - tw / 2,
                my - 8,
                my + 4,
                xml(label)
            );
        }
    }
    let _ = writeln!(s, "</g>");
    for n in &l.nodes {
        let (fill, stroke, rx) = match n.shape {
            Shape::Stage => ("#eef4ff", "#3463c7", 6),
            Shape::State => ("#e9f7ef", "#1a7f37", 22),
            Shape::End => ("#f6f8fa", "#57606a", 22),
            Shape::Panel => ("#fff8e6", "#9a6700", 4),
        };
        let _ = writeln!(
            s,
            "<g class=\"node\" id=\"node-{}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>",
            n.id,
            n.x,
            n.y,
            n.w,
            n.h()
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-weight=\"600\" fill=\"#1f2328\">{}</text>",
            n.x + PAD,
            n.y + PAD + 12,
            xml(&n.title)
        );
        for (i, line) in n.lines.iter().enumerate() {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" fill=\"#24292f\">{}</text>",
                n.x + PAD,
                n.y + PAD + 12 + LINE * (i as i32 + 1),
                xml(line)
            );
        }
        let _ = writeln!(s, "</g>");
    }
    s.push_str(&labels);
    let _ = writeln!(s, "</svg>");
    s
}

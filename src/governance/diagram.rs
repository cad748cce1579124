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

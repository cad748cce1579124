//! What each transition tells whom: pure planning of outgoing messages.
//!
//! Cards are a function of the request's state: [`live_cards`] says which cards a
//! request has, with their buttons, in a given state. A transition posts the cards
//! that appear, refreshes the ones that stay (so every card shows the latest facts),
//! and closes the ones that disappear (same message, no buttons, the outcome in its
//! status line) — so no live button survives on a decided or outdated card. On top of
//! cards, events produce one-off messages: DMs to the requester at every transition
//! (the first with the routing plan), announcements in the affected departments'
//! channels, notices to owners.

use std::collections::HashSet;

use crate::domain::Summary;
use crate::domain::schedule::{Reminder, Who};
use crate::domain::{
    AttestationAnswer, CommentVia, Event, ExceptionRequest, RequestId, State, Timestamp,
    VoteVerdict,
};
use crate::governance::{Channels, Governance, OptionId, PersonId, RoleId, Stage, Tier};
use crate::message::{Address, Button, ButtonAction, Message, Outgoing, Platform, Section, Style};

/// Who a message is for, before platform addresses are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    Role(RoleId),
    Person(PersonId),
    Department(OptionId),
}

/// A message for a recipient; `card` is the base key of an update-in-place card.
#[derive(Clone, Debug)]
pub struct Notice {
    pub to: Recipient,
    pub card: Option<String>,
    pub message: Message,
}

/// What planning needs besides the request.
pub struct Context<'a> {
    pub gov: &'a Governance,
    pub platforms: &'a [Platform],
    /// Earlier exceptions for the same AI system or policy, shown on review cards.
    pub similar: &'a [Summary],
}

/// The platform's id of a person (Slack user id, AAD object id), listed in the
/// governance file or not.
pub fn user_id(gov: &Governance, platform: Platform, person: &PersonId) -> Option<String> {
    match (platform, gov.person(person)) {
        (Platform::Slack, Some(p)) => p.slack.as_ref().map(|s| s.user.clone()),
        (Platform::Teams, Some(p)) => p.teams.as_ref().map(|t| t.aad_object_id.clone()),
        (Platform::Slack, None) => person.as_external_slack().map(|(_, u)| u.to_string()),
        (Platform::Teams, None) => person.as_external_teams().map(|(_, u)| u.to_string()),
    }
}

/// The channel a role's or department's messages go to on a platform.
fn channel(platform: Platform, channels: &Channels) -> Option<String> {
    match platform {
        Platform::Slack => channels.slack.clone(),
        Platform::Teams => channels.teams.clone(),
    }
}

/// Where a recipient is reached on a platform, if anywhere: a role's or department's
/// channel, or a person directly (each surface turns a person into its conversation).
pub fn resolve(gov: &Governance, platform: Platform, to: &Recipient) -> Option<Address> {
    match to {
        Recipient::Role(r) => gov
            .role(r)
            .and_then(|r| channel(platform, &r.channels))
            .map(|channel| Address::Channel { channel }),
        Recipient::Person(p) => user_id(gov, platform, p).map(|user| Address::Direct { user }),
        Recipient::Department(d) => gov
            .form
            .department(d)
            .and_then(|d| channel(platform, &d.channels))
            .map(|channel| Address::Channel { channel }),
    }
}

/// Turns notices into platform messages. A card's key becomes unique per address, and
/// a message that reaches the same address twice (roles sharing a channel) is sent once.
pub fn address(ctx: &Context<'_>, request: RequestId, notices: Vec<Notice>) -> Vec<Outgoing> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for platform in ctx.platforms {
        for n in &notices {
            let Some(to) = resolve(ctx.gov, *platform, &n.to) else {
                continue;
            };
            let card = n
                .card
                .as_ref()
                .map(|k| format!("{request}/{k}@{}", to.target()));
            if !seen.insert((
                *platform,
                to.clone(),
                card.clone(),
                n.message.summary.clone(),
            )) {
                continue;
            }
            out.push(Outgoing {
                request: Some(request),
                platform: *platform,
                to,
                card,
                message: n.message.clone(),
            });
        }
    }
    out
}

/// The messages a transition causes.
pub fn plan(
    ctx: &Context<'_>,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
) -> Vec<Outgoing> {
    let mut notices = cards_delta(ctx, before, after, event);
    notices.extend(event_notices(ctx.gov, before, after, event));
    address(ctx, after.id, notices)
}

/// A card: its base key, recipients, and the buttons it carries while live.
struct Card {
    key: String,
    to: Vec<Recipient>,
    title: &'static str,
    buttons: Vec<Button>,
}

fn button(
    r: &ExceptionRequest,
    action: ButtonAction,
    label: &str,
    style: Style,
    arg: Option<String>,
) -> Button {
    Button {
        action,
        label: label.into(),
        style,
        request: r.id,
        version: r.version(),
        arg,
        confirm: None,
    }
}

/// The cards a request has in its current state.
fn live_cards(gov: &Governance, r: &ExceptionRequest) -> Vec<Card> {
    use ButtonAction::*;
    let v = r.version();
    let mut cards = Vec::new();
    if r.state.is_pending() {
        cards.push(Card {
            key: "receipt".into(),
            to: vec![Recipient::Person(r.requester.clone())],
            title: "Your request",
            buttons: vec![Button {
                confirm: Some(format!(
                    "Withdraw {}? Reviewers stop working on it and it cannot be reopened.",
                    r.reference()
                )),
                ..button(r, Withdraw, "Withdraw request", Style::Danger, None)
            }],
        });
    }
    match r.state {
        State::Submitted => cards.push(Card {
            key: format!("completeness/v{v}"),
            to: vec![Recipient::Role(gov.workflow.completeness_reviewers.clone())],
            title: "Completeness review",
            buttons: vec![
                button(r, Complete, "Complete", Style::Primary, None),
                button(r, SendBack, "Send back…", Style::Default, None),
            ],
        }),
        State::NeedsInfo => cards.push(Card {
            key: format!("needs-info/v{v}"),
            to: vec![Recipient::Person(r.requester.clone())],
            title: "More information needed",
            buttons: vec![button(r, Update, "Update request", Style::Primary, None)],
        }),
        State::InAssessment | State::ReassessmentRequired => {
            for role in &r.required_roles {
                let done = r.current_assessments().any(|a| &a.role == role);
                cards.push(Card {
                    key: format!("assess/{role}/v{v}"),
                    to: vec![Recipient::Role(role.clone())],
                    title: "Risk and impact assessment",
                    buttons: if done {
                        Vec::new()
                    } else {
                        vec![button(
                            r,
                            Assess,
                            "Assess…",
                            Style::Primary,
                            Some(role.to_string()),
                        )]
                    },
                });
            }
        }
        State::InStakeholderReview => cards.push(Card {
            key: format!("stakeholders/v{v}"),
            to: gov
                .workflow
                .stakeholders
                .iter()
                .cloned()
                .map(Recipient::Role)
                .collect(),
            title: "Stakeholder review",
            buttons: vec![button(r, Feedback, "Give feedback…", Style::Primary, None)],
        }),
        State::AwaitingDecision => {
            let tier = r.tier().unwrap_or(Tier::Critical);
            cards.push(Card {
                key: format!("decision/v{v}"),
                to: gov
                    .tier(tier)
                    .approvers
                    .iter()
                    .cloned()
                    .map(Recipient::Role)
                    .collect(),
                title: "Decision",
                buttons: vec![
                    button(r, Approve, "Approve…", Style::Primary, None),
                    button(r, Reject, "Reject…", Style::Danger, None),
                ],
            });
        }
        _ => {}
    }
    if let Some(g) = &r.grant
        && !r.conditions.is_empty()
        && matches!(
            r.state,
            State::Approved | State::Active | State::ReviewDue | State::Suspended
        )
    {
        cards.push(Card {
            key: "checklist".into(),
            to: vec![Recipient::Person(g.monitoring_owner.clone())],
            title: "Conditions checklist",
            buttons: r
                .conditions
                .iter()
                .filter(|c| c.done.is_none())
                .map(|c| {
                    button(
                        r,
                        MarkDone,
                        &format!("Mark {} done", c.id),
                        Style::Primary,
                        Some(c.id.to_string()),
                    )
                })
                .collect(),
        });
    }
    cards
}

/// Posts new cards, refreshes the ones that stay, closes the ones that go.
fn cards_delta(
    ctx: &Context<'_>,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
) -> Vec<Notice> {
    let gov = ctx.gov;
    let old = before.map(|b| live_cards(gov, b)).unwrap_or_default();
    let new = live_cards(gov, after);
    let mut out = Vec::new();
    for card in &new {
        let changed = old
            .iter()
            .find(|o| o.key == card.key)
            .is_none_or(|o| o.buttons != card.buttons || !matches!(event, Event::Commented { .. }));
        if !changed {
            continue;
        }
        let message = card_message(ctx, after, card, None);
        for to in &card.to {
            out.push(Notice {
                to: to.clone(),
                card: Some(card.key.clone()),
                message: message.clone(),
            });
        }
    }
    for card in old.iter().filter(|o| !new.iter().any(|n| n.key == o.key)) {
        let outcome = closed_status(gov, before, after, event, card);
        let message = card_message(ctx, after, card, Some(outcome));
        for to in &card.to {
            out.push(Notice {
                to: to.clone(),
                card: Some(card.key.clone()),
                message: message.clone(),
            });
        }
    }
    out
}

fn name(gov: &Governance, p: &PersonId) -> String {
    gov.name_of(p)
}

fn role_name(gov: &Governance, r: &RoleId) -> String {
    gov.role(r)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| r.to_string())
}

fn role_list<'a>(gov: &Governance, roles: impl IntoIterator<Item = &'a RoleId>) -> String {
    let names: Vec<String> = roles.into_iter().map(|r| role_name(gov, r)).collect();
    if names.is_empty() {
        "nobody".into()
    } else {
        names.join(", ")
    }
}

fn date(t: Timestamp) -> String {
    t.date().to_string()
}

/// Why a card stopped being live, for its status line.
fn closed_status(
    gov: &Governance,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
    card: &Card,
) -> String {
    let superseded = before.is_some_and(|b| b.version() != after.version());
    if superseded && card.key.contains("/v") {
        return format!(
            "Closed: superseded by version {} ({}).",
            after.version(),
            after.state.label()
        );
    }
    match event {
        Event::MarkedComplete { review, .. } => {
            format!("Marked complete by {}.", name(gov, &review.reviewer))
        }
        Event::SentBack { review } => {
            format!(
                "Sent back to the requester by {}.",
                name(gov, &review.reviewer)
            )
        }
        Event::Assessed {
            risk: Some(risk), ..
        } => format!(
            "All assessments are in: score {} ({} tier).",
            risk.score, risk.tier
        ),
        Event::FeedbackGiven { .. } => "Stakeholder review complete.".into(),
        Event::Voted { vote, grant, .. } => match (&vote.verdict, grant) {
            (VoteVerdict::Reject { reason }, _) => {
                format!("Rejected by {}: {reason}", name(gov, &vote.approver))
            }
            (VoteVerdict::Approve { .. }, Some(g)) => format!(
                "Approved by {}; valid {} to {}.",
                g.approvers
                    .iter()
                    .map(|p| name(gov, p))
                    .collect::<Vec<_>>()
                    .join(" and "),
                date(g.starts_at),
                date(Timestamp::from_millis(g.expires_at.millis() - 1))
            ),
            (VoteVerdict::Approve { .. }, None) => "Approved.".into(),
        },
        Event::ConditionCompleted { .. } => "All conditions are done.".into(),
        Event::Withdrawn { closure } | Event::Revoked { closure } | Event::Expired { closure } => {
            format!("{}: {}", after.state.label(), closure.reason)
        }
        _ => format!("Closed: {}.", after.state.label()),
    }
}

/// The facts every reviewer needs: the request, its risk, findings and feedback so
/// far, and similar past exceptions.
fn request_sections(ctx: &Context<'_>, r: &ExceptionRequest, with_history: bool) -> Vec<Section> {
    let gov = ctx.gov;
    let c = r.content();
    let policy = gov
        .policy(&c.policy)
        .map(|p| format!("{} (v{})", p.title, c.policy_version))
        .unwrap_or_else(|| format!("{} (v{})", c.policy, c.policy_version));
    let labels = |ids: &[OptionId], find: &dyn Fn(&OptionId) -> Option<String>| {
        ids.iter()
            .map(|i| find(i).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dept = |i: &OptionId| gov.form.department(i).map(|d| d.label.clone());
    let mut sections = vec![
        Section::Heading {
            text: format!("{} · {}", r.reference(), c.title),
        },
        Section::Fields {
            fields: vec![
                ("Requester".into(), name(gov, &r.requester)),
                ("Business owner".into(), name(gov, &c.business_owner)),
                ("Policy".into(), policy),
                (
                    "Exception type".into(),
                    gov.form
                        .exception_type(&c.exception_type)
                        .map(|o| o.label.clone())
                        .unwrap_or_else(|| c.exception_type.to_string()),
                ),
                ("AI system".into(), c.ai_system.clone()),
                (
                    "Department".into(),
                    dept(&c.department).unwrap_or_else(|| c.department.to_string()),
                ),
                (
                    "Data".into(),
                    labels(&c.data_categories, &|i| {
                        gov.form.data_category(i).map(|o| o.label.clone())
                    }),
                ),
                (
                    "Regions".into(),
                    labels(&c.regions, &|i| gov.form.region(i).map(|o| o.label.clone())),
                ),
                (
                    "Requested period".into(),
                    format!("{} to {} ({} days)", c.start, c.end, c.requested_days()),
                ),
                (
                    "Scope".into(),
                    format!(
                        "{}; {}{}",
                        labels(&c.scope_departments, &dept),
                        c.scope_users,
                        if c.scope_systems.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", c.scope_systems)
                        }
                    ),
                ),
            ],
        },
        Section::Text {
            label: Some("Business justification".into()),
            text: c.justification.clone(),
        },
        Section::Text {
            label: Some("Compensating controls".into()),
            text: c.controls.clone(),
        },
    ];
    if let Some(risk) = r.risk.as_ref().filter(|k| k.version == r.version()) {
        let dims = risk
            .dimensions
            .iter()
            .map(|(d, s)| format!("{} {s}", d.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        sections.push(Section::Text {
            label: Some("Risk".into()),
            text: format!("Score {} of 25, {} tier ({dims})", risk.score, risk.tier),
        });
    }
    let findings: Vec<String> = r
        .current_assessments()
        .map(|a| {
            let mut line = format!(
                "{} ({}): likelihood {} × impact {} = {}, recommends {}. {}",
                role_name(gov, &a.role),
                name(gov, &a.assessor),
                a.likelihood,
                a.impact,
                a.score(),
                a.recommendation.label().to_lowercase(),
                a.findings
            );
            if !a.mitigations.is_empty() {
                line.push_str(&format!(" Mitigations: {}", a.mitigations));
            }
            line
        })
        .collect();
    if !findings.is_empty() {
        sections.push(Section::Text {
            label: Some("Findings so far".into()),
            text: findings.join("\n"),
        });
    }
    let feedback: Vec<String> = r
        .current_comments()
        .map(|c| {
            let who = name(gov, &c.author);
            match (c.via, c.recommendation) {
                (CommentVia::Feedback, Some(rec)) => {
                    let text = if c.text.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", c.text)
                    };
                    format!("{who} recommends {}{text}", rec.label().to_lowercase())
                }
                _ => format!("{who} (thread): {}", c.text),
            }
        })
        .collect();
    if !feedback.is_empty() {
        sections.push(Section::Text {
            label: Some("Stakeholder feedback".into()),
            text: feedback.join("\n"),
        });
    }
    if with_history && !ctx.similar.is_empty() {
        let lines: Vec<String> = ctx
            .similar
            .iter()
            .map(|s| {
                let mut line = format!("{} {}: {}", s.id, s.title, s.state.label().to_lowercase());
                if let Some(t) = s.tier {
                    line.push_str(&format!(", {t} tier"));
                }
                if let Some(e) = s.expires_at {
                    line.push_str(&format!(", expires {}", date(e)));
                }
                line
            })
            .collect();
        sections.push(Section::Text {
            label: Some("Similar past exceptions (same AI system or policy)".into()),
            text: lines.join("\n"),
        });
    }
    sections
}

fn card_message(
    ctx: &Context<'_>,
    r: &ExceptionRequest,
    card: &Card,
    closed: Option<String>,
) -> Message {
    let gov = ctx.gov;
    let reviewing = !matches!(card.key.as_str(), "receipt" | "checklist");
    let mut sections = Vec::new();
    if card.key == "checklist" {
        sections.push(Section::Heading {
            text: format!("{} · conditions to complete", r.reference()),
        });
        let g = r.grant.as_ref();
        sections.push(Section::Text {
            label: None,
            text: format!(
                "You are the monitoring owner of {} ({}). It becomes active when every condition is done{}.",
                r.reference(),
                r.content().title,
                g.map(|g| format!(" and its start ({}) is reached", date(g.starts_at)))
                    .unwrap_or_default()
            ),
        });
        if r.state == State::Suspended {
            sections.push(Section::Text {
                label: Some("Status".into()),
                text: waiting_for(gov, r),
            });
        }
        let lines: Vec<String> = r
            .conditions
            .iter()
            .map(|c| {
                let status = match &c.done {
                    Some(d) => format!("done {} by {}", date(d.at), name(gov, &d.by)),
                    None => "open".into(),
                };
                format!(
                    "{}. {} (owner {}, due {}): {status}",
                    c.id,
                    c.text,
                    name(gov, &c.owner),
                    c.due
                )
            })
            .collect();
        sections.push(Section::Text {
            label: Some("Conditions".into()),
            text: lines.join("\n"),
        });
    } else if card.key.starts_with("needs-info") {
        sections.push(Section::Heading {
            text: format!("{} · more information needed", r.reference()),
        });
        let questions = r
            .reviews
            .iter()
            .rev()
            .find_map(|rv| match &rv.verdict {
                crate::domain::Verdict::SentBack { questions } => {
                    Some((name(gov, &rv.reviewer), questions.clone()))
                }
                _ => None,
            })
            .unwrap_or_default();
        sections.push(Section::Text {
            label: Some(format!("Questions from {}", questions.0)),
            text: questions.1,
        });
        sections.push(Section::Context {
            text: "Update the request to answer; it returns to the completeness queue as a new version.".into(),
        });
    } else if card.key == "receipt" {
        sections.extend(request_sections(ctx, r, false));
        if closed.is_none() {
            sections.push(Section::Context {
                text: format!("Status: {}. {}", r.state.label(), waiting_for(gov, r)),
            });
        }
    } else {
        sections.extend(request_sections(ctx, r, reviewing));
        sections.push(Section::Context {
            text: format!(
                "{} · version {} · filed {} · governance {}",
                card.title,
                r.version(),
                date(r.created_at),
                gov.hash.short()
            ),
        });
    }
    match &closed {
        Some(status) => sections.push(Section::Context {
            text: status.clone(),
        }),
        None => {
            if reviewing && card.key != "receipt" {
                sections.push(Section::Context {
                    text: format!("Status: {}. {}", r.state.label(), waiting_for(gov, r)),
                });
            }
            if !card.buttons.is_empty() {
                sections.push(Section::Actions {
                    buttons: card.buttons.clone(),
                });
            }
        }
    }
    let summary = match &closed {
        Some(status) => format!("{} · {}: {status}", r.reference(), card.title),
        None => format!("{} · {}: {}", r.reference(), card.title, r.content().title),
    };
    Message { summary, sections }
}

/// The open conditions that suspended the exception (past their grace when it was
/// suspended), for people: `condition 2 (…, due …) is`.
fn overdue_list(gov: &Governance, r: &ExceptionRequest) -> String {
    let open: Vec<String> = r
        .conditions
        .iter()
        .filter(|c| r.suspends_at(c, gov).is_some_and(|at| at <= r.stage_since))
        .map(|c| format!("condition {} ({}, due {})", c.id, c.text, c.due))
        .collect();
    match open.len() {
        0 => "its conditions are".into(),
        1 => format!("{} is", open[0]),
        _ => format!("{} are", open.join(" and ")),
    }
}

/// Who the request waits on, in words.
pub fn waiting_for(gov: &Governance, r: &ExceptionRequest) -> String {
    let sla = |stage: Stage| {
        gov.slas
            .get(&stage)
            .map(|s| {
                let due = r.stage_since.plus_hours(s.hours);
                format!(" (due {})", due.minute())
            })
            .unwrap_or_default()
    };
    match r.state {
        State::Submitted => format!(
            "Waiting for {}{}.",
            role_name(gov, &gov.workflow.completeness_reviewers),
            sla(Stage::Completeness)
        ),
        State::NeedsInfo => "Waiting for the requester to update it.".into(),
        State::InAssessment | State::ReassessmentRequired => format!(
            "Waiting for {}{}.",
            role_list(gov, r.missing_assessments()),
            sla(Stage::Assessment)
        ),
        State::InStakeholderReview => format!(
            "Waiting for feedback from {}{}.",
            role_list(gov, r.missing_feedback(gov)),
            sla(Stage::StakeholderReview)
        ),
        State::AwaitingDecision => format!(
            "Waiting for approval by {}{}.",
            role_list(gov, r.missing_approvals(gov)),
            sla(Stage::Decision)
        ),
        State::Approved => format!(
            "{} of {} conditions done.",
            r.conditions.iter().filter(|c| c.done.is_some()).count(),
            r.conditions.len()
        ),
        State::Suspended => format!(
            "Suspended since {}: may not be used until {} done ({}).",
            r.stage_since.minute(),
            overdue_list(gov, r),
            match &r.grant {
                Some(g) => format!(
                    "valid until {}",
                    date(Timestamp::from_millis(g.expires_at.millis() - 1))
                ),
                None => String::new(),
            }
        ),
        State::Active | State::ReviewDue => r
            .grant
            .as_ref()
            .map(|g| {
                format!(
                    "Valid until {}{}.",
                    date(Timestamp::from_millis(g.expires_at.millis() - 1)),
                    g.next_review_at
                        .map(|n| format!(", next review {}", date(n)))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn dm(to: &PersonId, summary: String, mut sections: Vec<Section>) -> Notice {
    if sections.is_empty() {
        sections.push(Section::Text {
            label: None,
            text: summary.clone(),
        });
    }
    Notice {
        to: Recipient::Person(to.clone()),
        card: None,
        message: Message { summary, sections },
    }
}

/// The routing plan shown in the first DM: who reviews, who can approve, the SLAs.
fn routing_plan(gov: &Governance, r: &ExceptionRequest) -> Vec<Section> {
    let assessors = gov.required_assessors(&r.content().rule_subject());
    let sla = |stage: Stage| {
        gov.slas
            .get(&stage)
            .map(|s| format!(" (within {} h)", s.hours))
            .unwrap_or_default()
    };
    let tiers: Vec<String> = Tier::ALL
        .iter()
        .map(|t| {
            let p = gov.tier(*t);
            let (lo, hi) = gov.risk.thresholds[t];
            format!(
                "{t} (score {lo}–{hi}): {}{}, at most {} days",
                role_list(gov, &p.approvers),
                if p.stakeholder_review {
                    " after stakeholder review"
                } else {
                    ""
                },
                p.max_duration_days
            )
        })
        .collect();
    vec![
        Section::Text {
            label: None,
            text: format!(
                "{} was filed: \"{}\". Here is how it will be reviewed.",
                r.reference(),
                r.content().title
            ),
        },
        Section::Fields {
            fields: vec![
                (
                    "1. Completeness".into(),
                    format!(
                        "{}{}",
                        role_name(gov, &gov.workflow.completeness_reviewers),
                        sla(Stage::Completeness)
                    ),
                ),
                (
                    "2. Assessment".into(),
                    format!("{}{}", role_list(gov, &assessors), sla(Stage::Assessment)),
                ),
            ],
        },
        Section::Text {
            label: Some("3. Decision, by risk tier".into()),
            text: format!("{}{}", tiers.join("\n"), sla(Stage::Decision)),
        },
        Section::CommandHint {
            before: "You will get a message at every step. Use ".into(),
            args: "status".into(),
            after: " to see the timeline.".into(),
        },
    ]
}

/// One-off messages an event causes.
fn event_notices(
    gov: &Governance,
    before: Option<&ExceptionRequest>,
    r: &ExceptionRequest,
    event: &Event,
) -> Vec<Notice> {
    let reference = r.reference();
    let title = &r.content().title;
    let requester = &r.requester;
    let mut out = Vec::new();
    match event {
        // Past history brought in: nobody is told (it is not news), and no card is
        // posted; the scheduler takes it from here.
        Event::Imported { .. } => {}
        Event::Submitted { .. } => {
            out.push(dm(
                requester,
                format!("{reference} filed: {title}"),
                routing_plan(gov, r),
            ));
        }
        Event::Updated { version } => out.push(dm(
            requester,
            format!(
                "{reference} version {} submitted; it is back in the queue. {}",
                version.number,
                waiting_for(gov, r)
            ),
            vec![],
        )),
        Event::SentBack { .. } => out.push(dm(
            requester,
            format!("{reference} needs more information before it can be reviewed."),
            vec![],
        )),
        Event::MarkedComplete { required_roles, .. } => out.push(dm(
            requester,
            format!(
                "{reference} is complete and now being assessed by {}.",
                role_list(gov, required_roles)
            ),
            vec![],
        )),
        Event::Assessed {
            risk: Some(risk), ..
        } => out.push(dm(
            requester,
            format!(
                "{reference} assessed: risk score {} ({} tier). {}",
                risk.score,
                risk.tier,
                waiting_for(gov, r)
            ),
            vec![],
        )),
        Event::FeedbackGiven {
            stage_complete: true,
            ..
        } => out.push(dm(
            requester,
            format!(
                "{reference}: stakeholder review is complete. {}",
                waiting_for(gov, r)
            ),
            vec![],
        )),
        Event::Voted { vote, grant, .. } => match (&vote.verdict, grant) {
            (VoteVerdict::Reject { reason }, _) => {
                let text = format!(
                    "{reference} was rejected by {} ({}): {reason}",
                    name(gov, &vote.approver),
                    role_name(gov, &vote.role)
                );
                out.push(dm(requester, text.clone(), vec![]));
                out.extend(announce(
                    r,
                    format!("{reference} \"{title}\" was rejected."),
                ));
            }
            (VoteVerdict::Approve { .. }, None) => out.push(dm(
                requester,
                format!(
                    "{reference} was approved by {} ({}). {}",
                    name(gov, &vote.approver),
                    role_name(gov, &vote.role),
                    waiting_for(gov, r)
                ),
                vec![],
            )),
            (VoteVerdict::Approve { .. }, Some(g)) => {
                let until = date(Timestamp::from_millis(g.expires_at.millis() - 1));
                let conditions = if r.conditions.is_empty() {
                    "no conditions".to_string()
                } else {
                    r.conditions
                        .iter()
                        .map(|c| {
                            format!(
                                "{}. {} (owner {}, due {})",
                                c.id,
                                c.text,
                                name(gov, &c.owner),
                                c.due
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let text = format!(
                    "{reference} was approved ({} tier) from {} until {until}. Monitoring owner: {}. Status: {}.",
                    g.tier,
                    date(g.starts_at),
                    name(gov, &g.monitoring_owner),
                    r.state.label().to_lowercase()
                );
                out.push(dm(
                    requester,
                    text.clone(),
                    vec![
                        Section::Text { label: None, text },
                        Section::Text {
                            label: Some("Conditions".into()),
                            text: conditions,
                        },
                    ],
                ));
                let policy = gov
                    .policy(&r.content().policy)
                    .map(|p| p.title.clone())
                    .unwrap_or_else(|| r.content().policy.to_string());
                out.extend(announce(
                    r,
                    format!(
                        "{reference} approved: \"{title}\" ({}) may be used until {until} under {policy} v{}, with {} condition(s).",
                        r.content().ai_system,
                        g.policy_version,
                        r.conditions.len()
                    ),
                ));
                if g.monitoring_owner != *requester && r.conditions.is_empty() {
                    out.push(dm(
                        &g.monitoring_owner,
                        format!(
                            "You are the monitoring owner of {reference} \"{title}\", valid until {until}. You will be asked to review it."
                        ),
                        vec![],
                    ));
                }
                for c in &r.conditions {
                    if c.owner != g.monitoring_owner {
                        out.push(dm(
                            &c.owner,
                            format!(
                                "You own condition {} of {reference}: {} (due {}).",
                                c.id, c.text, c.due
                            ),
                            vec![],
                        ));
                    }
                }
            }
        },
        Event::Suspended { condition } => {
            let text = format!(
                "{reference} \"{title}\" is suspended: condition {} ({}) was due {} and is still open. It may not be used until its overdue conditions are done.",
                condition.id, condition.text, condition.due
            );
            out.extend(tell(
                requester_and_owner(r).chain([&condition.owner]),
                &text,
            ));
            out.extend(announce(
                r,
                format!(
                    "{reference} \"{title}\" is suspended and may not be used until its overdue conditions are done."
                ),
            ));
        }
        Event::ConditionCompleted {
            condition,
            activated,
            resumed,
        } => {
            if *resumed {
                let text = format!(
                    "{reference} \"{title}\" is no longer suspended: condition {} is done.{}",
                    condition.id,
                    if *activated {
                        " It is active again."
                    } else {
                        ""
                    }
                );
                out.extend(tell(requester_and_owner(r), &text));
                out.extend(announce(r, text));
            } else if *activated {
                out.push(dm(
                    requester,
                    format!("{reference} is now active: every condition is done."),
                    vec![],
                ));
            } else if before.is_some() {
                out.push(dm(
                    requester,
                    format!(
                        "{reference}: condition {} is done ({}).",
                        condition.id, condition.text
                    ),
                    vec![],
                ));
            }
        }
        Event::Activated => out.push(dm(requester, format!("{reference} is now active."), vec![])),
        Event::Withdrawn { .. } => {
            out.push(dm(requester, format!("{reference} was withdrawn."), vec![]))
        }
        Event::Revoked { closure } => {
            let text = format!("{reference} was revoked: {}", closure.reason);
            out.extend(tell(requester_and_owner(r), &text));
            out.extend(announce(
                r,
                format!("{reference} \"{title}\" was revoked and may no longer be used."),
            ));
        }
        Event::Expired { .. } => {
            let text = format!("{reference} \"{title}\" has expired.");
            out.extend(tell(requester_and_owner(r), &text));
            out.extend(announce(
                r,
                format!("{reference} \"{title}\" has expired and may no longer be used."),
            ));
        }
        Event::ReassessmentRequired { version, .. } => {
            let note = version.note.clone().unwrap_or_default();
            let text = format!(
                "{reference} needs reassessment: {note}. It stays in force until a new decision or its expiry."
            );
            out.extend(tell(requester_and_owner(r), &text));
        }
        Event::Attested { attestation } => match attestation.answer {
            AttestationAnswer::NoLongerNeeded => out.push(dm(
                requester,
                format!(
                    "{reference} was closed early by {}: no longer needed.",
                    name(gov, &attestation.by)
                ),
                vec![],
            )),
            AttestationAnswer::StillNeeded => {
                let next = r
                    .grant
                    .as_ref()
                    .map(|g| match g.next_review_at {
                        Some(n) => format!("Next review {}.", date(n)),
                        None => format!(
                            "No further review before it expires after {}.",
                            date(Timestamp::from_millis(g.expires_at.millis() - 1))
                        ),
                    })
                    .unwrap_or_default();
                out.push(dm(
                    &attestation.by,
                    format!("Recorded: {reference} \"{title}\" is still needed. {next}"),
                    vec![],
                ));
            }
            AttestationAnswer::Changed => {
                let text = format!(
                    "{reference} \"{title}\" goes back to assessment: {} attested that its use has changed. It stays in force until a new decision or its expiry.",
                    name(gov, &attestation.by)
                );
                out.extend(tell([requester, &attestation.by], &text));
            }
        },
        Event::ReviewDue
        | Event::Assessed { risk: None, .. }
        | Event::FeedbackGiven { .. }
        | Event::Commented { .. } => {}
    }
    out
}

/// The requester, then the monitoring owner of a granted exception.
fn requester_and_owner(r: &ExceptionRequest) -> impl Iterator<Item = &PersonId> {
    std::iter::once(&r.requester).chain(r.grant.as_ref().map(|g| &g.monitoring_owner))
}

/// The same direct message to each of `people`, once each (one person may hold
/// several of the parts).
fn tell<'a>(people: impl IntoIterator<Item = &'a PersonId>, text: &str) -> Vec<Notice> {
    let mut told: Vec<&PersonId> = Vec::new();
    for p in people {
        if !told.contains(&p) {
            told.push(p);
        }
    }
    told.into_iter()
        .map(|p| dm(p, text.to_string(), vec![]))
        .collect()
}

/// A one-off message to the channels of the departments the exception affects.
fn announce(r: &ExceptionRequest, text: String) -> Vec<Notice> {
    let c = r.content();
    let mut departments = vec![c.department.clone()];
    for d in &c.scope_departments {
        if !departments.contains(d) {
            departments.push(d.clone());
        }
    }
    departments
        .into_iter()
        .map(|d| Notice {
            to: Recipient::Department(d),
            card: None,
            message: Message {
                summary: text.clone(),
                sections: vec![Section::Text {
                    label: None,
                    text: text.clone(),
                }],
            },
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Step 7: reminders and digests.

/// A digest carries at most this many items in full (the largest any surface shows);
/// the rest are counted.
pub const DIGEST_ITEMS: usize = 25;

/// Who a reminder goes to, as a recipient.
pub fn recipient(who: &Who) -> Recipient {
    match who {
        Who::Person(p) => Recipient::Person(p.clone()),
        Who::Role(r) => Recipient::Role(r.clone()),
    }
}

/// How long until `at`, counted from `now`: whole days, or hours on the last day.
pub fn time_left(at: Timestamp, now: Timestamp) -> String {
    const HOUR: i64 = 3_600_000;
    let left = at.millis() - now.millis();
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if left >= 24 * HOUR {
        plural(left / (24 * HOUR), "day")
    } else if left > 0 {
        plural((left + HOUR - 1) / HOUR, "hour")
    } else {
        "no time".into()
    }
}

/// One reminder sent at `now`, as a digest item: its text (times counted from `now`)
/// and the buttons to act on it at once.
pub fn reminder(
    gov: &Governance,
    r: &ExceptionRequest,
    what: &Reminder,
    now: Timestamp,
) -> Message {
    use ButtonAction::*;
    let reference = r.reference();
    let title = &r.content().title;
    let condition = |id: u32| r.conditions.iter().find(|c| c.id == id);
    let mut buttons = Vec::new();
    let text = match what {
        Reminder::Sla {
            stage,
            deadline,
            overdue: false,
        } => format!(
            "{reference} \"{title}\" is in {} and due by {}. {}",
            stage.label(),
            deadline.minute(),
            waiting_for(gov, r)
        ),
        Reminder::Sla {
            stage,
            deadline,
            overdue: true,
        } => format!(
            "{reference} \"{title}\" is overdue in {}: its SLA ended {}. {}",
            stage.label(),
            deadline.minute(),
            waiting_for(gov, r)
        ),
        Reminder::Escalation { stage, deadline } => format!(
            "Escalation: {reference} \"{title}\" has been in {} since {}, past its SLA ({}). {}",
            stage.label(),
            r.stage_since.minute(),
            deadline.minute(),
            waiting_for(gov, r)
        ),
        Reminder::Condition { id, overdue } => {
            let (text, due) = condition(*id)
                .map(|c| (c.text.clone(), c.due.to_string()))
                .unwrap_or_default();
            buttons.push(button(
                r,
                MarkDone,
                &format!("Mark {id} done"),
                Style::Primary,
                Some(id.to_string()),
            ));
            if *overdue {
                format!("{reference}: condition {id} \"{text}\" is overdue (due {due}).")
            } else {
                format!("{reference}: condition {id} \"{text}\" is due today ({due}).")
            }
        }
        Reminder::ConditionEscalation { id } => {
            let (text, due, owner) = condition(*id)
                .map(|c| (c.text.clone(), c.due.to_string(), name(gov, &c.owner)))
                .unwrap_or_default();
            format!(
                "Escalation: {reference} \"{title}\": condition {id} \"{text}\" (owner {owner}) is overdue since {due}."
            )
        }
        Reminder::Review => {
            buttons.extend([
                button(
                    r,
                    Attest,
                    "Still needed",
                    Style::Primary,
                    Some("still_needed".into()),
                ),
                button(
                    r,
                    Attest,
                    "Changed…",
                    Style::Default,
                    Some("changed".into()),
                ),
                button(
                    r,
                    Attest,
                    "No longer needed",
                    Style::Danger,
                    Some("no_longer_needed".into()),
                ),
            ]);
            format!(
                "{reference} \"{title}\" is due for its periodic review. Is it still needed as approved? {}",
                waiting_for(gov, r)
            )
        }
        Reminder::Expiry { at, .. } => {
            buttons.push(button(r, Renew, "Renew…", Style::Primary, None));
            format!(
                "{reference} \"{title}\" expires in {}, at {}. Renew it to keep using it: the renewal is reviewed again.",
                time_left(*at, now),
                at.minute()
            )
        }
    };
    let mut sections = vec![Section::Text {
        label: None,
        text: text.clone(),
    }];
    if !buttons.is_empty() {
        sections.push(Section::Actions { buttons });
    }
    Message {
        summary: text,
        sections,
    }
}

/// One message listing a recipient's `total` due items (never one message per item);
/// `items` holds the first of them, shown in full as far as the surface has room.
pub fn digest(items: Vec<Message>, total: usize) -> Message {
    let n = total.max(items.len());
    let summary = match items.as_slice() {
        [one] if n == 1 => one.summary.clone(),
        _ => format!("Waiver: {n} reminders"),
    };
    let heading = if n == 1 {
        "Reminder".into()
    } else {
        format!("{n} reminders")
    };
    Message {
        summary,
        sections: vec![
            Section::Heading { text: heading },
            Section::Items {
                items: items.into_iter().map(|m| m.sections).collect(),
                total: n,
            },
        ],
    }
}

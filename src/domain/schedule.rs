//! Step 7 as data: what the scheduler owes a request, and when.
//!
//! [`schedule`] lists every timed item of a request in its current state — the
//! transitions the scheduler applies (activation at the start, review due, expiry at
//! the exact instant) and the reminders it sends (stage SLAs and their escalation,
//! conditions due and overdue, review due, expiry ahead). Each item has a unique key
//! (so it happens once, across replicas) and a family: after downtime only the latest
//! due item of a family is sent, the earlier ones are skipped (catch-up reminds once).
//!
//! PURE: the sweep decides with an explicit `now`.

use crate::governance::{Governance, PersonId, RoleId, Stage};

use super::{Action, ExceptionRequest, State, Timestamp};

/// Who a reminder is for, before platform addresses are known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    Person(PersonId),
    Role(RoleId),
}

/// What a reminder says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reminder {
    /// The role(s) that must act: half the stage's SLA has passed (`overdue` false)
    /// or all of it (`overdue` true).
    Sla {
        stage: Stage,
        deadline: Timestamp,
        overdue: bool,
    },
    /// The escalation role: the stage is past its SLA.
    Escalation { stage: Stage, deadline: Timestamp },
    /// The condition's owner: due today, or past due.
    Condition { id: u32, overdue: bool },
    /// The approvers: a condition is past due.
    ConditionEscalation { id: u32 },
    /// The monitoring owner: attest (still needed / changed / no longer needed).
    Review,
    /// The owner and the requester: the exception expires in `days` days.
    Expiry { days: u32, at: Timestamp },
}

/// What an item does when it is due.
#[derive(Clone, Debug, PartialEq)]
pub enum Due {
    /// A scheduler transition (activate, mark review due, suspend, expire).
    Transition(Action),
    Remind {
        to: Vec<Who>,
        what: Reminder,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Unique across all requests and time: the reminder happens once.
    pub key: String,
    /// Catch-up sends only the latest due item of a family.
    pub family: String,
    pub at: Timestamp,
    pub due: Due,
}

impl Item {
    /// A reminder of `what` to `to` at `at`.
    fn remind(key: String, family: String, at: Timestamp, to: Vec<Who>, what: Reminder) -> Self {
        Self {
            key,
            family,
            at,
            due: Due::Remind { to, what },
        }
    }
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// Every timed item of `r` in its current state, due or not.
pub fn schedule(r: &ExceptionRequest, gov: &Governance) -> Vec<Item> {
    let mut items = Vec::new();
    if r.state.is_terminal() {
        return items;
    }
    let id = r.id.get();
    let transition = |key: &str, at: Timestamp, action: Action| Item {
        key: format!("{key}:{id}:{}", at.millis()),
        family: format!("{key}:{id}"),
        at,
        due: Due::Transition(action),
    };

    // Stage SLAs: remind the role that must act at half the SLA, tell it again and
    // escalate when it is over.
    if let Some((stage, to)) = waiting_roles(r, gov)
        && let Some(sla) = gov.slas.get(&stage)
        && !to.is_empty()
    {
        let since = r.stage_since.millis();
        let deadline = Timestamp::from_millis(since + i64::from(sla.hours) * HOUR);
        let half = Timestamp::from_millis(since + i64::from(sla.hours) * HOUR / 2);
        let family = format!("sla:{id}:{since}");
        for (at, overdue) in [(half, false), (deadline, true)] {
            items.push(Item::remind(
                format!("{family}:{}", if overdue { "over" } else { "half" }),
                family.clone(),
                at,
                to.clone(),
                Reminder::Sla {
                    stage,
                    deadline,
                    overdue,
                },
            ));
        }
        items.push(Item::remind(
            format!("esc:{id}:{since}"),
            format!("esc:{id}:{since}"),
            deadline,
            vec![Who::Role(sla.escalate_to.clone())],
            Reminder::Escalation { stage, deadline },
        ));
    }

    let Some(grant) = &r.grant else {
        return items;
    };
    let granted = matches!(
        r.state,
        State::Approved
            | State::Active
            | State::ReviewDue
            | State::Suspended
            | State::ReassessmentRequired
    );
    if !granted {
        return items;
    }

    // Expiry at the exact instant, reminders at the lead times before it. A lead time
    // that had already passed when the exception was granted is not reminded.
    items.push(transition("expire", grant.expires_at, Action::Expire));
    let family = format!("expiry:{id}:{}", grant.expires_at.millis());
    for days in &gov.reminders.expiry_lead_days {
        let at = Timestamp::from_millis(grant.expires_at.millis() - i64::from(*days) * DAY);
        if at < grant.decided_at {
            continue;
        }
        let mut to = vec![Who::Person(grant.monitoring_owner.clone())];
        if r.requester != grant.monitoring_owner {
            to.push(Who::Person(r.requester.clone()));
        }
        items.push(Item::remind(
            format!("{family}:{days}"),
            family.clone(),
            at,
            to,
            Reminder::Expiry {
                days: *days,
                at: grant.expires_at,
            },
        ));
    }

    // Granted under an older version of its policy than the governance file names
    // (e.g. a suspension lifted after the file changed): reassess now.
    if matches!(r.state, State::Approved | State::Active | State::ReviewDue)
        && let Some(policy) = gov.policy(&r.content().policy)
        && policy.version != r.content().policy_version
    {
        items.push(transition(
            "reassess",
            r.stage_since,
            Action::RequireReassessment {
                policy_version: policy.version.clone(),
            },
        ));
    }

    match r.state {
        State::Approved if r.conditions.iter().all(|c| c.done.is_some()) => {
            items.push(transition("activate", grant.starts_at, Action::Activate));
        }
        State::Active => {
            if let Some(at) = grant.next_review_at {
                items.push(transition("review", at, Action::MarkReviewDue));
            }
        }
        State::ReviewDue => {
            let since = r.stage_since.millis();
            items.push(Item::remind(
                format!("attest:{id}:{since}"),
                format!("attest:{id}:{since}"),
                r.stage_since,
                vec![Who::Person(grant.monitoring_owner.clone())],
                Reminder::Review,
            ));
        }
        _ => {}
    }

    // Conditions: the owner on the due date and the day after; the approvers when
    // it is overdue; suspension after the grace period, if governance suspends.
    if matches!(r.state, State::Approved | State::Active | State::ReviewDue) {
        for c in &r.conditions {
            if let Some(at) = r.suspends_at(c, gov) {
                items.push(transition(
                    &format!("suspend-{}", c.id),
                    at,
                    Action::Suspend { condition: c.id },
                ));
            }
        }
    }
    if matches!(
        r.state,
        State::Approved | State::Active | State::ReviewDue | State::Suspended
    ) {
        let approvers: Vec<Who> = gov
            .tier(grant.tier)
            .approvers
            .iter()
            .cloned()
            .map(Who::Role)
            .collect();
        for c in r.conditions.iter().filter(|c| c.done.is_none()) {
            let due = Timestamp::start_of(c.due);
            let over = Timestamp::from_millis(due.millis() + DAY);
            let family = format!("cond:{id}:{}", c.id);
            for (at, overdue) in [(due, false), (over, true)] {
                items.push(Item::remind(
                    format!("{family}:{}", if overdue { "over" } else { "due" }),
                    family.clone(),
                    at,
                    vec![Who::Person(c.owner.clone())],
                    Reminder::Condition { id: c.id, overdue },
                ));
            }
            items.push(Item::remind(
                format!("cond-esc:{id}:{}", c.id),
                format!("cond-esc:{id}:{}", c.id),
                over,
                approvers.clone(),
                Reminder::ConditionEscalation { id: c.id },
            ));
        }
    }
    items
}

/// The stage a pending request is in and the roles that must act in it.
pub fn waiting_roles(r: &ExceptionRequest, gov: &Governance) -> Option<(Stage, Vec<Who>)> {
    let roles = |rs: Vec<&RoleId>| rs.into_iter().cloned().map(Who::Role).collect();
    match r.state {
        State::Submitted => Some((
            Stage::Completeness,
            vec![Who::Role(gov.workflow.completeness_reviewers.clone())],
        )),
        State::InAssessment | State::ReassessmentRequired => {
            Some((Stage::Assessment, roles(r.missing_assessments())))
        }
        State::InStakeholderReview => {
            Some((Stage::StakeholderReview, roles(r.missing_feedback(gov))))
        }
        State::AwaitingDecision => Some((Stage::Decision, roles(r.missing_approvals(gov)))),
        _ => None,
    }
}

/// When the scheduler next has something to do for `r`, looking from `from`:
/// the earliest transition (whenever it falls: a transition is only listed while it
/// applies) or reminder at or after `from`. `None`: nothing, ever, in this state.
pub fn next_due(r: &ExceptionRequest, gov: &Governance, from: Timestamp) -> Option<Timestamp> {
    schedule(r, gov)
        .into_iter()
        .filter(|i| matches!(i.due, Due::Transition(_)) || i.at >= from)
        .map(|i| i.at)
        .min()
}

/// What a sweep at `now` does for `r`, given the keys it already handled.
pub struct Plan {
    /// The first due transition, if any (after it, the request is swept again).
    pub transition: Option<Item>,
    /// Due reminders to send, at most one per family.
    pub send: Vec<Item>,
    /// Due reminders superseded by a later one of their family (catch-up).
    pub skip: Vec<Item>,
    /// When to look at the request again.
    pub next: Option<Timestamp>,
}

/// Splits `r`'s schedule at `now`: `handled` says whether a key was already done.
pub fn plan(
    r: &ExceptionRequest,
    gov: &Governance,
    now: Timestamp,
    handled: impl Fn(&str) -> bool,
) -> Plan {
    let items = schedule(r, gov);
    let next = items.iter().filter(|i| i.at > now).map(|i| i.at).min();
    // Expiry first: once it has passed, nothing else matters.
    let transition = items
        .iter()
        .filter(|i| i.at <= now)
        .filter_map(|i| match &i.due {
            Due::Transition(a) => Some((rank(a), i)),
            Due::Remind { .. } => None,
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, i)| i.clone());
    let mut send: Vec<Item> = Vec::new();
    let mut skip = Vec::new();
    let mut due: Vec<Item> = items
        .into_iter()
        .filter(|i| i.at <= now && matches!(i.due, Due::Remind { .. }) && !handled(&i.key))
        .collect();
    due.sort_by_key(|i| i.at);
    for item in due.into_iter().rev() {
        if send.iter().any(|s| s.family == item.family) {
            skip.push(item);
        } else {
            send.push(item);
        }
    }
    send.reverse();
    Plan {
        transition,
        send,
        skip,
        next,
    }
}

fn rank(a: &Action) -> u8 {
    match a {
        Action::Expire => 0,
        Action::Suspend { .. } => 1,
        Action::RequireReassessment { .. } => 2,
        Action::Activate => 3,
        _ => 4,
    }
}

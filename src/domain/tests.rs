//! Table-driven tests of the workflow, against the shipped governance file.

use chrono::NaiveDate;

use super::*;
use crate::governance::{self, Governance, PersonId, RoleId, Tier};

const SHIPPED: &str = include_str!("../../manifests/governance.toml");

fn gov() -> Governance {
    governance::parse(SHIPPED).expect("the shipped governance file is valid")
}

fn gov_with(from: &str, to: &str) -> Governance {
    assert!(
        SHIPPED.contains(from),
        "fixture edit {from:?} does not apply"
    );
    governance::parse(&SHIPPED.replacen(from, to, 1)).expect("edited governance is valid")
}

fn p(id: &str) -> PersonId {
    PersonId::new(id)
}

fn who(id: &str) -> Actor {
    Actor::Person(p(id))
}

fn role(id: &str) -> RoleId {
    RoleId::new(id)
}

/// 2026-11-24T10:00:00Z
fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn form() -> FormInput {
    crate::fakes::testkit::sample_form(now().date())
}

fn content_of(input: &FormInput, g: &Governance) -> RequestContent {
    RequestContent::parse(input, g, now().date()).expect("valid form")
}

/// A little world: one request and the governance it runs under.
struct W {
    g: Governance,
    r: ExceptionRequest,
    at: Timestamp,
}

impl W {
    fn new() -> Self {
        Self::filed_by("james.carter", form(), gov())
    }

    fn filed_by(requester: &str, input: FormInput, g: Governance) -> Self {
        let content = content_of(&input, &g);
        let r = ExceptionRequest::submit(RequestId::new(42), p(requester), content, None, now())
            .request;
        Self { g, r, at: now() }
    }

    fn try_do(&self, actor: &str, action: Action) -> Result<Transition, WorkflowError> {
        self.r
            .apply(&who(actor), self.r.version(), action, &self.g, self.at)
    }

    #[track_caller]
    fn act(&mut self, actor: &str, action: Action) -> Event {
        let t = self
            .try_do(actor, action)
            .unwrap_or_else(|e| panic!("{actor} refused: {e}"));
        assert_eq!(t.request.revision, self.r.revision + 1);
        self.r = t.request;
        t.event
    }

    #[track_caller]
    fn system(&mut self, action: Action) -> Event {
        let t = self
            .r
            .apply(&Actor::Scheduler, 0, action, &self.g, self.at)
            .unwrap_or_else(|e| panic!("scheduler refused: {e}"));
        self.r = t.request;
        t.event
    }

    #[track_caller]
    fn refused(&self, actor: &str, action: Action) -> WorkflowError {
        match self.try_do(actor, action) {
            Ok(t) => panic!("{actor} was allowed: {:?}", t.event.name()),
            Err(e) => e,
        }
    }

    fn complete(mut self) -> Self {
        self.act("noah.fischer", Action::MarkComplete);
        self
    }

    /// Every required role scores likelihood × impact.
    fn assessed(mut self, likelihood: u8, impact: u8) -> Self {
        let assessors = [
            ("risk", "omar.haddad"),
            ("security", "tomas.novak"),
            ("privacy", "sofia.marin"),
            ("legal", "claire.dubois"),
            ("compliance", "raj.patel"),
            ("ethics", "david.kim"),
        ];
        for required in self.r.required_roles.clone() {
            let (_, person) = assessors
                .iter()
                .find(|(r, _)| *r == required.as_str())
                .unwrap();
            self.act(person, assess(required.as_str(), likelihood, impact));
        }
        self
    }

    fn stakeholders_done(mut self) -> Self {
        self.act("julia.schmidt", feedback());
        self.act("kenji.watanabe", feedback());
        self
    }
}

fn assess(role_id: &str, likelihood: u8, impact: u8) -> Action {
    Action::Assess(AssessmentInput {
        role: role(role_id),
        likelihood,
        impact,
        findings: "Vendor retains prompts for 30 days.".into(),
        mitigations: "Enterprise plan with zero retention.".into(),
        recommendation: Recommendation::ApproveWithConditions,
    })
}

fn feedback() -> Action {
    Action::Feedback {
        recommendation: Recommendation::Approve,
        text: "Fine by us.".into(),
    }
}

fn terms(start: &str, expiry: &str) -> Terms {
    Terms {
        start: day(start),
        expiry: day(expiry),
        monitoring_owner: p("marcus.webb"),
        conditions: vec![],
    }
}

fn approve(t: Terms) -> Action {
    Action::Approve {
        terms: t,
        confirmation: Some("AIX-0042".into()),
    }
}

fn approve_simple() -> Action {
    approve(terms("2026-11-24", "2027-03-31"))
}

fn reject(reason: &str) -> Action {
    Action::Reject {
        reason: reason.into(),
    }
}

/// Low tier (score 2), awaiting a department head.
fn low_awaiting() -> W {
    W::new().complete().assessed(1, 2)
}

/// High tier (score 16), past stakeholder review, awaiting board + CISO.
fn high_awaiting() -> W {
    W::new().complete().assessed(4, 4).stakeholders_done()
}

fn active_low() -> W {
    let mut w = low_awaiting();
    w.act("carlos.mendes", approve_simple());
    assert_eq!(w.r.state, State::Active);
    w
}

// ---------------------------------------------------------------------------------
// Transitions.

#[test]
fn submission_creates_version_one_awaiting_completeness_review() {
    let w = W::new();
    assert_eq!(w.r.state, State::Submitted);
    assert_eq!(w.r.version(), 1);
    assert_eq!(w.r.reference(), "AIX-0042");
    assert_eq!(w.r.content().policy_version, "2026.2");
}

#[test]
fn completeness_review_routes_to_the_roles_the_rules_require() {
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        &'a str,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        // (exception type, data categories, regions, department, required roles)
        (
            "tool_adoption",
            &["internal"],
            &["us"],
            "engineering",
            &["risk", "security"],
        ),
        (
            "data_handling",
            &["pii"],
            &["us"],
            "marketing",
            &["risk", "privacy"],
        ),
        (
            "data_handling",
            &["phi"],
            &["us"],
            "research",
            &["risk", "privacy", "compliance", "ethics"],
        ),
        (
            "model_deployment",
            &["public"],
            &["us"],
            "product",
            &["risk", "security"],
        ),
        (
            "automated_decision",
            &["pii"],
            &["eu"],
            "people",
            &["risk", "privacy", "ethics", "legal"],
        ),
        (
            "other",
            &["financial"],
            &["us"],
            "finance",
            &["risk", "security", "compliance"],
        ),
        ("other", &["public"], &["apac"], "sales", &["risk"]),
    ];
    for (kind, cats, regions, dept, expected) in cases {
        let mut input = form();
        input.exception_type = kind.to_string();
        input.data_categories = cats.iter().map(|s| s.to_string()).collect();
        input.regions = regions.iter().map(|s| s.to_string()).collect();
        input.department = dept.to_string();
        let mut w = W::filed_by("james.carter", input, gov());
        let event = w.act("noah.fischer", Action::MarkComplete);
        let expected: Vec<RoleId> = expected.iter().map(|r| role(r)).collect();
        assert_eq!(
            w.r.required_roles, expected,
            "{kind} {cats:?} {regions:?} {dept}"
        );
        assert_eq!(w.r.state, State::InAssessment);
        assert!(matches!(event, Event::MarkedComplete { .. }));
    }
}

#[test]
fn send_back_then_update_creates_a_new_version_back_in_the_queue() {
    let mut w = W::new();
    w.act(
        "lucia.romero",
        Action::SendBack {
            questions: "Which repositories?".into(),
        },
    );
    assert_eq!(w.r.state, State::NeedsInfo);
    let mut input = form();
    input.scope_systems = "ingestion and billing repositories".into();
    let content = Box::new(content_of(&input, &w.g));
    let event = w.act(
        "james.carter",
        Action::Update {
            content,
            note: Some("Added billing".into()),
        },
    );
    assert_eq!(w.r.state, State::Submitted);
    assert_eq!(w.r.version(), 2);
    assert_eq!(
        w.r.versions[0].content.scope_systems,
        "ingestion repositories"
    );
    assert!(matches!(event, Event::Updated { version } if version.number == 2));
}

#[test]
fn risk_score_and_tier_follow_the_model_once_every_required_role_has_assessed() {
    let cases: &[(u8, u8, Tier, State)] = &[
        (1, 2, Tier::Low, State::AwaitingDecision),
        (2, 3, Tier::Low, State::AwaitingDecision),
        (3, 3, Tier::Medium, State::InStakeholderReview),
        (4, 4, Tier::High, State::InStakeholderReview),
        (5, 4, Tier::Critical, State::InStakeholderReview),
    ];
    for (l, i, tier, state) in cases {
        let mut w = W::new().complete();
        w.act("omar.haddad", assess("risk", *l, *i));
        assert_eq!(w.r.state, State::InAssessment, "one of two roles assessed");
        assert!(w.r.risk.is_none());
        let event = w.act("tomas.novak", assess("security", 1, 1));
        let risk = w.r.risk.clone().expect("scored");
        assert_eq!(risk.score, l * i, "max of dimensions");
        assert_eq!(risk.tier, *tier);
        assert_eq!(w.r.state, *state);
        assert!(matches!(event, Event::Assessed { risk: Some(_), .. }));
    }
}

#[test]
fn weighted_mean_combines_dimensions_by_weight() {
    let g = gov_with(
        "combine = \"max\"",
        "combine = \"weighted_mean\"\nweights = { privacy = 2.0, security = 1.0, ethical = 1.0, regulatory = 1.0 }",
    );
    let scores = [
        (governance::Dimension::Privacy, 20u8),
        (governance::Dimension::Regulatory, 5),
    ]
    .into_iter()
    .collect();
    // (2×20 + 1×5) / 3 = 15
    assert_eq!(g.risk.combine(&scores), Some(15));
    assert_eq!(g.risk.tier(15), Tier::High);
}

#[test]
fn stakeholder_review_completes_when_every_stakeholder_role_has_given_feedback() {
    let mut w = W::new().complete().assessed(3, 3);
    assert_eq!(w.r.state, State::InStakeholderReview);
    w.act("julia.schmidt", feedback());
    assert_eq!(w.r.state, State::InStakeholderReview);
    assert_eq!(
        w.r.missing_feedback(&w.g),
        vec![&role("technical-stakeholders")]
    );
    let event = w.act("priya.nair", feedback());
    assert!(matches!(
        event,
        Event::FeedbackGiven {
            stage_complete: true,
            ..
        }
    ));
    assert_eq!(w.r.state, State::AwaitingDecision);
}

#[test]
fn approval_without_conditions_starting_today_is_active_at_once() {
    let mut w = low_awaiting();
    let event = w.act("carlos.mendes", approve_simple());
    assert_eq!(w.r.state, State::Active);
    let grant = w.r.grant.clone().unwrap();
    assert_eq!(
        grant.expires_at,
        Timestamp::parse_rfc3339("2027-04-01T00:00:00Z").unwrap()
    );
    assert_eq!(grant.policy_version, "2026.2");
    assert_eq!(grant.governance_hash, w.g.hash);
    // Low tier reviews every 180 days from the start.
    assert_eq!(
        grant.next_review_at, None,
        "expiry comes before the first 180-day review"
    );
    let Event::Voted {
        snapshot,
        grant: Some(_),
        ..
    } = event
    else {
        panic!("expected a deciding vote")
    };
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.assessments.len(), 2);
}

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

/// Approved with two conditions: SSO (Kenji, due 2026-12-15), training (Marcus, due
/// 2027-03-01).
fn approved_with_conditions(g: Governance) -> W {
    let mut w = low_awaiting();
    w.g = g;
    let mut t = terms("2026-11-24", "2027-06-30");
    t.conditions = vec![
        ConditionSpec {
            text: "Enable SSO".into(),
            owner: p("kenji.watanabe"),
            due: day("2026-12-15"),
        },
        ConditionSpec {
            text: "Train the team".into(),
            owner: p("marcus.webb"),
            due: day("2027-03-01"),
        },
    ];
    w.act("carlos.mendes", approve(t));
    assert_eq!(w.r.state, State::Approved);
    w
}

#[test]
fn approval_with_conditions_becomes_active_when_the_owner_marks_them_done() {
    let mut w = approved_with_conditions(gov());
    assert_eq!(w.r.conditions.len(), 2);
    assert_eq!(
        w.r.grant.as_ref().unwrap().next_review_at,
        Some(now().plus_days(180))
    );
    // The condition's own owner may mark it done.
    let e = w.act("kenji.watanabe", Action::CompleteCondition { condition: 1 });
    assert!(matches!(
        e,
        Event::ConditionCompleted {
            activated: false,
            ..
        }
    ));
    assert_eq!(w.r.state, State::Approved);
    // The monitoring owner may mark any condition done.
    let e = w.act("marcus.webb", Action::CompleteCondition { condition: 2 });
    assert!(matches!(
        e,
        Event::ConditionCompleted {
            activated: true,
            ..
        }
    ));
    assert_eq!(w.r.state, State::Active);
}

#[test]
fn a_condition_overdue_past_the_grace_suspends_the_exception_until_it_is_done() {
    let mut w = approved_with_conditions(gov());
    assert_eq!(w.g.reminders.suspend_after_overdue_days, Some(7));
    // Due 2026-12-15, overdue from 2026-12-16, suspended 7 days later.
    let suspend_at = at("2026-12-23T00:00:00Z");
    let suspension = schedule::schedule(&w.r, &w.g)
        .into_iter()
        .find(|i| matches!(i.due, schedule::Due::Transition(Action::Suspend { .. })))
        .expect("the suspension is scheduled");
    assert_eq!(suspension.at, suspend_at);
    assert_eq!(
        suspension.due,
        schedule::Due::Transition(Action::Suspend { condition: 1 })
    );
    let early = Timestamp::from_millis(suspend_at.millis() - 1);
    assert!(matches!(
        w.r.apply(
            &Actor::Scheduler,
            0,
            Action::Suspend { condition: 1 },
            &w.g,
            early
        ),
        Err(WorkflowError::NotDue(_))
    ));
    // Condition 2 is not overdue yet: it does not suspend.
    w.at = suspend_at;
    assert!(matches!(
        w.r.apply(
            &Actor::Scheduler,
            0,
            Action::Suspend { condition: 2 },
            &w.g,
            w.at
        ),
        Err(WorkflowError::NotDue(_))
    ));
    let e = w.system(Action::Suspend { condition: 1 });
    assert!(matches!(e, Event::Suspended { ref condition } if condition.id == 1));
    assert_eq!(w.r.state, State::Suspended);
    assert!(!w.r.state.is_terminal() && !w.r.state.is_pending());
    // Suspended: no second suspension, no attestation; the owner's checklist stays,
    // renewal, revocation and expiry still apply.
    assert!(
        w.r.apply(
            &Actor::Scheduler,
            0,
            Action::Suspend { condition: 1 },
            &w.g,
            w.at
        )
        .is_err()
    );
    assert!(matches!(
        w.refused(
            "marcus.webb",
            Action::Attest {
                answer: AttestationAnswer::StillNeeded,
                note: String::new(),
            },
        ),
        WorkflowError::WrongState { .. }
    ));
    assert_eq!(
        w.r.tasks_for(&p("marcus.webb"), &w.g, w.at),
        vec![Task::MarkDone(1), Task::MarkDone(2)]
    );
    assert!(w.r.may_renew(&p("james.carter")).is_ok());
    assert!(
        w.try_do(
            "raj.patel",
            Action::Revoke {
                reason: "Breach".into()
            }
        )
        .is_ok()
    );
    let expires = w.r.grant.as_ref().unwrap().expires_at;
    assert!(
        w.r.apply(&Actor::Scheduler, 0, Action::Expire, &w.g, expires)
            .is_ok()
    );
    // Nothing but expiry is scheduled as a transition while suspended.
    assert!(schedule::schedule(&w.r, &w.g).iter().all(|i| match &i.due {
        schedule::Due::Transition(a) => *a == Action::Expire,
        schedule::Due::Remind { .. } => true,
    }));

    // Doing the overdue condition lifts the suspension; condition 2 is still open.
    w.at = at("2026-12-24T09:00:00Z");
    let e = w.act("kenji.watanabe", Action::CompleteCondition { condition: 1 });
    assert!(matches!(
        e,
        Event::ConditionCompleted {
            resumed: true,
            activated: false,
            ..
        }
    ));
    assert_eq!(w.r.state, State::Approved);
    assert_eq!(w.r.stage_since, w.at);
}

#[test]
fn a_suspension_lasts_while_any_condition_is_overdue_past_the_grace() {
    let mut w = approved_with_conditions(gov());
    // Both overdue past the grace by 2027-03-10.
    w.at = at("2027-03-10T00:00:00Z");
    w.system(Action::Suspend { condition: 1 });
    let e = w.act("kenji.watanabe", Action::CompleteCondition { condition: 1 });
    assert!(matches!(
        e,
        Event::ConditionCompleted {
            resumed: false,
            activated: false,
            ..
        }
    ));
    assert_eq!(w.r.state, State::Suspended);
    // The last one: resumed and, with every condition done after the start, active.
    let e = w.act("marcus.webb", Action::CompleteCondition { condition: 2 });
    assert!(matches!(
        e,
        Event::ConditionCompleted {
            resumed: true,
            activated: true,
            ..
        }
    ));
    assert_eq!(w.r.state, State::Active);
}

#[test]
fn a_suspended_exception_is_reassessed_only_once_its_suspension_is_lifted() {
    let mut w = approved_with_conditions(gov());
    w.at = at("2027-03-10T00:00:00Z");
    w.system(Action::Suspend { condition: 1 });
    let bump = || Action::RequireReassessment {
        policy_version: "2027.1".into(),
    };
    assert!(matches!(
        w.r.apply(&Actor::Scheduler, 0, bump(), &w.g, w.at),
        Err(WorkflowError::WrongState { .. })
    ));
    // The file moves the policy on while it is suspended; once lifted, the schedule
    // lists the reassessment at once.
    w.g = gov_with("version = \"2026.2\"", "version = \"2027.1\"");
    let reassess = |r: &ExceptionRequest, g: &Governance| {
        schedule::schedule(r, g).into_iter().find(|i| {
            matches!(
                i.due,
                schedule::Due::Transition(Action::RequireReassessment { .. })
            )
        })
    };
    assert!(reassess(&w.r, &w.g).is_none(), "not while suspended");
    w.act("kenji.watanabe", Action::CompleteCondition { condition: 1 });
    w.act("marcus.webb", Action::CompleteCondition { condition: 2 });
    assert_eq!(w.r.state, State::Active);
    let item = reassess(&w.r, &w.g).expect("reassessment scheduled");
    assert_eq!(item.at, w.r.stage_since);
    assert_eq!(item.due, schedule::Due::Transition(bump()));
}

#[test]
fn the_grace_runs_from_the_decision_when_it_came_after_the_due_date() {
    let mut w = approved_with_conditions(gov());
    let decided = at("2027-01-10T15:00:00Z");
    w.r.grant.as_mut().unwrap().decided_at = decided;
    let c = w.r.conditions[0].clone(); // due 2026-12-15
    assert_eq!(w.r.suspends_at(&c, &w.g), Some(decided.plus_days(7)));
}

#[test]
fn without_a_grace_period_overdue_conditions_never_suspend() {
    let g = gov_with("suspend_after_overdue_days = 7\n", "");
    assert_eq!(g.reminders.suspend_after_overdue_days, None);
    let mut w = approved_with_conditions(g);
    w.at = at("2027-06-01T00:00:00Z");
    assert!(matches!(
        w.r.apply(
            &Actor::Scheduler,
            0,
            Action::Suspend { condition: 1 },
            &w.g,
            w.at
        ),
        Err(WorkflowError::NotDue(_))
    ));
    assert!(
        !schedule::schedule(&w.r, &w.g)
            .iter()
            .any(|i| matches!(i.due, schedule::Due::Transition(Action::Suspend { .. })))
    );
    // A zero-day grace suspends the moment the condition is overdue.
    let g = gov_with(
        "suspend_after_overdue_days = 7",
        "suspend_after_overdue_days = 0",
    );
    let w = approved_with_conditions(g);
    let c = &w.r.conditions[0];
    assert_eq!(w.r.suspends_at(c, &w.g), Some(at("2026-12-16T00:00:00Z")));
}

#[test]
fn an_approval_starting_later_activates_at_its_start() {
    let mut w = low_awaiting();
    w.act("carlos.mendes", approve(terms("2026-12-01", "2027-03-31")));
    assert_eq!(w.r.state, State::Approved);
    assert!(matches!(
        w.r.apply(&Actor::Scheduler, 0, Action::Activate, &w.g, now()),
        Err(WorkflowError::NotDue(_))
    ));
    w.at = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    w.system(Action::Activate);
    assert_eq!(w.r.state, State::Active);
}

#[test]
fn a_high_tier_needs_every_approver_role_and_combines_their_terms() {
    let mut w = high_awaiting();
    assert_eq!(w.r.tier(), Some(Tier::High));
    let mut board_terms = terms("2026-11-24", "2027-04-30");
    board_terms.conditions = vec![ConditionSpec {
        text: "Quarterly access review".into(),
        owner: p("kenji.watanabe"),
        due: day("2027-02-01"),
    }];
    w.act("fatima.zahra", approve(board_terms));
    assert_eq!(
        w.r.state,
        State::AwaitingDecision,
        "quorum incomplete: the CISO has not approved"
    );
    assert!(w.r.grant.is_none());
    assert_eq!(w.r.missing_approvals(&w.g), vec![&role("ciso")]);
    w.act("william.hughes", approve(terms("2026-12-01", "2027-05-15")));
    assert_eq!(w.r.state, State::Approved);
    let g = w.r.grant.clone().unwrap();
    assert_eq!(
        g.starts_at,
        Timestamp::start_of(day("2026-12-01")),
        "latest start"
    );
    assert_eq!(
        g.expires_at,
        Timestamp::start_of(day("2027-05-01")),
        "earliest expiry"
    );
    assert_eq!(g.approvers, vec![p("fatima.zahra"), p("william.hughes")]);
    assert_eq!(w.r.conditions.len(), 1);
}

#[test]
fn a_critical_tier_needs_three_roles() {
    let mut w = W::new().complete().assessed(5, 5).stakeholders_done();
    assert_eq!(w.r.tier(), Some(Tier::Critical));
    w.act(
        "sarah.lindqvist",
        approve(terms("2026-11-24", "2027-01-31")),
    );
    w.act("rachel.green", approve(terms("2026-11-24", "2027-01-31")));
    assert_eq!(w.r.state, State::AwaitingDecision);
    w.act("amara.okafor", approve(terms("2026-11-24", "2027-01-31")));
    assert_eq!(w.r.state, State::Active);
}

#[test]
fn any_rejection_ends_the_request_with_its_reason() {
    let mut w = high_awaiting();
    w.act("fatima.zahra", approve(terms("2026-11-24", "2027-04-30")));
    w.act("rachel.green", reject("Vendor has no SOC 2 report."));
    assert_eq!(w.r.state, State::Rejected);
    assert_eq!(
        w.r.closure.as_ref().unwrap().reason,
        "Vendor has no SOC 2 report."
    );
    assert!(w.r.grant.is_none());
}

#[test]
fn the_requester_may_withdraw_at_any_stage_before_a_decision() {
    let setups: Vec<(&str, W)> = vec![
        ("submitted", W::new()),
        ("needs_info", {
            let mut w = W::new();
            w.act(
                "noah.fischer",
                Action::SendBack {
                    questions: "Scope?".into(),
                },
            );
            w
        }),
        ("in_assessment", W::new().complete()),
        ("in_stakeholder_review", W::new().complete().assessed(3, 3)),
        ("awaiting_decision", low_awaiting()),
    ];
    for (name, mut w) in setups {
        w.act(
            "james.carter",
            Action::Withdraw {
                reason: "No longer needed".into(),
            },
        );
        assert_eq!(w.r.state, State::Withdrawn, "from {name}");
    }
    // The business owner may withdraw too (an editor of the request).
    let mut w = W::new();
    w.act(
        "marcus.webb",
        Action::Withdraw {
            reason: String::new(),
        },
    );
    assert_eq!(w.r.state, State::Withdrawn);
}

#[test]
fn compliance_or_a_tier_approver_may_revoke_a_granted_exception() {
    for revoker in ["raj.patel", "hannah.berg", "julia.schmidt"] {
        let mut w = active_low();
        w.act(
            revoker,
            Action::Revoke {
                reason: "Vendor breach".into(),
            },
        );
        assert_eq!(w.r.state, State::Revoked, "{revoker}");
    }
}

#[test]
fn review_attestations_postpone_reassess_or_close() {
    let mut base = W::new().complete().assessed(3, 3).stakeholders_done();
    base.act("hannah.berg", approve(terms("2026-11-24", "2027-08-01")));
    assert_eq!(base.r.state, State::Active);
    let due = base.r.grant.as_ref().unwrap().next_review_at.unwrap();
    assert_eq!(due, now().plus_days(90));
    base.at = due;
    base.system(Action::MarkReviewDue);
    assert_eq!(base.r.state, State::ReviewDue);

    let later = due.plus_hours(5);
    let attest = |answer| Action::Attest {
        answer,
        note: "checked".into(),
    };

    let mut w = W {
        at: later,
        ..clone_w(&base)
    };
    w.act("marcus.webb", attest(AttestationAnswer::StillNeeded));
    assert_eq!(w.r.state, State::Active);
    assert_eq!(
        w.r.grant.as_ref().unwrap().next_review_at,
        Some(later.plus_days(90))
    );

    let mut w = W {
        at: later,
        ..clone_w(&base)
    };
    w.act("marcus.webb", attest(AttestationAnswer::Changed));
    assert_eq!(w.r.state, State::ReassessmentRequired);
    assert_eq!(w.r.version(), 2);
    assert!(
        w.r.grant.is_some(),
        "the grant stays in force during reassessment"
    );

    let mut w = W {
        at: later,
        ..clone_w(&base)
    };
    w.act("marcus.webb", attest(AttestationAnswer::NoLongerNeeded));
    assert_eq!(w.r.state, State::Closed);
}

fn clone_w(w: &W) -> W {
    W {
        g: w.g.clone(),
        r: w.r.clone(),
        at: w.at,
    }
}

#[test]
fn expiry_happens_exactly_at_the_instant_after_the_last_valid_day() {
    let mut w = active_low();
    let expires = w.r.grant.as_ref().unwrap().expires_at;
    w.at = Timestamp::from_millis(expires.millis() - 1);
    assert!(matches!(
        w.r.apply(&Actor::Scheduler, 0, Action::Expire, &w.g, w.at),
        Err(WorkflowError::NotDue(_))
    ));
    w.at = expires;
    let e = w.system(Action::Expire);
    assert_eq!(w.r.state, State::Expired);
    assert!(matches!(e, Event::Expired { .. }));
}

#[test]
fn a_policy_version_change_sends_a_granted_exception_back_to_assessment_with_history() {
    let mut w = active_low();
    let e = w.system(Action::RequireReassessment {
        policy_version: "2027.1".into(),
    });
    assert_eq!(w.r.state, State::ReassessmentRequired);
    assert_eq!(w.r.version(), 2);
    assert_eq!(w.r.content().policy_version, "2027.1");
    assert_eq!(w.r.versions[0].content.policy_version, "2026.2");
    assert!(matches!(e, Event::ReassessmentRequired { .. }));
    // The same version bump twice is nothing to do.
    assert!(matches!(
        w.r.apply(
            &Actor::Scheduler,
            0,
            Action::RequireReassessment {
                policy_version: "2027.1".into()
            },
            &w.g,
            now()
        ),
        Err(WorkflowError::WrongState { .. })
    ));
    // Assessors assess the new version; the new decision replaces the grant.
    let mut w = w.assessed(1, 2);
    assert_eq!(w.r.state, State::AwaitingDecision);
    assert_eq!(w.r.assessments.len(), 4, "both rounds kept");
    w.act("carlos.mendes", approve(terms("2026-11-24", "2027-02-28")));
    assert_eq!(w.r.state, State::Active);
    assert_eq!(w.r.grant.as_ref().unwrap().version, 2);
    assert_eq!(w.r.grant.as_ref().unwrap().policy_version, "2027.1");
}

#[test]
fn renewal_is_open_to_the_requester_and_owner_of_a_granted_exception() {
    let w = active_low();
    assert!(w.r.may_renew(&p("james.carter")).is_ok());
    assert!(w.r.may_renew(&p("marcus.webb")).is_ok());
    assert!(matches!(
        w.r.may_renew(&p("olivia.brown")),
        Err(WorkflowError::NotRenewer { .. })
    ));
    // The renewal starts where the exception ends, for as long as it asked for.
    let input = w.r.renewal_input(now().date());
    assert_eq!(input.title, w.r.content().title);
    assert_eq!(input.start, "2027-04-01");
    assert_eq!(input.end, "2027-09-29");
    let mut expired = clone_w(&w);
    expired.at = expired.r.grant.as_ref().unwrap().expires_at;
    expired.system(Action::Expire);
    assert_eq!(
        expired.r.renewal_input(day("2027-05-02")).start,
        "2027-05-02",
        "an expired exception's renewal starts today"
    );
    assert!(matches!(
        W::new().r.may_renew(&p("james.carter")),
        Err(WorkflowError::WrongState { .. })
    ));
    let renewal = ExceptionRequest::submit(
        RequestId::new(43),
        p("james.carter"),
        w.r.content().clone(),
        Some(w.r.id),
        now(),
    );
    assert_eq!(renewal.request.renews, Some(RequestId::new(42)));
    assert_eq!(
        renewal.request.state,
        State::Submitted,
        "a renewal is reviewed again"
    );
}

#[test]
fn thread_replies_are_recorded_as_comments_on_the_current_version() {
    let mut w = W::new().complete();
    let e = w.act(
        "olivia.brown",
        Action::Comment {
            text: "We need this for Q1".into(),
        },
    );
    assert!(matches!(e, Event::Commented { .. }));
    assert_eq!(w.r.comments[0].via, CommentVia::Thread);
    assert_eq!(w.r.state, State::InAssessment);
}

// ---------------------------------------------------------------------------------
// Refusals.

type Setup = fn() -> W;

#[test]
fn refusals_name_the_rule_that_was_broken() {
    fn carlos_files_low() -> W {
        let mut input = form();
        input.business_owner = Some(p("julia.schmidt"));
        W::filed_by("carlos.mendes", input, gov())
            .complete()
            .assessed(1, 2)
    }
    fn omar_files() -> W {
        W::filed_by("omar.haddad", form(), gov()).complete()
    }
    fn ethics_assessed_high() -> W {
        let mut input = form();
        input.exception_type = "automated_decision".into();
        let mut w = W::filed_by("james.carter", input, gov()).complete();
        w.act("fatima.zahra", assess("ethics", 4, 4));
        w.act("omar.haddad", assess("risk", 2, 2));
        w.act("claire.dubois", assess("legal", 2, 2));
        w.stakeholders_done()
    }
    fn owner_edited() -> W {
        let mut w = W::new();
        let content = Box::new(content_of(&form(), &w.g));
        w.act(
            "marcus.webb",
            Action::Update {
                content,
                note: None,
            },
        );
        w
    }
    fn board_approved() -> W {
        let mut w = high_awaiting();
        w.act("hannah.berg", approve(terms("2026-11-24", "2027-04-30")));
        w
    }
    fn with_conditions() -> W {
        let mut w = low_awaiting();
        let mut t = terms("2026-11-24", "2027-03-31");
        t.conditions = vec![ConditionSpec {
            text: "SSO".into(),
            owner: p("kenji.watanabe"),
            due: day("2026-12-01"),
        }];
        w.act("carlos.mendes", approve(t));
        w.act("kenji.watanabe", Action::CompleteCondition { condition: 1 });
        w
    }
    fn one_assessed() -> W {
        let mut w = W::new().complete();
        w.act("omar.haddad", assess("risk", 2, 2));
        w
    }
    fn in_feedback() -> W {
        let mut w = W::new().complete().assessed(3, 3);
        w.act("julia.schmidt", feedback());
        w
    }

    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Setup, &str, Action, fn(&WorkflowError) -> bool)> = vec![
        (
            "self-approval",
            carlos_files_low,
            "carlos.mendes",
            approve_simple(),
            |e| matches!(e, WorkflowError::OwnRequest { .. }),
        ),
        (
            "business owner approving",
            carlos_files_low,
            "julia.schmidt",
            approve_simple(),
            |e| matches!(e, WorkflowError::OwnRequest { .. }),
        ),
        (
            "self-assessment",
            omar_files,
            "omar.haddad",
            assess("risk", 1, 1),
            |e| matches!(e, WorkflowError::OwnRequest { .. }),
        ),
        (
            "editor reviewing completeness",
            owner_edited,
            "marcus.webb",
            Action::MarkComplete,
            |e| matches!(e, WorkflowError::NotAMember { .. }),
        ),
        (
            "non-member completeness review",
            W::new,
            "james.carter",
            Action::MarkComplete,
            |e| matches!(e, WorkflowError::NotAMember { .. }),
        ),
        (
            "non-member assessment",
            || W::new().complete(),
            "sofia.marin",
            assess("security", 1, 1),
            |e| matches!(e, WorkflowError::NotAMember { .. }),
        ),
        (
            "non-member approval",
            low_awaiting,
            "noah.fischer",
            approve_simple(),
            |e| matches!(e, WorkflowError::NotAMember { .. }),
        ),
        (
            "approver of another tier",
            high_awaiting,
            "carlos.mendes",
            approve_simple(),
            |e| matches!(e, WorkflowError::NotAMember { .. }),
        ),
        (
            "assessor approving",
            ethics_assessed_high,
            "fatima.zahra",
            approve_simple(),
            |e| matches!(e, WorkflowError::AssessorCannotApprove { .. }),
        ),
        (
            "double vote",
            board_approved,
            "hannah.berg",
            approve_simple(),
            |e| matches!(e, WorkflowError::AlreadyVoted { .. }),
        ),
        (
            "second vote for a decided role",
            board_approved,
            "michael.oconnor",
            approve_simple(),
            |e| matches!(e, WorkflowError::RoleAlreadyDecided { .. }),
        ),
        (
            "role already assessed",
            one_assessed,
            "grace.liu",
            assess("risk", 1, 1),
            |e| matches!(e, WorkflowError::AlreadyAssessed { .. }),
        ),
        (
            "role not required",
            one_assessed,
            "sofia.marin",
            assess("privacy", 1, 1),
            |e| matches!(e, WorkflowError::RoleNotRequired { .. }),
        ),
        (
            "score out of range",
            one_assessed,
            "tomas.novak",
            assess("security", 6, 1),
            |e| matches!(e, WorkflowError::ScoreOutOfRange),
        ),
        (
            "double feedback",
            in_feedback,
            "julia.schmidt",
            feedback(),
            |e| matches!(e, WorkflowError::AlreadyVoted { .. }),
        ),
        (
            "stakeholder feedback on their own request",
            in_feedback,
            "marcus.webb",
            feedback(),
            |e| matches!(e, WorkflowError::OwnRequest { .. }),
        ),
        (
            "feedback by a non-stakeholder",
            in_feedback,
            "omar.haddad",
            feedback(),
            |e| matches!(e, WorkflowError::NotAMember { .. }),
        ),
        (
            "missing rejection reason",
            low_awaiting,
            "carlos.mendes",
            reject("   "),
            |e| matches!(e, WorkflowError::MissingReason),
        ),
        (
            "missing send-back questions",
            W::new,
            "noah.fischer",
            Action::SendBack {
                questions: "".into(),
            },
            |e| matches!(e, WorkflowError::MissingReason),
        ),
        (
            "expiry beyond the tier maximum",
            low_awaiting,
            "carlos.mendes",
            approve(terms("2026-11-24", "2027-11-25")),
            |e| matches!(e, WorkflowError::ExpiryBeyondMaximum { max_days: 365, .. }),
        ),
        (
            "expiry before start",
            low_awaiting,
            "carlos.mendes",
            approve(terms("2026-12-24", "2026-12-01")),
            |e| {
                matches!(
                    e,
                    WorkflowError::InvalidField {
                        field: Field::Expiry,
                        ..
                    }
                )
            },
        ),
        (
            "start in the past",
            low_awaiting,
            "carlos.mendes",
            approve(terms("2026-11-01", "2026-12-01")),
            |e| {
                matches!(
                    e,
                    WorkflowError::InvalidField {
                        field: Field::Start,
                        ..
                    }
                )
            },
        ),
        (
            "typed confirmation missing",
            high_awaiting,
            "hannah.berg",
            Action::Approve {
                terms: terms("2026-11-24", "2027-01-01"),
                confirmation: Some("AIX-42 ok".into()),
            },
            |e| {
                matches!(
                    e,
                    WorkflowError::ConfirmationMismatch {
                        tier: Tier::High,
                        ..
                    }
                )
            },
        ),
        (
            "decision before assessment",
            W::new,
            "carlos.mendes",
            approve_simple(),
            |e| matches!(e, WorkflowError::WrongState { .. }),
        ),
        (
            "assessment before completeness",
            W::new,
            "omar.haddad",
            assess("risk", 1, 1),
            |e| matches!(e, WorkflowError::WrongState { .. }),
        ),
        (
            "withdrawal by someone else",
            W::new,
            "olivia.brown",
            Action::Withdraw { reason: "".into() },
            |e| matches!(e, WorkflowError::NotRequester { .. }),
        ),
        (
            "withdrawal after approval",
            active_low,
            "james.carter",
            Action::Withdraw { reason: "".into() },
            |e| matches!(e, WorkflowError::WrongState { .. }),
        ),
        (
            "update by someone else",
            W::new,
            "olivia.brown",
            Action::Update {
                content: Box::new(content_of(&form(), &gov())),
                note: None,
            },
            |e| matches!(e, WorkflowError::NotRequester { .. }),
        ),
        (
            "revocation by a non-revoker",
            active_low,
            "olivia.brown",
            Action::Revoke { reason: "x".into() },
            |e| matches!(e, WorkflowError::NotARevoker { .. }),
        ),
        (
            "revocation without reason",
            active_low,
            "raj.patel",
            Action::Revoke { reason: "".into() },
            |e| matches!(e, WorkflowError::MissingReason),
        ),
        (
            "revocation before a grant",
            low_awaiting,
            "raj.patel",
            Action::Revoke { reason: "x".into() },
            |e| matches!(e, WorkflowError::WrongState { .. }),
        ),
        (
            "condition by a stranger",
            with_conditions,
            "olivia.brown",
            Action::CompleteCondition { condition: 1 },
            |e| matches!(e, WorkflowError::NotMonitoringOwner { .. }),
        ),
        (
            "condition done twice",
            with_conditions,
            "marcus.webb",
            Action::CompleteCondition { condition: 1 },
            |e| matches!(e, WorkflowError::ConditionAlreadyDone { .. }),
        ),
        (
            "unknown condition",
            with_conditions,
            "marcus.webb",
            Action::CompleteCondition { condition: 9 },
            |e| matches!(e, WorkflowError::UnknownCondition { .. }),
        ),
        (
            "attestation by a stranger",
            active_low,
            "james.carter",
            Action::Attest {
                answer: AttestationAnswer::StillNeeded,
                note: "".into(),
            },
            |e| matches!(e, WorkflowError::NotMonitoringOwner { .. }),
        ),
        (
            "people cannot run scheduler actions",
            active_low,
            "raj.patel",
            Action::Expire,
            |e| matches!(e, WorkflowError::WrongState { .. }),
        ),
    ];
    for (name, setup, actor, action, expected) in cases {
        let w = setup();
        let before = w.r.clone();
        let err = w.refused(actor, action);
        assert!(expected(&err), "{name}: unexpected refusal {err:?}");
        assert!(!err.to_string().is_empty());
        assert_eq!(w.r, before, "{name}: a refusal changes nothing");
    }
}

#[test]
fn one_person_in_two_required_roles_assesses_only_once() {
    let g = gov_with(
        "members = [\"sofia.marin\", \"ben.adeyemi\"]",
        "members = [\"sofia.marin\", \"omar.haddad\"]",
    );
    let mut input = form();
    input.data_categories = vec!["pii".into()];
    let mut w = W::filed_by("james.carter", input, g);
    w.act("noah.fischer", Action::MarkComplete);
    w.act("omar.haddad", assess("risk", 2, 2));
    let err = w.refused("omar.haddad", assess("privacy", 2, 2));
    assert!(matches!(err, WorkflowError::AlreadyVoted { .. }), "{err:?}");
}

#[test]
fn a_card_for_an_outdated_version_is_refused() {
    let mut w = W::new();
    w.act(
        "noah.fischer",
        Action::SendBack {
            questions: "Scope?".into(),
        },
    );
    let content = Box::new(content_of(&form(), &w.g));
    w.act(
        "james.carter",
        Action::Update {
            content,
            note: None,
        },
    );
    let err =
        w.r.apply(&who("noah.fischer"), 1, Action::MarkComplete, &w.g, now())
            .unwrap_err();
    assert!(
        matches!(
            err,
            WorkflowError::OutdatedVersion {
                seen: 1,
                current: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 1"));
}

#[test]
fn nothing_changes_a_request_in_a_terminal_state() {
    let mut withdrawn = W::new();
    withdrawn.act("james.carter", Action::Withdraw { reason: "".into() });
    let mut rejected = low_awaiting();
    rejected.act("carlos.mendes", reject("No"));
    let mut revoked = active_low();
    revoked.act(
        "raj.patel",
        Action::Revoke {
            reason: "Breach".into(),
        },
    );
    let mut expired = active_low();
    expired.at = expired.r.grant.as_ref().unwrap().expires_at;
    expired.system(Action::Expire);
    let mut closed = active_low();
    closed.act(
        "marcus.webb",
        Action::Attest {
            answer: AttestationAnswer::NoLongerNeeded,
            note: "".into(),
        },
    );

    let actions = || -> Vec<(&'static str, Action)> {
        vec![
            ("noah.fischer", Action::MarkComplete),
            ("omar.haddad", assess("risk", 1, 1)),
            ("carlos.mendes", approve_simple()),
            ("carlos.mendes", reject("x")),
            ("james.carter", Action::Withdraw { reason: "".into() }),
            ("raj.patel", Action::Revoke { reason: "x".into() }),
            ("marcus.webb", Action::CompleteCondition { condition: 1 }),
            (
                "olivia.brown",
                Action::Comment {
                    text: "hello".into(),
                },
            ),
        ]
    };
    for w in [withdrawn, rejected, revoked, expired, closed] {
        assert!(w.r.state.is_terminal());
        for (actor, action) in actions() {
            let name = action.name();
            let err = w.refused(actor, action);
            assert!(
                matches!(err, WorkflowError::Terminal { .. }),
                "{} {name}: {err:?}",
                w.r.state
            );
        }
        for action in [
            Action::Expire,
            Action::Activate,
            Action::MarkReviewDue,
            Action::Suspend { condition: 1 },
        ] {
            assert!(matches!(
                w.r.apply(&Actor::Scheduler, 0, action, &w.g, w.at),
                Err(WorkflowError::Terminal { .. })
            ));
        }
    }
}

#[test]
fn the_form_reports_each_bad_field() {
    let g = gov();
    let mut input = form();
    input.title = "  ".into();
    input.policy = "nope".into();
    input.data_categories = vec![];
    input.regions = vec!["mars".into()];
    input.start = "2026-11-01".into();
    input.end = "yesterday".into();
    input.justification = "Looks fine\u{202E}txt.exe".into();
    input.business_owner = None;
    let errors = RequestContent::parse(&input, &g, now().date()).unwrap_err();
    let fields: Vec<Field> = errors.keys().copied().collect();
    assert_eq!(
        fields,
        vec![
            Field::Title,
            Field::Policy,
            Field::Justification,
            Field::DataCategories,
            Field::Regions,
            Field::Start,
            Field::End,
            Field::BusinessOwner
        ]
    );
    let mut input = form();
    input.end = input.start.clone();
    let errors = RequestContent::parse(&input, &g, now().date()).unwrap_err();
    assert_eq!(errors[&Field::End], "The end must be after the start.");
}

// ---------------------------------------------------------------------------------
// Text ↔ enum mappings.

#[test]
fn text_forms_round_trip() {
    for s in State::ALL {
        assert_eq!(State::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    for t in Tier::ALL {
        assert_eq!(Tier::parse(t.as_str()), Some(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
    for d in governance::Dimension::ALL {
        assert_eq!(governance::Dimension::parse(d.as_str()), Some(d));
    }
    for f in Field::FIXED {
        assert_eq!(Field::parse(&f.id()), Some(f));
    }
    for part in [
        ConditionPart::Text,
        ConditionPart::Owner,
        ConditionPart::Due,
    ] {
        let f = Field::Condition(3, part);
        assert_eq!(Field::parse(&f.id()), Some(f));
    }
    assert_eq!(Field::Condition(2, ConditionPart::Due).id(), "c2_due");
    assert_eq!(Field::parse("c0_due"), None);
    assert_eq!(Field::parse("cx_text"), None);
    for r in Recommendation::ALL {
        assert_eq!(Recommendation::parse(r.as_str()), Some(r));
    }
    for a in AttestationAnswer::ALL {
        assert_eq!(AttestationAnswer::parse(a.as_str()), Some(a));
    }
    for (text, id) in [
        ("AIX-0042", 42),
        ("aix-42", 42),
        (" 7 ", 7),
        ("AIX-12345", 12345),
    ] {
        assert_eq!(RequestId::parse(text), Some(RequestId::new(id)), "{text}");
    }
    for bad in [
        "",
        "AIX-",
        "AIX-0",
        "AIX-4x",
        "BIX-42",
        "-3",
        "99999999999999",
    ] {
        assert_eq!(RequestId::parse(bad), None, "{bad}");
    }
    assert_eq!(RequestId::new(7).to_string(), "AIX-0007");
}

//! Drives one request through the service, for storage and scheduler tests.

use chrono::NaiveDate;
use waiver::domain::{
    Action, Actor, AssessmentInput, ConditionSpec, ExceptionRequest, Recommendation, RequestId,
    Terms,
};
use waiver::governance::RoleId;
use waiver::service::{Acted, Attempt, Service, Submitted};

use super::{form, now, p};

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub fn assess(role: &str, l: u8, i: u8) -> Action {
    Action::Assess(AssessmentInput {
        role: RoleId::new(role),
        likelihood: l,
        impact: i,
        findings: "Prompts are retained for 30 days.".into(),
        mitigations: "Zero-retention plan.".into(),
        recommendation: Recommendation::ApproveWithConditions,
    })
}

pub fn feedback() -> Action {
    Action::Feedback {
        recommendation: Recommendation::Approve,
        text: "Fine".into(),
    }
}

pub fn approve(conditions: Vec<ConditionSpec>) -> Action {
    Action::Approve {
        terms: Terms {
            start: day("2026-11-24"),
            expiry: day("2027-03-31"),
            monitoring_owner: p("marcus.webb"),
            conditions,
        },
        confirmation: Some("AIX-0001".into()),
    }
}

/// Drives one request through the service.
pub struct Flow {
    pub svc: Service,
    pub id: RequestId,
}

impl Flow {
    pub async fn file(svc: Service) -> Self {
        match svc
            .submit(&p("james.carter"), &form(), None, now())
            .await
            .unwrap()
        {
            Submitted::Filed(r) => Flow { svc, id: r.id },
            other => panic!("not filed: {other:?}"),
        }
    }

    pub async fn request(&self) -> ExceptionRequest {
        self.svc.request(self.id).await.unwrap().unwrap()
    }

    pub async fn act(&self, who: &str, action: Action) -> ExceptionRequest {
        let seen = self.request().await.version();
        match self
            .svc
            .act(
                Attempt::new(Actor::Person(p(who)), self.id, seen, action),
                now(),
            )
            .await
            .unwrap()
        {
            Acted::Applied { request, .. } => *request,
            other => panic!("{who}: {other:?}"),
        }
    }

    /// Through completeness and assessment at likelihood × impact.
    pub async fn assessed(&self, l: u8, i: u8) {
        self.act("noah.fischer", Action::MarkComplete).await;
        self.act("omar.haddad", assess("risk", l, i)).await;
        self.act("tomas.novak", assess("security", 1, 1)).await;
    }
}

/// Four requests: one approved with a condition, one rejected, one withdrawn, one
/// sent back and updated; then a sweep weeks later that escalates the last (overdue
/// in completeness review) and reminds its reviewers.
pub async fn four_lifecycles(svc: &Service) -> Vec<RequestId> {
    let approved = Flow::file(svc.clone()).await;
    approved.assessed(3, 3).await;
    approved.act("julia.schmidt", feedback()).await;
    approved.act("kenji.watanabe", feedback()).await;
    let r = approved
        .act(
            "hannah.berg",
            approve(vec![ConditionSpec {
                text: "Enable SSO".into(),
                owner: p("kenji.watanabe"),
                due: day("2026-12-15"),
            }]),
        )
        .await;
    assert_eq!(r.state, waiver::domain::State::Approved);

    let rejected = Flow::file(svc.clone()).await;
    rejected.assessed(3, 3).await;
    rejected.act("julia.schmidt", feedback()).await;
    rejected.act("kenji.watanabe", feedback()).await;
    rejected
        .act(
            "hannah.berg",
            Action::Reject {
                reason: "Use the approved transcription service instead.".into(),
            },
        )
        .await;

    let withdrawn = Flow::file(svc.clone()).await;
    withdrawn
        .act(
            "james.carter",
            Action::Withdraw {
                reason: "No longer needed.".into(),
            },
        )
        .await;

    let sent_back = Flow::file(svc.clone()).await;
    sent_back
        .act(
            "noah.fischer",
            Action::SendBack {
                questions: "Which vendor?".into(),
            },
        )
        .await;
    let mut content = sent_back.request().await.content().clone();
    content.title = "Voice notes to text (vendor named)".into();
    sent_back
        .act(
            "james.carter",
            Action::Update {
                content: Box::new(content),
                note: Some("answers".into()),
            },
        )
        .await;

    // The condition falls due: the scheduler reminds its owner (a digest entry).
    let report = svc
        .sweep(
            waiver::domain::Timestamp::start_of(day("2026-12-14")).plus_hours(9),
            false,
        )
        .await
        .unwrap();
    assert!(!report.digests.is_empty(), "a reminder was sent");
    vec![approved.id, rejected.id, withdrawn.id, sent_back.id]
}

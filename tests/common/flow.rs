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

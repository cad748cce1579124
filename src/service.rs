//! The one orchestrator: load → the pure domain decides → the store commits the new
//! state, its audit entry and the messages it causes, in one transaction.
//!
//! Refusals are expected outcomes: they are recorded in the audit trail and returned
//! as [`Acted::Refused`] for the chat surface to explain. Concurrent changes to the
//! same request are retried from a fresh read: the domain re-checks everything, so a
//! retry can only succeed if the action is still valid.

use std::sync::Arc;

use serde_json::json;

use crate::chat::{self, Outgoing};
use crate::domain::{
    Action, Actor, Event, ExceptionRequest, FieldErrors, FormInput, RequestContent, RequestId,
    Timestamp, WorkflowError,
};
use crate::governance::{Governance, PersonId};
use crate::store::{AuditRecord, Change, NewRequest, Outcome, Store, StoreError};

/// Attempts before a contended request gives up (each retry re-reads and re-decides).
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} does not exist")]
    NotFound(RequestId),
    #[error("{0} is changing too often right now; try again")]
    Busy(RequestId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How an action ended.
#[derive(Debug)]
pub enum Acted {
    Applied {
        before: Box<ExceptionRequest>,
        request: Box<ExceptionRequest>,
        event: Box<Event>,
    },
    Refused {
        request: Box<ExceptionRequest>,
        error: WorkflowError,
    },
    /// The same delivery (idempotency key) was processed before.
    Duplicate,
}

#[derive(Debug)]
pub enum Submitted {
    Filed(Box<ExceptionRequest>),
    Invalid(FieldErrors),
    Refused(WorkflowError),
}

#[derive(Clone)]
pub struct Service {
    pub store: Store,
    gov: Arc<Governance>,
}

impl Service {
    pub fn new(store: Store, gov: Arc<Governance>) -> Self {
        Self { store, gov }
    }

    pub fn governance(&self) -> &Arc<Governance> {
        &self.gov
    }

    /// Files a new request (or a renewal of `renews`).
    pub async fn submit(
        &self,
        requester: &PersonId,
        input: &FormInput,
        renews: Option<RequestId>,
        now: Timestamp,
    ) -> Result<Submitted, ServiceError> {
        let gov = self.gov.clone();
        let content = match RequestContent::parse(input, &gov, now.date()) {
            Ok(c) => c,
            Err(errors) => return Ok(Submitted::Invalid(errors)),
        };
        if let Some(old_id) = renews {
            let old = self
                .store
                .load(old_id)
                .await?
                .ok_or(ServiceError::NotFound(old_id))?;
            if let Err(error) = old.may_renew(requester) {
                self.refuse(
                    &Actor::Person(requester.clone()),
                    &old,
                    "renew",
                    &error,
                    now,
                    None,
                )
                .await?;
                return Ok(Submitted::Refused(error));
            }
        }
        let requester = requester.clone();
        let new = self
            .store
            .create(move |id| {
                let t = ExceptionRequest::submit(id, requester.clone(), content, renews, now);
                let outbox = chat::plan(&gov, None, &t.request, &t.event);
                let audit = applied(
                    &Actor::Person(requester),
                    "submit",
                    None,
                    &t.request,
                    &t.event,
                    now,
                );
                NewRequest {
                    request: t.request,
                    event: t.event,
                    audit,
                    outbox,
                }
            })
            .await?;
        let request = new.request;
        Ok(Submitted::Filed(Box::new(request)))
    }

    /// `actor`, who saw version `seen` of request `id`, does `action` at `now`.
    pub async fn act(
        &self,
        actor: &Actor,
        id: RequestId,
        seen: u32,
        action: Action,
        now: Timestamp,
        idempotency_key: Option<String>,
    ) -> Result<Acted, ServiceError> {
        for _ in 0..MAX_ATTEMPTS {
            let before = self
                .store
                .load(id)
                .await?
                .ok_or(ServiceError::NotFound(id))?;
            let t = match before.apply(actor, seen, action.clone(), &self.gov, now) {
                Ok(t) => t,
                Err(error) => {
                    let recorded = self
                        .refuse(
                            actor,
                            &before,
                            action.name(),
                            &error,
                            now,
                            idempotency_key.clone(),
                        )
                        .await;
                    return match recorded {
                        Ok(()) => Ok(Acted::Refused {
                            request: Box::new(before),
                            error,
                        }),
                        Err(StoreError::Duplicate) => Ok(Acted::Duplicate),
                        Err(e) => Err(e.into()),
                    };
                }
            };
            let outbox = chat::plan(&self.gov, Some(&before), &t.request, &t.event);
            let audit = applied(
                actor,
                action.name(),
                Some(&before),
                &t.request,
                &t.event,
                now,
            );
            let change = Change {
                event: &t.event,
                audit,
                outbox,
                idempotency_key: idempotency_key.clone(),
            };
            match self.store.commit(&before, &t.request, change).await {
                Ok(_) => {
                    return Ok(Acted::Applied {
                        before: Box::new(before),
                        request: Box::new(t.request),
                        event: Box::new(t.event),
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Duplicate) => return Ok(Acted::Duplicate),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy(id))
    }

    async fn refuse(
        &self,
        actor: &Actor,
        request: &ExceptionRequest,
        action: &str,
        error: &WorkflowError,
        now: Timestamp,
        idempotency_key: Option<String>,
    ) -> Result<(), StoreError> {
        let audit = AuditRecord {
            at: now,
            actor: actor.audit_name(),
            request: Some(request.id),
            action: action.to_string(),
            outcome: Outcome::Refused,
            details: json!({
                "reason": error.to_string(),
                "state": request.state,
                "version": request.version(),
            }),
        };
        self.store
            .record(audit, Vec::new(), idempotency_key)
            .await?;
        Ok(())
    }

    /// Records a refusal that happened before any request was involved (an unknown
    /// person, a malformed reference), so that the audit trail shows the attempt.
    pub async fn record_refusal(
        &self,
        actor: &str,
        request: Option<RequestId>,
        action: &str,
        reason: &str,
        now: Timestamp,
        outbox: Vec<Outgoing>,
    ) -> Result<(), StoreError> {
        let audit = AuditRecord {
            at: now,
            actor: actor.to_string(),
            request,
            action: action.to_string(),
            outcome: Outcome::Refused,
            details: json!({ "reason": reason }),
        };
        self.store.record(audit, outbox, None).await?;
        Ok(())
    }
}

fn applied(
    actor: &Actor,
    action: &str,
    before: Option<&ExceptionRequest>,
    after: &ExceptionRequest,
    event: &Event,
    now: Timestamp,
) -> AuditRecord {
    AuditRecord {
        at: now,
        actor: actor.audit_name(),
        request: Some(after.id),
        action: action.to_string(),
        outcome: Outcome::Applied,
        details: json!({
            "from": before.map(|b| b.state),
            "to": after.state,
            "version": after.version(),
            "revision": after.revision,
            "event": event,
        }),
    }
}

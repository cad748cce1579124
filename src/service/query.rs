//! The read side: what people and the register ask for. Every query is a fixed
//! number of statements whatever the size of the register (batched loads, never one
//! query per request); surfaces reach the store only through these.

use super::{Service, ServiceError};
use crate::domain::{ExceptionRequest, RequestId, State, Summary, Task, Timestamp};
use crate::governance::{PersonId, RoleId, Stage, Tier};
use crate::message::Platform;
use crate::store::{
    EventRecord, OverdueCondition, RegisterFilter, RegisterGroup, RegisterRow, TaskQuery,
};

/// Candidates read per kind of work when listing what waits on someone.
const TASK_CANDIDATES: i64 = 100;

/// What waits on a person.
#[derive(Debug, Default)]
pub struct Tasks {
    pub items: Vec<(ExceptionRequest, Task)>,
    /// Some kind of work had more candidates than were read: there may be more.
    pub truncated: bool,
}

/// One line of a request's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// Who acted; `None` for Waiver itself (the scheduler).
    pub by: Option<PersonId>,
    /// What happened (`submitted`, `sent_back`, `approved`, …).
    pub kind: String,
    pub version: u32,
}

/// App Home: my requests, my tasks, the exceptions I monitor.
#[derive(Debug, Default)]
pub struct Home {
    pub mine: Vec<Summary>,
    pub tasks: Tasks,
    pub owned: Vec<Summary>,
}

/// The register at a glance (the dashboard and the metrics read these).
#[derive(Debug, Default)]
pub struct Overview {
    pub by_state: Vec<(State, u64)>,
    /// Granted exceptions expiring within the window asked for, soonest first.
    pub expiring: Vec<Summary>,
    /// Exceptions whose review is due and not yet attested.
    pub reviews_due: Vec<Summary>,
    /// Open conditions past their due date.
    pub overdue_conditions: Vec<OverdueCondition>,
    pub suspended: Vec<Summary>,
    pub reassessment: Vec<Summary>,
}

/// What waits, at one stage of the workflow, on whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub state: State,
    /// The SLA'd stage, when the state is one.
    pub stage: Option<Stage>,
    /// The roles that act (empty: the people the request names — its requester, its
    /// required assessors, its monitoring owner).
    pub roles: Vec<RoleId>,
    pub tier: Option<Tier>,
    pub count: u64,
    /// How many are past the stage's SLA.
    pub overdue: u64,
    pub sla_hours: Option<u32>,
}

/// The register dashboard's figures: the overview, the filtered register's counts by
/// every dimension, its newest rows and what waits on whom.
#[derive(Debug, Default)]
pub struct Register {
    pub overview: Overview,
    pub groups: Vec<RegisterGroup>,
    pub rows: Vec<RegisterRow>,
    pub waiting: Vec<Waiting>,
}

/// The states that wait on someone, in workflow order.
const WAITING: [State; 6] = [
    State::Submitted,
    State::NeedsInfo,
    State::InAssessment,
    State::InStakeholderReview,
    State::AwaitingDecision,
    State::ReviewDue,
];

impl Service {
    /// The register at `now`, narrowed by `filter` (the overview's lists are the whole
    /// register's): at most `limit` rows. A fixed number of statements.
    pub async fn register(
        &self,
        filter: &RegisterFilter,
        now: Timestamp,
        limit: i64,
    ) -> Result<Register, ServiceError> {
        let gov = self.governance().clone();
        let stage_of = |state: State| match state {
            State::Submitted => Some(Stage::Completeness),
            State::InAssessment => Some(Stage::Assessment),
            State::InStakeholderReview => Some(Stage::StakeholderReview),
            State::AwaitingDecision => Some(Stage::Decision),
            _ => None,
        };
        let cutoff = |state: State| {
            let hours = stage_of(state)
                .and_then(|s| gov.slas.get(&s))
                .map(|s| i64::from(s.hours));
            match hours {
                Some(h) => Timestamp::from_millis(now.millis() - h * 3_600_000),
                None => Timestamp::from_millis(i64::MIN),
            }
        };
        let s = &self.store;
        // Only the stages the filter lets through (none for, say, `state=active`).
        let cutoffs: Vec<(State, Timestamp)> = WAITING
            .into_iter()
            .filter(|st| stage_of(*st).is_some() && filter.state.is_none_or(|f| f == *st))
            .map(|st| (st, cutoff(st)))
            .collect();
        let (
            groups,
            rows,
            late,
            expiring,
            reviews_due,
            overdue_conditions,
            suspended,
            reassessment,
        ) = tokio::try_join!(
            s.register_groups(filter),
            s.register_rows(filter, limit),
            s.overdue_by_stage(filter, &cutoffs),
            s.expiring(now, now.plus_days(30), limit),
            s.summaries_in(State::ReviewDue, limit),
            s.overdue_conditions(now.date(), limit),
            s.summaries_in(State::Suspended, limit),
            s.summaries_in(State::ReassessmentRequired, limit),
        )?;
        // Counts by state and by stage and tier, from the filtered register's groups.
        let mut by_state: Vec<(State, u64)> = Vec::new();
        let mut by_stage: Vec<(State, Option<Tier>, u64)> = Vec::new();
        for g in &groups {
            match by_state.iter_mut().find(|(st, _)| *st == g.state) {
                Some((_, n)) => *n += g.count,
                None => by_state.push((g.state, g.count)),
            }
            if WAITING.contains(&g.state) {
                match by_stage
                    .iter_mut()
                    .find(|(st, t, _)| *st == g.state && *t == g.tier)
                {
                    Some((.., n)) => *n += g.count,
                    None => by_stage.push((g.state, g.tier, g.count)),
                }
            }
        }
        by_state.sort_by_key(|(st, _)| State::ALL.iter().position(|x| x == st));
        by_stage.sort_by_key(|(st, t, _)| {
            (
                WAITING.iter().position(|x| x == st),
                t.map(|t| Tier::ALL.iter().position(|x| *x == t)),
            )
        });
        let overview = Overview {
            by_state,
            expiring,
            reviews_due,
            overdue_conditions,
            suspended,
            reassessment,
        };
        let mut waiting = Vec::new();
        for (state, tier, count) in by_stage {
            let stage = stage_of(state);
            let roles = match state {
                State::Submitted => vec![gov.workflow.completeness_reviewers.clone()],
                State::InStakeholderReview => gov.workflow.stakeholders.clone(),
                State::AwaitingDecision => tier
                    .map(|t| gov.tier(t).approvers.clone())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let overdue = late
                .iter()
                .find(|c| c.state == state && c.tier == tier)
                .map(|c| c.count)
                .unwrap_or(0);
            waiting.push(Waiting {
                state,
                stage,
                roles,
                tier,
                count,
                overdue,
                sla_hours: stage.and_then(|s| gov.slas.get(&s)).map(|s| s.hours),
            });
        }
        Ok(Register {
            overview,
            groups,
            rows,
            waiting,
        })
    }

    /// A request's audit entries with their hashes (the dashboard's timeline).
    pub async fn audit_chain_of(
        &self,
        id: RequestId,
    ) -> Result<Vec<crate::store::ChainedEntry>, ServiceError> {
        Ok(self.store.audit_chain_of(id).await?)
    }

    /// The decisions on a request, with the snapshot each approver saw.
    pub async fn decisions(
        &self,
        id: RequestId,
    ) -> Result<Vec<crate::store::DecisionRecord>, ServiceError> {
        Ok(self.store.decisions(id).await?)
    }

    /// A request's reminders, oldest first.
    pub async fn reminders_of(
        &self,
        id: RequestId,
    ) -> Result<Vec<crate::store::ReminderRecord>, ServiceError> {
        Ok(self.store.reminders(Some(id)).await?)
    }

    /// A request as stored now.
    pub async fn request(&self, id: RequestId) -> Result<Option<ExceptionRequest>, ServiceError> {
        Ok(self.store.load(id).await?)
    }

    /// The request whose card is `message` in `conversation` (for thread replies).
    pub async fn request_of_card(
        &self,
        platform: Platform,
        conversation: &str,
        message: &str,
    ) -> Result<Option<RequestId>, ServiceError> {
        Ok(self
            .store
            .request_of_card(platform, conversation, message)
            .await?)
    }

    /// Remembers how `platform` reaches `address` (the surface's own reference).
    pub async fn remember(
        &self,
        platform: Platform,
        address: &str,
        reference: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        Ok(self
            .store
            .remember_conversation(platform, address, reference, now)
            .await?)
    }

    /// What a posted card shows by now (after a click, the refreshed card): the
    /// newest message for it.
    pub async fn card_now(
        &self,
        platform: Platform,
        conversation: &str,
        message: &str,
    ) -> Result<Option<crate::message::Outgoing>, ServiceError> {
        Ok(self.store.card_now(platform, conversation, message).await?)
    }

    /// The newest message for the card `key`: its content and where it goes.
    pub async fn card_message(
        &self,
        platform: Platform,
        key: &str,
    ) -> Result<Option<crate::message::Outgoing>, ServiceError> {
        Ok(self.store.card_message(platform, key).await?)
    }

    /// Requests `me` filed, newest first.
    pub async fn requests_by(
        &self,
        me: &PersonId,
        limit: i64,
    ) -> Result<Vec<Summary>, ServiceError> {
        Ok(self.store.requests_by(me, limit).await?)
    }

    /// Granted exceptions `me` monitors, soonest expiry first.
    pub async fn owned_by(&self, me: &PersonId, limit: i64) -> Result<Vec<Summary>, ServiceError> {
        Ok(self.store.owned_by(me, limit).await?)
    }

    /// Everything waiting on `me` at `now`: reviews, assessments, feedback,
    /// decisions, conditions, attestations and updates. One statement for the
    /// candidates (the oldest of each kind) and one batched load, whatever the size of
    /// the register; the domain decides which candidates hold work for `me`.
    pub async fn tasks(&self, me: &PersonId, now: Timestamp) -> Result<Tasks, ServiceError> {
        let gov = &self.gov;
        let mut states = Vec::new();
        if gov.has_role(me, &gov.workflow.completeness_reviewers) {
            states.push(State::Submitted);
        }
        if gov
            .roles
            .values()
            .any(|r| r.dimension.is_some() && gov.has_role(me, &r.id))
        {
            states.extend([State::InAssessment, State::ReassessmentRequired]);
        }
        if gov
            .workflow
            .stakeholders
            .iter()
            .any(|r| gov.has_role(me, r))
        {
            states.push(State::InStakeholderReview);
        }
        let decides: Vec<Tier> = Tier::ALL
            .into_iter()
            .filter(|t| gov.tier(*t).approvers.iter().any(|r| gov.has_role(me, r)))
            .collect();
        let query = TaskQuery {
            person: me,
            states,
            decides,
            per_kind: TASK_CANDIDATES,
        };
        let found = self.store.task_candidates(&query).await?;
        let truncated = found.truncated;
        let mut requests = self.store.load_many(&found.ids).await?;
        requests.sort_by_key(|r| (r.stage_since, r.id));
        let mut items = Vec::new();
        for r in requests {
            for t in r.tasks_for(me, gov, now) {
                items.push((r.clone(), t));
            }
        }
        Ok(Tasks { items, truncated })
    }

    /// A request's timeline, from its recorded events.
    pub async fn timeline(&self, id: RequestId) -> Result<Vec<TimelineEntry>, ServiceError> {
        let events = self.store.events_of(id).await?;
        Ok(events
            .into_iter()
            .map(|e: EventRecord| TimelineEntry {
                at: e.at,
                by: (e.actor != crate::domain::Actor::Scheduler.audit_name())
                    .then(|| PersonId::new(e.actor)),
                kind: e.kind,
                version: e.version,
            })
            .collect())
    }

    /// App Home for `me`.
    pub async fn home(&self, me: &PersonId, now: Timestamp) -> Result<Home, ServiceError> {
        let (mine, tasks, owned) = tokio::try_join!(
            self.requests_by(me, 20),
            self.tasks(me, now),
            self.owned_by(me, 20),
        )?;
        Ok(Home { mine, tasks, owned })
    }

    /// The register at `now`: counts by state, what expires within `within_days`,
    /// overdue reviews and conditions, suspended and reassessment-required
    /// exceptions (at most `limit` of each list).
    pub async fn overview(
        &self,
        now: Timestamp,
        within_days: u32,
        limit: i64,
    ) -> Result<Overview, ServiceError> {
        let s = &self.store;
        let (by_state, expiring, reviews_due, overdue_conditions, suspended, reassessment) = tokio::try_join!(
            s.counts_by_state(),
            s.expiring(now, now.plus_days(within_days), limit),
            s.summaries_in(State::ReviewDue, limit),
            s.overdue_conditions(now.date(), limit),
            s.summaries_in(State::Suspended, limit),
            s.summaries_in(State::ReassessmentRequired, limit),
        )?;
        Ok(Overview {
            by_state,
            expiring,
            reviews_due,
            overdue_conditions,
            suspended,
            reassessment,
        })
    }
}

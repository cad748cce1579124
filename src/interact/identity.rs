//! Who is acting: a platform user → a person of the governance file, one function for
//! every platform. Authority is never taken from a payload: a click counts as the
//! person this maps to, and the domain decides what that person may do.

use crate::governance::{Governance, PersonId};
use crate::message::Platform;

/// A user as a chat platform names them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PlatformUser {
    /// A Slack user in a workspace (`T…`, `U…`).
    Slack { workspace: String, user: String },
    /// A Teams user: AAD object id in a tenant.
    Teams {
        tenant: String,
        aad_object_id: String,
    },
}

impl PlatformUser {
    pub fn platform(&self) -> Platform {
        match self {
            PlatformUser::Slack { .. } => Platform::Slack,
            PlatformUser::Teams { .. } => Platform::Teams,
        }
    }

    /// How the audit trail names the user when they are nobody Waiver knows.
    pub fn audit_name(&self) -> String {
        match self {
            PlatformUser::Slack { workspace, user } => format!("slack:{workspace}:{user}"),
            PlatformUser::Teams {
                tenant,
                aad_object_id,
            } => format!("teams:{tenant}:{aad_object_id}"),
        }
    }

    /// The platform's id of the user (Slack user id, AAD object id).
    pub fn user_id(&self) -> &str {
        match self {
            PlatformUser::Slack { user, .. } => user,
            PlatformUser::Teams { aad_object_id, .. } => aad_object_id,
        }
    }
}

/// The person `who` is. People the governance file does not list still get an id
/// (they may file requests); users of a workspace or tenant that is not configured
/// are refused with the reason.
pub fn person(gov: &Governance, who: &PlatformUser) -> Result<PersonId, String> {
    match who {
        PlatformUser::Slack { workspace, user } => {
            if !gov.slack_workspaces.iter().any(|w| w == workspace) {
                return Err(format!(
                    "Workspace {workspace} is not configured for Waiver."
                ));
            }
            Ok(gov
                .person_by_slack(workspace, user)
                .map(|p| p.id.clone())
                .unwrap_or_else(|| PersonId::external_slack(workspace, user)))
        }
        PlatformUser::Teams {
            tenant,
            aad_object_id,
        } => {
            if !gov
                .teams_tenants
                .iter()
                .any(|t| t.eq_ignore_ascii_case(tenant))
            {
                return Err(format!("Tenant {tenant} is not configured for Waiver."));
            }
            Ok(gov
                .person_by_teams(tenant, aad_object_id)
                .map(|p| p.id.clone())
                .unwrap_or_else(|| PersonId::external_teams(tenant, aad_object_id)))
        }
    }
}

/// The person another user of `who`'s workspace or tenant is (someone picked in a
/// form's person field).
pub fn colleague(gov: &Governance, who: &PlatformUser, user_id: &str) -> PersonId {
    let other = match who {
        PlatformUser::Slack { workspace, .. } => PlatformUser::Slack {
            workspace: workspace.clone(),
            user: user_id.to_string(),
        },
        PlatformUser::Teams { tenant, .. } => PlatformUser::Teams {
            tenant: tenant.clone(),
            aad_object_id: user_id.to_string(),
        },
    };
    person(gov, &other).unwrap_or_else(|_| PersonId::new(other.audit_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gov() -> Governance {
        crate::governance::parse(include_str!("../../manifests/governance.toml")).unwrap()
    }

    #[test]
    fn a_listed_slack_user_is_their_person_and_others_get_an_external_id() {
        let g = gov();
        let ws = g.slack_workspaces[0].clone();
        let james = g.person(&PersonId::new("james.carter")).unwrap();
        let uid = james.slack.as_ref().unwrap().user.clone();
        let who = PlatformUser::Slack {
            workspace: ws.clone(),
            user: uid.clone(),
        };
        assert_eq!(person(&g, &who).unwrap(), PersonId::new("james.carter"));
        assert_eq!(
            crate::chat::plan::user_id(&g, Platform::Slack, &PersonId::new("james.carter")),
            Some(uid)
        );
        let stranger = PlatformUser::Slack {
            workspace: ws.clone(),
            user: "U0STRANGER".into(),
        };
        let id = person(&g, &stranger).unwrap();
        assert_eq!(id, PersonId::external_slack(&ws, "U0STRANGER"));
        assert_eq!(
            crate::chat::plan::user_id(&g, Platform::Slack, &id).as_deref(),
            Some("U0STRANGER")
        );
        assert_eq!(colleague(&g, &who, "U0STRANGER"), id);
    }

    #[test]
    fn users_of_unconfigured_workspaces_and_tenants_are_refused() {
        let g = gov();
        let slack = PlatformUser::Slack {
            workspace: "T0ELSEWHERE".into(),
            user: "U1".into(),
        };
        assert_eq!(
            person(&g, &slack).unwrap_err(),
            "Workspace T0ELSEWHERE is not configured for Waiver."
        );
        let teams = PlatformUser::Teams {
            tenant: "00000000-0000-0000-0000-00000000dead".into(),
            aad_object_id: "x".into(),
        };
        assert!(person(&g, &teams).unwrap_err().starts_with("Tenant "));
        assert_eq!(slack.audit_name(), "slack:T0ELSEWHERE:U1");
    }
}

//! Sample data for the shipped governance file, shared by `waiver demo`, the unit
//! tests and the integration tests.

use crate::domain::FormInput;
use crate::governance::PersonId;

/// A complete, valid intake form: an engineering team adopting a coding assistant
/// (internal data, US), owned by Marcus Webb. Dates start 2026-11-24.
pub fn sample_form() -> FormInput {
    FormInput {
        title: "Use an LLM coding assistant".into(),
        policy: "aiup".into(),
        exception_type: "tool_adoption".into(),
        ai_system: "CodeHelper Pro".into(),
        justification: "Speeds up test writing for the ingestion team.".into(),
        scope_departments: vec!["engineering".into()],
        scope_users: "12 engineers".into(),
        scope_systems: "ingestion repositories".into(),
        data_categories: vec!["internal".into()],
        regions: vec!["us".into()],
        department: "engineering".into(),
        start: "2026-11-24".into(),
        end: "2027-05-24".into(),
        controls: "No customer data in prompts; secrets scanner on.".into(),
        business_owner: Some(PersonId::new("marcus.webb")),
    }
}

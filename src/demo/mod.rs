//! `waiver demo`: the whole process with no Slack workspace or Teams tenant.
//!
//! Starts the real server on a temporary SQLite database with the shipped governance
//! file and a built-in fake of the platform — Slack ([`slack`]) or, with `--teams`,
//! Microsoft Teams' token issuer and Bot Connector ([`teams`]) — then walks one request
//! through the seven steps with signed requests, exactly as people would click them (a
//! send-back, an update, three assessments, stakeholder feedback and a thread reply, a
//! two-role approval with a condition, Mark done), prints what each person saw, and
//! ends with `audit verify`. The walk is one; only the people's side differs.

pub mod slack;
pub mod teams;

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::app;
use crate::clock::Clock;
use crate::delivery::DeliveryConfig;
use crate::domain::Timestamp;
use crate::fakes::slack::OpenedView;
use crate::fakes::slack::workspace::Input;
use crate::governance::{self, Channels, Governance, Person, PersonId, RoleId};

const SHIPPED: &str = include_str!("../../manifests/governance.toml");

/// The platform the demo's people act from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Slack,
    Teams,
}

/// What the demo prints, step by step.
#[derive(Default)]
struct Transcript {
    out: String,
}

impl Transcript {
    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    /// `text`, indented under the line before.
    fn quote(&mut self, text: &str) {
        for line in text.trim_end().lines() {
            let _ = writeln!(self.out, "      {line}");
        }
    }

    fn step(&mut self, title: &str) {
        self.flush();
        let _ = writeln!(
            self.out,
            "\n━━ {title} {}",
            "━".repeat(60usize.saturating_sub(title.len()))
        );
    }

    fn flush(&mut self) {
        print!("{}", std::mem::take(&mut self.out));
    }
}

/// Where a person looks: a role's channel, or their direct conversation with the bot.
#[derive(Clone, Copy, Debug)]
enum Place<'a> {
    Role(&'a str),
    Dm(&'a str),
}

/// A form someone has open: a Slack modal or a Teams dialog.
enum Form {
    Slack(OpenedView),
    Teams(serde_json::Value),
}

/// The people's side of the platform: signed requests as the platform sends them,
/// and what the bot posted there.
enum People {
    Slack(Box<slack::People>),
    Teams(teams::People),
}

/// A conversation as people would call it: a role's or a department's channel, or a
/// person's DM. `channel` picks the platform's channel out of the governance file's;
/// `dm` names a person's direct conversation with the bot, if it is open. Channel ids
/// are shown where people see them (Slack's), not where they are opaque (Teams').
fn conversation(
    gov: &Governance,
    id: &str,
    channel: impl Fn(&Channels) -> Option<&str>,
    dm: impl Fn(&Person) -> Option<String>,
) -> String {
    let shown = |names: String| {
        if id.starts_with("19:") {
            format!("channel \"{names}\"")
        } else {
            format!("channel {id} ({names})")
        }
    };
    let roles: Vec<&str> = gov
        .roles
        .values()
        .filter(|r| channel(&r.channels) == Some(id))
        .map(|r| r.name.as_str())
        .collect();
    if !roles.is_empty() {
        return shown(roles.join(", "));
    }
    if let Some(d) = gov
        .form
        .departments
        .iter()
        .find(|d| channel(&d.channels) == Some(id))
    {
        return shown(format!("{} team", d.label));
    }
    match gov.people.iter().find(|p| dm(p).as_deref() == Some(id)) {
        Some(p) => format!("DM to {}", p.name),
        None => id.to_string(),
    }
}

struct Demo {
    people: People,
    gov: Governance,
    running: app::Running,
    t: Transcript,
}

impl Demo {
    fn name(&self, person: &str) -> String {
        self.gov.name_of(&PersonId::new(person))
    }

    /// What a person picker takes for `person` on this platform.
    fn user(&self, person: &str) -> String {
        let p = self.gov.person(&PersonId::new(person));
        match self.people {
            People::Slack(_) => p.and_then(|p| p.slack.as_ref()).map(|s| s.user.clone()),
            People::Teams(_) => p
                .and_then(|p| p.teams.as_ref())
                .map(|t| t.aad_object_id.clone()),
        }
        .unwrap_or_default()
    }

    /// A role's channel on this platform.
    fn channel(&self, role: &str) -> String {
        self.gov
            .role(&RoleId::new(role))
            .and_then(|r| match self.people {
                People::Slack(_) => r.channels.slack.clone(),
                People::Teams(_) => r.channels.teams.clone(),
            })
            .unwrap_or_default()
    }

    /// Waits for delivery to settle, then prints every new or updated message.
    async fn show(&mut self) -> anyhow::Result<()> {
        for _ in 0..500 {
            let counts = self.running.store.outbox_counts().await?;
            if !counts.iter().any(|(s, n)| s == "pending" && *n > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match &mut self.people {
            People::Slack(p) => p.show(&self.gov, &mut self.t),
            People::Teams(p) => p.show(&self.gov, &mut self.t),
        }
        Ok(())
    }

    /// `who` asks for the intake form.
    async fn open_intake(&mut self, who: &str) -> anyhow::Result<Form> {
        match &mut self.people {
            People::Slack(p) => p.open_intake(&self.gov, who, &mut self.t).await,
            People::Teams(p) => p.open_intake(&self.gov, who, &mut self.t).await,
        }
    }

    /// `who` clicks `action` on the latest message in `place` mentioning `needle`;
    /// the form it opens, if it opens one.
    async fn click(
        &mut self,
        who: &str,
        place: Place<'_>,
        needle: &str,
        action: &str,
    ) -> anyhow::Result<Option<Form>> {
        let place = self.locate(place);
        match &mut self.people {
            People::Slack(p) => {
                p.click(&self.gov, who, &place, needle, action, &mut self.t)
                    .await
            }
            People::Teams(p) => {
                p.click(&self.gov, who, &place, needle, action, &mut self.t)
                    .await
            }
        }
    }

    /// `who` fills `form` in with `inputs` and submits it.
    async fn submit(
        &mut self,
        who: &str,
        form: &Form,
        inputs: &[(&str, Input<'_>)],
        note: &str,
    ) -> anyhow::Result<()> {
        self.t.say(format!(
            "{} fills it in and submits: {note}",
            self.name(who)
        ));
        match (&mut self.people, form) {
            (People::Slack(p), Form::Slack(view)) => p.submit(&self.gov, who, view, inputs).await,
            (People::Teams(p), Form::Teams(card)) => {
                p.submit(&self.gov, who, card, inputs, &mut self.t).await
            }
            _ => bail!("a form of the other platform"),
        }
    }

    /// `who` replies `text` in the thread of the card in `place` mentioning `needle`.
    async fn reply_in_thread(
        &mut self,
        who: &str,
        place: Place<'_>,
        needle: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let place = self.locate(place);
        self.t.say(format!(
            "{} replies in the card's thread: \"{text}\"",
            self.name(who)
        ));
        match &mut self.people {
            People::Slack(p) => {
                p.reply_in_thread(&self.gov, who, &place, needle, text)
                    .await
            }
            People::Teams(p) => {
                p.reply_in_thread(&self.gov, who, &place, needle, text)
                    .await
            }
        }
    }

    /// The conversation id of `place` on this platform.
    fn locate(&self, place: Place<'_>) -> String {
        match place {
            Place::Role(role) => self.channel(role),
            Place::Dm(person) => match &self.people {
                People::Slack(p) => p.dm(&self.user(person)),
                People::Teams(p) => p.dm(&self.user(person)),
            },
        }
    }
}

/// The date `offset` days after the demo's day.
fn day(clock: &Clock, offset: u64) -> String {
    (clock.now().date() + chrono::Days::new(offset)).to_string()
}

/// Runs the demo on `platform` and prints its transcript.
pub async fn run(platform: Platform) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("waiver-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("cannot create a temporary directory")?;
    let governance_path = dir.join("governance.toml");
    std::fs::write(&governance_path, SHIPPED)?;
    let result = walk(platform, &dir, &governance_path).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn walk(
    platform: Platform,
    dir: &std::path::Path,
    governance_path: &std::path::Path,
) -> anyhow::Result<()> {
    let gov = governance::load(governance_path)?;
    // The demo runs on today's date from 09:00 UTC, so that nothing it files can
    // cross midnight halfway through.
    let today = Timestamp::start_of(Clock::System.now().date()).plus_hours(9);
    let clock = Clock::starting_at(today);
    let options = app::Options {
        delivery: DeliveryConfig {
            per_conversation: Some(Duration::ZERO),
            idle_poll: Duration::from_millis(20),
            ..DeliveryConfig::default()
        },
        // The demo moves time itself, with explicit sweeps.
        no_scheduler: true,
        clock: clock.clone(),
        ..app::Options::default()
    };
    let database_url = format!("sqlite://{}/waiver.db", dir.display());
    let mut t = Transcript::default();
    let (people, running) = match platform {
        Platform::Slack => {
            let (p, r) =
                slack::People::start(&gov, database_url, governance_path, options, &mut t).await?;
            (People::Slack(Box::new(p)), r)
        }
        Platform::Teams => {
            let (p, r) =
                teams::People::start(&gov, database_url, governance_path, options, &mut t).await?;
            (People::Teams(p), r)
        }
    };
    let mut d = Demo {
        people,
        gov,
        running,
        t,
    };
    let result = seven_steps(&mut d, &clock).await;
    d.t.flush();
    d.running.stop().await;
    result
}

async fn seven_steps(d: &mut Demo, clock: &Clock) -> anyhow::Result<()> {
    // 1. Submission.
    d.t.step("1 · Submission");
    let view = d.open_intake("james.carter").await?;
    let marcus = d.user("marcus.webb");
    let (start, end) = (day(clock, 0), day(clock, 150));
    d.submit(
        "james.carter",
        &view,
        &[
            ("title", Input::Text("Summarise support chats with an LLM")),
            ("policy", Input::Choose("personal-data-ai")),
            ("exception_type", Input::Choose("data_handling")),
            ("ai_system", Input::Text("Acme Summarizer (hosted LLM)")),
            ("justification", Input::Text("Agents spend 20 minutes per escalation reading chat history; summaries cut that to 2.")),
            ("scope_departments", Input::ChooseMany(&["customer-support", "engineering"])),
            ("scope_users", Input::Text("40 support agents")),
            ("scope_systems", Input::Text("Zendesk, support data warehouse")),
            ("data_categories", Input::ChooseMany(&["pii"])),
            ("regions", Input::ChooseMany(&["eu", "us"])),
            ("department", Input::Choose("customer-support")),
            ("start", Input::Date(&start)),
            ("end", Input::Date(&end)),
            ("controls", Input::Text("Names and emails are masked before sending; vendor DPA signed.")),
            ("business_owner", Input::User(&marcus)),
        ],
        "PII of EU and US customers, 150 days, owner Marcus Webb",
    )
    .await?;
    d.show().await?;

    // 2. Completeness review, with a send-back and an update.
    d.t.step("2 · Completeness review");
    let intake_role = d.gov.workflow.completeness_reviewers.clone();
    let intake = Place::Role(intake_role.as_str());
    if let Some(view) = d
        .click("noah.fischer", intake, "AIX-0001", "send_back")
        .await?
    {
        d.submit(
            "noah.fischer",
            &view,
            &[(
                "questions",
                Input::Text("Which vendor region processes the data? Is retention zero?"),
            )],
            "two questions for James",
        )
        .await?;
    }
    d.show().await?;
    if let Some(view) = d
        .click(
            "james.carter",
            Place::Dm("james.carter"),
            "more information needed",
            "update_request",
        )
        .await?
    {
        d.submit(
            "james.carter",
            &view,
            &[(
                "controls",
                Input::Text("Names and emails are masked before sending; vendor DPA signed; EU data stays in the vendor's Frankfurt region; zero retention contractually agreed."),
            )],
            "answers both questions in the controls",
        )
        .await?;
    }
    d.show().await?;
    d.click("lucia.romero", intake, "version 2", "complete")
        .await?;
    d.show().await?;

    // 3. Risk and impact assessment.
    d.t.step("3 · Risk and impact assessment");
    for (who, role, l, i, finding) in [
        (
            "omar.haddad",
            "risk",
            "3",
            "4",
            "Customer trust impact if summaries leak; moderate likelihood.",
        ),
        (
            "sofia.marin",
            "privacy",
            "4",
            "4",
            "PII of EU residents leaves our systems; masking is partial (free text).",
        ),
        (
            "claire.dubois",
            "legal",
            "3",
            "3",
            "DPA covers processing; transfer impact assessment needed for US agents.",
        ),
    ] {
        if let Some(view) = d
            .click(who, Place::Role(role), "AIX-0001", "assess")
            .await?
        {
            d.submit(
                who,
                &view,
                &[
                    ("findings", Input::Text(finding)),
                    ("likelihood", Input::Choose(l)),
                    ("impact", Input::Choose(i)),
                    (
                        "mitigations",
                        Input::Text("Mask free text too; quarterly access review."),
                    ),
                    ("recommendation", Input::Choose("approve_with_conditions")),
                ],
                &format!("likelihood {l} × impact {i}"),
            )
            .await?;
        }
    }
    d.show().await?;

    // 4. Stakeholder review.
    d.t.step("4 · Stakeholder review");
    let stakeholder_role = d.gov.workflow.stakeholders[0].clone();
    let stakeholders = Place::Role(stakeholder_role.as_str());
    d.reply_in_thread(
        "priya.nair",
        stakeholders,
        "AIX-0001",
        "Please include the Zendesk macros team in training.",
    )
    .await?;
    for (who, note) in [
        (
            "julia.schmidt",
            "Support needs this; approve with conditions.",
        ),
        ("kenji.watanabe", "Fine if masking covers free text."),
    ] {
        if let Some(view) = d.click(who, stakeholders, "AIX-0001", "feedback").await? {
            d.submit(
                who,
                &view,
                &[
                    ("recommendation", Input::Choose("approve_with_conditions")),
                    ("comment", Input::Text(note)),
                ],
                note,
            )
            .await?;
        }
    }
    d.show().await?;

    // 5. Decision: a high tier needs the AI governance board and the CISO office.
    d.t.step("5 · Decision (high tier: two approver roles)");
    let board = Place::Role("ai-governance-board");
    let kenji = d.user("kenji.watanabe");
    let due = day(clock, 21);
    if let Some(view) = d.click("hannah.berg", board, "AIX-0001", "approve").await? {
        d.submit(
            "hannah.berg",
            &view,
            &[
                ("c1_text", Input::Text("Extend masking to free-text fields")),
                ("c1_owner", Input::User(&kenji)),
                ("c1_due", Input::Date(&due)),
                ("confirm", Input::Text("AIX-0001")),
            ],
            "one condition for Kenji, types AIX-0001 to confirm",
        )
        .await?;
    }
    d.show().await?;
    if let Some(view) = d
        .click("william.hughes", board, "AIX-0001", "approve")
        .await?
    {
        d.submit(
            "william.hughes",
            &view,
            &[("confirm", Input::Text("AIX-0001"))],
            "types AIX-0001 to confirm",
        )
        .await?;
    }

    // 6. Communication and implementation.
    d.t.step("6 · Communication and implementation");
    d.show().await?;
    d.click(
        "marcus.webb",
        Place::Dm("marcus.webb"),
        "conditions to complete",
        "mark_done",
    )
    .await?;
    d.show().await?;

    // 7. Monitoring and review: the scheduler's sweeps, with time moved forward.
    d.t.step("7 · Monitoring and review");
    let svc = d.running.service.clone();
    let request = d
        .running
        .store
        .load(crate::domain::RequestId::new(1))
        .await?
        .context("AIX-0001 is missing")?;
    d.t.say(format!(
        "AIX-0001 is {}: {}",
        request.state.label().to_lowercase(),
        crate::chat::plan::waiting_for(&d.gov, &request)
    ));
    let grant = request.grant.clone().context("AIX-0001 has no grant")?;
    let mut instants = Vec::new();
    if let Some(review) = grant.next_review_at {
        instants.push(("the review falls due", review));
    }
    if let Some(lead) = d.gov.reminders.expiry_lead_days.last() {
        instants.push((
            "the last expiry reminder",
            Timestamp::from_millis(grant.expires_at.millis() - i64::from(*lead) * 86_400_000),
        ));
    }
    instants.push(("the exception reaches its expiry", grant.expires_at));
    instants.sort_by_key(|(_, t)| *t);
    for (what, at) in instants {
        let report = svc.sweep(at, false).await?;
        d.t.say(format!(
            "waiver sweep --at {at} ({what}): {} transition(s), {} reminder(s) in {} digest(s)",
            report.transitions.len(),
            report.reminders.len(),
            report.digests.len()
        ));
        d.show().await?;
    }

    // The audit trail.
    d.t.step("Audit trail");
    match d.running.store.verify_audit().await? {
        Ok(r) => d.t.say(format!(
            "waiver audit verify: intact, {} entries, head {}",
            r.entries,
            &r.head[..16]
        )),
        Err(broken) => bail!("audit verify failed: {broken}"),
    }
    let decisions = d
        .running
        .store
        .decisions(crate::domain::RequestId::new(1))
        .await?;
    for decision in decisions {
        let line = format!(
            "decision by {} ({}) under governance {} and policy version {}, with a snapshot of what they saw",
            d.gov.name_of(&decision.vote.approver),
            decision.vote.role,
            &decision.governance_hash[..12],
            decision.policy_version
        );
        d.t.say(line);
    }
    d.t.flush();
    Ok(())
}

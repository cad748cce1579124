//! `waiver demo`: the whole process with no Slack workspace.
//!
//! Starts the real server on a temporary SQLite database with the shipped governance
//! file and a built-in fake Slack, then walks one request through the seven steps with
//! signed requests, exactly as people would click them (a send-back, an update, three
//! assessments, stakeholder feedback and a thread reply, a two-role approval with a
//! condition, Mark done), prints what each person saw, and ends with `audit verify`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::app::{self, Options};
use crate::clock::Clock;
use crate::config::{Config, Secret, SlackConfig};
use crate::delivery::DeliveryConfig;
use crate::domain::Timestamp;
use crate::fakes::slack::workspace::{Input, Workspace, describe};
use crate::fakes::slack::{FakeSlack, Message, OpenedView};
use crate::governance::{self, Governance, PersonId};

const SHIPPED: &str = include_str!("../manifests/governance.toml");
const SECRET: &str = "demo-signing-secret";
const TOKEN: &str = "xoxb-demo";

struct Demo {
    ws: Workspace,
    gov: Governance,
    running: app::Running,
    /// What was already shown: conversation → (ts → edits).
    shown: HashMap<String, HashMap<String, u32>>,
    ephemerals_shown: HashMap<String, usize>,
    out: String,
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

impl Demo {
    fn uid(&self, person: &str) -> String {
        self.gov
            .person(&PersonId::new(person))
            .and_then(|p| p.slack.as_ref())
            .map(|s| s.user.clone())
            .unwrap_or_default()
    }

    fn name(&self, person: &str) -> String {
        self.gov.name_of(&PersonId::new(person))
    }

    /// A conversation, as people would call it.
    fn conversation(&self, channel: &str) -> String {
        let roles: Vec<&str> = self
            .gov
            .roles
            .values()
            .filter(|r| r.channels.slack.as_deref() == Some(channel))
            .map(|r| r.name.as_str())
            .collect();
        if !roles.is_empty() {
            return format!("channel {channel} ({})", roles.join(", "));
        }
        if let Some(d) = self
            .gov
            .form
            .departments
            .iter()
            .find(|d| d.channels.slack.as_deref() == Some(channel))
        {
            return format!("channel {channel} ({} team)", d.label);
        }
        for p in &self.gov.people {
            if let Some(s) = &p.slack
                && self.ws.slack.dm_channel(&s.user).as_deref() == Some(channel)
            {
                return format!("DM to {}", p.name);
            }
        }
        channel.to_string()
    }

    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
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

    /// Waits for delivery to settle, then prints every new or updated message.
    async fn show(&mut self) -> anyhow::Result<()> {
        let store = &self.running.store;
        for _ in 0..500 {
            let counts = store.outbox_counts().await?;
            if !counts.iter().any(|(s, n)| s == "pending" && *n > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut conversations: Vec<String> = self
            .ws
            .slack
            .calls()
            .iter()
            .filter_map(|c| {
                c.body
                    .get("channel")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .collect();
        conversations.sort();
        conversations.dedup();
        let mut lines = Vec::new();
        for conv in conversations {
            let id = self.ws.slack.dm_channel(&conv).unwrap_or(conv);
            let messages: Vec<Message> = self.ws.slack.messages(&id);
            for m in messages.into_iter().filter(|m| m.user.is_none()) {
                let seen = self.shown.entry(id.clone()).or_default();
                let before = seen.insert(m.ts.clone(), m.edits);
                let what = match before {
                    None => "new message",
                    Some(e) if e < m.edits => "updated in place",
                    Some(_) => continue,
                };
                lines.push((id.clone(), what, describe(&m.blocks)));
            }
        }
        for (id, what, text) in lines {
            let header = format!("  → {} · {what}:", self.conversation(&id));
            self.say(header);
            // An update repeats the card: show its title, status and buttons.
            let text: String = if what == "new message" {
                text
            } else {
                text.lines()
                    .filter(|l| l.starts_with("# ") || l.starts_with("  (") || l.starts_with('['))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            self.say(indent(&text.replace('*', ""), "      ").trim_end());
        }
        for p in self.gov.people.clone() {
            let Some(s) = &p.slack else { continue };
            let eph = self.ws.slack.ephemerals(&s.user);
            let from = self
                .ephemerals_shown
                .insert(s.user.clone(), eph.len())
                .unwrap_or(0);
            for m in eph.iter().skip(from) {
                self.say(format!("  → only {} sees:", p.name));
                self.say(indent(&describe(&m.blocks), "      ").trim_end());
            }
        }
        Ok(())
    }

    async fn expect_ok(
        &self,
        what: &str,
        reply: crate::fakes::slack::workspace::Reply,
    ) -> anyhow::Result<()> {
        if reply.status != 200 || !reply.body.is_empty() {
            bail!("{what}: Waiver answered {} {}", reply.status, reply.body);
        }
        Ok(())
    }

    async fn next_view(&self, before: usize) -> anyhow::Result<OpenedView> {
        if !self
            .ws
            .slack
            .wait_for(Duration::from_secs(5), |f| f.views_opened().len() > before)
            .await
        {
            bail!("no modal opened");
        }
        Ok(self.ws.slack.views_opened()[before].clone())
    }

    /// `who` clicks `action` on the latest message in `channel` mentioning `needle`.
    async fn click(
        &mut self,
        who: &str,
        channel: &str,
        needle: &str,
        action: &str,
    ) -> anyhow::Result<Option<OpenedView>> {
        let channel = self
            .ws
            .slack
            .dm_channel(channel)
            .unwrap_or_else(|| channel.to_string());
        let message = self
            .ws
            .slack
            .messages(&channel)
            .into_iter()
            .rev()
            .find(|m| describe(&m.blocks).contains(needle))
            .with_context(|| format!("no card mentioning {needle} in {channel}"))?;
        let label = crate::fakes::slack::workspace::Workspace::button(&message, action)
            .map(|(_, b)| b["text"]["text"].as_str().unwrap_or(action).to_string())
            .unwrap_or_else(|| action.to_string());
        let opened = self.ws.slack.views_opened().len();
        self.say(format!(
            "{} clicks [{label}] in {}",
            self.name(who),
            self.conversation(&channel)
        ));
        let uid = self.uid(who);
        let reply = self
            .ws
            .click(&uid, &message, action)
            .await
            .context("the button is missing")?;
        self.expect_ok(action, reply).await?;
        if self
            .ws
            .slack
            .wait_for(Duration::from_millis(300), |f| {
                f.views_opened().len() > opened
            })
            .await
        {
            let view = self.next_view(opened).await?;
            let title = view.view["title"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.say(format!(
                "  → a modal opens for {}: \"{title}\"",
                self.name(who)
            ));
            return Ok(Some(view));
        }
        Ok(None)
    }

    async fn submit(
        &mut self,
        who: &str,
        view: &OpenedView,
        inputs: &[(&str, Input<'_>)],
        note: &str,
    ) -> anyhow::Result<()> {
        self.say(format!(
            "{} fills it in and submits: {note}",
            self.name(who)
        ));
        let uid = self.uid(who);
        let reply = self.ws.submit(&uid, view, inputs).await;
        self.expect_ok("submission", reply).await
    }
}

/// The date `offset` days after the demo's day.
fn day(clock: &Clock, offset: u64) -> String {
    (clock.now().date() + chrono::Days::new(offset)).to_string()
}

/// Runs the demo and prints its transcript.
pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("waiver-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("cannot create a temporary directory")?;
    let governance_path = dir.join("governance.toml");
    std::fs::write(&governance_path, SHIPPED)?;
    let result = walk(&dir, &governance_path).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn walk(dir: &std::path::Path, governance_path: &std::path::Path) -> anyhow::Result<()> {
    let gov = governance::load(governance_path)?;
    // The demo runs on today's date from 09:00 UTC, so that nothing it files can
    // cross midnight halfway through.
    let today = Timestamp::start_of(Clock::System.now().date()).plus_hours(9);
    let clock = Clock::starting_at(today);
    let slack = FakeSlack::start_at(TOKEN, &gov.slack_workspaces[0], clock.clone()).await;
    let config = Config {
        database_url: format!("sqlite://{}/waiver.db", dir.display()),
        governance: governance_path.to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        slack: Some(SlackConfig {
            signing_secret: Secret::new(SECRET),
            bot_token: Secret::new(TOKEN),
            api_url: slack.api_url(),
        }),
        teams: None,
    };
    let listener = TcpListener::bind(config.listen).await?;
    let options = Options {
        delivery: DeliveryConfig {
            per_conversation: Some(Duration::ZERO),
            idle_poll: Duration::from_millis(20),
            ..DeliveryConfig::default()
        },
        // The demo moves time itself, with explicit sweeps.
        no_scheduler: true,
        clock: clock.clone(),
        ..Options::default()
    };
    let running = app::start(config, listener, options).await?;
    let ws = Workspace::new(slack, running.addr, Secret::new(SECRET));
    let mut d = Demo {
        ws,
        gov,
        running,
        shown: HashMap::new(),
        ephemerals_shown: HashMap::new(),
        out: String::new(),
    };
    d.say(format!(
        "Waiver demo: {} with a fake Slack workspace ({}), a temporary SQLite database, \
         and every request signed as Slack signs it.",
        d.gov.organisation,
        d.ws.team()
    ));

    // 1. Submission.
    d.step("1 · Submission");
    d.say("James Carter (Machine Learning Engineer) types /ai-exception");
    let opened = d.ws.slack.views_opened().len();
    let reply = d.ws.command(&d.uid("james.carter"), "").await;
    d.expect_ok("/ai-exception", reply).await?;
    let view = d.next_view(opened).await?;
    d.say(format!(
        "  → the intake modal opens ({} fields)",
        view.view["blocks"].as_array().map(Vec::len).unwrap_or(0)
    ));
    let james = d.uid("james.carter");
    let marcus = d.uid("marcus.webb");
    let (start, end) = (day(&clock, 0), day(&clock, 150));
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
    d.step("2 · Completeness review");
    let intake = d
        .gov
        .role(&d.gov.workflow.completeness_reviewers)
        .and_then(|r| r.channels.slack.clone())
        .unwrap_or_default();
    if let Some(view) = d
        .click("noah.fischer", &intake, "AIX-0001", "send_back")
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
            &james,
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
    d.click("lucia.romero", &intake, "version 2", "complete")
        .await?;
    d.show().await?;

    // 3. Risk and impact assessment.
    d.step("3 · Risk and impact assessment");
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
        let channel = d
            .gov
            .role(&crate::governance::RoleId::new(role))
            .and_then(|r| r.channels.slack.clone())
            .unwrap_or_default();
        if let Some(view) = d.click(who, &channel, "AIX-0001", "assess").await? {
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
    d.step("4 · Stakeholder review");
    let stakeholders = d
        .gov
        .role(&d.gov.workflow.stakeholders[0])
        .and_then(|r| r.channels.slack.clone())
        .unwrap_or_default();
    let card =
        d.ws.slack
            .messages(&stakeholders)
            .into_iter()
            .find(|m| describe(&m.blocks).contains("AIX-0001"))
            .context("no stakeholder card")?;
    d.say(format!(
        "{} replies in the card's thread: \"Please include the Zendesk macros team in training.\"",
        d.name("priya.nair")
    ));
    let reply =
        d.ws.reply_in_thread(
            &d.uid("priya.nair"),
            &card,
            "Please include the Zendesk macros team in training.",
            "Ev0DEMO1",
        )
        .await;
    d.expect_ok("thread reply", reply).await?;
    for (who, note) in [
        (
            "julia.schmidt",
            "Support needs this; approve with conditions.",
        ),
        ("kenji.watanabe", "Fine if masking covers free text."),
    ] {
        if let Some(view) = d.click(who, &stakeholders, "AIX-0001", "feedback").await? {
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
    d.step("5 · Decision (high tier: two approver roles)");
    let board = d
        .gov
        .role(&crate::governance::RoleId::new("ai-governance-board"))
        .and_then(|r| r.channels.slack.clone())
        .unwrap_or_default();
    let kenji = d.uid("kenji.watanabe");
    let due = day(&clock, 21);
    if let Some(view) = d
        .click("hannah.berg", &board, "AIX-0001", "approve")
        .await?
    {
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
        .click("william.hughes", &board, "AIX-0001", "approve")
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
    d.step("6 · Communication and implementation");
    d.show().await?;
    d.click(
        "marcus.webb",
        &marcus,
        "conditions to complete",
        "mark_done",
    )
    .await?;
    d.show().await?;

    // 7. Monitoring and review: the scheduler's sweeps, with time moved forward.
    d.step("7 · Monitoring and review");
    let svc = d.running.service.clone();
    let request = d
        .running
        .store
        .load(crate::domain::RequestId::new(1))
        .await?
        .context("AIX-0001 is missing")?;
    d.say(format!(
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
            crate::domain::Timestamp::from_millis(
                grant.expires_at.millis() - i64::from(*lead) * 86_400_000,
            ),
        ));
    }
    instants.push(("the exception reaches its expiry", grant.expires_at));
    instants.sort_by_key(|(_, t)| *t);
    for (what, at) in instants {
        let report = svc.sweep(at, false).await?;
        d.say(format!(
            "waiver sweep --at {at} ({what}): {} transition(s), {} reminder(s) in {} digest(s)",
            report.transitions.len(),
            report.reminders.len(),
            report.digests.len()
        ));
        d.show().await?;
    }

    // The audit trail.
    d.step("Audit trail");
    let report = d.running.store.verify_audit().await?;
    match report {
        Ok(r) => d.say(format!(
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
        d.say(format!(
            "decision by {} ({}) under governance {} and policy version {}, with a snapshot of what they saw",
            d.gov.name_of(&decision.vote.approver),
            decision.vote.role,
            &decision.governance_hash[..12],
            decision.policy_version
        ));
    }
    d.flush();
    d.running.stop().await;
    Ok(())
}

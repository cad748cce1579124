//! The demo's people in Slack: the built-in fake Slack Web API, and requests signed
//! with the app's signing secret as Slack signs them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use super::{Form, Transcript, conversation};
use crate::app;
use crate::clock::Clock;
use crate::config::{Config, Secret, SlackConfig};
use crate::fakes::slack::workspace::{Input, Reply, Workspace, describe};
use crate::fakes::slack::{FakeSlack, Message, OpenedView};
use crate::governance::{Governance, PersonId};

const SECRET: &str = "demo-signing-secret";
const TOKEN: &str = "xoxb-demo";

pub(super) struct People {
    ws: Workspace,
    /// What was already shown: conversation → (ts → edits).
    shown: HashMap<String, HashMap<String, u32>>,
    ephemerals_shown: HashMap<String, usize>,
}

fn uid(gov: &Governance, person: &str) -> String {
    gov.person(&PersonId::new(person))
        .and_then(|p| p.slack.as_ref())
        .map(|s| s.user.clone())
        .unwrap_or_default()
}

fn expect_ok(what: &str, reply: Reply) -> anyhow::Result<()> {
    if reply.status != 200 || !reply.body.is_empty() {
        bail!("{what}: Waiver answered {} {}", reply.status, reply.body);
    }
    Ok(())
}

/// The demo's fake Slack: the governance file's first workspace, on `clock`.
pub async fn fake(gov: &Governance, clock: Clock) -> FakeSlack {
    FakeSlack::start_at(TOKEN, &gov.slack_workspaces[0], clock).await
}

/// The settings that point Waiver at `fake`, as the demo runs it.
pub fn config(fake: &FakeSlack) -> SlackConfig {
    SlackConfig {
        signing_secret: Some(Secret::new(SECRET)),
        bot_token: Secret::new(TOKEN),
        socket_mode: None,
        api_url: fake.api_url(),
    }
}

impl People {
    /// Starts the fake Slack and Waiver against it.
    pub(super) async fn start(
        gov: &Governance,
        database_url: String,
        governance: &Path,
        options: app::Options,
        t: &mut Transcript,
    ) -> anyhow::Result<(People, app::Running)> {
        let slack = fake(gov, options.clock.clone()).await;
        let config = Config {
            database_url,
            governance: governance.to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            slack: Some(config(&slack)),
            teams: None,
            dashboard: Default::default(),
            public_url: None,
            metrics_token: None,
            log_format: Default::default(),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let running = app::start(config, listener, options).await?;
        let ws = Workspace::new(slack, running.addr, Secret::new(SECRET));
        t.say(format!(
            "Waiver demo: {} with a fake Slack workspace ({}), a temporary SQLite database, \
             and every request signed as Slack signs it.",
            gov.organisation,
            ws.team()
        ));
        let people = People {
            ws,
            shown: HashMap::new(),
            ephemerals_shown: HashMap::new(),
        };
        Ok((people, running))
    }

    /// The DM channel with `user` (their user id until the bot opened one).
    pub(super) fn dm(&self, user: &str) -> String {
        self.ws
            .slack
            .dm_channel(user)
            .unwrap_or_else(|| user.to_string())
    }

    fn name(&self, gov: &Governance, id: &str) -> String {
        conversation(
            gov,
            id,
            |c| c.slack.as_deref(),
            |p| {
                p.slack
                    .as_ref()
                    .and_then(|s| self.ws.slack.dm_channel(&s.user))
            },
        )
    }

    /// Prints every message that is new or was updated since the last call, and the
    /// ephemeral answers only one person saw.
    pub(super) fn show(&mut self, gov: &Governance, t: &mut Transcript) {
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
        for conv in conversations {
            let id = self.dm(&conv);
            let messages: Vec<Message> = self.ws.slack.messages(&id);
            for m in messages.into_iter().filter(|m| m.user.is_none()) {
                let seen = self.shown.entry(id.clone()).or_default();
                let what = match seen.insert(m.ts.clone(), m.edits) {
                    None => "new message",
                    Some(e) if e < m.edits => "updated in place",
                    Some(_) => continue,
                };
                t.say(format!("  → {} · {what}:", self.name(gov, &id)));
                let text = describe(&m.blocks);
                // An update repeats the card: show its title, status and buttons.
                let text: String = if what == "new message" {
                    text
                } else {
                    text.lines()
                        .filter(|l| {
                            l.starts_with("# ") || l.starts_with("  (") || l.starts_with('[')
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                t.quote(&text.replace('*', ""));
            }
        }
        for p in &gov.people {
            let Some(s) = &p.slack else { continue };
            let eph = self.ws.slack.ephemerals(&s.user);
            let from = self
                .ephemerals_shown
                .insert(s.user.clone(), eph.len())
                .unwrap_or(0);
            for m in eph.iter().skip(from) {
                t.say(format!("  → only {} sees:", p.name));
                t.quote(&describe(&m.blocks));
            }
        }
    }

    async fn next_view(&self, before: usize, within: Duration) -> Option<OpenedView> {
        self.ws
            .slack
            .wait_for(within, |f| f.views_opened().len() > before)
            .await
            .then(|| self.ws.slack.views_opened()[before].clone())
    }

    pub(super) async fn open_intake(
        &mut self,
        gov: &Governance,
        who: &str,
        t: &mut Transcript,
    ) -> anyhow::Result<Form> {
        t.say(format!(
            "{} types /ai-exception",
            gov.name_of(&PersonId::new(who))
        ));
        let opened = self.ws.slack.views_opened().len();
        expect_ok("/ai-exception", self.ws.command(&uid(gov, who), "").await)?;
        let view = self
            .next_view(opened, Duration::from_secs(5))
            .await
            .context("no modal opened")?;
        t.say(format!(
            "  → the intake modal opens ({} fields)",
            view.view["blocks"].as_array().map(Vec::len).unwrap_or(0)
        ));
        Ok(Form::Slack(view))
    }

    fn latest(&self, channel: &str, needle: &str) -> anyhow::Result<Message> {
        self.ws
            .slack
            .messages(channel)
            .into_iter()
            .rev()
            .find(|m| describe(&m.blocks).contains(needle))
            .with_context(|| format!("no card mentioning {needle} in {channel}"))
    }

    pub(super) async fn click(
        &mut self,
        gov: &Governance,
        who: &str,
        channel: &str,
        needle: &str,
        action: &str,
        t: &mut Transcript,
    ) -> anyhow::Result<Option<Form>> {
        let message = self.latest(channel, needle)?;
        let label = Workspace::button(&message, action)
            .map(|(_, b)| b["text"]["text"].as_str().unwrap_or(action).to_string())
            .unwrap_or_else(|| action.to_string());
        let opened = self.ws.slack.views_opened().len();
        let name = gov.name_of(&PersonId::new(who));
        t.say(format!(
            "{name} clicks [{label}] in {}",
            self.name(gov, channel)
        ));
        let reply = self
            .ws
            .click(&uid(gov, who), &message, action)
            .await
            .context("the button is missing")?;
        expect_ok(action, reply)?;
        let Some(view) = self.next_view(opened, Duration::from_millis(300)).await else {
            return Ok(None);
        };
        let title = view.view["title"]["text"].as_str().unwrap_or_default();
        t.say(format!("  → a modal opens for {name}: \"{title}\""));
        Ok(Some(Form::Slack(view)))
    }

    pub(super) async fn submit(
        &mut self,
        gov: &Governance,
        who: &str,
        view: &OpenedView,
        inputs: &[(&str, Input<'_>)],
    ) -> anyhow::Result<()> {
        expect_ok(
            "submission",
            self.ws.submit(&uid(gov, who), view, inputs).await,
        )
    }

    pub(super) async fn reply_in_thread(
        &mut self,
        gov: &Governance,
        who: &str,
        channel: &str,
        needle: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let card = self.latest(channel, needle)?;
        let reply = self
            .ws
            .reply_in_thread(&uid(gov, who), &card, text, "Ev0DEMO1")
            .await;
        expect_ok("thread reply", reply)
    }
}

//! The demo's people in Microsoft Teams: the built-in fake token issuer and Bot
//! Connector, and activities signed as the Bot Framework Connector signs them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::net::TcpListener;

use super::{Form, Transcript, conversation};
use crate::app;
use crate::clock::Clock;
use crate::config::{Config, Secret, TeamsConfig};
use crate::fakes::slack::workspace::Input;
use crate::fakes::teams::tenant::{Member, Reply, Tenant, describe};
use crate::fakes::teams::{FakeTeams, Posted};
use crate::governance::{Governance, PersonId};

const APP_ID: &str = "00000000-0000-0000-0000-00000000de30";
const APP_PASSWORD: &str = "demo-app-password";

pub(super) struct People {
    tenant: Tenant,
    /// What was already shown: post id → updates.
    shown: HashMap<String, u32>,
}

fn member(gov: &Governance, person: &str) -> Member {
    let p = gov.person(&PersonId::new(person));
    let aad = p
        .and_then(|p| p.teams.as_ref())
        .map(|t| t.aad_object_id.clone())
        .unwrap_or_default();
    Member::new(&aad, &gov.name_of(&PersonId::new(person)))
}

fn expect_ok(what: &str, reply: &Reply) -> anyhow::Result<()> {
    if reply.status != 200 {
        bail!("{what}: Waiver answered {} {}", reply.status, reply.body);
    }
    Ok(())
}

/// The first card action in `card` whose data is `wanted` (inside a confirmation too).
fn find_action<'a>(card: &'a Value, wanted: &dyn Fn(&Value) -> bool) -> Option<&'a Value> {
    match card {
        Value::Object(o) => {
            let is_action = o
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("Action."));
            if is_action && o.get("data").is_some_and(wanted) {
                return Some(card);
            }
            o.values().find_map(|c| find_action(c, wanted))
        }
        Value::Array(a) => a.iter().find_map(|c| find_action(c, wanted)),
        _ => None,
    }
}

/// What a person puts into a dialog's input, as Teams submits it.
fn value(input: &Input<'_>) -> String {
    match input {
        Input::Text(s) | Input::Choose(s) | Input::Date(s) | Input::User(s) => s.to_string(),
        Input::ChooseMany(all) => all.join(","),
        Input::Clear => String::new(),
    }
}

/// The demo's fake Microsoft side: a bot registered in the governance file's first
/// tenant, on `clock`.
pub async fn fake(gov: &Governance, clock: Clock) -> anyhow::Result<FakeTeams> {
    let tenant_id = gov
        .teams_tenants
        .first()
        .context("the governance file names no Teams tenant")?;
    Ok(FakeTeams::start(APP_ID, APP_PASSWORD, tenant_id, clock).await)
}

/// The settings that point Waiver at `fake`, as the demo runs it.
pub fn config(fake: &FakeTeams) -> TeamsConfig {
    TeamsConfig {
        app_id: APP_ID.into(),
        app_password: Secret::new(APP_PASSWORD),
        tenant_id: fake.tenant().to_string(),
        openid_metadata_url: fake.openid_url(),
        token_url: fake.token_url(),
        service_urls: vec![fake.service_url()],
    }
}

/// The governance file's first person, a Teams admin, adds the app to the team of
/// every channel the file names (Teams tells the running Waiver); how many channels.
pub async fn install(tenant: &Tenant, gov: &Governance) -> anyhow::Result<usize> {
    let mut channels: Vec<String> = gov
        .roles
        .values()
        .filter_map(|r| r.channels.teams.clone())
        .chain(
            gov.form
                .departments
                .iter()
                .filter_map(|d| d.channels.teams.clone()),
        )
        .collect();
    channels.sort();
    channels.dedup();
    let admin = gov
        .people
        .first()
        .context("the governance file names no one")?;
    let admin = member(gov, admin.id.as_str());
    for c in &channels {
        expect_ok("install", &tenant.install_in_channel(&admin, c).await)?;
    }
    Ok(channels.len())
}

impl People {
    /// Starts the fake Microsoft side and Waiver against it, and installs the app in
    /// every channel the governance file names.
    pub(super) async fn start(
        gov: &Governance,
        database_url: String,
        governance: &Path,
        options: app::Options,
        t: &mut Transcript,
    ) -> anyhow::Result<(People, app::Running)> {
        let fake = fake(gov, options.clock.clone()).await?;
        let tenant_id = fake.tenant().to_string();
        let config = Config {
            database_url,
            governance: governance.to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            slack: None,
            teams: Some(config(&fake)),
            dashboard: Default::default(),
            public_url: None,
            metrics_token: None,
            log_format: Default::default(),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let running = app::start(config, listener, options).await?;
        let tenant = Tenant::new(fake, running.addr);
        t.say(format!(
            "Waiver demo: {} with a fake Microsoft Teams tenant ({tenant_id}): a fake token \
             issuer and Bot Connector, a temporary SQLite database, and every activity signed \
             as the Bot Framework signs it.",
            gov.organisation
        ));
        let channels = install(&tenant, gov).await?;
        t.say(format!(
            "A Teams admin installs the Waiver app in the teams of its {channels} channels."
        ));
        Ok((
            People {
                tenant,
                shown: HashMap::new(),
            },
            running,
        ))
    }

    fn fake(&self) -> &FakeTeams {
        &self.tenant.teams
    }

    /// The personal chat with the member `aad` (as Teams names it, once the bot opened it).
    pub(super) fn dm(&self, aad: &str) -> String {
        self.fake()
            .personal(aad)
            .unwrap_or_else(|| format!("a:chat-{aad}"))
    }

    fn name(&self, gov: &Governance, id: &str) -> String {
        conversation(
            gov,
            id,
            |c| c.teams.as_deref(),
            |p| p.teams.as_ref().map(|t| self.dm(&t.aad_object_id)),
        )
    }

    /// Prints every post that is new or was updated since the last call.
    pub(super) fn show(&mut self, gov: &Governance, t: &mut Transcript) {
        for conv in self.fake().conversations() {
            for post in self.fake().conversation(&conv) {
                let what = match self.shown.insert(post.id.clone(), post.updates) {
                    None => "new message",
                    Some(u) if u < post.updates => "updated in place",
                    Some(_) => continue,
                };
                t.say(format!("  → {} · {what}:", self.name(gov, &conv)));
                let text = describe(&post.activity);
                // An update repeats the card: show its title and actions.
                let text: String = if what == "new message" {
                    text
                } else {
                    text.lines()
                        .enumerate()
                        .filter(|(i, l)| *i == 0 || l.starts_with('['))
                        .map(|(_, l)| l)
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                t.quote(&text);
            }
        }
    }

    /// Opens the dialog of `data` for `who`: its title and card.
    async fn dialog(&self, who: &Member, data: Value) -> anyhow::Result<(String, Value)> {
        let dialog = self
            .tenant
            .open_dialog(who, data)
            .await
            .map_err(|r| anyhow::anyhow!("no dialog opened: {} {}", r.status, r.body))?;
        let title = dialog["title"].as_str().unwrap_or_default().to_string();
        Ok((title, dialog["card"]["content"].clone()))
    }

    pub(super) async fn open_intake(
        &mut self,
        gov: &Governance,
        who: &str,
        t: &mut Transcript,
    ) -> anyhow::Result<Form> {
        let from = member(gov, who);
        t.say(format!("{} sends ai-exception to Waiver", from.name));
        expect_ok(
            "ai-exception",
            &self.tenant.say(&from, "ai-exception").await,
        )?;
        let chat = self.dm(&from.aad_object_id);
        let offer = |f: &FakeTeams| {
            f.conversation(&chat)
                .into_iter()
                .find_map(|p| find_action(&p.activity, &|d| d.get("command").is_some()).cloned())
        };
        self.fake()
            .wait_for(Duration::from_secs(5), |f| offer(f).is_some())
            .await;
        let button = offer(self.fake()).context("the bot offered no form")?;
        self.show(gov, t);
        t.say(format!(
            "{} clicks [{}]",
            from.name,
            button["title"].as_str().unwrap_or_default()
        ));
        let (_, card) = self.dialog(&from, button["data"].clone()).await?;
        let fields = describe(&card)
            .lines()
            .filter(|l| l.ends_with(": ____"))
            .count();
        t.say(format!("  → the intake dialog opens ({fields} fields)"));
        Ok(Form::Teams(card))
    }

    fn latest(&self, conversation: &str, needle: &str) -> anyhow::Result<Posted> {
        self.fake()
            .conversation(conversation)
            .into_iter()
            .rev()
            .find(|p| describe(&p.activity).contains(needle))
            .with_context(|| format!("no card mentioning {needle} in {conversation}"))
    }

    pub(super) async fn click(
        &mut self,
        gov: &Governance,
        who: &str,
        conversation: &str,
        needle: &str,
        action: &str,
        t: &mut Transcript,
    ) -> anyhow::Result<Option<Form>> {
        let post = self.latest(conversation, needle)?;
        let button = find_action(&post.activity, &|d| d["action"] == action)
            .cloned()
            .with_context(|| format!("no {action} on the card: {}", describe(&post.activity)))?;
        let from = member(gov, who);
        t.say(format!(
            "{} clicks [{}] in {}",
            from.name,
            button["title"].as_str().unwrap_or(action),
            self.name(gov, conversation)
        ));
        let data = button["data"].clone();
        if data["msteams"]["type"] == "task/fetch" {
            let (title, card) = self.dialog(&from, data).await?;
            t.say(format!("  → a dialog opens for {}: \"{title}\"", from.name));
            return Ok(Some(Form::Teams(card)));
        }
        let reply = self.tenant.execute(&from, &post, data).await;
        expect_ok(action, &reply)?;
        let answer = reply.json();
        match answer["value"].as_str() {
            Some(message) => t.say(format!("  → Teams shows {}: {message}", from.name)),
            None => t.say(format!("  → the card refreshes for {} at once", from.name)),
        }
        Ok(None)
    }

    pub(super) async fn submit(
        &mut self,
        gov: &Governance,
        who: &str,
        card: &Value,
        inputs: &[(&str, Input<'_>)],
        t: &mut Transcript,
    ) -> anyhow::Result<()> {
        let from = member(gov, who);
        let values: Vec<(&str, String)> = inputs.iter().map(|(k, v)| (*k, value(v))).collect();
        let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = self.tenant.submit_dialog(&from, card, &pairs).await;
        expect_ok("submission", &reply)?;
        let answer = reply.json();
        if answer["task"]["type"] == "continue" {
            bail!(
                "the dialog came back with errors: {}",
                describe(&answer["task"]["value"]["card"]["content"])
            );
        }
        if let Some(message) = answer["task"]["value"].as_str() {
            t.say(format!("  → Teams shows {}: {message}", from.name));
        }
        Ok(())
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
            .tenant
            .reply_in_thread(&member(gov, who), channel, &card.id, text)
            .await;
        expect_ok("thread reply", &reply)
    }
}

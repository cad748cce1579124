//! The people side of a fake Teams tenant: it sends Waiver the activities the Bot
//! Connector would send when people message the bot, click card actions or submit
//! dialogs — with the Bot Framework's shapes, each with a token signed as the
//! Connector signs it.

use serde_json::{Value, json};

use super::FakeTeams;

/// An HTTP answer from Waiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Someone in the tenant: their AAD object id (and `29:` id in conversations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub aad_object_id: String,
    pub name: String,
}

impl Member {
    pub fn new(aad_object_id: &str, name: &str) -> Self {
        Self {
            aad_object_id: aad_object_id.into(),
            name: name.into(),
        }
    }

    /// The member's id in conversations.
    pub fn id(&self) -> String {
        format!("29:{}", self.aad_object_id)
    }
}

/// The fake Bot Framework plus signed senders for one tenant.
pub struct Tenant {
    pub teams: FakeTeams,
    server: String,
    http: reqwest::Client,
    seq: std::sync::atomic::AtomicU64,
    /// What Waiver answered to every invoke, in order.
    answers: std::sync::Mutex<Vec<Value>>,
}

impl Tenant {
    /// Sends to the Waiver server at `server` (`127.0.0.1:port`).
    pub fn new(teams: FakeTeams, server: std::net::SocketAddr) -> Self {
        Self {
            teams,
            server: format!("http://{server}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            seq: Default::default(),
            answers: Default::default(),
        }
    }

    /// What Waiver answered to every invoke sent so far (dialogs, refreshed cards).
    pub fn answers(&self) -> Vec<Value> {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn retarget(&mut self, server: std::net::SocketAddr) {
        self.server = format!("http://{server}");
    }

    fn next_id(&self) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("f:{n:08}")
    }

    /// POSTs `body` to `/api/messages` with exactly `authorization` (or none).
    pub async fn post_raw(&self, authorization: Option<String>, body: Vec<u8>) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/api/messages", self.server))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        match req.send().await {
            Ok(resp) => Reply {
                status: resp.status().as_u16(),
                body: resp.text().await.unwrap_or_default(),
            },
            Err(e) => Reply {
                status: 0,
                body: e.to_string(),
            },
        }
    }

    /// Sends `activity` as the Connector would: with a valid token for its serviceUrl.
    pub async fn send(&self, activity: &Value) -> Reply {
        let service_url = activity["serviceUrl"].as_str().unwrap_or_default();
        let token = self.teams.token(service_url);
        let reply = self
            .post_raw(
                Some(format!("Bearer {token}")),
                activity.to_string().into_bytes(),
            )
            .await;
        if activity["type"] == "invoke" && reply.status == 200 {
            self.answers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(reply.json());
        }
        reply
    }

    /// An activity of `kind` from `from` in their personal chat with the bot.
    pub fn personal(&self, from: &Member, kind: &str) -> Value {
        let tenant = self.teams.tenant();
        let now = self.teams.clock().now().to_datetime();
        json!({
            "type": kind,
            "id": self.next_id(),
            "timestamp": now.to_rfc3339(),
            "serviceUrl": self.teams.service_url(),
            "channelId": "msteams",
            "from": { "id": from.id(), "name": from.name, "aadObjectId": from.aad_object_id },
            "conversation": {
                "id": format!("a:chat-{}", from.aad_object_id),
                "conversationType": "personal",
                "tenantId": tenant,
            },
            "recipient": { "id": super::bot_id(self.teams.app_id()), "name": "Waiver" },
            "channelData": { "tenant": { "id": tenant } },
            "locale": "en-GB",
        })
    }

    /// An activity of `kind` from `from` in a team's channel (`thread`: a reply in the
    /// thread of that root post).
    pub fn in_channel(
        &self,
        from: &Member,
        kind: &str,
        channel: &str,
        thread: Option<&str>,
    ) -> Value {
        let mut a = self.personal(from, kind);
        let conversation = match thread {
            Some(root) => format!("{channel};messageid={root}"),
            None => channel.to_string(),
        };
        a["conversation"] = json!({
            "id": conversation,
            "conversationType": "channel",
            "isGroup": true,
            "tenantId": self.teams.tenant(),
        });
        a["channelData"] = json!({
            "channel": { "id": channel },
            "team": { "id": format!("{channel}-team") },
            "tenant": { "id": self.teams.tenant() },
        });
        a
    }

    /// The app is added to the team of `channel` (by `by`): Teams tells the bot.
    pub async fn install_in_channel(&self, by: &Member, channel: &str) -> Reply {
        self.teams.add_to_team(channel);
        let mut a = self.in_channel(by, "conversationUpdate", channel, None);
        a["membersAdded"] = json!([{ "id": super::bot_id(self.teams.app_id()) }]);
        self.send(&a).await
    }

    /// `from` installs the app for themselves: Teams tells the bot in their chat.
    pub async fn install_personal(&self, from: &Member) -> Reply {
        let mut a = self.personal(from, "installationUpdate");
        a["action"] = json!("add");
        self.send(&a).await
    }

    /// `from` replies `text` in the thread of the bot's post `root` in `channel`.
    pub async fn reply_in_thread(
        &self,
        from: &Member,
        channel: &str,
        root: &str,
        text: &str,
    ) -> Reply {
        let mut a = self.in_channel(from, "message", channel, Some(root));
        a["text"] = json!(text);
        self.send(&a).await
    }

    /// `from` types `text` to the bot in their personal chat.
    pub async fn say(&self, from: &Member, text: &str) -> Reply {
        let mut a = self.personal(from, "message");
        a["text"] = json!(text);
        self.send(&a).await
    }

    /// `from` clicks an `Action.Execute` with `data` on the bot's post `on`: the invoke
    /// comes from the post's conversation, in reply to it, as Teams sends it.
    pub async fn execute(&self, from: &Member, on: &super::Posted, data: Value) -> Reply {
        let action = json!({ "type": "Action.Execute", "verb": data["action"], "data": data });
        self.card_action(from, on, action, "manual").await
    }

    /// An `adaptiveCard/action` invoke of `action` by `from` on the bot's post `on`,
    /// from the post's conversation and in reply to it, as Teams sends it.
    async fn card_action(
        &self,
        from: &Member,
        on: &super::Posted,
        action: Value,
        trigger: &str,
    ) -> Reply {
        let mut a = if on.conversation.starts_with("19:") {
            self.in_channel(from, "invoke", &on.conversation, Some(&on.id))
        } else {
            let mut a = self.personal(from, "invoke");
            a["conversation"]["id"] = json!(on.conversation);
            a
        };
        a["name"] = json!("adaptiveCard/action");
        a["replyToId"] = json!(on.id);
        a["value"] = json!({ "action": action, "trigger": trigger });
        self.send(&a).await
    }

    /// `from` views the bot's post `on`, as Teams shows it: a card with a refresh
    /// action is refreshed (an automatic `adaptiveCard/action` invoke of its verb),
    /// and the card the bot answers with is shown instead of the posted one. The
    /// activity as shown.
    pub async fn view(&self, from: &Member, on: &super::Posted) -> Value {
        let mut shown = on.activity.clone();
        let action = on.activity["attachments"][0]["content"]["refresh"]["action"].clone();
        if action.is_null() {
            return shown;
        }
        let answer = self.card_action(from, on, action, "automatic").await.json();
        if answer["type"] == "application/vnd.microsoft.card.adaptive" {
            shown["attachments"][0]["content"] = answer["value"].clone();
        }
        shown
    }

    /// `from` opens the dialog of the card action `data` (`task/fetch`): the dialog
    /// (`title`, `card.content`), or Waiver's answer if it answered otherwise.
    pub async fn open_dialog(&self, from: &Member, data: Value) -> Result<Value, Reply> {
        let reply = self
            .invoke(from, "task/fetch", json!({ "data": data }))
            .await;
        let answer = reply.json();
        if reply.status != 200 || answer["task"]["type"] != "continue" {
            return Err(reply);
        }
        Ok(answer["task"]["value"].clone())
    }

    /// `from` fills the dialog `card` with `values` (input id → value) and submits it
    /// as Teams does: every input's value merged into the submit action's data.
    pub async fn submit_dialog(
        &self,
        from: &Member,
        card: &Value,
        values: &[(&str, &str)],
    ) -> Reply {
        self.invoke(
            from,
            "task/submit",
            json!({ "data": dialog_data(card, values) }),
        )
        .await
    }

    /// An invoke (`task/fetch`, `task/submit`, `adaptiveCard/action`) from `from`.
    pub async fn invoke(&self, from: &Member, name: &str, value: Value) -> Reply {
        let mut a = self.personal(from, "invoke");
        a["name"] = json!(name);
        a["value"] = value;
        self.send(&a).await
    }
}

/// An activity's cards as a person would read them: text runs, inputs and buttons.
pub fn describe(activity: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                match o.get("type").and_then(Value::as_str) {
                    // A paragraph: its runs on one line.
                    Some("RichTextBlock") => {
                        let runs = o.get("inlines").and_then(Value::as_array);
                        out.push(
                            runs.into_iter()
                                .flatten()
                                .filter_map(|r| r.get("text").and_then(Value::as_str))
                                .collect(),
                        );
                        return;
                    }
                    Some("TextRun") => out.push(
                        o.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .into(),
                    ),
                    Some(t) if t.starts_with("Action.") => out.push(format!(
                        "[{}]",
                        o.get("title").and_then(Value::as_str).unwrap_or_default()
                    )),
                    Some(t) if t.starts_with("Input.") => out.push(format!(
                        "{}: ____",
                        o.get("label").and_then(Value::as_str).unwrap_or_default()
                    )),
                    _ => {}
                }
                // What a card says, then what can be done with it.
                let (actions, rest): (Vec<_>, Vec<_>) =
                    o.iter().partition(|(k, _)| k.as_str() == "actions");
                for (k, child) in rest.into_iter().chain(actions) {
                    // A card's refresh action is no button: Teams runs it on view.
                    if k == "refresh" {
                        continue;
                    }
                    if k != "card"
                        || o.get("type").and_then(Value::as_str) != Some("Action.ShowCard")
                    {
                        walk(child, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(activity, &mut out);
    out.join("\n")
}

/// The data of the card action titled `title` in `activity`.
pub fn action_data(activity: &Value, title: &str) -> Option<Value> {
    fn find(v: &Value, title: &str) -> Option<Value> {
        match v {
            Value::Object(o) => {
                if o.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("Action."))
                    && o.get("title").and_then(Value::as_str) == Some(title)
                {
                    return o.get("data").cloned();
                }
                o.values().find_map(|c| find(c, title))
            }
            Value::Array(a) => a.iter().find_map(|c| find(c, title)),
            _ => None,
        }
    }
    find(activity, title)
}

/// What Teams sends when the dialog `card` is submitted: its submit action's data with
/// every input's value — `values` (input id → value) where given, else the input's
/// prefilled value, else empty.
pub fn dialog_data(card: &Value, values: &[(&str, &str)]) -> Value {
    fn inputs(v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(o) => {
                if o.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("Input."))
                {
                    let id = o["id"].as_str().unwrap_or_default().to_string();
                    out.push((id, o.get("value").cloned().unwrap_or(json!(""))));
                }
                o.values().for_each(|c| inputs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| inputs(c, out)),
            _ => {}
        }
    }
    let mut data = card["actions"][0]["data"].clone();
    let mut prefilled = Vec::new();
    inputs(card, &mut prefilled);
    for (id, value) in prefilled {
        data[id] = value;
    }
    for (id, value) in values {
        data[*id] = json!(value);
    }
    data
}

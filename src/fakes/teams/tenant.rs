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
        let mut a = if on.conversation.starts_with("19:") {
            self.in_channel(from, "invoke", &on.conversation, Some(&on.id))
        } else {
            let mut a = self.personal(from, "invoke");
            a["conversation"]["id"] = json!(on.conversation);
            a
        };
        a["name"] = json!("adaptiveCard/action");
        a["replyToId"] = json!(on.id);
        a["value"] = json!({
            "action": { "type": "Action.Execute", "verb": data["action"], "data": data },
            "trigger": "manual",
        });
        self.send(&a).await
    }

    /// An invoke (`task/fetch`, `task/submit`, `adaptiveCard/action`) from `from`.
    pub async fn invoke(&self, from: &Member, name: &str, value: Value) -> Reply {
        let mut a = self.personal(from, "invoke");
        a["name"] = json!(name);
        a["value"] = value;
        self.send(&a).await
    }
}

//! The people side of a fake Slack workspace: it sends Waiver the requests Slack
//! would send when people type `/ai-exception`, click buttons, submit modals, reply in
//! threads or open App Home — with Slack's payload shapes, signed as Slack signs them.
//!
//! Clicks find the real button in the message the fake holds; modal submissions start
//! from the view Waiver opened, with its pre-filled values, as Slack's would. So a test
//! or the demo exercises exactly what a person could do.

use std::net::SocketAddr;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{FakeSlack, Message, OpenedView};
use crate::chat::slack::verify::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::config::Secret;

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

/// A value typed into a modal input.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    Text(&'a str),
    /// A static select's option value.
    Choose(&'a str),
    /// A multi-select's option values.
    ChooseMany(&'a [&'a str]),
    Date(&'a str),
    /// A users_select: the Slack user id.
    User(&'a str),
    /// Clear whatever was pre-filled.
    Clear,
}

/// The fake Slack Web API plus signed senders for one workspace.
pub struct Workspace {
    pub slack: FakeSlack,
    server: String,
    secret: Secret,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Socket Mode: what Slack would POST goes down the app's websocket instead.
    socket: Option<super::socket::FakeSocket>,
}

impl Workspace {
    /// Sends to the Waiver server at `server`, signing with `secret`.
    pub fn new(slack: FakeSlack, server: SocketAddr, secret: Secret) -> Self {
        // A fresh connection per request: a pooled one the server has just closed (after
        // refusing a malformed request) would fail the next request with a transport
        // error that says nothing about Waiver.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(HttpConnector::new());
        Self {
            slack,
            server: format!("http://{server}"),
            secret,
            client,
            socket: None,
        }
    }

    /// Sends commands, interactions and events over Socket Mode through `socket` from
    /// now on (what [`post_raw`](Self::post_raw) sends still goes over HTTP).
    pub fn over_socket(mut self, socket: super::socket::FakeSocket) -> Self {
        self.socket = Some(socket);
        self
    }

    /// The Socket Mode server, when sending over it.
    pub fn socket(&self) -> Option<&super::socket::FakeSocket> {
        self.socket.as_ref()
    }

    /// Sends to another server from now on (after a restart).
    pub fn retarget(&mut self, server: SocketAddr) {
        self.server = format!("http://{server}");
    }

    pub fn team(&self) -> &str {
        self.slack.team_id()
    }

    /// POSTs `body` with exactly the headers given (no signature added).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut req = hyper::Request::post(format!("{}{path}", self.server))
            .header("content-type", content_type);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .expect("request builds");
        match self.client.request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Reply {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                }
            }
            Err(e) => Reply {
                status: 0,
                body: e.to_string(),
            },
        }
    }

    /// The signature headers Slack would send for `body` at `timestamp` (unix seconds).
    pub fn signature(&self, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        vec![
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, sign(&self.secret, timestamp, body)),
        ]
    }

    /// POSTs `body` signed as Slack signs it, now; over Socket Mode, sends it as the
    /// envelope Slack would, and answers with the acknowledgement's payload (empty
    /// for a bare acknowledgement; status 0 when none came within Slack's 3 s).
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        if let Some(socket) = &self.socket
            && let Some((kind, payload)) = super::socket::FakeSocket::envelope_for(path, &body)
        {
            return match socket
                .send(kind, payload, std::time::Duration::from_secs(3))
                .await
            {
                Some(Some(payload)) => Reply {
                    status: 200,
                    body: payload.to_string(),
                },
                Some(None) => Reply {
                    status: 200,
                    body: String::new(),
                },
                None => Reply {
                    status: 0,
                    body: "no acknowledgement within 3 s".into(),
                },
            };
        }
        let ts = self.slack.clock().unix_seconds();
        let headers = self.signature(ts, &body);
        self.post_raw(path, content_type, body, &headers).await
    }

    /// The slash command form Slack sends for `/ai-exception {text}` typed by `user`.
    pub fn command_body(&self, user: &str, text: &str, trigger_id: &str) -> Vec<u8> {
        let response_url = format!(
            "{}/hooks/commands/{user}",
            self.slack.api_url().trim_end_matches('/')
        );
        let pairs = [
            ("token", "legacy-verification-token"),
            ("team_id", self.team()),
            ("team_domain", "northwind"),
            ("channel_id", "C0GENERAL"),
            ("channel_name", "general"),
            ("user_id", user),
            ("user_name", user),
            ("command", "/ai-exception"),
            ("text", text),
            ("api_app_id", super::APP_ID),
            ("is_enterprise_install", "false"),
            ("response_url", &response_url),
            ("trigger_id", trigger_id),
        ];
        serde_urlencoded::to_string(pairs)
            .expect("form encodes")
            .into_bytes()
    }

    /// `user` types `/ai-exception {text}`.
    pub async fn command(&self, user: &str, text: &str) -> Reply {
        let trigger = self.slack.issue_trigger();
        let body = self.command_body(user, text, &trigger);
        self.post("/slack/commands", "application/x-www-form-urlencoded", body)
            .await
    }

    fn interaction_body(payload: &Value) -> Vec<u8> {
        serde_urlencoded::to_string([("payload", payload.to_string())])
            .expect("form encodes")
            .into_bytes()
    }

    /// Finds the button whose action id is `action_id` (or starts with `action_id:`).
    pub fn button(message: &Message, action_id: &str) -> Option<(String, Value)> {
        message.blocks.as_array()?.iter().find_map(|block| {
            let elements = block.get("elements")?.as_array()?;
            let el = elements.iter().find(|el| {
                el["type"] == "button"
                    && el["action_id"]
                        .as_str()
                        .is_some_and(|a| a == action_id || a.starts_with(&format!("{action_id}:")))
            })?;
            Some((
                block["block_id"].as_str().unwrap_or("actions").to_string(),
                el.clone(),
            ))
        })
    }

    /// The block_actions payload Slack sends when `user` clicks `action_id` on `message`.
    pub fn click_payload(
        &self,
        user: &str,
        message: &Message,
        action_id: &str,
        trigger_id: &str,
    ) -> Option<Value> {
        let (block_id, button) = Self::button(message, action_id)?;
        Some(json!({
            "type": "block_actions",
            "user": { "id": user, "username": user, "name": user, "team_id": self.team() },
            "api_app_id": super::APP_ID,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": false
            },
            "trigger_id": trigger_id,
            "team": { "id": self.team(), "domain": "northwind" },
            "channel": { "id": message.channel, "name": message.channel },
            "message": {
                "type": "message",
                "ts": message.ts,
                "text": message.text,
                "bot_id": super::BOT_ID,
                "user": super::BOT_USER_ID,
                "blocks": message.blocks
            },
            "response_url": format!("{}/hooks/actions/{user}", self.slack.api_url().trim_end_matches('/')),
            "actions": [{
                "type": "button",
                "action_id": button["action_id"],
                "block_id": block_id,
                "value": button["value"],
                "text": button["text"],
                "action_ts": format!("{}.000100", self.slack.clock().unix_seconds())
            }]
        }))
    }

    /// `user` clicks the button `action_id` on `message`. `None` if there is no such
    /// button (a closed card has none).
    pub async fn click(&self, user: &str, message: &Message, action_id: &str) -> Option<Reply> {
        let trigger = self.slack.issue_trigger();
        let payload = self.click_payload(user, message, action_id, &trigger)?;
        Some(
            self.post(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                Self::interaction_body(&payload),
            )
            .await,
        )
    }

    /// The view_submission payload for `view` as `user` filled it in: pre-filled values
    /// stay unless `inputs` changes them.
    pub fn submission_payload(
        &self,
        user: &str,
        view: &OpenedView,
        inputs: &[(&str, Input<'_>)],
    ) -> Value {
        let mut values = serde_json::Map::new();
        let blocks = view.view["blocks"].as_array().cloned().unwrap_or_default();
        for block in blocks.iter().filter(|b| b["type"] == "input") {
            let block_id = block["block_id"].as_str().unwrap_or_default();
            let el = &block["element"];
            let action_id = el["action_id"].as_str().unwrap_or("value");
            let given = inputs.iter().find(|(b, _)| *b == block_id).map(|(_, i)| i);
            let option = |v: &str| {
                el["options"]
                    .as_array()
                    .and_then(|opts| opts.iter().find(|o| o["value"] == v).cloned())
                    .unwrap_or_else(
                        || json!({ "text": { "type": "plain_text", "text": v }, "value": v }),
                    )
            };
            let value = match el["type"].as_str().unwrap_or_default() {
                "plain_text_input" => {
                    let v = match given {
                        Some(Input::Text(t)) => Value::from(*t),
                        Some(Input::Clear) => Value::Null,
                        _ => el.get("initial_value").cloned().unwrap_or(Value::Null),
                    };
                    json!({ "type": "plain_text_input", "value": v })
                }
                "static_select" => {
                    let v = match given {
                        Some(Input::Choose(c)) => option(c),
                        Some(Input::Clear) => Value::Null,
                        _ => el.get("initial_option").cloned().unwrap_or(Value::Null),
                    };
                    json!({ "type": "static_select", "selected_option": v })
                }
                "multi_static_select" => {
                    let v = match given {
                        Some(Input::ChooseMany(cs)) => {
                            Value::Array(cs.iter().map(|c| option(c)).collect())
                        }
                        Some(Input::Clear) => json!([]),
                        _ => el.get("initial_options").cloned().unwrap_or(json!([])),
                    };
                    json!({ "type": "multi_static_select", "selected_options": v })
                }
                "datepicker" => {
                    let v = match given {
                        Some(Input::Date(d)) => Value::from(*d),
                        Some(Input::Clear) => Value::Null,
                        _ => el.get("initial_date").cloned().unwrap_or(Value::Null),
                    };
                    json!({ "type": "datepicker", "selected_date": v })
                }
                "users_select" => {
                    let v = match given {
                        Some(Input::User(u)) => Value::from(*u),
                        Some(Input::Clear) => Value::Null,
                        _ => el.get("initial_user").cloned().unwrap_or(Value::Null),
                    };
                    json!({ "type": "users_select", "selected_user": v })
                }
                other => json!({ "type": other }),
            };
            values.insert(block_id.to_string(), json!({ action_id: value }));
        }
        // Slack sends the view as it stands, with its ids and the submitted state.
        let mut submitted = view.view.clone();
        submitted["id"] = json!(view.view_id);
        submitted["team_id"] = json!(self.team());
        submitted["hash"] = json!(format!("{}.hash", view.view_id));
        submitted["app_id"] = json!(super::APP_ID);
        submitted["bot_id"] = json!(super::BOT_ID);
        submitted["root_view_id"] = json!(view.view_id);
        submitted["previous_view_id"] = Value::Null;
        submitted["state"] = json!({ "values": values });
        json!({
            "type": "view_submission",
            "team": { "id": self.team(), "domain": "northwind" },
            "user": { "id": user, "username": user, "name": user, "team_id": self.team() },
            "api_app_id": super::APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self.slack.issue_trigger(),
            "view": submitted,
            "response_urls": []
        })
    }

    /// `user` submits `view` with `inputs`.
    pub async fn submit(
        &self,
        user: &str,
        view: &OpenedView,
        inputs: &[(&str, Input<'_>)],
    ) -> Reply {
        let payload = self.submission_payload(user, view, inputs);
        self.post(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            Self::interaction_body(&payload),
        )
        .await
    }

    /// An Events API callback as Slack wraps it.
    pub fn event_body(&self, event_id: &str, event: Value) -> Vec<u8> {
        json!({
            "token": "legacy-verification-token",
            "team_id": self.team(),
            "api_app_id": super::APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": self.slack.clock().unix_seconds(),
            "authorizations": [{ "team_id": self.team(), "user_id": super::BOT_USER_ID, "is_bot": true }]
        })
        .to_string()
        .into_bytes()
    }

    /// Delivers an event (`retry` sets Slack's retry headers, as on a re-send).
    pub async fn event(&self, event_id: &str, event: Value, retry: Option<u32>) -> Reply {
        let body = self.event_body(event_id, event);
        if self.socket.is_some() {
            // Socket Mode re-sends an envelope itself; there are no retry headers.
            return self.post("/slack/events", "application/json", body).await;
        }
        let ts = self.slack.clock().unix_seconds();
        let mut headers = self.signature(ts, &body);
        if let Some(n) = retry {
            headers.push(("x-slack-retry-num", n.to_string()));
            headers.push(("x-slack-retry-reason", "http_timeout".into()));
        }
        self.post_raw("/slack/events", "application/json", body, &headers)
            .await
    }

    /// `user` replies `text` in the thread of `parent`; Slack then sends the event.
    pub async fn reply_in_thread(
        &self,
        user: &str,
        parent: &Message,
        text: &str,
        event_id: &str,
    ) -> Reply {
        let ts = self
            .slack
            .post_as_user(&parent.channel, user, text, Some(&parent.ts));
        let event = json!({
            "type": "message",
            "channel": parent.channel,
            "user": user,
            "text": text,
            "ts": ts,
            "thread_ts": parent.ts,
            "channel_type": "channel",
            "event_ts": ts
        });
        self.event(event_id, event, None).await
    }

    /// `user` opens Waiver's App Home tab.
    pub async fn open_home(&self, user: &str, event_id: &str) -> Reply {
        let event = json!({
            "type": "app_home_opened",
            "user": user,
            "channel": format!("D{user}"),
            "tab": "home",
            "event_ts": format!("{}.000100", self.slack.clock().unix_seconds())
        });
        self.event(event_id, event, None).await
    }
}

/// Block Kit as a person would read it, for transcripts and assertions.
pub fn describe(blocks: &Value) -> String {
    let unescape = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let text = |t: &Value| unescape(t["text"].as_str().unwrap_or_default());
    let mut out = Vec::new();
    for b in blocks.as_array().into_iter().flatten() {
        match b["type"].as_str().unwrap_or_default() {
            "header" => out.push(format!("# {}", text(&b["text"]))),
            "section" => {
                if !b["text"].is_null() {
                    out.push(text(&b["text"]));
                }
                for f in b["fields"].as_array().into_iter().flatten() {
                    out.push(text(f).replacen('\n', ": ", 1));
                }
            }
            "context" => {
                for e in b["elements"].as_array().into_iter().flatten() {
                    out.push(format!("  ({})", text(e)));
                }
            }
            "divider" => out.push("---".into()),
            "actions" => {
                let buttons: Vec<String> = b["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| format!("[{}]", text(&e["text"])))
                    .collect();
                out.push(buttons.join(" "));
            }
            "input" => out.push(format!("{}: ____", text(&b["label"]))),
            _ => {}
        }
    }
    out.join("\n")
}

//! A fake Slack Socket Mode server on loopback. The fake Web API's
//! `apps.connections.open` (with the right app token) hands out its `ws://127.0.0.1`
//! URL; each connection is greeted with `hello`, and envelopes — slash commands,
//! interactions, events — go down a connected socket and wait for their
//! acknowledgement, as on Slack. An envelope not acknowledged when its socket drops
//! is sent again (`retry_attempt` + 1) on the next connection, as Slack does.
//!
//! For tests of failure: [`FakeSocket::drop_next_ack`] closes the socket as the next
//! acknowledgement arrives, unread, so the client has acted but Slack never heard;
//! [`FakeSocket::drop_connections`] closes every socket at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;

/// An envelope's acknowledgement: its payload, if it carried one.
pub type Ack = Option<Value>;

struct Pending {
    envelope: Value,
    /// Sent on some connection already (a new one sends it again).
    sent: bool,
    reply: Option<oneshot::Sender<Ack>>,
}

#[derive(Default)]
struct State {
    connections: BTreeMap<u64, mpsc::UnboundedSender<Frame>>,
    next_connection: u64,
    next_envelope: u64,
    /// Sent and not acknowledged yet, in the order sent.
    pending: BTreeMap<u64, Pending>,
    by_id: HashMap<String, u64>,
    drop_next_ack: bool,
    /// Connections ever accepted.
    accepted: u64,
    /// Envelopes sent again after a drop.
    redelivered: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fake server; stops when dropped.
pub struct FakeSocket {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSocket {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSocket {
    /// Binds `127.0.0.1:0` and accepts Socket Mode connections.
    pub async fn start() -> FakeSocket {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake Socket Mode: cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Socket Mode: no address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let accepting = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(accepting.clone(), stream));
            }
        });
        FakeSocket {
            addr,
            shared,
            server,
        }
    }

    /// The URL `apps.connections.open` answers with.
    pub fn url(&self) -> String {
        format!("ws://{}/link/?ticket=fake", self.addr)
    }

    /// Connections open now.
    pub fn connected(&self) -> usize {
        self.shared.lock().connections.len()
    }

    /// Connections ever accepted (a reconnect adds one).
    pub fn accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// Envelopes sent again on a new connection after theirs dropped.
    pub fn redelivered(&self) -> u64 {
        self.shared.lock().redelivered
    }

    /// Waits until at least `n` connections are open (at most `timeout`).
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            if self.connected() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.connected() >= n;
            }
        }
    }

    /// Closes the socket as the next acknowledgement arrives, without reading it.
    pub fn drop_next_ack(&self) {
        self.shared.lock().drop_next_ack = true;
    }

    /// Closes every open socket now.
    pub fn drop_connections(&self) {
        let conns: Vec<_> = std::mem::take(&mut self.shared.lock().connections)
            .into_values()
            .collect();
        for c in conns {
            let _ = c.send(Frame::Close(None));
        }
        self.shared.changed.notify_waiters();
    }

    /// Sends an envelope of `kind` (`slash_commands`, `interactive`, `events_api`)
    /// and waits for its acknowledgement; `None` if none came within `timeout`.
    pub async fn send(&self, kind: &str, payload: Value, timeout: Duration) -> Option<Ack> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.shared.lock();
            s.next_envelope += 1;
            let n = s.next_envelope;
            let id = format!("fake-envelope-{n}");
            let envelope = json!({
                "envelope_id": id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            });
            s.by_id.insert(id, n);
            // To the newest connection; with none, the next to connect sends it.
            let sent = match s.connections.values().next_back() {
                Some(conn) => conn.send(Frame::Text(envelope.to_string().into())).is_ok(),
                None => false,
            };
            s.pending.insert(
                n,
                Pending {
                    envelope,
                    sent,
                    reply: Some(tx),
                },
            );
        }
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }

    /// Sends what Slack would post to `path` over HTTP (`/slack/commands` form,
    /// `/slack/interactions` form with a `payload`, `/slack/events` JSON) as the
    /// envelope Socket Mode carries instead; `None` when it is not something Slack
    /// sends over a socket.
    pub fn envelope_for(path: &str, body: &[u8]) -> Option<(&'static str, Value)> {
        match path {
            "/slack/commands" => {
                let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(body).ok()?;
                Some(("slash_commands", json!(form)))
            }
            "/slack/interactions" => {
                let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(body).ok()?;
                Some((
                    "interactive",
                    serde_json::from_str(form.get("payload")?).ok()?,
                ))
            }
            "/slack/events" => {
                let event: Value = serde_json::from_slice(body).ok()?;
                (event["type"] == "event_callback").then_some(("events_api", event))
            }
            _ => None,
        }
    }
}

/// One connection: `hello`, then whatever is pending (sent again), then envelopes as
/// they come; acknowledgements resolve their senders.
async fn serve(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut frames) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let hello = json!({
        "type": "hello",
        "num_connections": 1,
        "debug_info": { "host": "fake-socket-mode", "build_number": 1, "approximate_connection_time": 3600 },
        "connection_info": { "app_id": "A0WAIVER" },
    });
    let _ = tx.send(Frame::Text(hello.to_string().into()));
    let id = {
        let mut s = shared.lock();
        s.next_connection += 1;
        s.accepted += 1;
        let id = s.next_connection;
        let mut again = 0;
        for p in s.pending.values_mut() {
            if p.sent {
                let n = p.envelope["retry_attempt"].as_u64().unwrap_or_default();
                p.envelope["retry_attempt"] = json!(n + 1);
                p.envelope["retry_reason"] = json!("timeout");
                again += 1;
            }
            p.sent = true;
            let _ = tx.send(Frame::Text(p.envelope.to_string().into()));
        }
        s.redelivered += again;
        s.connections.insert(id, tx.clone());
        id
    };
    shared.changed.notify_waiters();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let close = matches!(frame, Frame::Close(_));
            if sink.send(frame).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(frame)) = frames.next().await {
        let Frame::Text(text) = frame else {
            if matches!(frame, Frame::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(ack) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(envelope_id) = ack["envelope_id"].as_str() else {
            continue;
        };
        let mut s = shared.lock();
        if s.drop_next_ack {
            // Slack never hears this one: the socket goes, the envelope stays pending.
            s.drop_next_ack = false;
            if let Some(conn) = s.connections.remove(&id) {
                let _ = conn.send(Frame::Close(None));
            }
            break;
        }
        let Some(n) = s.by_id.remove(envelope_id) else {
            continue;
        };
        if let Some(mut p) = s.pending.remove(&n)
            && let Some(reply) = p.reply.take()
        {
            let _ = reply.send(ack.get("payload").cloned());
        }
    }
    shared.lock().connections.remove(&id);
    shared.changed.notify_waiters();
    writer.abort();
}

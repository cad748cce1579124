//! Slack request verification and who may click: every bad request is refused with a
//! 4xx and changes nothing; refusals of people are explained and audited.

mod common;

use common::{App, TestDb, uid};
use serde_json::json;
use waiver::domain::State;
use waiver::fakes::slack::workspace::{Input, describe};

const INTAKE: &str = "C0AIXINTAKE";

/// What a refused request must leave untouched.
#[derive(Debug, PartialEq)]
struct Footprint {
    audit: u64,
    outbox: usize,
    views: usize,
    requests: usize,
}

async fn footprint(app: &App) -> Footprint {
    let store = &app.store();
    Footprint {
        audit: store.verify_audit().await.unwrap().unwrap().entries,
        outbox: store.outbox().await.unwrap().len(),
        views: app.fake().views_opened().len(),
        requests: store
            .requests_by(&common::p("james.carter"), 1000)
            .await
            .unwrap()
            .len(),
    }
}

fn now_secs(app: &App) -> i64 {
    app.clock.unix_seconds()
}

both!(
    forged_stale_and_malformed_requests_are_refused_and_change_nothing,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let ws = &app.ws;
        let james = uid("james.carter");
        let before = footprint(&app).await;
        let form = "application/x-www-form-urlencoded";
        let body = ws.command_body(&james, "", &app.fake().issue_trigger());
        let sig = |ts: i64, body: &[u8]| ws.signature(ts, body);
        let other = waiver::config::Secret::new("not-the-secret");
        let headers = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
        };
        let good = sig(now_secs(&app), &body);
        let ts = good[0].1.clone();
        let signature = good[1].1.clone();
        type Case<'a> = (&'a str, Vec<u8>, Vec<(&'static str, String)>, u16);
        let cases: Vec<Case> = vec![
            (
                "tampered body",
                [body.clone(), b"&text=list".to_vec()].concat(),
                good.clone(),
                401,
            ),
            (
                "wrong secret",
                body.clone(),
                vec![
                    ("x-slack-request-timestamp", ts.clone()),
                    (
                        "x-slack-signature",
                        waiver::chat::slack::verify::sign(&other, now_secs(&app), &body),
                    ),
                ],
                401,
            ),
            (
                "stale timestamp",
                body.clone(),
                sig(now_secs(&app) - 301, &body),
                401,
            ),
            (
                "future timestamp",
                body.clone(),
                sig(now_secs(&app) + 301, &body),
                401,
            ),
            ("no headers", body.clone(), vec![], 401),
            (
                "no signature",
                body.clone(),
                headers(&[("x-slack-request-timestamp", &ts)]),
                401,
            ),
            (
                "no timestamp",
                body.clone(),
                headers(&[("x-slack-signature", &signature)]),
                401,
            ),
            (
                "duplicated signature",
                body.clone(),
                [good.clone(), vec![("x-slack-signature", signature.clone())]].concat(),
                401,
            ),
            (
                "duplicated timestamp",
                body.clone(),
                [
                    good.clone(),
                    vec![("x-slack-request-timestamp", ts.clone())],
                ]
                .concat(),
                401,
            ),
            (
                "malformed timestamp",
                body.clone(),
                headers(&[
                    ("x-slack-request-timestamp", "soon"),
                    ("x-slack-signature", &signature),
                ]),
                401,
            ),
            (
                "malformed signature",
                body.clone(),
                headers(&[
                    ("x-slack-request-timestamp", &ts),
                    ("x-slack-signature", "v0=not-hex"),
                ]),
                401,
            ),
            (
                "v1 signature",
                body.clone(),
                headers(&[
                    ("x-slack-request-timestamp", &ts),
                    ("x-slack-signature", &signature.replace("v0=", "v1=")),
                ]),
                401,
            ),
        ];
        for (name, body, headers, status) in cases {
            let reply = ws.post_raw("/slack/commands", form, body, &headers).await;
            assert_eq!(reply.status, status, "{name}: {}", reply.body);
            assert!(
                !reply.body.contains("mismatch") && !reply.body.contains("secret"),
                "{name}: no detail leaks"
            );
        }
        // The same rules hold on every Slack route.
        for path in ["/slack/interactions", "/slack/events"] {
            let reply = ws
                .post_raw(path, "application/json", b"{}".to_vec(), &[])
                .await;
            assert_eq!(reply.status, 401, "{path}");
        }
        // Oversize bodies: 413, declared or streamed.
        let big = vec![b'a'; 300 * 1024];
        let reply = ws.post("/slack/commands", form, big.clone()).await;
        assert_eq!(reply.status, 413);
        // Signed but malformed payloads: 400.
        let malformed: Vec<(&str, &str, Vec<u8>)> = vec![
            ("/slack/commands", form, b"team_id=T0NWIND01".to_vec()),
            ("/slack/interactions", form, b"payload=not-json".to_vec()),
            ("/slack/interactions", form, b"nothing=here".to_vec()),
            (
                "/slack/interactions",
                form,
                serde_urlencoded::to_string([("payload", json!({"type": "mystery"}).to_string())])
                    .unwrap()
                    .into_bytes(),
            ),
            (
                "/slack/interactions",
                form,
                serde_urlencoded::to_string([(
                    "payload",
                    format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
                )])
                .unwrap()
                .into_bytes(),
            ),
            ("/slack/events", "application/json", b"{\"type\":".to_vec()),
            (
                "/slack/events",
                "application/json",
                format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            ),
        ];
        for (path, ct, body) in malformed {
            let reply = ws.post(path, ct, body).await;
            assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        }
        assert_eq!(
            footprint(&app).await,
            before,
            "refused requests change nothing"
        );
        // A valid request still works.
        let reply = ws
            .post(
                "/slack/commands",
                form,
                ws.command_body(&james, "", &app.fake().issue_trigger()),
            )
            .await;
        assert_eq!(reply.status, 200);
        app.until("intake modal", |f| f.views_opened().len() == 1)
            .await;
        app.stop().await;
    }
);

both!(
    ssl_check_and_url_verification_are_answered_and_never_dispatched,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let ws = &app.ws;
        let form = "application/x-www-form-urlencoded";
        let before = footprint(&app).await;
        // Unsigned, both are refused like anything else.
        let reply = ws
            .post_raw(
                "/slack/commands",
                form,
                b"ssl_check=1&token=x".to_vec(),
                &[],
            )
            .await;
        assert_eq!(reply.status, 401);
        let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
        let reply = ws
            .post_raw(
                "/slack/events",
                "application/json",
                challenge.to_string().into_bytes(),
                &[],
            )
            .await;
        assert_eq!(reply.status, 401);
        // Signed: exactly as Slack specifies.
        let reply = ws
            .post("/slack/commands", form, b"ssl_check=1&token=x".to_vec())
            .await;
        assert_eq!((reply.status, reply.body.as_str()), (200, ""));
        let reply = ws
            .post(
                "/slack/events",
                "application/json",
                challenge.to_string().into_bytes(),
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["challenge"],
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        );
        // Smuggling: an ssl_check carrying a real command is not dispatched...
        let smuggled = [
            b"ssl_check=1&".to_vec(),
            ws.command_body(&uid("james.carter"), "", &app.fake().issue_trigger()),
        ]
        .concat();
        let reply = ws.post("/slack/commands", form, smuggled).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, ""));
        // ... nor is a url_verification carrying an event.
        let smuggled = json!({
            "type": "url_verification", "challenge": "abc",
            "event": {"type": "app_home_opened", "user": uid("james.carter"), "tab": "home"},
            "event_id": "Ev0SMUGGLE"
        });
        let reply = ws
            .post(
                "/slack/events",
                "application/json",
                smuggled.to_string().into_bytes(),
            )
            .await;
        assert_eq!(reply.json()["challenge"], "abc");
        app.fake()
            .wait_for(std::time::Duration::from_millis(200), |_| false)
            .await;
        assert_eq!(footprint(&app).await, before, "nothing was dispatched");
        assert!(app.fake().home(&uid("james.carter")).is_none());
        app.stop().await;
    }
);

/// Files a request as James and waits for its completeness card.
async fn filed(app: &App, requester: &str) -> waiver::domain::RequestId {
    let svc = app.service();
    let waiver::service::Submitted::Filed(r) = svc
        .submit(&common::p(requester), &common::form(), None, app.now())
        .await
        .unwrap()
    else {
        panic!("not filed")
    };
    let reference = r.id.to_string();
    app.until("completeness card", |f| {
        f.messages(INTAKE)
            .iter()
            .any(|m| describe(&m.blocks).contains(&reference))
    })
    .await;
    r.id
}

both!(
    refused_clicks_are_explained_and_audited,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        // Olivia holds no role: she may not review completeness.
        let id = filed(&app, "carlos.mendes").await;
        let card = app.message(INTAKE, &id.to_string());
        let views = app.fake().views_opened().len();
        app.ws
            .click(&uid("olivia.brown"), &card, "complete")
            .await
            .unwrap();
        app.until("ephemeral", |f| {
            !f.ephemerals(&uid("olivia.brown")).is_empty()
        })
        .await;
        let said = describe(&app.fake().ephemerals(&uid("olivia.brown"))[0].blocks);
        assert_eq!(
            said,
            "Only members of AI intake desk can do this, and you are not one."
        );
        app.ws
            .click(&uid("olivia.brown"), &card, "send_back")
            .await
            .unwrap();
        app.until("second ephemeral", |f| {
            f.ephemerals(&uid("olivia.brown")).len() == 2
        })
        .await;
        assert_eq!(
            app.fake().views_opened().len(),
            views,
            "no modal for someone who may not use it"
        );

        // Carlos, a department head, may not approve his own request.
        app.ws
            .click(&uid("noah.fischer"), &card, "complete")
            .await
            .unwrap();
        let svc = app.service();
        let r = app.store().load(id).await.unwrap().unwrap();
        for (who, role) in [("omar.haddad", "risk"), ("tomas.novak", "security")] {
            let action = waiver::domain::Action::Assess(waiver::domain::AssessmentInput {
                role: waiver::governance::RoleId::new(role),
                likelihood: 1,
                impact: 2,
                findings: "ok".into(),
                mitigations: String::new(),
                recommendation: waiver::domain::Recommendation::Approve,
            });
            let attempt = waiver::service::Attempt::new(
                waiver::domain::Actor::Person(common::p(who)),
                id,
                r.version(),
                action,
            );
            svc.act(attempt, app.now()).await.unwrap();
        }
        app.until("decision card", |f| {
            !f.messages("C0AIXAPPROVALS").is_empty()
        })
        .await;
        let decision = app.message("C0AIXAPPROVALS", &id.to_string());
        let carlos = uid("carlos.mendes");
        app.ws.click(&carlos, &decision, "approve").await.unwrap();
        app.until("ephemeral to Carlos", |f| !f.ephemerals(&carlos).is_empty())
            .await;
        assert_eq!(
            describe(&app.fake().ephemerals(&carlos)[0].blocks),
            format!("You filed, edited or own {id}, so you cannot review, assess or approve it.")
        );
        assert_eq!(app.fake().views_opened().len(), views);
        // Every refusal is in the audit trail, with who tried what.
        let refused: Vec<(String, String)> = app
            .store()
            .audit_of(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == waiver::store::Outcome::Refused)
            .map(|e| (e.actor, e.action))
            .collect();
        assert_eq!(
            refused,
            vec![
                ("olivia.brown".into(), "mark_complete".into()),
                ("olivia.brown".into(), "send_back".into()),
                ("carlos.mendes".into(), "approve".into())
            ]
        );
        // A user from a workspace Waiver does not serve is refused too.
        let mut stranger_card = card.clone();
        stranger_card.channel = INTAKE.into();
        let payload = app
            .ws
            .click_payload(
                "U0STRANGER",
                &stranger_card,
                "complete",
                &app.fake().issue_trigger(),
            )
            .unwrap();
        let mut payload = payload;
        payload["team"]["id"] = json!("T0EVILCORP");
        payload["user"]["team_id"] = json!("T0EVILCORP");
        let body = serde_urlencoded::to_string([("payload", payload.to_string())])
            .unwrap()
            .into_bytes();
        let reply = app
            .ws
            .post(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                body,
            )
            .await;
        assert_eq!(reply.status, 200);
        app.until("stranger told", |f| !f.ephemerals("U0STRANGER").is_empty())
            .await;
        assert!(
            describe(&app.fake().ephemerals("U0STRANGER")[0].blocks)
                .contains("T0EVILCORP is not configured")
        );
        app.stop().await;
    }
);

both!(
    a_double_click_makes_exactly_one_decision,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let id = filed(&app, "james.carter").await;
        let card = app.message(INTAKE, &id.to_string());
        // Two reviewers click Complete at the same moment.
        let (noah, lucia) = (uid("noah.fischer"), uid("lucia.romero"));
        let (a, b) = tokio::join!(
            app.ws.click(&noah, &card, "complete"),
            app.ws.click(&lucia, &card, "complete"),
        );
        assert_eq!((a.unwrap().status, b.unwrap().status), (200, 200));
        let r = app.request(id).await;
        assert_eq!(r.state, State::InAssessment);
        assert_eq!(r.reviews.len(), 1, "exactly one verdict");
        let winner = r.reviews[0].reviewer.to_string();
        let loser = if winner == "noah.fischer" {
            "lucia.romero"
        } else {
            "noah.fischer"
        };
        app.until("the second clicker is told", |f| {
            !f.ephemerals(&uid(loser)).is_empty()
        })
        .await;
        let said = describe(&app.fake().ephemerals(&uid(loser))[0].blocks);
        assert!(
            said.contains("Completeness review is not possible"),
            "{said}"
        );
        // The same person clicking twice: one verdict, one explanation.
        let id = filed(&app, "james.carter").await;
        let card = app.message(INTAKE, &id.to_string());
        let (a, b) = tokio::join!(
            app.ws.click(&noah, &card, "complete"),
            app.ws.click(&noah, &card, "complete"),
        );
        assert_eq!((a.unwrap().status, b.unwrap().status), (200, 200));
        assert_eq!(app.request(id).await.reviews.len(), 1);
        app.stop().await;
    }
);

both!(
    a_click_on_an_outdated_card_is_refused,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let id = filed(&app, "james.carter").await;
        let v1_card = app.message(INTAKE, &id.to_string());
        let svc = app.service();
        let james = waiver::domain::Actor::Person(common::p("james.carter"));
        let noah = waiver::domain::Actor::Person(common::p("noah.fischer"));
        let now = app.now();
        svc.act(
            waiver::service::Attempt::new(
                noah,
                id,
                1,
                waiver::domain::Action::SendBack {
                    questions: "Scope?".into(),
                },
            ),
            now,
        )
        .await
        .unwrap();
        let content =
            waiver::domain::RequestContent::parse(&common::form(), svc.governance(), now.date())
                .unwrap();
        svc.act(
            waiver::service::Attempt::new(
                james,
                id,
                1,
                waiver::domain::Action::Update {
                    content: Box::new(content),
                    note: None,
                },
            ),
            now,
        )
        .await
        .unwrap();
        app.drained().await;
        // Lucía still has the version 1 card open and clicks its Complete button.
        app.ws
            .click(&uid("lucia.romero"), &v1_card, "complete")
            .await
            .unwrap();
        app.until("ephemeral", |f| {
            !f.ephemerals(&uid("lucia.romero")).is_empty()
        })
        .await;
        assert_eq!(
            describe(&app.fake().ephemerals(&uid("lucia.romero"))[0].blocks),
            format!(
                "This card shows version 1 of {id}, but the request is now at version 2. Use the latest card."
            )
        );
        let r = app.store().load(id).await.unwrap().unwrap();
        assert_eq!(
            (r.state, r.reviews.len()),
            (State::Submitted, 1),
            "only the send-back"
        );
        app.stop().await;
    }
);

both!(
    an_events_api_retry_is_processed_once,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let id = filed(&app, "james.carter").await;
        let card = app.message(INTAKE, &id.to_string());
        let priya = uid("priya.nair");
        let reply = app
            .ws
            .reply_in_thread(
                &priya,
                &card,
                "Is this the same tool as AIX-0007?",
                "Ev0THREAD1",
            )
            .await;
        assert_eq!(reply.status, 200);
        // Slack re-sends the same event (same event_id) with its retry headers.
        let ts = app.fake().messages(INTAKE).last().unwrap().ts.clone();
        let event = json!({
            "type": "message", "channel": INTAKE, "user": priya, "text": "Is this the same tool as AIX-0007?",
            "ts": ts, "thread_ts": card.ts, "channel_type": "channel", "event_ts": ts
        });
        for retry in 1..=3 {
            let reply = app.ws.event("Ev0THREAD1", event.clone(), Some(retry)).await;
            assert_eq!(reply.status, 200);
        }
        let r = app.request(id).await;
        assert_eq!(r.comments.len(), 1, "one comment for four deliveries");
        assert_eq!(r.comments[0].text, "Is this the same tool as AIX-0007?");
        assert_eq!(r.comments[0].author, common::p("priya.nair"));
        // Our own messages and edits in the thread are not comments.
        let bot = json!({"type": "message", "channel": INTAKE, "bot_id": "B0WAIVER", "text": "x", "ts": "1.1", "thread_ts": card.ts});
        app.ws.event("Ev0BOT", bot, None).await;
        assert_eq!(app.request(id).await.comments.len(), 1);
        app.stop().await;
    }
);

both!(
    user_text_is_escaped_so_it_cannot_ping_or_link,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let mut form = common::form();
        form.title = "<!channel> urgent <@U0NW00025> see <https://evil.example|policy>".into();
        form.justification = "Approved by <!here> & legal".into();
        let svc = app.service();
        let waiver::service::Submitted::Filed(r) = svc
            .submit(&common::p("james.carter"), &form, None, app.now())
            .await
            .unwrap()
        else {
            panic!()
        };
        app.until("card", |f| !f.messages(INTAKE).is_empty()).await;
        app.drained().await;
        // Mentions and links only work in mrkdwn text (blocks and the message text);
        // plain_text objects (headers, buttons) are shown literally by Slack.
        fn mrkdwn(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    if o.get("type").and_then(|t| t.as_str()) == Some("mrkdwn") {
                        out.push(o["text"].as_str().unwrap_or_default().to_string());
                    }
                    o.values().for_each(|x| mrkdwn(x, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| mrkdwn(x, out)),
                _ => {}
            }
        }
        let messages: Vec<_> = app
            .fake()
            .messages(INTAKE)
            .into_iter()
            .chain(app.fake().dms(&uid("james.carter")))
            .collect();
        assert!(messages.len() >= 3);
        for m in messages {
            let mut texts = vec![m.text.clone().unwrap_or_default()];
            mrkdwn(&m.blocks, &mut texts);
            for text in texts {
                for forbidden in ["<!channel>", "<!here>", "<@U0NW00025>", "<https://evil"] {
                    assert!(
                        !text.contains(forbidden),
                        "{forbidden} reached Slack unescaped: {text}"
                    );
                }
            }
        }
        let card = describe(&app.message(INTAKE, &r.id.to_string()).blocks);
        assert!(
            card.contains("<!channel> urgent"),
            "shown literally: {card}"
        );
        app.stop().await;
    }
);

both!(
    modal_field_errors_come_back_inside_the_modal,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let james = uid("james.carter");
        app.ws.command(&james, "").await;
        app.until("modal", |f| f.views_opened().len() == 1).await;
        let view = app.fake().views_opened()[0].clone();
        let reply = app
            .ws
            .submit(
                &james,
                &view,
                &[
                    ("title", Input::Text("x")),
                    ("start", Input::Date("2020-01-01")),
                    ("end", Input::Date("2019-01-01")),
                ],
            )
            .await;
        let body = reply.json();
        assert_eq!(body["response_action"], "errors", "{}", reply.body);
        let errors = body["errors"].as_object().unwrap();
        for field in [
            "policy",
            "exception_type",
            "ai_system",
            "justification",
            "data_categories",
            "start",
            "end",
            "business_owner",
        ] {
            assert!(
                errors.contains_key(field),
                "{field} missing from {errors:?}"
            );
        }
        assert!(
            errors["start"]
                .as_str()
                .unwrap()
                .contains("cannot be in the past")
        );
        assert_eq!(
            app.store()
                .requests_by(&common::p("james.carter"), 10)
                .await
                .unwrap()
                .len(),
            0
        );
        app.stop().await;
    }
);

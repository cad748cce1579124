//! Hostile input, by property tests (proptest; `PROPTEST_CASES` sets how many cases
//! each property tries, 256 by default): Slack signatures and payloads, Teams tokens
//! and activities, the governance parser, the CSV import and the evidence-pack
//! verifier. No input panics; malformed input is refused with a reason and changes
//! nothing; a verified pack with any byte changed, dropped or added never verifies.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use waiver::config::Secret;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes that are mostly like `valid`: a few bytes replaced, dropped or added.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    proptest::collection::vec((0..len, any::<u8>(), 0..3u8), 1..6).prop_map(move |edits| {
        let mut b = valid.clone();
        for (at, byte, how) in edits {
            let at = at.min(b.len());
            match how {
                0 if at < b.len() => b[at] = byte,
                1 if at < b.len() => {
                    b.remove(at);
                }
                _ => b.insert(at, byte),
            }
        }
        b
    })
}

// ---- Slack ----------------------------------------------------------------------

fn slack_headers(ts: &str, sig: &str) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    if let Ok(v) = ts.parse() {
        h.insert("x-slack-request-timestamp", v);
    }
    if let Ok(v) = sig.parse() {
        h.insert("x-slack-signature", v);
    }
    h
}

#[test]
fn slack_signatures_verify_exactly_the_signed_body_within_five_minutes() {
    use waiver::chat::slack::verify::{sign, verify};
    let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
    let now = 1_900_000_000_i64;
    runner()
        .run(
            &(
                proptest::collection::vec(any::<u8>(), 0..600),
                -900i64..900,
                any::<String>(),
                any::<String>(),
            ),
            |(body, offset, ts_text, sig_text)| {
                // Anything in the headers: refused with a reason, never a panic.
                let _ = verify(&secret, &slack_headers(&ts_text, &sig_text), &body, now);
                // Signed as Slack signs: accepted within 300 s either way, refused beyond.
                let ts = now + offset;
                let sig = sign(&secret, ts, &body);
                let ok = verify(&secret, &slack_headers(&ts.to_string(), &sig), &body, now);
                prop_assert_eq!(ok.is_ok(), offset.abs() <= 300, "offset {}", offset);
                // Any other body, or another secret, is refused.
                let mut other = body.clone();
                other.push(b'x');
                prop_assert!(
                    verify(
                        &secret,
                        &slack_headers(&now.to_string(), &sign(&secret, now, &body)),
                        &other,
                        now
                    )
                    .is_err()
                );
                let forged = sign(&Secret::new("another-secret"), now, &body);
                prop_assert!(
                    verify(
                        &secret,
                        &slack_headers(&now.to_string(), &forged),
                        &body,
                        now
                    )
                    .is_err()
                );
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn signed_garbage_on_every_slack_route_is_refused_and_changes_nothing() {
    let rt = runtime();
    let app = rt.block_on(async { common::App::spawn(common::TestDb::sqlite().await).await });
    let command = app
        .ws
        .command_body(&common::uid("james.carter"), "status AIX-0001", "t-1");
    let interaction = format!(
        "payload={}",
        urlencode(
            &serde_json::json!({
                "type": "block_actions",
                "team": { "id": waiver::fakes::slack::DEFAULT_TEAM_ID },
                "user": { "id": common::uid("noah.fischer") },
                "trigger_id": "t-2",
                "actions": [{ "action_id": "complete", "value": "{\"r\":1,\"v\":1}", "type": "button" }],
            })
            .to_string()
        )
    )
    .into_bytes();
    let event = app.ws.event_body(
        "Ev1",
        serde_json::json!({ "type": "app_home_opened", "user": common::uid("james.carter") }),
    );
    let routes = [
        (
            "/slack/commands",
            "application/x-www-form-urlencoded",
            command,
        ),
        (
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            interaction,
        ),
        ("/slack/events", "application/json", event),
    ];
    for (path, content_type, valid) in routes {
        let strategy = prop_oneof![
            mutated(valid),
            proptest::collection::vec(any::<u8>(), 0..400),
        ];
        runner()
            .run(&strategy, |body| {
                let reply = rt.block_on(app.ws.post(path, content_type, body));
                // Refused (400) or, when a mutation still reads, answered; never an
                // internal error, never a dropped connection.
                prop_assert!(
                    [200, 400, 404].contains(&reply.status),
                    "{} answered {}: {}",
                    path,
                    reply.status,
                    reply.body
                );
                Ok(())
            })
            .unwrap();
    }
    rt.block_on(async {
        let store = app.store();
        assert!(
            store
                .requests_by(&common::p("james.carter"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        app.stop().await;
    });
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_string()
}

// ---- Teams ----------------------------------------------------------------------

#[test]
fn teams_tokens_that_are_not_the_connector_s_are_refused() {
    use waiver::fakes::teams::{ENDORSED_KID, FakeTeams, SigningKey};
    let rt = runtime();
    let fake = rt.block_on(FakeTeams::start(
        common::teams::APP_ID,
        common::teams::APP_PASSWORD,
        &common::teams::tenant(),
        waiver::clock::Clock::starting_at(common::now()),
    ));
    waiver::chat::install_tls_provider();
    let verifier = waiver::chat::teams::auth::Verifier::new(
        waiver::config::TeamsConfig {
            app_id: common::teams::APP_ID.into(),
            app_password: Secret::new(common::teams::APP_PASSWORD),
            tenant_id: common::teams::tenant(),
            openid_metadata_url: fake.openid_url(),
            token_url: fake.token_url(),
            service_urls: vec![fake.service_url()],
        },
        reqwest::Client::new(),
        fake.clock().clone(),
    );
    let good = fake.token(&fake.service_url());
    assert!(
        rt.block_on(verifier.verify(Some(&format!("Bearer {good}"))))
            .is_ok()
    );
    let tokens = prop_oneof![
        any::<String>(),
        mutated(good.clone().into_bytes()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // Well-signed, with claims of any shape.
        (any::<String>(), any::<String>(), any::<i64>()).prop_map(move |(iss, aud, exp)| {
            fake.sign(
                &serde_json::json!({ "iss": iss, "aud": aud, "exp": exp, "serviceurl": "x" }),
                SigningKey::Endorsed,
                ENDORSED_KID,
            )
        }),
    ];
    runner()
        .run(&tokens, |token| {
            let header = format!("Bearer {token}");
            let verified = rt.block_on(verifier.verify(Some(&header)));
            if token != good {
                prop_assert!(verified.is_err(), "accepted {}", token);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn teams_activities_of_any_shape_are_refused_or_answered_never_failed() {
    let rt = runtime();
    let app =
        rt.block_on(async { common::teams::TeamsApp::spawn(common::TestDb::sqlite().await).await });
    let james = common::teams::member("james.carter");
    let valid = app
        .tenant
        .personal(&james, "invoke")
        .to_string()
        .into_bytes();
    let service_url = app.fake().service_url();
    let token = app.fake().token(&service_url);
    let strategy = prop_oneof![
        mutated(valid),
        proptest::collection::vec(any::<u8>(), 0..400)
    ];
    runner()
        .run(&strategy, |body| {
            let reply = rt.block_on(app.tenant.post_raw(Some(format!("Bearer {token}")), body));
            prop_assert!(
                [200, 400, 401, 403].contains(&reply.status),
                "answered {}: {}",
                reply.status,
                reply.body
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        assert!(
            app.store()
                .requests_by(&common::p("james.carter"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        app.stop().await;
    });
}

// ---- The governance file and the CSV import --------------------------------------

#[test]
fn any_governance_text_parses_or_is_refused_with_a_reason() {
    let shipped = common::SHIPPED.as_bytes().to_vec();
    let strategy = prop_oneof![
        mutated(shipped),
        proptest::collection::vec(any::<u8>(), 0..300),
    ];
    runner()
        .run(&strategy, |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            match waiver::governance::parse(&text) {
                Ok(_) => {}
                Err(waiver::governance::ParseError::Syntax(message)) => {
                    prop_assert!(!message.trim().is_empty())
                }
                Err(waiver::governance::ParseError::Invalid(errors)) => {
                    prop_assert!(!errors.is_empty());
                    for e in errors {
                        prop_assert!(!e.field.is_empty() && !e.message.trim().is_empty(), "{}", e);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_csv_imports_or_names_its_bad_rows() {
    let gov = common::gov();
    let template = include_str!("../manifests/import-template.csv")
        .as_bytes()
        .to_vec();
    let today = common::now().date();
    let strategy = prop_oneof![
        mutated(template),
        proptest::collection::vec(any::<u8>(), 0..300),
    ];
    runner()
        .run(&strategy, |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(errors) = waiver::import::parse(&gov, &text, "hostile.csv", today) {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.to_string().trim().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---- Evidence packs -------------------------------------------------------------

#[test]
fn a_pack_with_any_byte_changed_dropped_or_added_never_verifies() {
    let rt = runtime();
    let (db, pack) = rt.block_on(async {
        let db = common::TestDb::sqlite().await;
        common::flow::four_lifecycles(&db.service().await).await;
        let store = db.store().await;
        let mut out = Vec::new();
        waiver::export::pack::write(&store, &common::gov(), None, common::now(), &mut out)
            .await
            .unwrap();
        store.close().await;
        (db, out)
    });
    waiver::export::pack::verify(pack.as_slice()).expect("the pack as written verifies");
    let len = pack.len();
    let edits = (0..len, any::<u8>(), 0..3u8);
    runner()
        .run(&edits, |(at, byte, how)| {
            let mut b = pack.clone();
            match how {
                0 => {
                    if b[at] == byte {
                        return Err(TestCaseError::reject("the same byte"));
                    }
                    b[at] = byte;
                }
                1 => {
                    b.remove(at);
                }
                _ => b.insert(at, byte),
            }
            prop_assert!(
                waiver::export::pack::verify(b.as_slice()).is_err(),
                "verified with byte {} {}",
                at,
                ["changed", "dropped", "added"][how as usize]
            );
            Ok(())
        })
        .unwrap();
    // Appending anything after the seal is a change too.
    let mut longer = pack.clone();
    longer.extend_from_slice(b" ");
    assert!(waiver::export::pack::verify(longer.as_slice()).is_err());
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..2000), |b| {
            prop_assert!(waiver::export::pack::verify(b.as_slice()).is_err());
            Ok(())
        })
        .unwrap();
    drop(db);
}

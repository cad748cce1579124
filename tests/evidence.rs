//! Evidence packs on both databases: after several lifecycles a pack verifies with no
//! database, and changing any single field of a record, an entry or a governance
//! file inside it makes verification fail and name what changed.

mod common;

use common::{TestDb, now, p};
use serde_json::{Value, json};
use waiver::domain::{Action, Actor, Timestamp};
use waiver::export::pack;
use waiver::service::{Acted, Attempt};

async fn pack_of(db: &TestDb, since: Option<Timestamp>) -> Vec<u8> {
    let store = db.store().await;
    let mut out = Vec::new();
    pack::write(&store, &common::gov(), since, now(), &mut out)
        .await
        .unwrap();
    out
}

fn verify(bytes: &[u8]) -> Result<pack::Report, String> {
    pack::verify(bytes).map_err(|e| e.to_string())
}

/// The pack's JSON (everything before its seal's line).
fn content(bytes: &[u8]) -> &[u8] {
    let body = &bytes[..bytes.len() - 1];
    &bytes[..body.iter().rposition(|b| *b == b'\n').unwrap() + 1]
}

/// `bytes` with `edit` applied to the pack's JSON, sealed again (as a forger who
/// knows the format would), so that what the checks inside say is what is tested.
fn tampered(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(content(bytes)).unwrap();
    edit(&mut v);
    let mut out = serde_json::to_vec(&v).unwrap();
    out.push(b'\n');
    resealed(out)
}

/// `content` followed by its seal.
fn resealed(mut content: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let seal = hex::encode(sha2::Sha256::digest(&content));
    content.extend_from_slice(format!("{{\"seal\":\"{seal}\"}}\n").as_bytes());
    content
}

/// The audit line (as a JSON value) whose entry text contains `needle`.
fn entry_with<'a>(v: &'a mut Value, needle: &str) -> &'a mut Value {
    v["audit"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["entry"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no entry with {needle}"))
}

both!(
    a_pack_of_several_lifecycles_verifies_and_any_changed_field_is_named,
    |db: TestDb| async move {
        let ids = common::flow::four_lifecycles(&db.service().await).await;
        let bytes = pack_of(&db, None).await;
        let report = verify(&bytes).expect("the pack verifies");
        let head = db.store().await.verify_audit().await.unwrap().unwrap();
        assert_eq!(report.exceptions, 4);
        assert_eq!(report.decisions, 2, "one approval, one rejection");
        assert_eq!(report.governance_files, 1);
        assert_eq!((report.from_seq, report.head_seq), (1, head.entries));
        assert_eq!(report.entries, head.entries);
        assert_eq!(report.head_hash, head.head);
        assert!(
            report.to_string().starts_with(&format!(
                "evidence pack verified: 4 exception(s), 2 decision(s), {} audit entries (1..{}, head {})",
                head.entries, head.entries, head.head
            )),
            "{report}"
        );
        let a = ids[0].to_string();

        let cases: Vec<(&str, Vec<u8>, String)> = vec![
            (
                "a record's state",
                tampered(&bytes, |v| {
                    v["exceptions"][1]["request"]["state"] = json!("approved")
                }),
                format!("{}: the record is not the state its last change", ids[1]),
            ),
            (
                "a version's title",
                tampered(&bytes, |v| {
                    v["exceptions"][0]["request"]["versions"][0]["content"]["title"] =
                        json!("Something else")
                }),
                format!("{a}: the record is not the state its last change"),
            ),
            (
                "a grant's expiry",
                tampered(&bytes, |v| {
                    v["exceptions"][0]["request"]["grant"]["expires_at"] = json!(4102444800000i64)
                }),
                format!("{a}: the record is not the state its last change"),
            ),
            (
                "a record's revision",
                tampered(&bytes, |v| {
                    v["exceptions"][3]["request"]["revision"] = json!(1)
                }),
                format!(
                    "{}: the record is at revision 1 but its last change",
                    ids[3]
                ),
            ),
            (
                "the snapshot an approver saw",
                tampered(&bytes, |v| {
                    v["exceptions"][0]["decisions"][0]["snapshot"]["risk"]["score"] = json!(1)
                }),
                format!("{a}: the decision by hannah.berg is not the one audit entry"),
            ),
            (
                "a decision's governance hash",
                tampered(&bytes, |v| {
                    v["exceptions"][0]["decisions"][0]["governance_hash"] = json!("00")
                }),
                format!("{a}: the decision by hannah.berg names another governance hash"),
            ),
            (
                "a decision removed",
                tampered(&bytes, |v| {
                    v["exceptions"][0]["decisions"]
                        .as_array_mut()
                        .unwrap()
                        .clear()
                }),
                format!("{a}: 0 decision(s) in the record, 1 in the audit trail"),
            ),
            (
                "a reminder's status",
                tampered(&bytes, |v| {
                    let sent = v["exceptions"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .flat_map(|x| x["reminders"].as_array_mut().unwrap().iter_mut())
                        .find(|r| r["status"] == "sent")
                        .expect("a sent reminder (the SLA escalation)");
                    sent["status"] = json!("skipped");
                }),
                "is marked skipped but the audit trail says it was sent".into(),
            ),
            (
                "an audit entry's actor",
                tampered(&bytes, |v| {
                    let e = entry_with(v, "\"action\":\"reject\"");
                    let text = e["entry"]
                        .as_str()
                        .unwrap()
                        .replace("hannah.berg", "carlos.mendes");
                    e["entry"] = json!(text);
                }),
                "its content does not match its hash (it was altered)".into(),
            ),
            (
                "an audit entry removed",
                tampered(&bytes, |v| {
                    v["audit"].as_array_mut().unwrap().remove(2);
                }),
                "audit entry 3 is missing (the next entry in the pack is 4)".into(),
            ),
            (
                "an entry rehashed after editing (the chain breaks after it)",
                tampered(&bytes, |v| {
                    let audit = v["audit"].as_array_mut().unwrap();
                    let e = &mut audit[0];
                    let text = e["entry"]
                        .as_str()
                        .unwrap()
                        .replace("james.carter", "mallory");
                    let hash = waiver::store::chain_hash(e["prev_hash"].as_str().unwrap(), &text);
                    e["entry"] = json!(text);
                    e["hash"] = json!(hash);
                }),
                "audit entry 2: its prev_hash is not the previous entry's hash".into(),
            ),
            (
                "the head",
                tampered(&bytes, |v| {
                    v["manifest"]["chain"]["head_seq"] = json!(1_000_000)
                }),
                "not at the head the manifest names (entry 1000000".into(),
            ),
            (
                "the governance file",
                tampered(&bytes, |v| {
                    let text = v["governance"][0]["source"].as_str().unwrap().replacen(
                        "approvers",
                        "approverz",
                        1,
                    );
                    assert_ne!(text, v["governance"][0]["source"].as_str().unwrap());
                    v["governance"][0]["source"] = json!(text);
                }),
                "its text does not match its hash (it was altered)".into(),
            ),
            (
                "the governance file left out",
                tampered(&bytes, |v| v["governance"] = json!([])),
                format!("{a}: the decision by hannah.berg was made under governance file"),
            ),
            (
                "an exception left out",
                tampered(&bytes, |v| {
                    v["exceptions"].as_array_mut().unwrap().pop();
                }),
                "the manifest names 4 exception(s) but the pack holds 3".into(),
            ),
            (
                "an exception left out, the count lowered to match",
                tampered(&bytes, |v| {
                    v["exceptions"].as_array_mut().unwrap().remove(1);
                    v["manifest"]["exceptions"] = json!(3);
                }),
                format!("{} was changed by audit entry", ids[1]),
            ),
            (
                "a reminder's sending time",
                tampered(&bytes, |v| {
                    let sent = v["exceptions"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .flat_map(|x| x["reminders"].as_array_mut().unwrap().iter_mut())
                        .find(|r| r["status"] == "sent")
                        .unwrap();
                    sent["sent_at"] = json!(sent["sent_at"].as_i64().unwrap() + 1);
                }),
                "says it was sent to".into(),
            ),
            (
                "a partial pack relabelled as whole",
                tampered(&bytes, |v| {
                    v["audit"].as_array_mut().unwrap().remove(0);
                    let first = v["audit"][0].clone();
                    v["manifest"]["chain"]["from_seq"] = first["seq"].clone();
                    v["manifest"]["chain"]["prev_hash"] = first["prev_hash"].clone();
                }),
                "the manifest says the pack holds every exception, but its chain starts at entry 2"
                    .into(),
            ),
            (
                "not a pack",
                b"{\"manifest\": 1}".to_vec(),
                "it is not a readable evidence pack".into(),
            ),
        ];
        for (what, bytes, expected) in cases {
            let err = verify(&bytes).expect_err(what);
            assert!(
                err.starts_with("the evidence pack does not verify: ") && err.contains(&expected),
                "{what}: {err}\nwanted: {expected}"
            );
        }
        // What the chain does not cover is sealed: the export time, one space more.
        let text = String::from_utf8(bytes.clone()).unwrap();
        for edited in [
            text.replacen("\"exported_at\":", "\"exported_at\": ", 1),
            text.replacen("\"exported_at\":1", "\"exported_at\":2", 1),
        ] {
            assert_ne!(edited, text);
            let err = verify(edited.as_bytes()).unwrap_err();
            assert!(err.contains("its seal does not match its content"), "{err}");
        }
        let unsealed = content(&bytes).to_vec();
        assert!(
            verify(&unsealed)
                .unwrap_err()
                .contains("it carries no seal")
        );
    }
);

both!(
    a_pack_since_a_date_holds_the_chain_from_the_first_entry_that_concerns_it,
    |db: TestDb| async move {
        let ids = common::flow::four_lifecycles(&db.service().await).await;
        // Ten days on, the sent-back request is marked complete: a pack since then
        // holds it alone, with the chain from its first entry.
        let later = now().plus_days(10);
        let svc = db.service().await;
        let id = ids[3];
        let seen = svc.request(id).await.unwrap().unwrap().version();
        let acted = svc
            .act(
                Attempt::new(
                    Actor::Person(p("noah.fischer")),
                    id,
                    seen,
                    Action::MarkComplete,
                ),
                later,
            )
            .await
            .unwrap();
        assert!(matches!(acted, Acted::Applied { .. }), "{acted:?}");
        let first = db.store().await.audit_of(id).await.unwrap()[0].seq;
        assert!(first > 1);

        let bytes = pack_of(&db, Some(now().plus_days(5))).await;
        let report = verify(&bytes).expect("verifies");
        assert_eq!(report.exceptions, 1, "{report}");
        assert_eq!(report.from_seq, first);
        let v: Value = serde_json::from_slice(content(&bytes)).unwrap();
        assert_eq!(v["exceptions"][0]["reference"], json!(id.to_string()));
        assert_eq!(v["manifest"]["since"], json!(now().plus_days(5).millis()));
        // Cut off from the entry before it, the stretch still chains onto its
        // recorded start; with that start changed it does not.
        let bad = tampered(&bytes, |v| {
            v["manifest"]["chain"]["prev_hash"] = json!("ab")
        });
        assert!(verify(&bad).unwrap_err().contains(&format!(
            "audit entry {first}: its prev_hash is not the previous entry's hash"
        )));

        // Nothing changed since: no exceptions, an empty stretch that verifies.
        let report = verify(&pack_of(&db, Some(later.plus_days(1))).await).expect("verifies");
        assert_eq!((report.exceptions, report.entries), (0, 0));
        assert_eq!(report.from_seq, report.head_seq + 1);
    }
);

both!(
    export_in_slack_sends_an_auditor_a_link_to_a_pack_that_verifies,
    |db: TestDb| async move {
        let app = common::App::spawn_editing(
            db,
            waiver::app::Options {
                delivery: common::fast_delivery(),
                no_scheduler: true,
                ..Default::default()
            },
            std::sync::Arc::new(|c: &mut waiver::config::Config| {
                c.public_url = Some("http://127.0.0.1:9".into());
            }),
        )
        .await;
        let ids = common::flow::four_lifecycles(app.service()).await;
        let gov = common::gov();
        let auditor = gov
            .people
            .iter()
            .find(|p| gov.may_audit(&p.id) && p.slack.is_some())
            .unwrap()
            .id
            .clone();
        let who = common::uid(auditor.as_str());
        let reply = app.ws.command(&who, "export").await;
        assert_eq!(reply.json()["response_type"], "ephemeral");
        assert!(
            reply
                .body
                .contains("I have sent you a link to the evidence pack in a direct message"),
            "{}",
            reply.body
        );
        app.drained().await;
        let dm = app.fake().dms(&who);
        let text = waiver::fakes::slack::workspace::describe(&dm.last().unwrap().blocks);
        let start = text.find("http://127.0.0.1:9/evidence/").expect("a link");
        let link = text[start..].split_whitespace().next().unwrap();
        let token = link
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(|c: char| !c.is_ascii_hexdigit());
        // The link, on this server.
        let base = format!("http://{}", app.running.as_ref().unwrap().addr);
        let r = reqwest::get(format!("{base}/evidence/{token}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment; filename=\"waiver-evidence-")
        );
        let bytes = r.bytes().await.unwrap();
        let report = verify(&bytes).expect("the pack verifies");
        assert_eq!(report.exceptions, ids.len() as u64);
        // Asked for and downloaded: both audited.
        let audit = app.store().verify_audit().await.unwrap().unwrap();
        assert!(
            audit.entries > report.entries,
            "the download's own entry came after the pack"
        );
        // A forged or altered link is refused.
        let mut forged = token.to_string();
        forged.replace_range(
            forged.len() - 1..,
            if forged.ends_with('0') { "1" } else { "0" },
        );
        let r = reqwest::get(format!("{base}/evidence/{forged}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = reqwest::get(format!("{base}/evidence/nonsense"))
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Someone outside the auditor roles is refused, and the refusal audited.
        let outsider = gov
            .people
            .iter()
            .find(|p| !gov.may_audit(&p.id) && p.slack.is_some())
            .unwrap();
        let reply = app
            .ws
            .command(&common::uid(outsider.id.as_str()), "export")
            .await;
        assert!(
            reply.body.contains("Evidence packs are for"),
            "{}",
            reply.body
        );
        app.stop().await;
    }
);

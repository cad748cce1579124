//! `waiver import` on both databases: a valid sheet becomes exceptions Waiver watches
//! (reminded, expired) and shows as precedent; a sheet with bad rows imports nothing
//! and names each bad row by line and column; the same sheet again adds nothing.

mod common;

use common::{TestDb, now};
use waiver::domain::{State, Timestamp};
use waiver::import::{self, ImportError};

fn day(t: Timestamp, days: i64) -> String {
    (t.date() + chrono::Duration::days(days)).to_string()
}

const HEADER: &str = "external_id,title,policy,policy_version,exception_type,ai_system,justification,scope_departments,scope_users,scope_systems,data_categories,regions,department,requester,business_owner,controls,decision,risk_tier,approvers,decided_on,start,end,monitoring_owner,review_every_days,conditions,reason";

/// A sheet relative to `t`: one active (ends in 20 days), one expired, one rejected,
/// one approved whose condition is still open.
fn sheet(t: Timestamp) -> String {
    let rows = [
        format!(
            "OLD-1,Summarise sales calls,aiup,2026.1,tool_adoption,CallNotes AI,Call summaries in the CRM.,sales,Account executives,CRM,pii,us;canada,sales,james.carter,marcus.webb,No recordings kept.,approved,medium,hannah.berg,{d},{d},{end},marcus.webb,90,Vendor DPA signed | marcus.webb | {due} | done {due},",
            d = day(t, -60),
            end = day(t, 20),
            due = day(t, -50)
        ),
        format!(
            "OLD-2,Translate manuals,aiup,2025.4,tool_adoption,DeepTranslate,Manuals in five languages.,product,Writers,Docs,internal,eu,product,james.carter,marcus.webb,Public text only.,approved,low,carlos.mendes,{d},{d},{end},,,,",
            d = day(t, -390),
            end = day(t, -30)
        ),
        format!(
            "OLD-3,Auto-reply to tickets,aiup,2026.1,tool_adoption,HelpBot,Faster first replies.,product,Agents,Helpdesk,pii,us,product,james.carter,marcus.webb,Review before sending.,rejected,,hannah.berg,{d},{d},{end},,,,\"Replies must be reviewed by a person.\"",
            d = day(t, -90),
            end = day(t, 90)
        ),
        format!(
            "OLD-4,Draft job adverts,aiup,2026.1,tool_adoption,CopyWriter,Adverts faster.,people,Recruiters,ATS,internal,uk,people,james.carter,marcus.webb,Reviewed by HR.,approved,low,carlos.mendes,{d},{d},{end},marcus.webb,,Bias review | marcus.webb | {due},",
            d = day(t, -10),
            end = day(t, 100),
            due = day(t, 10)
        ),
    ];
    format!("{HEADER}\n{}\n", rows.join("\n"))
}

both!(
    a_valid_sheet_becomes_exceptions_waiver_watches_and_shows_as_precedent,
    |db: TestDb| async move {
        let svc = db.service().await;
        let text = sheet(now());
        let report = import::import(&svc, &text, "register.csv", "import:test", false, now())
            .await
            .unwrap();
        assert_eq!(report.rows, 4);
        assert_eq!(report.imported.len(), 4, "{report}");
        let id = |ext: &str| report.imported.iter().find(|(e, _)| e == ext).unwrap().1;
        let store = db.store().await;
        let load = |ext: &'static str| {
            let store = store.clone();
            let id = id(ext);
            async move { store.load(id).await.unwrap().unwrap() }
        };
        let active = load("OLD-1").await;
        assert_eq!(active.state, State::Active);
        let grant = active.grant.as_ref().unwrap();
        assert_eq!(grant.approvers, vec![common::p("hannah.berg")]);
        assert_eq!(grant.policy_version, "2026.1");
        assert_eq!(active.conditions[0].text, "Vendor DPA signed");
        assert!(active.conditions[0].done.is_some());
        assert_eq!(load("OLD-2").await.state, State::Expired);
        let rejected = load("OLD-3").await;
        assert_eq!(rejected.state, State::Rejected);
        assert_eq!(
            rejected.closure.unwrap().reason,
            "Replies must be reviewed by a person."
        );
        assert_eq!(
            load("OLD-4").await.state,
            State::Approved,
            "its condition is open"
        );

        // Audited as imported: who ran it, the file's hash, the line.
        let audit = store.audit_of(active.id).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "import");
        assert_eq!(audit[0].actor, "import:test");
        let source = audit[0].details["event"]["source"].as_str().unwrap();
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
        assert_eq!(
            source,
            format!("register.csv (sha256 {hash}), line 2, external id OLD-1")
        );
        // Nobody was told: history is not news.
        assert!(store.outbox().await.unwrap().is_empty());
        assert!(store.verify_audit().await.unwrap().is_ok());

        // Watched like any exception: the owner is reminded a week before it expires,
        // and it expires on time.
        let week_before = Timestamp::from_millis(grant.expires_at.millis() - 7 * 86_400_000);
        let report = svc.sweep(week_before, false).await.unwrap();
        let reminded: Vec<&str> = report
            .reminders
            .iter()
            .map(|(_, _, text)| text.as_str())
            .collect();
        assert!(
            reminded
                .iter()
                .any(|t| t.contains(&active.reference()) && t.contains("expires in 7 days")),
            "{reminded:?}"
        );
        let after = Timestamp::start_of(active.content().end)
            .plus_days(1)
            .plus_hours(1);
        svc.sweep(after, false).await.unwrap();
        assert_eq!(
            store.load(active.id).await.unwrap().unwrap().state,
            State::Expired
        );

        // A new request about the same AI system shows the imported one as precedent.
        let mut form = common::form();
        form.ai_system = "CallNotes AI".into();
        let waiver::service::Submitted::Filed(new) = svc
            .submit(&common::p("james.carter"), &form, None, now())
            .await
            .unwrap()
        else {
            panic!("not filed")
        };
        // The assessors' cards, once it is complete, list it among earlier exceptions.
        svc.act(
            waiver::service::Attempt::new(
                waiver::domain::Actor::Person(common::p("noah.fischer")),
                new.id,
                1,
                waiver::domain::Action::MarkComplete,
            ),
            now(),
        )
        .await
        .unwrap();
        let cards: Vec<String> = store
            .outbox()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.outgoing.request == Some(new.id) && m.outgoing.card.is_some())
            .map(|m| format!("{:?}", m.outgoing.message.sections))
            .collect();
        let precedent = format!("{} Summarise sales calls: expired", active.reference());
        assert!(
            cards.iter().any(|c| c.contains(&precedent)),
            "{precedent} in {cards:#?}"
        );
    }
);

both!(
    a_sheet_with_bad_rows_imports_nothing_and_names_each_by_line_and_column,
    |db: TestDb| async move {
        let svc = db.service().await;
        let good = sheet(now());
        let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
        // Line 3: an unknown person and a tier that is not one.
        lines[2] = lines[2]
            .replace("carlos.mendes", "nobody.here")
            .replace(",low,", ",huge,");
        // Line 4: a date that is not one, and the reason of a rejection left out.
        lines[3] = lines[3]
            .replacen(&day(now(), -90), "yesterday", 1)
            .replace("\"Replies must be reviewed by a person.\"", "");
        // Line 5: the external id of line 2 again, a region that does not exist.
        lines[4] = lines[4].replace("OLD-4", "OLD-1").replace(",uk,", ",mars,");
        // Line 6: decided tomorrow, for longer than its tier allows.
        lines.push(
            lines[1]
                .replace("OLD-1", "OLD-6")
                .replacen(
                    &format!(",{},", day(now(), -60)),
                    &format!(",{},", day(now(), 1)),
                    1,
                )
                .replace(&day(now(), 20), &day(now(), 600)),
        );
        let text = lines.join("\n");
        let err = import::import(&svc, &text, "bad.csv", "import:test", false, now())
            .await
            .unwrap_err();
        let ImportError::Rows(errors) = &err else {
            panic!("{err}")
        };
        let said: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        for expected in [
            "line 3, column approvers: \"nobody.here\" is not a person in the governance file",
            "line 3, column risk_tier: \"huge\" is not a tier (low, medium, high, critical)",
            "line 4, column decided_on: \"yesterday\" is not a date (YYYY-MM-DD)",
            "line 4, column reason: required for a rejected exception",
            "line 5, column external_id: \"OLD-1\" is on an earlier row too",
            "line 5, column regions:",
            "line 6, column decided_on:",
            "line 6, column end:",
        ] {
            assert!(
                said.iter().any(|s| s.starts_with(expected)),
                "{expected}\nin {said:#?}"
            );
        }
        assert!(
            said.iter().all(|s| !s.starts_with("line 2,")),
            "line 2 is fine: {said:#?}"
        );
        assert!(err.to_string().starts_with(&format!(
            "{} problem(s); nothing was imported:",
            errors.len()
        )));
        let store = db.store().await;
        assert!(
            store.changed_since(None).await.unwrap().is_empty(),
            "nothing imported"
        );
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, 0);
        // A header that is not the layout.
        let err = import::import(&svc, "id,name\n1,x\n", "x.csv", "import:test", false, now())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1, column external_id: missing from the header row"),
            "{err}"
        );
        assert!(
            err.contains("line 1, column id: not a column Waiver knows"),
            "{err}"
        );
    }
);

both!(
    importing_the_same_sheet_again_adds_nothing,
    |db: TestDb| async move {
        let svc = db.service().await;
        let text = sheet(now());
        let dry = import::import(&svc, &text, "r.csv", "import:test", true, now())
            .await
            .unwrap();
        assert_eq!(
            dry.to_string(),
            "4 row(s) valid; nothing imported (--dry-run)"
        );
        let store = db.store().await;
        assert!(store.changed_since(None).await.unwrap().is_empty());
        import::import(&svc, &text, "r.csv", "import:test", false, now())
            .await
            .unwrap();
        let again = import::import(&svc, &text, "r.csv", "import:test", false, now())
            .await
            .unwrap();
        assert!(again.imported.is_empty());
        assert_eq!(again.already, vec!["OLD-1", "OLD-2", "OLD-3", "OLD-4"]);
        assert_eq!(store.changed_since(None).await.unwrap().len(), 4);
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, 4);
    }
);

#[test]
fn the_shipped_template_is_a_valid_sheet() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/import-template.csv"),
    )
    .unwrap();
    // As of any day after its decisions (the template's dates are in the past).
    let rows = import::parse(
        &common::gov(),
        &text,
        "import-template.csv",
        chrono::NaiveDate::MAX,
    )
    .expect("valid");
    assert_eq!(rows.len(), 2);
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    assert_eq!(header, import::COLUMNS);
}

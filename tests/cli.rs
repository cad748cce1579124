//! The `waiver` binary: check, diagram, migrate, audit verify, export and serve, with
//! their errors.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{SHIPPED, TempDir, TestDb, now, p};
use waiver::domain::{Action, Actor};
use waiver::service::{Attempt, Submitted};

fn waiver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waiver"));
    cmd.env_remove("WAIVER_GOVERNANCE")
        .env_remove("WAIVER_DATABASE_URL")
        .env_remove("SLACK_SIGNING_SECRET")
        .env_remove("SLACK_BOT_TOKEN")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run waiver");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn the_shipped_governance_files_are_valid() {
    for file in [
        "manifests/governance.toml",
        "manifests/governance.minimal.toml",
    ] {
        let (code, out, err) = run(waiver().args(["check", file]));
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains("is valid"), "{out}");
    }
    // The default path is the shipped file.
    assert_eq!(run(waiver().arg("check")).0, 0);
}

/// Each broken copy of the shipped file must name the field at fault and why.
#[test]
fn check_names_the_exact_wrong_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (find, replace with, field named, reason contains)
        (
            "schedule = \"0 */5 * * * *\"",
            "schedule = \"every five minutes\"",
            "reminders.schedule",
            "is not a cron schedule",
        ),
        (
            "suspend_after_overdue_days = 7",
            "suspend_after_overdue_days = -1",
            "reminders.suspend_after_overdue_days",
            "between 0 and 365 days (got -1)",
        ),
        (
            "approvers = [\"ai-governance-board\", \"ciso\"]",
            "approvers = [\"ai-governance-board\", \"cisoo\"]",
            "tiers.high.approvers[1]",
            "unknown role \"cisoo\"",
        ),
        (
            "members = [\"sofia.marin\", \"ben.adeyemi\"]",
            "members = [\"sofia.marin\", \"ben.adeyem\"]",
            "roles.privacy.members[1]",
            "unknown person \"ben.adeyem\"",
        ),
        (
            "members = [\"claire.dubois\"]",
            "members = []",
            "roles.legal.members",
            "role has no members",
        ),
        (
            "approvers = [\"department-heads\"]",
            "approvers = []",
            "tiers.low.approvers",
            "tier has no approvers",
        ),
        (
            "medium = [7, 12]",
            "medium = [8, 12]",
            "risk.thresholds.medium",
            "gap: scores 7..=7 belong to no tier",
        ),
        (
            "medium = [7, 12]",
            "medium = [6, 12]",
            "risk.thresholds.medium",
            "overlap",
        ),
        (
            "critical = [20, 25]",
            "critical = [20, 24]",
            "risk.thresholds.critical",
            "gap: scores 25..=25",
        ),
        (
            "max_duration_days = 365",
            "max_duration_days = 0",
            "tiers.low.max_duration_days",
            "duration must be at least 1",
        ),
        (
            "review_every_days = 60",
            "review_every_days = 0",
            "tiers.high.review_every_days",
            "cadence must be at least 1",
        ),
        (
            "hours = 24",
            "hours = 0",
            "sla.completeness.hours",
            "must be at least 1",
        ),
        (
            "id = \"grace.liu\"",
            "id = \"omar.haddad\"",
            "people[4].id",
            "duplicate person id \"omar.haddad\"",
        ),
        (
            "id = \"model-risk\"",
            "id = \"aiup\"",
            "policies[3].id",
            "duplicate policy id \"aiup\"",
        ),
        (
            "{ id = \"uk\", label = \"United Kingdom\" }",
            "{ id = \"eu\", label = \"United Kingdom\" }",
            "form.regions[1].id",
            "duplicate id \"eu\"",
        ),
        (
            "user = \"U0NW00001\"",
            "user = \"u0nw00001\"",
            "people[0].slack.user",
            "not a Slack user id",
        ),
        (
            "user = \"U0NW00002\", workspace = \"T0NWIND01\"",
            "user = \"U0NW00002\", workspace = \"T0OTHER\"",
            "people[1].slack.workspace",
            "not one of platforms.slack_workspaces",
        ),
        (
            "slack_channel = \"C0AIXRISK\"",
            "slack_channel = \"#risk\"",
            "roles.risk.slack_channel",
            "not a Slack channel id",
        ),
        (
            "aad_object_id = \"3b9d6a10-5c2e-4f1a-9d7b-000000000003\"",
            "aad_object_id = \"not-a-guid\"",
            "people[2].teams.aad_object_id",
            "not an AAD object id",
        ),
        (
            "teams_channel = \"19:a1b2c3d4e5f60718293a4b5c6d7e8f90@thread.tacv2\"",
            "teams_channel = \"general\"",
            "roles.ai-intake.teams_channel",
            "not a Teams channel",
        ),
        (
            "dimension = \"ethical\"\n",
            "",
            "assessment_rules[6].require[1]",
            "has no risk dimension",
        ),
        (
            "dimension = \"privacy\"",
            "dimension = \"legal\"",
            "roles.privacy.dimension",
            "unknown dimension \"legal\"",
        ),
        (
            "when = { data_categories = [\"pii\", \"biometric\"] }",
            "when = { data_categories = [\"pii\", \"dna\"] }",
            "assessment_rules[4].when.data_categories[1]",
            "unknown option \"dna\"",
        ),
        (
            "members = [\"william.hughes\", \"rachel.green\"]",
            "members = [\"amara.okafor\"]",
            "tiers.critical.approvers",
            "quorum can never be reached",
        ),
        (
            "[tiers.medium]",
            "[tiers.meduim]",
            "tiers.meduim",
            "unknown tier",
        ),
        (
            "combine = \"max\"",
            "combine = \"average\"",
            "risk.combine",
            "unknown method \"average\"",
        ),
        (
            "completeness_reviewers = \"ai-intake\"",
            "completeness_reviewers = \"intake\"",
            "workflow.completeness_reviewers",
            "unknown role \"intake\"",
        ),
        (
            "escalate_to = \"ai-governance-board\"",
            "escalate_to = \"waiver-admins\"",
            "roles.waiver-admins",
            "neither slack_channel nor teams_channel",
        ),
        (
            "[[assessment_rules]]\nname = \"Every request is risk-assessed\"\nrequire = [\"risk\"]\n",
            "",
            "assessment_rules",
            "add a rule without conditions",
        ),
        (
            "expiry_lead_days = [30, 7, 1]",
            "expiry_lead_days = [30, 7, 7]",
            "reminders.expiry_lead_days[2]",
            "listed twice",
        ),
    ];
    let dir = TempDir::new();
    for (i, (find, replace, field, reason)) in cases.iter().enumerate() {
        assert!(
            SHIPPED.contains(find),
            "case {i}: {find:?} is not in the shipped file"
        );
        let broken = SHIPPED.replacen(find, replace, 1);
        let path = dir.path.join(format!("broken{i}.toml"));
        std::fs::write(&path, broken).unwrap();
        let (code, out, err) = run(waiver().arg("check").arg(&path));
        assert_eq!(code, 1, "case {i} ({field}) should fail: {out}");
        let line = err
            .lines()
            .find(|l| l.contains(&format!("{field}:")))
            .unwrap_or_else(|| panic!("case {i}: {field} not named in:\n{err}"));
        assert!(line.contains(reason), "case {i}: {line:?} lacks {reason:?}");
    }
}

#[test]
fn check_reports_syntax_errors_typos_and_missing_files() {
    let dir = TempDir::new();
    let typo = dir.path.join("typo.toml");
    std::fs::write(
        &typo,
        SHIPPED.replacen("max_duration_days = 365", "max_duration_dys = 365", 1),
    )
    .unwrap();
    let (code, _, err) = run(waiver().arg("check").arg(&typo));
    assert_eq!(code, 1);
    assert!(
        err.contains("max_duration_dys") && err.contains("line"),
        "{err}"
    );

    let syntax = dir.path.join("syntax.toml");
    std::fs::write(&syntax, "[organisation\nname = 1").unwrap();
    let (code, _, err) = run(waiver().arg("check").arg(&syntax));
    assert_eq!(code, 1);
    assert!(err.contains("not valid TOML"), "{err}");

    let (code, _, err) = run(waiver().args(["check", "/nonexistent/governance.toml"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read /nonexistent/governance.toml"),
        "{err}"
    );
}

/// Tags open and close in order (the SVG is well-formed XML as far as elements go).
fn balanced(svg: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or("an unclosed tag")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.ends_with('/') {
            continue;
        }
        let name = |t: &str| {
            t.split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or("")
                .to_string()
        };
        if let Some(closing) = tag.strip_prefix('/') {
            match open.pop() {
                Some(o) if name(o) == closing => {}
                other => return Err(format!("</{closing}> closes {other:?}")),
            }
        } else {
            open.push(tag);
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed: {open:?}"))
    }
}

#[test]
fn svg_diagrams_of_both_shipped_files_match_the_committed_copies() {
    for (governance, copy) in [
        ("manifests/governance.toml", "docs/sop.svg"),
        ("manifests/governance.minimal.toml", "docs/sop-minimal.svg"),
    ] {
        let (code, out, err) = run(waiver().args(["diagram", governance, "--format", "svg"]));
        assert_eq!(code, 0, "{err}");
        balanced(&out).unwrap_or_else(|e| panic!("{governance}: {e}"));
        let gov = waiver::governance::load(Path::new(governance)).unwrap();
        // The words a reader sees, however lines wrap.
        let mut words = String::new();
        let mut inside = false;
        for c in out.chars() {
            match c {
                '<' => {
                    inside = true;
                    words.push(' ');
                }
                '>' => inside = false,
                c if !inside => words.push(c),
                _ => {}
            }
        }
        let words = words
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // What the SOP diagram must show, from the enforced configuration.
        assert!(out.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(out.contains(&format!("governance file sha256 {}", gov.hash.as_str())));
        for rule in &gov.assessment_rules {
            assert!(
                words.contains(&format!("• {} →", rule.name)),
                "{}",
                rule.name
            );
        }
        for tier in waiver::governance::Tier::ALL {
            let t = gov.tier(tier);
            let approvers: Vec<&str> = t
                .approvers
                .iter()
                .map(|r| gov.role(r).unwrap().name.as_str())
                .collect();
            assert!(
                words.contains(&format!(
                    "5 · Decision, {tier} all of: {} at most {} days; review every {} days",
                    approvers.join(" + "),
                    t.max_duration_days,
                    t.review_every_days
                )),
                "{governance}: {tier}: {words}"
            );
        }
        for sla in gov.slas.values() {
            assert!(words.contains(&format!("SLA {} h, then escalates to", sla.hours)));
        }
        let leads: Vec<String> = gov
            .reminders
            .expiry_lead_days
            .iter()
            .map(u32::to_string)
            .collect();
        assert!(words.contains(&format!("reminded {} days before expiry", leads.join(", "))));
        let suspended = words.contains(" Suspended a condition still open");
        assert_eq!(
            suspended,
            gov.reminders.suspend_after_overdue_days.is_some()
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(copy);
        if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &out).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{copy} exists (UPDATE_SNAPSHOTS=1 writes it)"));
        assert!(
            out == expected,
            "{copy} is stale: the diagram of {governance} changed; review it and rerun with UPDATE_SNAPSHOTS=1"
        );
    }
}

#[test]
fn diagram_of_the_shipped_file_matches_its_snapshot() {
    let (code, out, err) = run(waiver().arg("diagram"));
    assert_eq!(code, 0, "{err}");
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/diagram.mmd");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&snapshot, &out).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot)
        .expect("tests/snapshots/diagram.mmd exists (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        out, expected,
        "the diagram changed; review it and rerun with UPDATE_SNAPSHOTS=1"
    );
}

/// Fills a SQLite database through the library, for the commands that read one.
async fn populated() -> (TestDb, waiver::domain::RequestId) {
    let db = TestDb::sqlite().await;
    let svc = db.service().await;
    let Submitted::Filed(r) = svc
        .submit(&p("james.carter"), &common::form(), None, now())
        .await
        .unwrap()
    else {
        panic!("not filed")
    };
    let id = r.id;
    let act = |who: &str, action| {
        let svc = svc.clone();
        let who = who.to_string();
        async move {
            let v = svc.request(id).await.unwrap().unwrap().version();
            svc.act(Attempt::new(Actor::Person(p(&who)), id, v, action), now())
                .await
                .unwrap();
        }
    };
    act("noah.fischer", Action::MarkComplete).await;
    let assess = |role: &str| {
        Action::Assess(waiver::domain::AssessmentInput {
            role: waiver::governance::RoleId::new(role),
            likelihood: 1,
            impact: 2,
            findings: "=cmd|' /C calc'!A0".into(),
            mitigations: String::new(),
            recommendation: waiver::domain::Recommendation::Approve,
        })
    };
    act("omar.haddad", assess("risk")).await;
    act("tomas.novak", assess("security")).await;
    act(
        "carlos.mendes",
        Action::Approve {
            terms: waiver::domain::Terms {
                start: now().date(),
                expiry: now().date() + chrono::Days::new(90),
                monitoring_owner: p("marcus.webb"),
                conditions: vec![],
            },
            confirmation: None,
        },
    )
    .await;
    db.opened().close().await;
    (db, id)
}

#[tokio::test]
async fn audit_verify_passes_then_names_the_tampered_entry() {
    let (db, _) = populated().await;
    let (code, out, err) = run(waiver()
        .args(["audit", "verify"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("audit trail intact: 5 entries"), "{out}");
    let store = db.store().await;
    store
        .execute_raw("UPDATE audit SET at = at + 1 WHERE seq = 2")
        .await
        .unwrap();
    store.close().await;
    let (code, _, err) = run(waiver()
        .args(["audit", "verify"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 1);
    assert!(err.contains("audit entry 2 is broken"), "{err}");
}

#[tokio::test]
async fn an_evidence_pack_is_written_then_verified_with_no_database() {
    let (db, id) = populated().await;
    let dir = TempDir::new();
    let file = dir.path.join("pack.json");
    let (code, out, err) = run(waiver()
        .args(["export", "--format", "pack", "-o"])
        .arg(&file)
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "wrote {}: 1 exception(s), audit entries 1..5 (head ",
            file.display()
        )),
        "{out}"
    );
    // No database: the variable points nowhere.
    let (code, out, err) = run(waiver()
        .args(["audit", "verify", "--pack"])
        .arg(&file)
        .env("WAIVER_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "evidence pack verified: 1 exception(s), 1 decision(s), 5 audit entries (1..5, head "
        ),
        "{out}"
    );
    // One field of the record changed: named, exit 1.
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("\"state\":\"active\"", "\"state\":\"revoked\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    let (code, _, err) = run(waiver().args(["audit", "verify", "--pack"]).arg(&file));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "the evidence pack does not verify: {id}: the record is not the state its last change (audit entry 5) recorded (it was altered)"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn import_checks_a_sheet_then_imports_it_once() {
    let db = TestDb::sqlite().await;
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/import-template.csv");
    let (code, out, err) = run(waiver()
        .args(["import", "--dry-run", "--csv"])
        .arg(&template)
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "2 row(s) valid; nothing imported (--dry-run)");
    let (code, out, err) = run(waiver()
        .args(["import", "--csv"])
        .arg(&template)
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("imported 2 of 2 row(s)\n  SHEET-017 → AIX-0001"),
        "{out}"
    );
    let dir = TempDir::new();
    let bad = dir.path.join("bad.csv");
    let text = std::fs::read_to_string(&template)
        .unwrap()
        .replace("hannah.berg", "nobody");
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = run(waiver()
        .args(["import", "--csv"])
        .arg(&bad)
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: 2 problem(s); nothing was imported:\n  - line 2, column approvers: \"nobody\" is not a person in the governance file"),
        "{err}"
    );
}

#[tokio::test]
async fn outbox_lists_what_is_not_delivered_and_refuses_to_resend_what_is_not_parked() {
    // Filed through the library with no server running: every message is pending.
    let (db, id) = populated().await;
    let pending = db.store().await.undelivered(1000).await.unwrap().len();
    assert!(pending > 3, "{pending}");
    let (code, out, err) = run(waiver().arg("outbox").env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "{pending} message(s) not delivered: {pending} pending, 0 parked\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Slack C0AIXINTAKE — {id} card")),
        "{out}"
    );
    assert!(out.contains("0 attempt(s), due now"), "{out}");
    let (code, out, _) = run(waiver()
        .args(["outbox", "list", "--limit", "1"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");

    let (code, out, err) = run(waiver()
        .args(["outbox", "retry", "1", "999"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 1);
    assert!(out.contains("0 parked message(s) queued again"), "{out}");
    assert!(
        err.contains("error: not parked (delivered, superseded by a newer card message, or unknown): #1, #999"),
        "{err}"
    );
    let (code, _, err) = run(waiver()
        .args(["outbox", "retry"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 1, "names what is missing: {err}");
    assert!(
        err.contains("error: name the messages to send again (the # numbers `waiver outbox` shows), or --all-parked"),
        "{err}"
    );
    let (code, out, _) = run(waiver()
        .args(["outbox", "retry", "--all-parked"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0);
    assert!(out.contains("0 parked message(s) queued again"), "{out}");
}

#[tokio::test]
async fn export_writes_one_record_per_exception_with_its_history() {
    let (db, id) = populated().await;
    let (code, out, err) = run(waiver()
        .args(["export", "--format", "json"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    let records: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["reference"], id.to_string());
    assert_eq!(r["request"]["state"], "active");
    assert_eq!(r["audit"].as_array().unwrap().len(), 5);
    assert_eq!(r["decisions"][0]["vote"]["approver"], "carlos.mendes");
    assert!(r["decisions"][0]["snapshot"]["assessments"].is_array());
    assert!(err.contains("exported 1 exception(s)"));

    let (code, out, _) = run(waiver()
        .args(["export", "--format", "csv"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    let col = |name: &str| {
        rows[0]
            .get(headers.iter().position(|h| h == name).unwrap())
            .unwrap()
            .to_string()
    };
    assert_eq!(col("reference"), "AIX-0001");
    assert_eq!(col("state"), "active");
    assert_eq!(col("approvers"), "carlos.mendes");
    assert_eq!(col("tier"), "low");
    assert!(col("history").contains("#5 2026-11-24T10:00:00Z approve by carlos.mendes: applied"));

    let (code, out, _) = run(waiver()
        .args(["export", "--format", "json", "--since", "2026-11-25"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let (code, _, err) = run(waiver().args(["export", "--format", "xml"]));
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'xml'"), "{err}");
    let dir = TempDir::new();
    let url = format!("sqlite://{}/x.db", dir.path.display());
    let (code, _, err) = run(waiver()
        .args(["export", "--format", "csv", "--since", "last week"])
        .env("WAIVER_DATABASE_URL", &url));
    assert_eq!(code, 1);
    assert!(err.contains("--since \"last week\" is not a date"), "{err}");
    let (code, _, err) = run(waiver()
        .arg("migrate")
        .env("WAIVER_DATABASE_URL", "mysql://db/waiver"));
    assert_eq!(code, 1);
    assert!(err.contains("unsupported database URL"), "{err}");
    let (code, _, err) = run(waiver().arg("migrate").env(
        "WAIVER_DATABASE_URL",
        "postgres://nobody:hunter2@127.0.0.1:1/waiver",
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot open the database") && !err.contains("hunter2"),
        "{err}"
    );
    let (code, _, err) = run(waiver().arg("frobnicate"));
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

/// A closed port on loopback: connecting to it is refused at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn database_passwords_never_reach_the_terminal() {
    let port = closed_port();
    let cases = [
        // An unsupported scheme, password in the userinfo.
        (
            format!("mysql://u:s3cretpw@127.0.0.1:{port}/db"),
            "s3cretpw",
        ),
        // PostgreSQL, password in the userinfo.
        (
            format!("postgres://u:s3cretpw@127.0.0.1:{port}/db"),
            "s3cretpw",
        ),
        // PostgreSQL, password as a query parameter.
        (
            format!("postgres://u@127.0.0.1:{port}/db?password=qs3cret"),
            "qs3cret",
        ),
    ];
    for (url, password) in cases {
        for args in [&["migrate"][..], &["audit", "verify"], &["sweep"]] {
            let (code, out, err) = run(waiver().args(args).env("WAIVER_DATABASE_URL", &url));
            assert_ne!(code, 0, "{args:?} {url}");
            assert!(
                !out.contains(password) && !err.contains(password),
                "{args:?} with {url} printed the password:\n{out}\n{err}"
            );
            assert!(
                err.starts_with("error: cannot open the database at "),
                "{err}"
            );
        }
    }
    let (_, _, err) = run(waiver()
        .arg("migrate")
        .env("WAIVER_DATABASE_URL", "mysql://u:s3cretpw@h/db"));
    assert_eq!(
        err.trim(),
        "error: cannot open the database at mysql://u:***@h/db: unsupported database URL \
         scheme \"mysql\": use sqlite://PATH or postgres://USER@HOST:PORT/DB"
    );
}

#[test]
fn an_unreachable_database_is_one_clear_sentence() {
    let port = closed_port();
    let url = format!("postgres://waiver:pw@127.0.0.1:{port}/waiver?password=pw2");
    let (code, _, err) = run(waiver().arg("migrate").env("WAIVER_DATABASE_URL", &url));
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "error: cannot open the database at postgres://waiver:***@127.0.0.1:{port}/waiver?password=***: \
             cannot reach the database server (Connection refused (os error 111)); check that it is \
             running and that WAIVER_DATABASE_URL names the right host and port"
        )
    );
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}

#[tokio::test]
async fn sweep_previews_then_acts_once_as_of_the_given_instant() {
    let (db, id) = populated().await; // low tier, valid until 2027-02-22
    let sweep = |at: &str, dry: bool| {
        let mut cmd = waiver();
        cmd.args(["sweep", "--at", at])
            .env("WAIVER_DATABASE_URL", &db.url);
        if dry {
            cmd.arg("--dry-run");
        }
        run(&mut cmd)
    };
    // Half a day before expiry: all three reminder lead times have passed unswept.
    let eve = "2027-02-22T12:00:00Z";
    for _ in 0..2 {
        let (code, out, err) = sweep(eve, true);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("would remind @"), "{out}");
        // The last lead's reminder, counted from the sweep instant.
        assert!(out.contains("expires in 12 hours"), "{out}");
        assert!(out.contains("would be skipped"), "{out}");
    }
    let (code, out, err) = sweep(eve, false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reminder queued for @"), "{out}");
    assert!(out.contains("digest to @"), "{out}");
    let (code, out, _) = sweep(eve, false);
    assert_eq!(code, 0);
    assert!(out.contains("nothing due"), "once: {out}");

    let expiry = "2027-02-23T00:00:00Z";
    let (code, out, err) = sweep(expiry, true);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{id}: would apply expire")), "{out}");
    let (code, out, err) = sweep(expiry, false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{id}: applied expire")), "{out}");
    assert!(
        out.contains("digest to @"),
        "owner and requester told: {out}"
    );
    let (_, out, _) = sweep(expiry, false);
    assert!(out.contains("nothing due"), "once: {out}");

    let (code, _, err) = run(waiver()
        .args(["sweep", "--at", "next tuesday"])
        .env("WAIVER_DATABASE_URL", &db.url));
    assert_eq!(code, 1);
    assert!(err.contains("is not an RFC 3339 instant"), "{err}");
}

#[test]
fn migrate_creates_the_database_and_is_repeatable() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/new.db", dir.path.display());
    for _ in 0..2 {
        let (code, out, err) = run(waiver().arg("migrate").env("WAIVER_DATABASE_URL", &url));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("migrated"));
    }
    assert!(dir.path.join("new.db").exists());
}

#[tokio::test]
async fn serve_answers_health_and_readiness_and_stops_on_sigterm() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/serve.db", dir.path.display());
    let mut child = waiver()
        .arg("serve")
        .env("WAIVER_DATABASE_URL", &url)
        .env("WAIVER_LISTEN", "127.0.0.1:0")
        .env("SLACK_SIGNING_SECRET", "test-secret")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SLACK_API_URL", "http://127.0.0.1:9/api/")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline - Instant::now())
            .expect("server logs its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    waiver::chat::install_tls_provider();
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready");
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

/// A child process that is killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_without_a_chat_platform_says_what_to_set() {
    let (code, _, err) = run(waiver().arg("serve").env("WAIVER_LISTEN", "127.0.0.1:0"));
    assert_eq!(code, 1);
    assert!(
        err.contains("SLACK_SIGNING_SECRET")
            && err.contains("SLACK_BOT_TOKEN")
            && err.contains("waiver demo"),
        "{err}"
    );
}

#[test]
fn the_demo_walks_all_seven_steps_and_verifies_the_audit_trail() {
    let (code, out, err) = run(waiver().arg("demo"));
    assert_eq!(code, 0, "{err}");
    for step in [
        "1 · Submission",
        "2 · Completeness review",
        "3 · Risk and impact assessment",
        "4 · Stakeholder review",
        "5 · Decision",
        "6 · Communication and implementation",
        "7 · Monitoring and review",
    ] {
        assert!(out.contains(step), "missing {step}");
    }
    assert!(out.contains("Noah Fischer clicks [Send back…]"));
    assert!(out.contains("William Hughes clicks [Approve…]"));
    assert!(out.contains("AIX-0001 is now active"));
    assert!(out.contains("waiver audit verify: intact"), "{out}");
}

#[test]
fn the_teams_demo_walks_the_same_seven_steps_in_teams() {
    let (code, out, err) = run(waiver().args(["demo", "--teams"]));
    assert_eq!(code, 0, "{err}");
    for step in [
        "1 · Submission",
        "2 · Completeness review",
        "3 · Risk and impact assessment",
        "4 · Stakeholder review",
        "5 · Decision",
        "6 · Communication and implementation",
        "7 · Monitoring and review",
    ] {
        assert!(out.contains(step), "missing {step}");
    }
    assert!(out.contains("fake Microsoft Teams tenant"), "{out}");
    assert!(
        out.contains("James Carter sends ai-exception to Waiver"),
        "{out}"
    );
    assert!(out.contains("the intake dialog opens"), "{out}");
    assert!(
        out.contains("Noah Fischer clicks [Send back…] in channel \"AI intake desk\""),
        "{out}"
    );
    assert!(
        out.contains("a dialog opens for William Hughes: \"Approve\""),
        "{out}"
    );
    assert!(out.contains("the card refreshes for Lucía Romero"), "{out}");
    assert!(out.contains("DM to Marcus Webb · new message"), "{out}");
    assert!(out.contains("AIX-0001 is now active"), "{out}");
    assert!(out.contains("waiver audit verify: intact"), "{out}");
    assert!(
        !out.contains("/ai-exception"),
        "Teams has no slash commands: {out}"
    );
}

#[test]
fn the_slack_manifest_matches_the_routes() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/slack/app-manifest.yaml"),
    )
    .unwrap();
    let urls: Vec<&str> = manifest
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("url: ")
                .or_else(|| l.trim().strip_prefix("request_url: "))
        })
        .collect();
    let mut paths: Vec<&str> = urls
        .iter()
        .map(|u| u.trim_start_matches("https://waiver.example.com"))
        .collect();
    paths.sort();
    let mut routes = waiver::http::SLACK_ROUTES.to_vec();
    routes.sort();
    assert_eq!(paths, routes);
    assert!(manifest.contains("command: /ai-exception"));
    for scope in ["commands", "chat:write", "im:write", "channels:history"] {
        assert!(manifest.contains(&format!("- {scope}")), "{scope}");
    }
    for event in ["app_home_opened", "message.channels"] {
        assert!(manifest.contains(&format!("- {event}")), "{event}");
    }
}

#[test]
fn the_socket_mode_manifest_is_the_http_one_without_request_urls() {
    let read = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("manifests/slack")
                .join(name),
        )
        .unwrap()
    };
    let http = read("app-manifest.yaml");
    let socket = read("app-manifest-socket-mode.yaml");
    // Everything but comments, request URLs and the Socket Mode switch is the same.
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter(|l| {
                let t = l.trim();
                !t.starts_with("url: ") && !t.starts_with("request_url: ")
            })
            .map(|l| l.replace("socket_mode_enabled: false", "socket_mode_enabled: true"))
            .collect()
    };
    assert_eq!(body(&http), body(&socket));
    assert!(socket.contains("socket_mode_enabled: true"));
    assert!(
        body(&socket).iter().all(|l| !l.contains("https://")),
        "no request URL in Socket Mode"
    );
    assert!(
        socket.contains("connections:write"),
        "says which app-level token to make"
    );
}

//! Acting on the buttons of a reminder digest, through Slack: the real server on
//! 127.0.0.1:0, the stateful fake Slack Web API, requests signed as Slack signs them, on
//! both databases. Assertions are on what people see: digests, modals, ephemerals,
//! cards, App Home, and on what the database then holds.
//!
//! Clicks and modal submissions are handled at the server's clock, which starts at
//! `common::now()` and runs in real time, so each exception is granted far enough
//! before that (through the service, at explicit instants) that the sweep instant —
//! the review or the expiry lead time — has already passed when the owner clicks. Time moves only through `sweep(now)` and those
//! explicit instants; nothing sleeps for time.

mod common;

use common::{App, TestDb, p, uid};
use serde_json::{Value, json};
use waiver::domain::{
    Action, Actor, AssessmentInput, AttestationAnswer, ExceptionRequest, FormInput, Recommendation,
    RequestId, State, Terms, Timestamp,
};
use waiver::fakes::slack::workspace::{Input, Workspace, describe};
use waiver::fakes::slack::{Message, OpenedView};
use waiver::governance::{RoleId, Tier};
use waiver::service::{Acted, Attempt, Service, Submitted};
use waiver::store::Outcome;

const INTAKE: &str = "C0AIXINTAKE";
const DAY_MS: i64 = 86_400_000;

/// `days` days before the instant the server's clock starts at.
fn days_ago(days: i64) -> Timestamp {
    days_before(common::now(), days)
}

fn days_before(t: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_millis(t.millis() - days * DAY_MS)
}

/// `who` acts on the current version of `id` at `at`; the action must apply.
async fn act(svc: &Service, id: RequestId, who: &str, action: Action, at: Timestamp) {
    let seen = svc.request(id).await.unwrap().unwrap().version();
    let acted = svc
        .act(Attempt::new(Actor::Person(p(who)), id, seen, action), at)
        .await
        .unwrap();
    assert!(matches!(acted, Acted::Applied { .. }), "{who}: {acted:?}");
}

fn assess(role: &str, likelihood: u8, impact: u8) -> Action {
    Action::Assess(AssessmentInput {
        role: RoleId::new(role),
        likelihood,
        impact,
        findings: "Prompts are retained for 30 days.".into(),
        mitigations: "Zero-retention plan.".into(),
        recommendation: Recommendation::Approve,
    })
}

/// Set-up through the service, at `t0`: James files the sample request as `title`,
/// starting that day and ending `days` later; the intake desk completes it, risk and
/// security score it low (2 of 25), and Carlos (a department head) approves it for
/// the whole period with Marcus as monitoring owner and no conditions, so it is
/// active at once.
async fn granted(app: &App, title: &str, t0: Timestamp, days: u64) -> ExceptionRequest {
    let svc = app.service();
    let start = t0.date();
    let expiry = start + chrono::Days::new(days);
    let form = FormInput {
        title: title.into(),
        start: start.to_string(),
        end: expiry.to_string(),
        ..common::form()
    };
    let id = match svc
        .submit(&p("james.carter"), &form, None, t0)
        .await
        .unwrap()
    {
        Submitted::Filed(r) => r.id,
        other => panic!("not filed: {other:?}"),
    };
    act(svc, id, "noah.fischer", Action::MarkComplete, t0).await;
    act(svc, id, "omar.haddad", assess("risk", 1, 2), t0).await;
    act(svc, id, "tomas.novak", assess("security", 1, 1), t0).await;
    let approve = Action::Approve {
        terms: Terms {
            start,
            expiry,
            monitoring_owner: p("marcus.webb"),
            conditions: Vec::new(),
        },
        confirmation: None,
    };
    act(svc, id, "carlos.mendes", approve, t0).await;
    let r = app.store().load(id).await.unwrap().unwrap();
    assert_eq!(r.state, State::Active, "no conditions, started: active");
    let g = r.grant.as_ref().unwrap();
    assert_eq!(
        (g.tier, &g.monitoring_owner),
        (Tier::Low, &p("marcus.webb"))
    );
    // The set-up's cards and DMs are out before the scheduler runs.
    app.drained().await;
    r
}

/// Waits for the digest DM'd to `person` that mentions `needle`, then checks it is
/// exactly what Waiver posted with `chat.postMessage`.
async fn digest_to(app: &App, person: &str, needle: &str) -> Message {
    let user = uid(person);
    // The fake records a call's status once it has answered it: wait for both.
    app.until("the digest DM", |f| {
        f.dms(&user)
            .iter()
            .any(|m| describe(&m.blocks).contains(needle))
            && f.calls_to("chat.postMessage").iter().any(|c| {
                c.status == 200
                    && c.body["channel"] == user.as_str()
                    && describe(&c.body["blocks"]).contains(needle)
            })
    })
    .await;
    let dm = app.fake().dm_channel(&user).unwrap();
    let digest = app.message(&dm, needle);
    let posted = app
        .fake()
        .calls_to("chat.postMessage")
        .into_iter()
        .rev()
        .find(|c| {
            c.body["channel"] == user.as_str() && describe(&c.body["blocks"]).contains(needle)
        })
        .expect("the digest was posted with chat.postMessage");
    assert_eq!(posted.status, 200);
    assert_eq!(posted.body["blocks"], digest.blocks, "shown as posted");
    assert_eq!(digest.edits, 0);
    digest
}

/// The button `action_id` of `message`, with its value decoded.
fn button(message: &Message, action_id: &str) -> (Value, Value) {
    let (_, el) = Workspace::button(message, action_id)
        .unwrap_or_else(|| panic!("no {action_id} button on:\n{}", describe(&message.blocks)));
    let value: Value = serde_json::from_str(el["value"].as_str().unwrap()).unwrap();
    (el, value)
}

/// The next modal opened after `before` modals were opened.
async fn next_view(app: &App, before: usize) -> OpenedView {
    app.until("a modal opens", |f| f.views_opened().len() > before)
        .await;
    app.fake().views_opened()[before].clone()
}

async fn click(app: &App, who: &str, message: &Message, action_id: &str) {
    let reply = app
        .ws
        .click(&uid(who), message, action_id)
        .await
        .unwrap_or_else(|| panic!("no {action_id} button on:\n{}", describe(&message.blocks)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "", "acknowledged; the rest happens in Slack");
}

/// An input block of a modal, by block id.
fn block<'a>(view: &'a OpenedView, block_id: &str) -> &'a Value {
    view.view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block_id"] == block_id)
        .unwrap_or_else(|| panic!("no {block_id} block in {:#}", view.view))
}

fn metadata(view: &OpenedView) -> Value {
    serde_json::from_str(view.view["private_metadata"].as_str().unwrap()).unwrap()
}

/// What `person` reads in `/ai-exception pending`.
async fn pending(app: &App, person: &str) -> String {
    let reply = app.ws.command(&uid(person), "pending").await;
    assert_eq!(reply.json()["response_type"], "ephemeral", "{}", reply.body);
    describe(&reply.json()["blocks"])
}

both!(
    still_needed_on_a_review_digest_attests_and_moves_the_review_on,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let svc = app.service();
        let marcus = uid("marcus.webb");
        let cadence = svc.governance().tier(Tier::Low).review_every_days;
        assert_eq!(cadence, 180, "the shipped low tier");

        // Granted 182 days ago: the review fell due two days ago.
        let t0 = days_ago(182);
        let r = granted(&app, "Coding assistant", t0, 365).await;
        let id = r.id;
        let reference = id.to_string();
        let review_at = r.grant.as_ref().unwrap().next_review_at.unwrap();
        assert_eq!(review_at, t0.plus_days(cadence), "the tier's cadence");
        assert!(review_at < app.now());

        // The sweep at the review instant marks it due and DMs the owner a digest.
        let report = svc.sweep(review_at, false).await.unwrap();
        assert_eq!(report.transitions, vec![(id, "mark_review_due")]);
        assert_eq!(app.request(id).await.state, State::ReviewDue);
        let digest = digest_to(&app, "marcus.webb", "periodic review").await;
        let text = describe(&digest.blocks);
        assert_eq!(
            text,
            format!(
                "# Reminder\n{reference} \"Coding assistant\" is due for its periodic review. \
                 Is it still needed as approved? Valid until {}, next review {}.\n\
                 [Still needed] [Changed…] [No longer needed]",
                Timestamp::from_millis(r.grant.as_ref().unwrap().expires_at.millis() - 1).date(),
                review_at.date(),
            ),
        );
        let (el, value) = button(&digest, "attest:still_needed");
        assert_eq!(el["action_id"], "attest:still_needed");
        assert_eq!(el["style"], "primary");
        assert_eq!(value, json!({ "r": id.get(), "v": 1, "a": "still_needed" }));
        assert!(
            pending(&app, "marcus.webb")
                .await
                .contains(&format!("{reference} Coding assistant: attest the review"))
        );

        // Still needed opens the attestation modal for this request.
        let opened = app.fake().views_opened().len();
        click(&app, "marcus.webb", &digest, "attest:still_needed").await;
        let view = next_view(&app, opened).await;
        app.until("views.open answered", |f| {
            f.calls_to("views.open")
                .last()
                .is_some_and(|c| c.status != 0)
        })
        .await;
        let open_call = app.fake().calls_to("views.open").pop().unwrap();
        assert_eq!((open_call.status, open_call.error), (200, None));
        assert_eq!(view.view["type"], "modal");
        assert_eq!(view.view["callback_id"], "attest");
        assert_eq!(view.view["title"]["text"], "Review");
        assert_eq!(view.view["submit"]["text"], "Still needed");
        assert_eq!(view.view["close"]["text"], "Cancel");
        assert_eq!(
            metadata(&view),
            json!({ "r": id.get(), "v": 1, "a": "still_needed" })
        );
        assert_eq!(
            describe(&view.view["blocks"]),
            format!("*{reference}* · Coding assistant\nNote for the record: ____")
        );
        let note = block(&view, "note");
        assert_eq!(
            note["optional"], true,
            "a note is optional for still needed"
        );
        assert_eq!(note["element"]["type"], "plain_text_input");
        assert_eq!(
            app.request(id).await.state,
            State::ReviewDue,
            "opening changes nothing"
        );

        // Submitting it attests: active again, next review a cadence from now.
        let before = app.now();
        let reply = app
            .ws
            .submit(
                &marcus,
                &view,
                &[("note", Input::Text("Still used by the ingestion team."))],
            )
            .await;
        let after = app.now();
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, ""),
            "the modal closes"
        );
        let r = app.request(id).await;
        assert_eq!(r.state, State::Active);
        let attested = r.attestations.last().expect("an attestation");
        assert_eq!(attested.by, p("marcus.webb"));
        assert_eq!(attested.answer, AttestationAnswer::StillNeeded);
        assert_eq!(attested.note, "Still used by the ingestion team.");
        assert!(
            before <= attested.at && attested.at <= after,
            "attested at the submission instant"
        );
        let next = r.grant.as_ref().unwrap().next_review_at;
        assert_eq!(next, Some(attested.at.plus_days(cadence)));
        assert_eq!(r.stage_since, attested.at);
        let audit = app.store().audit_of(id).await.unwrap();
        let entry = audit
            .iter()
            .rfind(|e| e.action == "attest")
            .expect("an attest audit entry");
        assert_eq!(
            (entry.actor.as_str(), entry.outcome, entry.at),
            ("marcus.webb", Outcome::Applied, attested.at)
        );
        let verified = app.store().verify_audit().await.unwrap();
        assert!(verified.is_ok(), "{verified:?}");

        // What the owner sees: a confirmation with the next review, nothing waiting
        // on him, and Home showing the next review.
        let confirmed = digest_to(&app, "marcus.webb", "is still needed").await;
        assert_eq!(
            describe(&confirmed.blocks),
            format!(
                "Recorded: {reference} \"Coding assistant\" is still needed. Next review {}.",
                next.unwrap().date()
            )
        );
        assert_eq!(
            pending(&app, "marcus.webb").await,
            "Nothing is waiting on you."
        );
        app.ws.open_home(&marcus, "Ev0REVIEWHOME").await;
        app.until("owner's home", |f| f.home(&marcus).is_some())
            .await;
        let home = describe(&app.fake().home(&marcus).unwrap()["blocks"]);
        assert!(
            home.contains(&format!(
                "{reference} Coding assistant: Active (low tier), expires"
            )) && home.contains(&format!(", next review {}", next.unwrap().date())),
            "{home}"
        );
        assert!(
            home.contains("Waiting on you*\nNothing is waiting on you."),
            "{home}"
        );
        // The sweep at the old review instant has nothing more to do.
        let again = svc.sweep(review_at, false).await.unwrap();
        assert!(again.transitions.is_empty() && again.digests.is_empty());
        app.stop().await;
    }
);

both!(
    renew_on_an_expiry_digest_files_a_linked_request_for_completeness_review,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let svc = app.service();
        let marcus = uid("marcus.webb");

        // Granted 40 days ago for 60 days: the 30-day reminder fell due about ten days
        // ago, and no review falls due before the expiry.
        let t0 = days_ago(40);
        let old = granted(&app, "Translate release notes", t0, 60).await;
        let id = old.id;
        let reference = id.to_string();
        let grant = old.grant.clone().unwrap();
        assert_eq!(grant.next_review_at, None, "the cadence is past the expiry");
        let lead = days_before(grant.expires_at, 30);
        assert!(lead < app.now());

        // The sweep at the lead time: owner and requester get a digest with Renew….
        let report = svc.sweep(lead, false).await.unwrap();
        assert!(report.transitions.is_empty());
        let digest = digest_to(&app, "marcus.webb", "expires in 30 days").await;
        let reminder = format!(
            "{reference} \"Translate release notes\" expires in 30 days, at {}. \
             Renew it to keep using it: the renewal is reviewed again.",
            grant.expires_at.minute()
        );
        assert_eq!(
            describe(&digest.blocks),
            format!("# Reminder\n{reminder}\n[Renew…]")
        );
        let to_james = digest_to(&app, "james.carter", "expires in 30 days").await;
        assert!(describe(&to_james.blocks).contains("[Renew…]"));
        let (el, value) = button(&digest, "renew");
        assert_eq!(el["action_id"], "renew");
        assert_eq!(value, json!({ "r": id.get(), "v": 1 }));

        // Renew… opens the intake form, pre-filled from the old request.
        let opened = app.fake().views_opened().len();
        click(&app, "marcus.webb", &digest, "renew").await;
        let view = next_view(&app, opened).await;
        assert_eq!(view.view["callback_id"], "intake");
        assert_eq!(view.view["title"]["text"], "Renew exception");
        assert_eq!(view.view["submit"]["text"], "Submit renewal");
        assert_eq!(metadata(&view), json!({ "renews": id.get() }));
        let initial = |block_id: &str, key: &str| block(&view, block_id)["element"][key].clone();
        let c = old.content();
        assert_eq!(initial("title", "initial_value"), "Translate release notes");
        assert_eq!(initial("ai_system", "initial_value"), c.ai_system.as_str());
        assert_eq!(
            initial("justification", "initial_value"),
            c.justification.as_str()
        );
        assert_eq!(
            initial("scope_users", "initial_value"),
            c.scope_users.as_str()
        );
        assert_eq!(initial("controls", "initial_value"), c.controls.as_str());
        assert_eq!(initial("policy", "initial_option")["value"], "aiup");
        assert_eq!(
            initial("exception_type", "initial_option")["value"],
            "tool_adoption"
        );
        assert_eq!(
            initial("department", "initial_option")["value"],
            "engineering"
        );
        assert_eq!(
            initial("data_categories", "initial_options"),
            json!([{ "text": { "type": "plain_text", "text": "Internal" }, "value": "internal" }])
        );
        assert_eq!(initial("business_owner", "initial_user"), marcus.as_str());
        // The renewal starts where the old one ends (today if that has passed), for
        // as long as the old one was asked for.
        let today = app.now().date();
        let start = old.grant.as_ref().unwrap().expires_at.date().max(today);
        assert_eq!(initial("start", "initial_date"), start.to_string());
        assert_eq!(
            initial("end", "initial_date"),
            (start + chrono::Days::new(c.requested_days() as u64)).to_string()
        );

        // Submitting it files a new request, linked to the old one.
        let reply = app
            .ws
            .submit(
                &marcus,
                &view,
                &[(
                    "justification",
                    Input::Text("Still speeds up release notes; renewing for another term."),
                )],
            )
            .await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, ""),
            "the modal closes"
        );
        let mine = app
            .store()
            .requests_by(&p("marcus.webb"), 10)
            .await
            .unwrap();
        assert_eq!(mine.len(), 1, "{mine:?}");
        let renewal = app.request(mine[0].id).await;
        let new_reference = renewal.id.to_string();
        assert_ne!(renewal.id, id);
        assert_eq!(renewal.renews, Some(id));
        assert_eq!(
            renewal.state,
            State::Submitted,
            "reviewed from completeness again"
        );
        assert_eq!(renewal.requester, p("marcus.webb"));
        assert!(renewal.grant.is_none());
        assert_eq!(renewal.version(), 1);
        let rc = renewal.content();
        assert_eq!(rc.title, "Translate release notes");
        assert_eq!(rc.ai_system, c.ai_system);
        assert_eq!(rc.business_owner, p("marcus.webb"));
        assert_eq!(
            rc.justification,
            "Still speeds up release notes; renewing for another term."
        );
        assert_eq!(rc.start, start);
        assert_eq!(
            renewal.versions[0].note.as_deref(),
            Some(format!("renewal of {reference}").as_str())
        );

        // The intake desk gets a completeness card for it.
        app.until("the renewal's completeness card", |f| {
            f.messages(INTAKE)
                .iter()
                .any(|m| describe(&m.blocks).contains(&new_reference))
        })
        .await;
        let card = describe(&app.message(INTAKE, &new_reference).blocks);
        assert!(
            card.contains(&format!("# {new_reference} · Translate release notes"))
                && card.contains("Still speeds up release notes")
                && card.contains("[Complete] [Send back…]"),
            "{card}"
        );
        // The renewing owner is told how it will be reviewed, as any requester is.
        app.until("receipt", |f| {
            f.dms(&marcus)
                .iter()
                .any(|m| describe(&m.blocks).contains(&format!("{new_reference} was filed")))
        })
        .await;
        // The old exception stays in force until its expiry.
        let still = app.request(id).await;
        assert_eq!(still.state, State::Active);
        assert_eq!(still.grant, Some(grant));
        let verified = app.store().verify_audit().await.unwrap();
        assert!(verified.is_ok(), "{verified:?}");
        app.stop().await;
    }
);

both!(
    digest_buttons_clicked_by_someone_else_are_refused_and_change_nothing,
    |db: TestDb| async move {
        let app = App::spawn(db).await;
        let svc = app.service();
        let (james, olivia) = (uid("james.carter"), uid("olivia.brown"));

        // Granted 182 days ago for 200 days: by the review two days ago the 30-day
        // expiry reminder had fallen due too. One digest holds both; the late expiry
        // reminder counts the 20 days really left at the review sweep.
        let t0 = days_ago(182);
        let r = granted(&app, "Summarise support tickets", t0, 200).await;
        let id = r.id;
        let reference = id.to_string();
        let review_at = r.grant.as_ref().unwrap().next_review_at.unwrap();
        assert!(review_at < app.now());
        let report = svc.sweep(review_at, false).await.unwrap();
        assert_eq!(report.transitions, vec![(id, "mark_review_due")]);
        let digest = digest_to(&app, "marcus.webb", "periodic review").await;
        let text = describe(&digest.blocks);
        assert!(
            text.starts_with("# 2 reminders")
                && text.contains("[Still needed] [Changed…] [No longer needed]")
                && text.contains("expires in 20 days")
                && text.contains("[Renew…]"),
            "{text}"
        );
        let before = app.request(id).await;
        assert_eq!(before.state, State::ReviewDue);
        let views = app.fake().views_opened().len();

        // James filed it but does not monitor it; Olivia has nothing to do with it.
        // Their clicks on the owner's digest are each explained where they clicked.
        let only_owner = format!("Only the monitoring owner of {reference} can do this.");
        let only_renewer =
            format!("Only the requester or the monitoring owner of {reference} can renew it.");
        let dm = digest.channel.clone();
        for (who, user, action_id, told, n) in [
            (
                "james.carter",
                &james,
                "attest:still_needed",
                &only_owner,
                1,
            ),
            (
                "olivia.brown",
                &olivia,
                "attest:no_longer_needed",
                &only_owner,
                1,
            ),
            ("olivia.brown", &olivia, "renew", &only_renewer, 2),
        ] {
            click(&app, who, &digest, action_id).await;
            app.until("the clicker is told", |f| f.ephemerals(user).len() >= n)
                .await;
            let said = &app.fake().ephemerals(user)[n - 1];
            assert_eq!(describe(&said.blocks), *told, "{who} clicked {action_id}");
            assert_eq!(said.channel, dm, "shown where they clicked");
        }

        // Nothing changed: no modal, same state and review, no attestation, no renewal.
        app.drained().await;
        assert_eq!(app.fake().views_opened().len(), views, "no modal opened");
        let after = app.request(id).await;
        assert_eq!(after.state, State::ReviewDue);
        assert_eq!(after.revision, before.revision);
        assert_eq!(after.grant, before.grant);
        assert!(after.attestations.is_empty());
        for who in ["james.carter", "olivia.brown"] {
            let filed = app.store().requests_by(&p(who), 10).await.unwrap();
            assert_eq!(filed.len(), usize::from(who == "james.carter"), "{who}");
        }
        // Each refusal is audited under the button that was refused.
        let refused: Vec<(String, String)> = app
            .store()
            .audit_of(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == Outcome::Refused)
            .map(|e| (e.actor, e.action))
            .collect();
        assert_eq!(
            refused,
            vec![
                ("james.carter".into(), "attest".into()),
                ("olivia.brown".into(), "attest".into()),
                ("olivia.brown".into(), "renew".into()),
            ]
        );
        // The owner's buttons still work: Still needed opens his modal.
        click(&app, "marcus.webb", &digest, "attest:still_needed").await;
        let view = next_view(&app, views).await;
        assert_eq!(view.view["callback_id"], "attest");
        let verified = app.store().verify_audit().await.unwrap();
        assert!(verified.is_ok(), "{verified:?}");
        app.stop().await;
    }
);

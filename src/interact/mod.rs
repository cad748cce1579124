//! The platform-neutral interaction layer: everything a person can do or ask in chat
//! is decided here once, for every surface.
//!
//! A surface parses its wire format into a [`PlatformUser`] and one of the intents
//! below — a command ([`command`]), a click ([`click`]), a submitted form ([`submit`]),
//! a reply in a card's thread ([`thread_reply`]), opening Home ([`home`]) — and renders
//! the [`Reply`] back. Who may act is decided by the domain at the moment of acting
//! (through the service); button values and form metadata only say which request and
//! version were shown.
//!
//! # What a new surface implements
//! - [ ] verification of its inbound requests (signature or token) over the raw body,
//!   in `chat/<surface>/`, and one route in `http/`;
//! - [ ] its payloads → [`PlatformUser`] + an intent: the command text, a [`Click`]
//!   (button action id, request, version, argument), a [`FormKind`] + [`FormMeta`] +
//!   [`Values`] from a submitted form, a thread reply, a Home view;
//! - [ ] [`Reply`] → its wire format: a message, a form rendered from a
//!   [`form::FormSpec`], field errors next to their fields, an acknowledgement, a
//!   refusal (inline, or already queued to `reply_to`);
//! - [ ] a renderer of [`crate::message::Message`] (every [`crate::message::Section`],
//!   paginating digest items to its limits, escaping all text for its markup);
//! - [ ] delivery: one variant of [`crate::chat::Surface`] with post, update,
//!   find-in-doubt, error classification ([`crate::chat::Failure`]) and pacing;
//! - [ ] a variant of [`crate::message::Platform`] and of [`PlatformUser`] (the compiler
//!   then names every match to extend: identity, addresses, the command's spelling).
//!
//! Nothing in `domain/`, `service/` or `store/` changes for a new surface.

pub mod command;
pub mod form;
pub mod identity;

use crate::domain::{
    Action, Actor, AttestationAnswer, ExceptionRequest, FieldErrors, RequestContent, RequestId,
    Summary, Task, Timestamp,
};
use crate::governance::{Governance, PersonId, RoleId};
use crate::message::{Address, ButtonAction, Message, Platform, Section};
use crate::service::{Acted, Attempt, Refusal, Rejected, Service, ServiceError, Submitted};

pub use command::Command;
pub use form::{FormKind, FormMeta, FormSpec, Values};
pub use identity::PlatformUser;

/// What a person is told when the database fails under them: a temporary failure,
/// never an answer.
pub const UNAVAILABLE: &str = "Waiver cannot reach its database right now, so nothing was read or changed. Please try again in a minute.";

/// The answer to an intent, for the surface to render.
#[derive(Debug)]
pub enum Reply {
    /// Taken; nothing to show (cards and messages follow through delivery).
    Ack,
    /// A message for the person alone.
    Message(Message),
    /// A form to open.
    Form(FormSpec),
    /// The open form stays open with these errors next to their fields.
    FieldErrors(FieldErrors),
    /// The attempt was refused and recorded; when the surface gave a `reply_to`, the
    /// explanation is already queued there.
    Refused(Message),
    /// The payload is not something our cards or forms produce (HTTP 400).
    BadRequest(&'static str),
}

/// A click on a button of one of our messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Click {
    pub action: ButtonAction,
    pub request: RequestId,
    /// The version the card showed.
    pub version: u32,
    /// The button's argument (an assessing role, a condition id, an attestation answer).
    pub arg: Option<String>,
}

/// Who acted, and where an explanation of a refusal goes if the surface sends it
/// asynchronously (Slack: ephemeral in the card's conversation); `None`: in the reply.
#[derive(Clone, Debug)]
pub struct Origin {
    pub user: PlatformUser,
    pub reply_to: Option<Address>,
    /// The delivery's id when the platform may re-send it (a Teams activity id): a
    /// re-sent click changes nothing twice.
    pub idempotency_key: Option<String>,
}

fn text(summary: impl Into<String>) -> Message {
    command::text(summary)
}

/// The person `who` is, or the refusal to record and show.
fn person(gov: &Governance, who: &PlatformUser) -> Result<PersonId, String> {
    identity::person(gov, who)
}

// ---------------------------------------------------------------------------------
// Commands.

/// `ai-exception [subcommand]` typed by `who`.
pub async fn command(
    svc: &Service,
    who: &PlatformUser,
    typed: &str,
    now: Timestamp,
) -> Result<Reply, ServiceError> {
    let gov = svc.governance().clone();
    let platform = who.platform();
    let me = match person(&gov, who) {
        Ok(p) => p,
        Err(why) => {
            let refused = Rejected::new(who.audit_name(), "slash_command", why.clone());
            svc.record_refusal(refused, now).await?;
            return Ok(Reply::Message(text(why)));
        }
    };
    Ok(match Command::parse(typed) {
        Command::New => Reply::Form(form::intake(&gov, None, FormMeta::default())),
        Command::Help => Reply::Message(command::help(platform, None)),
        Command::Unknown(word) => Reply::Message(command::help(
            platform,
            Some(format!("Unknown subcommand \"{word}\".")),
        )),
        Command::List => Reply::Message(list(svc, platform, &me).await?),
        Command::Pending => Reply::Message(pending(svc, &me, now).await?),
        Command::Status(reference) => Reply::Message(status(svc, &me, &reference).await?),
        Command::Withdraw { reference, reason } => {
            Reply::Message(withdraw(svc, me, &reference, reason, now).await?)
        }
        Command::Revoke(reference) => revoke(svc, me, &reference, now).await?,
        Command::Export(rest) => export(svc, who, me, &rest, now).await?,
    })
}

/// `export [since DATE]`: a link to an evidence pack, in the person's direct messages.
async fn export(
    svc: &Service,
    who: &PlatformUser,
    me: PersonId,
    rest: &str,
    now: Timestamp,
) -> Result<Reply, ServiceError> {
    let gov = svc.governance().clone();
    if !gov.may_audit(&me) {
        let roles: Vec<String> = gov
            .auditor_roles()
            .into_iter()
            .map(|r| gov.role(r).map(|r| r.name.clone()).unwrap_or(r.to_string()))
            .collect();
        let why = format!(
            "Evidence packs are for {}; you hold none of those roles.",
            roles.join(", ")
        );
        svc.record_refusal(Rejected::new(me.to_string(), "export", why.clone()), now)
            .await?;
        return Ok(Reply::Refused(text(why)));
    }
    let rest = rest.trim();
    let date = rest.strip_prefix("since").map(str::trim).unwrap_or(rest);
    let since = if date.is_empty() {
        None
    } else {
        match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(d) => Some(Timestamp::start_of(d)),
            Err(_) => {
                return Ok(Reply::Message(text(format!(
                    "\"{date}\" is not a date: {} export [since YYYY-MM-DD]",
                    command::invocation(who.platform())
                ))));
            }
        }
    };
    Ok(Reply::Message(text(
        if svc
            .send_evidence_link(&me, who.platform(), since, now)
            .await?
        {
            "I have sent you a link to the evidence pack in a direct message.".to_string()
        } else {
            "Evidence packs from chat need WAIVER_PUBLIC_URL (the address people reach Waiver at); ask the operator, or run `waiver export --format pack`.".to_string()
        },
    )))
}

/// `revoke REF`: the revocation form, for someone who may revoke it now.
async fn revoke(
    svc: &Service,
    me: PersonId,
    reference: &str,
    now: Timestamp,
) -> Result<Reply, ServiceError> {
    let Some(id) = RequestId::parse(reference) else {
        return Ok(Reply::Message(text(format!(
            "\"{}\" is not a reference like AIX-0042.",
            reference.trim()
        ))));
    };
    let Some(r) = svc.request(id).await? else {
        return Ok(Reply::Message(text(format!("{id} does not exist."))));
    };
    // Decide now, as the domain would on submission, so nobody fills in a form they
    // cannot submit.
    let probe = Action::Revoke {
        reason: "probe".into(),
    };
    let actor = Actor::Person(me);
    if let Err(error) = r.apply(&actor, r.version(), probe, svc.governance(), now) {
        let refusal = Refusal {
            actor,
            seen: r.version(),
            action: "revoke",
            reply_to: None,
            idempotency_key: None,
        };
        svc.refuse(&refusal, &r, &error, now).await?;
        return Ok(Reply::Refused(text(error.to_string())));
    }
    Ok(Reply::Form(form::revoke(&r)))
}

async fn withdraw(
    svc: &Service,
    me: PersonId,
    reference: &str,
    reason: String,
    now: Timestamp,
) -> Result<Message, ServiceError> {
    let Some(id) = RequestId::parse(reference) else {
        return Ok(text(format!(
            "\"{reference}\" is not a reference like AIX-0042."
        )));
    };
    let Some(r) = svc.request(id).await? else {
        return Ok(text(format!("{id} does not exist.")));
    };
    let reason = if reason.is_empty() {
        "withdrawn by the requester".to_string()
    } else {
        reason
    };
    let attempt = Attempt::new(
        Actor::Person(me),
        id,
        r.version(),
        Action::Withdraw { reason },
    );
    Ok(match svc.act(attempt, now).await {
        Ok(Acted::Applied { .. } | Acted::Duplicate) => text(format!("{id} was withdrawn.")),
        Ok(Acted::Refused { error, .. }) => text(error.to_string()),
        Err(ServiceError::NotFound(id)) => text(format!("{id} does not exist.")),
        Err(e) => return Err(e),
    })
}

/// A line about a request, for lists.
fn line(s: &Summary) -> String {
    let mut l = format!("{} {}: {}", s.id, s.title, s.state.label());
    if let Some(t) = s.tier {
        l.push_str(&format!(" ({t} tier)"));
    }
    if let Some(e) = s.expires_at {
        l.push_str(&format!(
            ", expires {}",
            Timestamp::from_millis(e.millis() - 1).date()
        ));
    }
    l
}

/// `list`: the requests `me` filed.
pub async fn list(
    svc: &Service,
    platform: Platform,
    me: &PersonId,
) -> Result<Message, ServiceError> {
    let mine = svc.requests_by(me, 50).await?;
    if mine.is_empty() {
        return Ok(text(format!(
            "You have not filed any requests. Use {} to file one.",
            command::invocation(platform)
        )));
    }
    Ok(Message {
        summary: format!("Your {} request(s)", mine.len()),
        sections: vec![Section::Text {
            label: Some("Your requests".into()),
            text: mine.iter().map(line).collect::<Vec<_>>().join("\n"),
        }],
    })
}

/// What a task asks of the person, in words.
fn task_label(gov: &Governance, t: &Task) -> String {
    match t {
        Task::ReviewCompleteness => "review completeness".into(),
        Task::Assess(role) => format!(
            "assess for {}",
            gov.role(role)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| role.to_string())
        ),
        Task::GiveFeedback => "give stakeholder feedback".into(),
        Task::Decide => "decide".into(),
        Task::MarkDone(id) => format!("complete condition {id}"),
        Task::Attest => "attest the review".into(),
        Task::Update => "answer the questions and update".into(),
    }
}

/// The lines of a task list (the first `max`), and how many were left out.
fn task_lines(gov: &Governance, tasks: &crate::service::Tasks, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = tasks
        .items
        .iter()
        .take(max)
        .map(|(r, t)| {
            format!(
                "{} {}: {}",
                r.reference(),
                r.content().title,
                task_label(gov, t)
            )
        })
        .collect();
    let left = tasks.items.len().saturating_sub(max);
    match (left, tasks.truncated) {
        (0, false) => {}
        (0, true) => lines.push("…and more, oldest first.".into()),
        (n, false) => lines.push(format!("…and {n} more.")),
        (n, true) => lines.push(format!("…and {n}+ more, oldest first.")),
    }
    lines
}

/// Tasks listed in full in one message.
const TASK_LINES: usize = 30;

/// `pending`: what waits on `me`.
pub async fn pending(
    svc: &Service,
    me: &PersonId,
    now: Timestamp,
) -> Result<Message, ServiceError> {
    let gov = svc.governance();
    let work = svc.tasks(me, now).await?;
    if work.items.is_empty() {
        return Ok(text("Nothing is waiting on you."));
    }
    let count = if work.truncated {
        format!("{}+", work.items.len())
    } else {
        work.items.len().to_string()
    };
    Ok(Message {
        summary: format!("{count} item(s) waiting on you"),
        sections: vec![Section::Text {
            label: Some("Waiting on you".into()),
            text: task_lines(gov, &work, TASK_LINES).join("\n"),
        }],
    })
}

/// `status REF`: one request's state and timeline, for the people on it and role
/// holders.
pub async fn status(
    svc: &Service,
    me: &PersonId,
    reference: &str,
) -> Result<Message, ServiceError> {
    let gov = svc.governance();
    let Some(id) = RequestId::parse(reference) else {
        return Ok(text(format!(
            "\"{}\" is not a reference like AIX-0042.",
            reference.trim()
        )));
    };
    let Some(r) = svc.request(id).await? else {
        return Ok(text(format!("{id} does not exist.")));
    };
    if !r.is_interested(me) && gov.roles_of(me).next().is_none() {
        return Ok(text(format!("You are not involved in {id}.")));
    }
    let timeline: Vec<String> = svc
        .timeline(id)
        .await?
        .into_iter()
        .map(|e| {
            let who = match &e.by {
                Some(p) => gov.name_of(p),
                None => "Waiver".to_string(),
            };
            format!("{} · {} by {who}", e.at, e.kind.replace('_', " "))
        })
        .collect();
    Ok(Message {
        summary: format!("{id}: {}", r.state.label()),
        sections: vec![
            Section::Heading {
                text: format!("{id} · {}", r.content().title),
            },
            Section::Text {
                label: Some("Status".into()),
                text: format!(
                    "{} (version {}). {}",
                    r.state.label(),
                    r.version(),
                    crate::chat::plan::waiting_for(gov, &r)
                ),
            },
            Section::Text {
                label: Some("Timeline".into()),
                text: timeline.join("\n"),
            },
        ],
    })
}

/// Home: my pending tasks, my requests, the exceptions I own. `Err` is the refusal
/// for a user Waiver does not serve.
pub async fn home(
    svc: &Service,
    who: &PlatformUser,
    now: Timestamp,
) -> Result<Result<Message, String>, ServiceError> {
    let gov = svc.governance();
    let me = match person(gov, who) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    let h = svc.home(&me, now).await?;
    let or_none = |lines: Vec<String>, none: &str| {
        if lines.is_empty() {
            none.to_string()
        } else {
            lines.join("\n")
        }
    };
    let owned: Vec<String> = h
        .owned
        .iter()
        .map(|s| {
            let mut l = line(s);
            if let Some(n) = s.next_review_at {
                l.push_str(&format!(", next review {}", n.date()));
            }
            l
        })
        .collect();
    let waiting = if h.tasks.items.is_empty() {
        Vec::new()
    } else {
        task_lines(gov, &h.tasks, TASK_LINES)
    };
    Ok(Ok(Message {
        summary: "Waiver".into(),
        sections: vec![
            Section::Heading {
                text: "AI policy exceptions".into(),
            },
            Section::Context {
                text: format!(
                    "File a new request with {}.",
                    command::invocation(who.platform())
                ),
            },
            Section::Text {
                label: Some("Waiting on you".into()),
                text: or_none(waiting, "Nothing is waiting on you."),
            },
            Section::Divider,
            Section::Text {
                label: Some("Your requests".into()),
                text: or_none(
                    h.mine.iter().map(line).collect(),
                    "You have not filed any requests.",
                ),
            },
            Section::Divider,
            Section::Text {
                label: Some("Exceptions you own".into()),
                text: or_none(owned, "You do not monitor any exception."),
            },
        ],
    }))
}

// ---------------------------------------------------------------------------------
// Clicks.

/// Builds the form a button opens, for the request as it is when it opens.
type FormFor = Box<dyn Fn(&ExceptionRequest) -> FormSpec + Send + Sync>;

/// A click by `origin.user` on a button of request `click.request`.
pub async fn click(
    svc: &Service,
    origin: &Origin,
    click: Click,
    now: Timestamp,
) -> Result<Reply, ServiceError> {
    let gov = svc.governance().clone();
    let platform = origin.user.platform();
    let id = click.request;
    let me = match person(&gov, &origin.user) {
        Ok(p) => p,
        Err(why) => {
            let mut refused =
                Rejected::new(origin.user.audit_name(), click.action.as_str(), why.clone())
                    .about(id);
            if let Some(to) = origin.reply_to.clone() {
                refused =
                    refused.explained(crate::service::refusal_message(platform, to, id, &why));
            }
            svc.record_refusal(refused, now).await?;
            return Ok(Reply::Refused(text(why)));
        }
    };
    let Some(r) = svc.request(id).await? else {
        return Ok(Reply::BadRequest("button for an unknown request"));
    };
    let reply_to = origin.reply_to.clone().map(|to| (platform, to));
    let attempt = |action: Action| {
        let mut a = Attempt::new(Actor::Person(me.clone()), id, click.version, action);
        if let Some(key) = &origin.idempotency_key {
            a = a.idempotent(key.clone());
        }
        match &reply_to {
            Some((p, to)) => a.reply_to(*p, to.clone()),
            None => a,
        }
    };
    let refuse = |action: &'static str| Refusal {
        actor: Actor::Person(me.clone()),
        seen: click.version,
        action,
        reply_to: reply_to.clone(),
        idempotency_key: None,
    };
    // Buttons that change state at once.
    let direct = match click.action {
        ButtonAction::Complete => Some(Action::MarkComplete),
        ButtonAction::Withdraw => Some(Action::Withdraw {
            reason: "withdrawn by the requester".into(),
        }),
        ButtonAction::MarkDone => match click.arg.as_deref().and_then(|a| a.parse().ok()) {
            Some(condition) => Some(Action::CompleteCondition { condition }),
            None => return Ok(Reply::BadRequest("condition id")),
        },
        _ => None,
    };
    if let Some(action) = direct {
        return Ok(match svc.act(attempt(action), now).await? {
            Acted::Applied { .. } | Acted::Duplicate => Reply::Ack,
            Acted::Refused { error, .. } => Reply::Refused(text(error.to_string())),
        });
    }
    // Renew… files a new request: whoever may renew gets the form, pre-filled.
    if click.action == ButtonAction::Renew {
        if let Err(error) = r.may_renew(&me) {
            svc.refuse(&refuse("renew"), &r, &error, now).await?;
            return Ok(Reply::Refused(text(error.to_string())));
        }
        return Ok(Reply::Form(form::renew(&gov, &r, now.date())));
    }
    // Buttons that open a form: check first, so nobody fills in a form they cannot
    // submit.
    let (task, spec): (Task, FormFor) = match click.action {
        ButtonAction::SendBack => (Task::ReviewCompleteness, Box::new(form::send_back)),
        ButtonAction::Update => (Task::Update, {
            let g = gov.clone();
            Box::new(move |r| form::update(&g, r))
        }),
        ButtonAction::Assess => {
            let Some(role) = click.arg.clone().map(RoleId::new) else {
                return Ok(Reply::BadRequest("assessing role"));
            };
            let g = gov.clone();
            (
                Task::Assess(role.clone()),
                Box::new(move |r| form::assess(&g, r, &role)),
            )
        }
        ButtonAction::Feedback => (Task::GiveFeedback, Box::new(form::feedback)),
        ButtonAction::Approve => {
            let g = gov.clone();
            let today = now.date();
            (Task::Decide, Box::new(move |r| form::approve(&g, r, today)))
        }
        ButtonAction::Reject => (Task::Decide, Box::new(form::reject)),
        ButtonAction::Attest => {
            let Some(answer) = click.arg.as_deref().and_then(AttestationAnswer::parse) else {
                return Ok(Reply::BadRequest("attestation answer"));
            };
            (Task::Attest, Box::new(move |r| form::attest(r, answer)))
        }
        ButtonAction::Complete
        | ButtonAction::Withdraw
        | ButtonAction::MarkDone
        | ButtonAction::Renew => unreachable!("handled above"),
    };
    if let Err(error) = r.may(&me, click.version, &task, &gov, now) {
        // The audit trail names the button that was refused.
        let action = match click.action {
            ButtonAction::Reject => "reject",
            ButtonAction::SendBack => "send_back",
            _ => task.probe(&r, &me, now).name(),
        };
        svc.refuse(&refuse(action), &r, &error, now).await?;
        return Ok(Reply::Refused(text(error.to_string())));
    }
    Ok(Reply::Form(spec(&r)))
}

// ---------------------------------------------------------------------------------
// Forms.

/// A form of `kind` submitted by `who`.
pub async fn submit(
    svc: &Service,
    origin: &Origin,
    kind: FormKind,
    meta: FormMeta,
    values: Values,
    now: Timestamp,
) -> Result<Reply, ServiceError> {
    let gov = svc.governance().clone();
    let who = &origin.user;
    let key = origin.idempotency_key.clone();
    let first = |text: String| Reply::FieldErrors(FieldErrors::from([(kind.first_field(), text)]));
    let me = match person(&gov, who) {
        Ok(p) => p,
        Err(why) => {
            let mut refused = Rejected::new(who.audit_name(), kind.as_str(), why.clone());
            if let Some(id) = meta.request() {
                refused = refused.about(id);
            }
            svc.record_refusal(refused, now).await?;
            return Ok(first(why));
        }
    };
    if kind == FormKind::Intake && meta.r.is_none() {
        let input = form::parse_intake(&values);
        return Ok(
            match svc.submit_once(&me, &input, meta.renews(), key, now).await {
                Ok(Submitted::Filed(_) | Submitted::Duplicate) => Reply::Ack,
                Ok(Submitted::Invalid(fields)) => Reply::FieldErrors(fields),
                Ok(Submitted::Refused(error)) => first(error.to_string()),
                Err(ServiceError::NotFound(id)) => first(format!("{id} does not exist.")),
                Err(e) => return Err(e),
            },
        );
    }
    let (Some(id), Some(seen)) = (meta.request(), meta.v) else {
        return Ok(Reply::BadRequest("a form without a request"));
    };
    let submission = if kind == FormKind::Intake {
        let input = form::parse_intake(&values);
        match RequestContent::parse(&input, &gov, now.date()) {
            Ok(content) => form::Submission {
                action: Action::Update {
                    content: Box::new(content),
                    note: Some("answers to the reviewer's questions".into()),
                },
                slots: Vec::new(),
            },
            Err(fields) => return Ok(Reply::FieldErrors(fields)),
        }
    } else {
        match form::action(kind, &meta, &values) {
            Ok(submission) => submission,
            Err(form::Invalid::Fields(fields)) => return Ok(Reply::FieldErrors(fields)),
            Err(form::Invalid::Malformed(why)) => return Ok(Reply::BadRequest(why)),
        }
    };
    let mut attempt = Attempt::new(Actor::Person(me), id, seen, submission.action);
    attempt.idempotency_key = key;
    Ok(match svc.act(attempt, now).await {
        Ok(Acted::Applied { .. } | Acted::Duplicate) => Reply::Ack,
        Ok(Acted::Refused { error, .. }) => {
            Reply::FieldErrors(form::refusal_errors(kind, &error, &submission.slots))
        }
        Err(ServiceError::NotFound(id)) => first(format!("{id} does not exist.")),
        Err(e) => return Err(e),
    })
}

/// The form `kind` as it was opened for `meta`, showing `values` (a surface that must
/// render a form again to show field errors asks for it here).
pub async fn reopen(
    svc: &Service,
    kind: FormKind,
    meta: &FormMeta,
    values: &Values,
    now: Timestamp,
) -> Result<Option<FormSpec>, ServiceError> {
    let gov = svc.governance().clone();
    let request = match meta.request().or(meta.renews()) {
        Some(id) => svc.request(id).await?,
        None => None,
    };
    let spec = match (kind, request) {
        (FormKind::Intake, None) if meta.r.is_none() && meta.renews.is_none() => {
            form::intake(&gov, None, FormMeta::default())
        }
        (FormKind::Intake, Some(r)) if meta.renews.is_some() => form::renew(&gov, &r, now.date()),
        (FormKind::Intake, Some(r)) => form::update(&gov, &r),
        (FormKind::SendBack, Some(r)) => form::send_back(&r),
        (FormKind::Assess, Some(r)) => match meta.a.clone() {
            Some(role) => form::assess(&gov, &r, &RoleId::new(role)),
            None => return Ok(None),
        },
        (FormKind::Feedback, Some(r)) => form::feedback(&r),
        (FormKind::Approve, Some(r)) => form::approve(&gov, &r, now.date()),
        (FormKind::Reject, Some(r)) => form::reject(&r),
        (FormKind::Revoke, Some(r)) => form::revoke(&r),
        (FormKind::Attest, Some(r)) => match meta.a.as_deref().and_then(AttestationAnswer::parse) {
            Some(answer) => form::attest(&r, answer),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(spec.with_values(values)))
}

// ---------------------------------------------------------------------------------
// Thread replies.

/// A reply by `who` in the thread of `message` in `conversation`: a comment on the
/// request whose card that is (anything else is ignored). `key` makes a re-delivery
/// count once.
pub async fn thread_reply(
    svc: &Service,
    who: &PlatformUser,
    conversation: &str,
    message: &str,
    text: String,
    key: String,
    now: Timestamp,
) -> Result<Reply, ServiceError> {
    let platform = who.platform();
    if text.trim().is_empty() {
        return Ok(Reply::Ack);
    }
    // A reply can beat the delivery worker's record of where the card was posted by a
    // few milliseconds; in channels where cards go, wait briefly (under a second, well
    // within the time platforms give a bot to answer) before deciding the thread is
    // not a card's.
    let ours = svc.governance().roles.values().any(|r| {
        let channel = match platform {
            Platform::Slack => r.channels.slack.as_deref(),
            Platform::Teams => r.channels.teams.as_deref(),
        };
        channel == Some(conversation)
    });
    let mut found = None;
    for attempt in 0..10 {
        match svc.request_of_card(platform, conversation, message).await? {
            Some(id) => {
                found = Some(id);
                break;
            }
            None if attempt < 9 && ours => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            None => break,
        }
    }
    let Some(id) = found else {
        return Ok(Reply::Ack);
    };
    let me = match person(svc.governance(), who) {
        Ok(p) => p,
        Err(why) => {
            // Audited like every other refused input, once however often it is delivered.
            let refused = Rejected::new(who.audit_name(), "comment", why)
                .about(id)
                .once(key);
            svc.record_refusal(refused, now).await?;
            return Ok(Reply::Ack);
        }
    };
    let Some(r) = svc.request(id).await? else {
        return Ok(Reply::Ack);
    };
    let attempt =
        Attempt::new(Actor::Person(me), id, r.version(), Action::Comment { text }).idempotent(key);
    svc.act(attempt, now).await?;
    Ok(Reply::Ack)
}

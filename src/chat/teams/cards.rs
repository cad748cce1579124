//! Neutral messages and forms → Adaptive Cards (schema 1.5), and submitted dialog data
//! → neutral values.
//!
//! All text goes into `TextRun`s of `RichTextBlock`s, which Teams never reads as
//! markdown, so user text cannot format, link or mention. Buttons that change state at
//! once are `Action.Execute` (Universal Actions: the invoke's answer refreshes the card
//! for whoever clicked); buttons that open a form are `Action.Submit` with
//! `msteams.type = task/fetch`, which opens the form as a dialog. Both carry only the
//! request, the version the card showed and an argument — never authority.

use serde_json::{Value, json};

use crate::chat::plan::user_id;
use crate::domain::FieldErrors;
use crate::governance::Governance;
use crate::interact::form::{FieldKind, FieldSpec, Initial, Value as Entered};
use crate::interact::{FormKind, FormMeta, FormSpec, PlatformUser, Values, command, identity};
use crate::message::{Button, ButtonAction, Message, Platform, Section, Style};

pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
pub const SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";
/// Digest items shown in full on a card.
pub const DIGEST_PAGE: usize = 15;
/// The key of the bot's own data in a submitted dialog.
pub const DATA_KEY: &str = "waiver";

fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut c = json!({
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": "1.5",
        "body": body,
    });
    if !actions.is_empty() {
        c["actions"] = Value::Array(actions);
    }
    c
}

fn run(text: &str) -> Value {
    json!({ "type": "TextRun", "text": text })
}

fn rich(runs: Vec<Value>) -> Value {
    json!({ "type": "RichTextBlock", "inlines": runs })
}

fn bold(text: &str) -> Value {
    json!({ "type": "TextRun", "text": text, "weight": "Bolder" })
}

/// What a button carries back.
pub fn button_data(b: &Button) -> Value {
    let mut data = json!({ "action": b.action.as_str(), "r": b.request.get(), "v": b.version });
    if let Some(a) = &b.arg {
        data["a"] = json!(a);
    }
    data
}

fn action(b: &Button) -> Value {
    let style = match b.style {
        Style::Primary => "positive",
        Style::Danger => "destructive",
        Style::Default => "default",
    };
    let data = button_data(b);
    let base = if b.action.opens_form() {
        let mut data = data;
        data["msteams"] = json!({ "type": "task/fetch" });
        json!({ "type": "Action.Submit", "title": b.label, "style": style, "data": data })
    } else {
        json!({
            "type": "Action.Execute",
            "title": b.label,
            "style": style,
            "verb": b.action.as_str(),
            "data": data,
        })
    };
    match &b.confirm {
        // No confirm dialog in Adaptive Cards: the button shows the question first.
        Some(question) => json!({
            "type": "Action.ShowCard",
            "title": b.label,
            "style": style,
            "card": card(
                vec![json!({ "type": "RichTextBlock", "inlines": [run(question)] })],
                vec![{
                    let mut yes = base;
                    yes["title"] = json!(format!("Yes: {}", b.label));
                    yes
                }],
            ),
        }),
        None => base,
    }
}

fn push_sections(body: &mut Vec<Value>, sections: &[Section]) {
    for s in sections {
        match s {
            Section::Heading { text } => body.push(json!({
                "type": "RichTextBlock",
                "inlines": [{ "type": "TextRun", "text": text, "size": "Large", "weight": "Bolder" }],
            })),
            Section::Text { label, text } => {
                if let Some(l) = label {
                    body.push(rich(vec![bold(l)]));
                }
                body.push(rich(vec![run(text)]));
            }
            Section::Fields { fields } => {
                for (label, value) in fields {
                    body.push(rich(vec![bold(&format!("{label}: ")), run(value)]));
                }
            }
            Section::Context { text } => body.push(json!({
                "type": "RichTextBlock",
                "inlines": [{ "type": "TextRun", "text": text, "isSubtle": true, "size": "Small" }],
            })),
            Section::CommandHint {
                before,
                args,
                after,
            } => {
                let cmd = command::invocation(Platform::Teams);
                let text = match args.as_str() {
                    "" => format!("{before}{cmd}{after}"),
                    args => format!("{before}{cmd} {args}{after}"),
                };
                body.push(json!({
                    "type": "RichTextBlock",
                    "inlines": [{ "type": "TextRun", "text": text, "isSubtle": true, "size": "Small" }],
                }));
            }
            Section::Divider => body.push(json!({ "type": "Container", "separator": true, "items": [] })),
            Section::Actions { buttons } => {
                body.push(json!({
                    "type": "ActionSet",
                    "actions": buttons.iter().map(action).collect::<Vec<_>>(),
                }));
            }
            Section::Items { items, total } => {
                for (i, item) in items.iter().take(DIGEST_PAGE).enumerate() {
                    let mut inner = Vec::new();
                    push_sections(&mut inner, item);
                    body.push(json!({ "type": "Container", "separator": i > 0, "items": inner }));
                }
                let shown = items.len().min(DIGEST_PAGE);
                if *total > shown {
                    body.push(json!({
                        "type": "RichTextBlock",
                        "inlines": [{
                            "type": "TextRun",
                            "isSubtle": true,
                            "text": format!(
                                "…and {} more. Send {} pending to the bot to see them all.",
                                total - shown,
                                command::invocation(Platform::Teams)
                            ),
                        }],
                    }));
                }
            }
        }
    }
}

/// A neutral message as an Adaptive Card.
pub fn message(m: &Message) -> Value {
    let mut body = Vec::new();
    push_sections(&mut body, &m.sections);
    if body.is_empty() {
        body.push(rich(vec![run(&m.summary)]));
    }
    card(body, Vec::new())
}

/// The verb of a card's refresh action (Universal Actions): Teams invokes it when
/// someone views the card, and shows the card the bot answers with instead.
pub const REFRESH: &str = "refresh";

/// A neutral message as the Adaptive Card of the card `key`, with a refresh action:
/// any copy Teams shows is brought up to date when it is viewed — a copy the bot
/// lost track of (a post in flight at a crash, posted again), or a card whose update
/// is still on its way. Without `userIds`, Teams refreshes automatically in
/// conversations of up to 60 members and offers "Refresh card" in larger ones.
pub fn keyed(m: &Message, key: &str) -> Value {
    let mut c = message(m);
    c["refresh"] = json!({
        "action": {
            "type": "Action.Execute",
            "verb": REFRESH,
            "data": { "action": REFRESH, "k": key },
        },
    });
    c
}

/// A message queued for Teams as its card: keyed (refreshable) when it is one.
pub fn outgoing(o: &crate::message::Outgoing) -> Value {
    match &o.card {
        Some(key) => keyed(&o.message, key),
        None => message(&o.message),
    }
}

/// The card key a refresh action carries.
pub fn read_refresh(data: &Value) -> Option<&str> {
    if data["action"] != REFRESH {
        return None;
    }
    data["k"].as_str()
}

/// A card with one button that opens `spec` as a dialog (Teams opens dialogs from
/// card actions only: a command that wants a form answers with this). The button
/// carries the command typed, which is asked again when it is clicked.
pub fn open_form_card(spec: &FormSpec, typed: &str) -> Value {
    let data = json!({
        "command": typed,
        "msteams": { "type": "task/fetch" },
    });
    card(
        vec![rich(vec![bold(&spec.title)])],
        vec![
            json!({ "type": "Action.Submit", "title": format!("Open: {}", spec.title), "style": "positive", "data": data }),
        ],
    )
}

fn input(gov: &Governance, f: &FieldSpec) -> Value {
    let id = f.field.id();
    let mut el = match &f.kind {
        FieldKind::Text { multiline, max } => {
            let mut el = json!({ "type": "Input.Text", "id": id, "isMultiline": multiline, "maxLength": max });
            if let Initial::Text(v) = &f.initial {
                el["value"] = json!(v);
            }
            el
        }
        FieldKind::Select(choices) | FieldKind::MultiSelect(choices) => {
            let multi = matches!(f.kind, FieldKind::MultiSelect(_));
            let mut el = json!({
                "type": "Input.ChoiceSet",
                "id": id,
                "style": "compact",
                "isMultiSelect": multi,
                "choices": choices.iter().map(|c| json!({ "title": c.label, "value": c.value })).collect::<Vec<_>>(),
            });
            match &f.initial {
                Initial::Choice(v) if !v.is_empty() => el["value"] = json!(v),
                Initial::Choices(v) if !v.is_empty() => el["value"] = json!(v.join(",")),
                _ => {}
            }
            el
        }
        FieldKind::Date => {
            let mut el = json!({ "type": "Input.Date", "id": id });
            if let Initial::Date(d) = &f.initial {
                el["value"] = json!(d);
            }
            el
        }
        FieldKind::Person => {
            // The people of the governance file who act from Teams, filtered as one
            // types (Adaptive Cards 1.5; directory search needs 1.6, which Teams does
            // not render everywhere).
            let mut people: Vec<(String, String)> = gov
                .people
                .iter()
                .filter_map(|p| {
                    p.teams
                        .as_ref()
                        .map(|t| (p.name.clone(), t.aad_object_id.clone()))
                })
                .collect();
            people.sort();
            let mut el = json!({
                "type": "Input.ChoiceSet",
                "id": id,
                "style": "filtered",
                "choices": people
                    .iter()
                    .map(|(name, aad)| json!({ "title": name, "value": aad }))
                    .collect::<Vec<_>>(),
            });
            if let Initial::Person(p) = &f.initial
                && let Some(aad) = user_id(gov, Platform::Teams, p)
            {
                if !people.iter().any(|(_, a)| *a == aad) {
                    el["choices"]
                        .as_array_mut()
                        .expect("choices")
                        .push(json!({ "title": gov.name_of(p), "value": aad }));
                }
                el["value"] = json!(aad);
            }
            el
        }
    };
    el["label"] = json!(f.label);
    el["isRequired"] = json!(!f.optional);
    if !f.optional {
        // Shown by Teams when the field is left empty.
        el["errorMessage"] = json!("This field is required.");
    }
    el
}

/// A form as a dialog card: its fields, and the errors of a submission next to the
/// fields they are about (the form keeps what was entered).
pub fn form(gov: &Governance, spec: &FormSpec, errors: &FieldErrors) -> Value {
    let mut body = Vec::new();
    if let Some((reference, title)) = &spec.subject {
        body.push(rich(vec![bold(reference), run(&format!(" · {title}"))]));
    }
    for note in &spec.notes {
        body.push(json!({
            "type": "RichTextBlock",
            "inlines": [{ "type": "TextRun", "text": note, "isSubtle": true }],
        }));
    }
    let unplaced: Vec<&String> = errors
        .iter()
        .filter(|(f, _)| !spec.fields.iter().any(|s| s.field == **f))
        .map(|(_, m)| m)
        .collect();
    for m in unplaced {
        body.push(json!({
            "type": "RichTextBlock",
            "inlines": [{ "type": "TextRun", "text": m, "color": "Attention" }],
        }));
    }
    for f in &spec.fields {
        body.push(input(gov, f));
        if let Some(hint) = &f.hint {
            body.push(json!({
                "type": "RichTextBlock",
                "inlines": [{ "type": "TextRun", "text": hint, "isSubtle": true, "size": "Small" }],
            }));
        }
        if let Some(m) = errors.get(&f.field) {
            body.push(json!({
                "type": "RichTextBlock",
                "inlines": [{ "type": "TextRun", "text": m, "color": "Attention" }],
            }));
        }
    }
    let data = json!({ DATA_KEY: { "form": spec.kind.as_str(), "meta": spec.meta.encode() } });
    card(
        body,
        vec![
            json!({ "type": "Action.Submit", "title": spec.submit, "style": "positive", "data": data }),
        ],
    )
}

/// A dialog (task module) showing `card`.
pub fn dialog(title: &str, card: Value) -> Value {
    json!({
        "task": {
            "type": "continue",
            "value": {
                "title": title,
                "width": "medium",
                "height": "large",
                "card": { "contentType": CONTENT_TYPE, "content": card },
            },
        },
    })
}

/// A dialog answer that closes it with a message.
pub fn dialog_message(text: &str) -> Value {
    json!({ "task": { "type": "message", "value": text } })
}

/// Which form a submitted dialog is, what it was opened for, and what was entered.
/// People picked in person fields are resolved in the submitter's tenant.
pub fn read(
    gov: &Governance,
    who: &PlatformUser,
    data: &Value,
) -> Option<(FormKind, FormMeta, Values)> {
    let ours = data.get(DATA_KEY)?;
    let kind = FormKind::parse(ours.get("form")?.as_str()?)?;
    let meta = FormMeta::parse(ours.get("meta").and_then(Value::as_str));
    let mut values = Values::new();
    for (id, v) in data.as_object()? {
        if id == DATA_KEY || id == "msteams" {
            continue;
        }
        let Some(field) = crate::domain::Field::parse(id) else {
            continue;
        };
        let Some(text) = v.as_str() else {
            continue;
        };
        let value = match crate::interact::form::value_kind(field) {
            crate::interact::form::ValueKind::Text => Entered::Text(text.to_string()),
            crate::interact::form::ValueKind::Choice => Entered::Choice(text.to_string()),
            crate::interact::form::ValueKind::Choices => Entered::Choices(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            crate::interact::form::ValueKind::Date => Entered::Date(text.to_string()),
            crate::interact::form::ValueKind::Person if text.trim().is_empty() => continue,
            crate::interact::form::ValueKind::Person => {
                Entered::Person(identity::colleague(gov, who, text.trim()))
            }
        };
        values.set(id.clone(), value);
    }
    Some((kind, meta, values))
}

/// What a clicked card action carries: (button, request, version, argument).
pub fn read_button(data: &Value) -> Option<(ButtonAction, i64, u32, Option<String>)> {
    let action = ButtonAction::parse(data.get("action")?.as_str()?)?;
    let r = data.get("r")?.as_i64().filter(|r| *r > 0)?;
    let v = u32::try_from(data.get("v")?.as_u64()?).ok()?;
    let a = data.get("a").and_then(Value::as_str).map(str::to_string);
    Some((action, r, v, a))
}

//! Neutral messages → Block Kit.
//!
//! All text is escaped (`&`, `<`, `>`) before it becomes mrkdwn, so user text can
//! never ping `@channel`, mention people or spoof a link; formatting (bold labels) is
//! added around the escaped text. Texts are cut to Slack's block limits.

use serde::{Deserialize, Serialize};
use slack_morphism::prelude::*;

use crate::domain::RequestId;
use crate::interact::command::invocation;
use crate::message::{Button, Message, Platform, Section, Style};

/// Escapes text for mrkdwn.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// What a button carries: which request and version it was rendered for, and an
/// argument. Never authority: the clicker is checked when they click.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonValue {
    pub r: i64,
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
}

impl ButtonValue {
    pub fn request(&self) -> RequestId {
        RequestId::new(self.r)
    }
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok().filter(|v: &Self| v.r > 0)
    }
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("button values serialise")
    }
}

pub fn plain(s: &str, max: usize) -> SlackBlockPlainTextOnly {
    SlackBlockPlainTextOnly::from(cut(s, max))
}

pub fn mrkdwn(s: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(s))
}

fn button(b: &Button) -> SlackActionBlockElement {
    let action_id = match &b.arg {
        Some(arg) => format!("{}:{arg}", b.action.as_str()),
        None => b.action.as_str().to_string(),
    };
    let mut el = SlackBlockButtonElement::new(plain(&b.label, 75))
        .with_action_id(SlackActionId::new(action_id))
        .with_value(
            ButtonValue {
                r: b.request.get(),
                v: b.version,
                a: b.arg.clone(),
            }
            .encode(),
        );
    match b.style {
        Style::Primary => el = el.with_style(SlackBlockButtonStyle::Primary),
        Style::Danger => el = el.with_style(SlackBlockButtonStyle::Danger),
        Style::Default => {}
    }
    if let Some(question) = &b.confirm {
        el = el.with_confirm(SlackBlockConfirmItem::new(
            plain("Are you sure?", 100),
            SlackBlockText::Plain(SlackBlockPlainText::new(cut(question, 300))),
            plain(&b.label, 30),
            plain("Cancel", 30),
        ));
    }
    SlackActionBlockElement::Button(el)
}

/// Digest items shown in full: Slack allows 50 blocks per message.
pub const DIGEST_PAGE: usize = 12;

/// The blocks of a neutral message.
pub fn blocks(message: &Message) -> Vec<SlackBlock> {
    let mut out = Vec::new();
    push_sections(&mut out, &message.sections);
    // Slack allows 50 blocks per message.
    out.truncate(50);
    out
}

fn push_sections(out: &mut Vec<SlackBlock>, sections: &[Section]) {
    for section in sections {
        match section {
            Section::Heading { text } => {
                out.push(SlackBlock::Header(SlackHeaderBlock::new(plain(text, 150))));
            }
            Section::Text { label, text } => {
                let body = cut(&escape(text), 2800);
                let text = match label {
                    Some(l) => format!("*{}*\n{body}", escape(l)),
                    None => body,
                };
                out.push(SlackBlock::Section(
                    SlackSectionBlock::new().with_text(mrkdwn(text)),
                ));
            }
            Section::Fields { fields } => {
                for chunk in fields.chunks(10) {
                    let fields = chunk
                        .iter()
                        .map(|(l, v)| mrkdwn(format!("*{}*\n{}", escape(l), cut(&escape(v), 1900))))
                        .collect();
                    out.push(SlackBlock::Section(
                        SlackSectionBlock::new().with_fields(fields),
                    ));
                }
            }
            Section::Context { text } => {
                out.push(SlackBlock::Context(SlackContextBlock::new(vec![
                    SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(cut(
                        &escape(text),
                        2900,
                    ))),
                ])));
            }
            Section::Divider => out.push(SlackBlock::Divider(SlackDividerBlock::new())),
            Section::CommandHint {
                before,
                args,
                after,
            } => {
                let command = invocation(Platform::Slack);
                let text = match args.as_str() {
                    "" => format!("{before}{command}{after}"),
                    args => format!("{before}{command} {args}{after}"),
                };
                out.push(SlackBlock::Context(SlackContextBlock::new(vec![
                    SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(cut(
                        &escape(&text),
                        2900,
                    ))),
                ])));
            }
            Section::Actions { buttons } => {
                for chunk in buttons.chunks(25) {
                    out.push(SlackBlock::Actions(SlackActionsBlock::new(
                        chunk.iter().map(button).collect(),
                    )));
                }
            }
            Section::Items { items, total } => {
                for (i, item) in items.iter().take(DIGEST_PAGE).enumerate() {
                    if i > 0 {
                        out.push(SlackBlock::Divider(SlackDividerBlock::new()));
                    }
                    push_sections(out, item);
                }
                let shown = items.len().min(DIGEST_PAGE);
                if *total > shown {
                    out.push(SlackBlock::Context(SlackContextBlock::new(vec![
                        SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(format!(
                            "…and {} more. `{} pending` and the Waiver Home tab list them all.",
                            total - shown,
                            invocation(Platform::Slack)
                        ))),
                    ])));
                }
            }
        }
    }
}

/// The notification / fallback text of a message (escaped: it is mrkdwn too).
pub fn fallback(message: &Message) -> String {
    cut(&escape(&message.summary), 3000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_ping_mention_or_link() {
        let hostile = "<!channel> hi <@U0NW00001> see <https://evil.example|the policy> & more";
        let escaped = escape(hostile);
        assert_eq!(
            escaped,
            "&lt;!channel&gt; hi &lt;@U0NW00001&gt; see &lt;https://evil.example|the policy&gt; &amp; more"
        );
        let message = Message {
            summary: hostile.into(),
            sections: vec![
                Section::Text {
                    label: Some("<b>".into()),
                    text: hostile.into(),
                },
                Section::Fields {
                    fields: vec![("x".into(), hostile.into())],
                },
                Section::Context {
                    text: hostile.into(),
                },
            ],
        };
        let json = serde_json::to_string(&blocks(&message)).unwrap();
        assert!(
            !json.contains("<!channel>") && !json.contains("<@U0NW") && !json.contains("<https"),
            "{json}"
        );
        assert!(!fallback(&message).contains('<'));
    }

    #[test]
    fn buttons_carry_request_and_version_only() {
        let b = Button {
            action: crate::message::ButtonAction::Assess,
            label: "Assess…".into(),
            style: Style::Primary,
            request: RequestId::new(42),
            version: 3,
            arg: Some("privacy".into()),
            confirm: None,
        };
        let json = serde_json::to_value(blocks(&Message {
            summary: "s".into(),
            sections: vec![Section::Actions { buttons: vec![b] }],
        }))
        .unwrap();
        let el = &json[0]["elements"][0];
        assert_eq!(el["action_id"], "assess:privacy");
        assert_eq!(
            ButtonValue::parse(el["value"].as_str().unwrap()),
            Some(ButtonValue {
                r: 42,
                v: 3,
                a: Some("privacy".into())
            })
        );
        assert_eq!(ButtonValue::parse("{\"r\":-1,\"v\":1}"), None);
        assert_eq!(ButtonValue::parse("not json"), None);
    }
}

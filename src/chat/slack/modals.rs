//! Neutral forms ↔ Slack modals: a [`FormSpec`] rendered as a modal view, and a
//! submitted view's state read back into neutral [`Values`].
//!
//! Each input block's `block_id` is its field's id, so field errors come back inside
//! the modal (`response_action: errors`). The callback id names the form and the
//! `private_metadata` carries its [`FormMeta`] — the request and version it was opened
//! for, never authority.

use slack_morphism::prelude::*;

use super::render::{cut, escape, mrkdwn, plain};
use crate::chat::plan::user_id;
use crate::governance::Governance;
use crate::interact::form::{Choice, FieldKind, FieldSpec, Initial, Value};
use crate::interact::{FormKind, FormMeta, FormSpec, PlatformUser, Values, identity};
use crate::message::Platform;

/// The action id of every input (the block id names the field).
const VALUE: &str = "value";

fn choice(c: &Choice) -> SlackBlockChoiceItem<SlackBlockPlainTextOnly> {
    SlackBlockChoiceItem::new(plain(&c.label, 75), c.value.clone())
}

fn element(gov: &Governance, f: &FieldSpec) -> SlackInputBlockElement {
    let action = SlackActionId::new(VALUE.into());
    match &f.kind {
        FieldKind::Text { multiline, max } => {
            let mut el = SlackBlockPlainTextInputElement::new()
                .with_action_id(action)
                .with_multiline(*multiline)
                .with_max_length(u64::from(*max));
            if let Initial::Text(v) = &f.initial {
                el = el.with_initial_value(v.clone());
            }
            SlackInputBlockElement::PlainTextInput(el)
        }
        FieldKind::Select(choices) => {
            let items: Vec<_> = choices.iter().map(choice).collect();
            let mut el = SlackBlockStaticSelectElement::new()
                .with_action_id(action)
                .with_options(items.clone());
            if let Initial::Choice(i) = &f.initial
                && let Some(item) = items.iter().find(|o| &o.value == i)
            {
                el = el.with_initial_option(item.clone());
            }
            SlackInputBlockElement::StaticSelect(el)
        }
        FieldKind::MultiSelect(choices) => {
            let items: Vec<_> = choices.iter().map(choice).collect();
            let mut el = SlackBlockMultiStaticSelectElement::new()
                .with_action_id(action)
                .with_options(items.clone());
            if let Initial::Choices(initial) = &f.initial {
                let chosen: Vec<_> = items
                    .iter()
                    .filter(|o| initial.contains(&o.value))
                    .cloned()
                    .collect();
                if !chosen.is_empty() {
                    el = el.with_initial_options(chosen);
                }
            }
            SlackInputBlockElement::MultiStaticSelect(el)
        }
        FieldKind::Date => {
            let mut el = SlackBlockDatePickerElement::new().with_action_id(action);
            if let Initial::Date(d) = &f.initial {
                el = el.with_initial_date(d.clone());
            }
            SlackInputBlockElement::DatePicker(el)
        }
        FieldKind::Person => {
            let mut el = SlackBlockUsersSelectElement::new().with_action_id(action);
            if let Initial::Person(p) = &f.initial
                && let Some(user) = user_id(gov, Platform::Slack, p)
            {
                el = el.with_initial_user(user);
            }
            SlackInputBlockElement::UsersSelect(el)
        }
    }
}

fn input(gov: &Governance, f: &FieldSpec) -> SlackBlock {
    let mut block = SlackInputBlock::new(plain(&f.label, 2000), element(gov, f))
        .with_block_id(SlackBlockId::new(f.field.id()));
    if f.optional {
        block = block.with_optional(true);
    }
    if let Some(h) = &f.hint {
        block = block.with_hint(plain(h, 2000));
    }
    SlackBlock::Input(block)
}

/// A form as a modal view.
pub fn view(gov: &Governance, spec: &FormSpec) -> SlackView {
    let mut blocks = Vec::new();
    if let Some((reference, title)) = &spec.subject {
        blocks.push(SlackBlock::Section(SlackSectionBlock::new().with_text(
            mrkdwn(format!("*{}* · {}", escape(reference), escape(title))),
        )));
    }
    for note in &spec.notes {
        blocks.push(SlackBlock::Context(SlackContextBlock::new(vec![
            SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(cut(
                &escape(note),
                2900,
            ))),
        ])));
    }
    blocks.extend(spec.fields.iter().map(|f| input(gov, f)));
    SlackView::Modal(
        SlackModalView::new(plain(&spec.title, 24), blocks)
            .with_submit(plain(&spec.submit, 24))
            .with_close(plain("Cancel", 24))
            .with_callback_id(SlackCallbackId::new(spec.kind.as_str().into()))
            .with_private_metadata(spec.meta.encode()),
    )
}

/// Which form a submitted view is, what it was opened for, and what was entered.
/// People picked in person fields are resolved in the submitter's workspace.
pub fn read(
    gov: &Governance,
    who: &PlatformUser,
    view: &SlackStatefulView,
) -> Option<(FormKind, FormMeta, Values)> {
    let SlackView::Modal(modal) = &view.view else {
        return None;
    };
    let kind = FormKind::parse(modal.callback_id.as_ref()?.as_ref())?;
    let meta = FormMeta::parse(modal.private_metadata.as_deref());
    let mut values = Values::new();
    let state = view.state_params.state.as_ref();
    for (block, actions) in state.map(|s| &s.values).into_iter().flatten() {
        let Some(v) = actions.get(&SlackActionId::new(VALUE.into())) else {
            continue;
        };
        let value = if let Some(user) = &v.selected_user {
            Value::Person(identity::colleague(gov, who, user.as_ref()))
        } else if let Some(date) = &v.selected_date {
            Value::Date(date.clone())
        } else if let Some(options) = &v.selected_options {
            Value::Choices(options.iter().map(|o| o.value.clone()).collect())
        } else if let Some(option) = &v.selected_option {
            Value::Choice(option.value.clone())
        } else if let Some(text) = &v.value {
            Value::Text(text.clone())
        } else {
            continue;
        };
        values.set(block.to_string(), value);
    }
    Some((kind, meta, values))
}

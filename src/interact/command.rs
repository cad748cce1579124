//! The `ai-exception` command: its grammar and its help, the same on every surface
//! (Slack's `/ai-exception …`, a message `ai-exception …` to the bot in Teams).

use crate::message::{Message, Platform, Section};

/// What someone asked for with `ai-exception [subcommand]`.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    New,
    Help,
    List,
    Pending,
    Status(String),
    Withdraw {
        reference: String,
        reason: String,
    },
    /// Opens the revocation form for a granted exception.
    Revoke(String),
    /// An evidence pack (compliance and administrators), optionally since a date.
    Export(String),
    Unknown(String),
}

impl Command {
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        let (head, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim();
        match head.to_ascii_lowercase().as_str() {
            "" | "new" | "file" => Command::New,
            "help" | "?" => Command::Help,
            "list" | "mine" => Command::List,
            "pending" | "todo" => Command::Pending,
            "status" => Command::Status(rest.to_string()),
            "revoke" => Command::Revoke(rest.to_string()),
            "export" => Command::Export(rest.to_string()),
            "withdraw" => {
                let (reference, reason) =
                    rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                Command::Withdraw {
                    reference: reference.to_string(),
                    reason: reason.trim().to_string(),
                }
            }
            _ => Command::Unknown(head.to_string()),
        }
    }
}

/// How people type the command on `platform`.
pub fn invocation(platform: Platform) -> &'static str {
    match platform {
        Platform::Slack => "/ai-exception",
        Platform::Teams => "ai-exception",
    }
}

/// A message of plain text (the summary repeated as its only section).
pub fn text(summary: impl Into<String>) -> Message {
    let summary = summary.into();
    Message {
        sections: vec![Section::Text {
            label: None,
            text: summary.clone(),
        }],
        summary,
    }
}

/// The command's help, after `prefix` (e.g. what was not understood).
pub fn help(platform: Platform, prefix: Option<String>) -> Message {
    let cmd = invocation(platform);
    let mut sections = Vec::new();
    if let Some(p) = prefix {
        sections.push(Section::Text {
            label: None,
            text: p,
        });
    }
    sections.push(Section::Text {
        label: Some(cmd.into()),
        text: [
            format!("{cmd}: file a new AI policy exception (opens the form)"),
            format!("{cmd} list: your requests and their state"),
            format!("{cmd} status AIX-0042: one request's timeline"),
            format!("{cmd} pending: what is waiting on you"),
            format!("{cmd} withdraw AIX-0042 [reason]: withdraw your request before a decision"),
            format!("{cmd} revoke AIX-0042: revoke a granted exception (revokers and its tier's approvers)"),
            format!("{cmd} export [since YYYY-MM-DD]: an evidence pack, sent to you directly (compliance and administrators)"),
            format!("{cmd} help: this message"),
        ]
        .join("\n"),
    });
    Message {
        summary: format!("How to use {cmd}"),
        sections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_parse() {
        assert_eq!(Command::parse(""), Command::New);
        assert_eq!(Command::parse("  HELP "), Command::Help);
        assert_eq!(Command::parse("list"), Command::List);
        assert_eq!(Command::parse("pending"), Command::Pending);
        assert_eq!(
            Command::parse("status AIX-0042"),
            Command::Status("AIX-0042".into())
        );
        assert_eq!(
            Command::parse("withdraw AIX-7 not needed anymore"),
            Command::Withdraw {
                reference: "AIX-7".into(),
                reason: "not needed anymore".into()
            }
        );
        assert_eq!(
            Command::parse("revoke aix-12"),
            Command::Revoke("aix-12".into())
        );
        assert_eq!(
            Command::parse("frobnicate now"),
            Command::Unknown("frobnicate".into())
        );
    }

    #[test]
    fn help_names_the_command_as_each_platform_spells_it() {
        let slack = help(Platform::Slack, None);
        assert_eq!(slack.summary, "How to use /ai-exception");
        let teams = help(Platform::Teams, Some("Unknown subcommand \"x\".".into()));
        let Section::Text { text, .. } = &teams.sections[1] else {
            panic!("{teams:?}")
        };
        assert!(text.starts_with("ai-exception: file a new"), "{text}");
        assert!(!text.contains('/'), "{text}");
    }
}

//! The codebase's own rules, as ordinary tests (after rust-analyzer's `tidy.rs`).
//!
//! Each rule is one small function over a file's path and text that returns the
//! lines breaking it; `src_follows_*` runs it over every file under `src/`, and a
//! `*_is_caught` test proves it fails on a violating snippet. Comments and
//! `#[cfg(test)]` modules are not code for these rules.

use std::path::{Path, PathBuf};

/// One broken rule: where, and what.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    at: String,
    what: String,
}

/// A source file as the rules see it: its path under `src/` (with `/`) and its code
/// lines, numbered from 1. Comments and the contents of string literals are blanked,
/// items under `#[cfg(test)]` are left out, every `use` (grouped, nested, over several
/// lines) becomes one line of full paths (`use crate::a::b; use crate::c;`), and
/// `super::`/`self::` paths are written out from the crate root.
struct Source {
    path: String,
    lines: Vec<(usize, String)>,
}

/// `text` with comments and string contents replaced by spaces (newlines kept).
fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && {
            let mut k = i + 1;
            while chars.get(k) == Some(&'#') {
                k += 1;
            }
            chars.get(k) == Some(&'"')
                && !chars
                    .get(i.wrapping_sub(1))
                    .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        } {
            // A raw string: r"…", r#"…"#.
            let mut hashes = 0;
            i += 1;
            while chars[i] == '#' {
                hashes += 1;
                i += 1;
            }
            out.push('"');
            i += 1;
            while i < chars.len() {
                let closes =
                    chars[i] == '"' && (1..=hashes).all(|h| chars.get(i + h) == Some(&'#'));
                if closes {
                    out.push('"');
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("' '");
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\u{…}'
            let close = chars[i + 1..]
                .iter()
                .position(|c| *c == '\'')
                .map(|p| i + 1 + p);
            let end = close.unwrap_or(i);
            for _ in i..=end {
                out.push(' ');
            }
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every full path a use tree names: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(tree: &str) -> Vec<String> {
    // One space between words, none around punctuation: `a::{b as c, d}`.
    let mut tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in ["{", "}", ",", "::"] {
        tree = tree
            .replace(&format!(" {p}"), p)
            .replace(&format!("{p} "), p);
    }
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let Some(open) = tree.find('{') else {
            out.push(format!("{prefix}{tree}"));
            return;
        };
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    go(&format!("{prefix}{head}"), &inner[start..k], out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        if start < inner.len() {
            go(&format!("{prefix}{head}"), &inner[start..], out);
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out.retain(|p| !p.is_empty() && !p.ends_with("::"));
    out
}

impl Source {
    fn new(path: &str, text: &str) -> Self {
        let code = blank_comments_and_strings(text);
        // The module this file is, from the crate root.
        let mut module: Vec<String> = path
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_string)
            .collect();
        if matches!(
            module.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            module.pop();
        }
        let absolute = |line: &str| -> String {
            let mut line = line.to_string();
            for depth in (1..=module.len()).rev() {
                let supers = "super::".repeat(depth);
                if line.contains(&supers) {
                    let base = &module[..module.len() - depth];
                    let mut root = vec!["crate".to_string()];
                    root.extend(base.iter().cloned());
                    line = line.replace(&supers, &format!("{}::", root.join("::")));
                }
            }
            let mut me = vec!["crate".to_string()];
            me.extend(module.iter().cloned());
            line.replace("self::", &format!("{}::", me.join("::")))
        };
        let raw: Vec<&str> = code.lines().collect();
        let mut lines = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let line = raw[i];
            let t = line.trim();
            // An item under `#[cfg(test)]` (or `cfg(all(test, …))`) is test code.
            if t.starts_with("#[cfg(") && t.contains("test") && !t.contains("not(test") {
                i += 1;
                while i < raw.len() && raw[i].trim().starts_with("#[") {
                    i += 1;
                }
                let mut depth = 0i32;
                let mut opened = false;
                while i < raw.len() {
                    for c in raw[i].chars() {
                        match c {
                            '{' => {
                                depth += 1;
                                opened = true;
                            }
                            '}' => depth -= 1,
                            _ => {}
                        }
                    }
                    let ends = raw[i].trim_end().ends_with(';');
                    i += 1;
                    if (opened && depth <= 0) || (!opened && ends) {
                        break;
                    }
                }
                continue;
            }
            let use_at = t
                .strip_prefix("pub use ")
                .or_else(|| t.strip_prefix("pub(crate) use "))
                .or_else(|| t.strip_prefix("use "));
            if let Some(first) = use_at {
                // The whole statement, however many lines it spans.
                let number = i + 1;
                let mut tree = first.to_string();
                while !tree.contains(';') && i + 1 < raw.len() {
                    i += 1;
                    tree.push_str(raw[i].trim());
                }
                let tree = tree.trim_end_matches(';');
                let paths: Vec<String> = expand_use(tree)
                    .iter()
                    .map(|p| format!("use {};", absolute(p)))
                    .collect();
                lines.push((number, paths.join(" ")));
                i += 1;
                continue;
            }
            if !t.is_empty() {
                lines.push((i + 1, absolute(line)));
            }
            i += 1;
        }
        Self {
            path: path.to_string(),
            lines,
        }
    }

    /// The full paths of its `use` statements, with their line numbers.
    fn uses(&self) -> Vec<(usize, String)> {
        self.lines
            .iter()
            .flat_map(|(n, l)| {
                l.split(';')
                    .filter_map(|u| u.trim().strip_prefix("use "))
                    .map(|p| (*n, p.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn under(&self, dir: &str) -> bool {
        self.path.starts_with(dir)
    }

    /// The lines mentioning any of `needles` (not as the tail of a longer name:
    /// `Action::` is not found in `ButtonAction::`), as violations saying `what`.
    fn mentions(&self, needles: &[&str], what: &str) -> Vec<Violation> {
        let found = |line: &str, needle: &str| {
            line.match_indices(needle).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let word = needle.starts_with(|c: char| c.is_alphanumeric());
                !(word && before.is_some_and(|c| c.is_alphanumeric() || c == '_'))
            })
        };
        self.lines
            .iter()
            .filter(|(_, l)| needles.iter().any(|n| found(l, n)))
            .map(|(n, l)| Violation {
                at: format!("src/{}:{n}", self.path),
                what: format!("{what}: {}", l.trim()),
            })
            .collect()
    }
}

/// `domain/` is pure: it imports only the governance model, std, serde, chrono and
/// thiserror, by `use` or by a path written out in the code.
fn domain_imports_only_governance_and_std(s: &Source) -> Vec<Violation> {
    if !s.under("domain/") || s.path.ends_with("/tests.rs") {
        return Vec::new();
    }
    const CRATES: [&str; 6] = ["std", "core", "alloc", "serde", "chrono", "thiserror"];
    const PRIMITIVES: [&str; 17] = [
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32",
        "i64", "i128", "isize", "f32", "f64",
    ];
    let at = |n: &usize| format!("src/{}:{n}", s.path);
    let mut out = Vec::new();
    // Names a path may start with: the file's submodules and what it imports.
    let mut names: Vec<String> = s
        .lines
        .iter()
        .filter_map(|(_, l)| {
            let t = l.trim_start();
            let decl = t
                .strip_prefix("pub mod ")
                .or_else(|| t.strip_prefix("mod "))?;
            Some(decl.trim_end_matches([';', ' ', '{']).to_string())
        })
        .collect();
    for (n, path) in s.uses() {
        let (path, alias) = match path.split_once(" as ") {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (path, None),
        };
        let segments: Vec<&str> = path.split("::").collect();
        let allowed = match segments.as_slice() {
            ["crate", module, ..] => ["domain", "governance"].contains(module),
            [head, ..] => CRATES.contains(head) || names.iter().any(|m| m == head),
            [] => true,
        };
        if !allowed {
            out.push(Violation {
                at: at(&n),
                what: format!("the domain imports `{path}`"),
            });
        }
        let last = match segments.as_slice() {
            [.., prev, "self"] => prev.to_string(),
            [.., last] => last.to_string(),
            [] => String::new(),
        };
        names.push(alias.unwrap_or(last));
    }
    for (n, line) in s
        .lines
        .iter()
        .filter(|(_, l)| !l.trim_start().starts_with("use "))
    {
        let bytes: Vec<char> = line.chars().collect();
        let text: String = bytes.iter().collect();
        for (k, _) in text.match_indices("::") {
            // The identifier before `::`, if it starts the path.
            let head: String = text[..k]
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let before = text[..k - head.len()].chars().next_back();
            let starts = !before.is_some_and(|c| c == ':' || c.is_alphanumeric() || c == '_');
            if head.is_empty() || !starts || !head.starts_with(|c: char| c.is_lowercase()) {
                continue;
            }
            let ok = CRATES.contains(&head.as_str())
                || PRIMITIVES.contains(&head.as_str())
                || ["super", "self"].contains(&head.as_str())
                || names.contains(&head)
                || (head == "crate" && {
                    let module: String = text[k + 2..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    module == "domain" || module == "governance"
                });
            if !ok {
                out.push(Violation {
                    at: at(n),
                    what: format!("the domain reaches `{head}::`: {}", line.trim()),
                });
            }
        }
    }
    out
}

/// The store renders nothing and knows no surface: it never imports `chat/` or
/// `interact/`.
fn store_knows_no_chat_or_interaction(s: &Source) -> Vec<Violation> {
    if !s.under("store/") {
        return Vec::new();
    }
    s.mentions(
        &["crate::chat", "crate::interact"],
        "the store imports the chat or interaction layer",
    )
}

/// A surface (a folder under `chat/`) reaches the database only through the service.
fn surfaces_do_not_reach_the_store(s: &Source) -> Vec<Violation> {
    if !is_surface(s) {
        return Vec::new();
    }
    s.mentions(&["crate::store", ".store."], "a surface reaches the store")
}

/// A surface only translates: it builds no domain action, asks nothing of the domain
/// and maps no user to a person; the interaction layer does.
fn surfaces_decide_nothing(s: &Source) -> Vec<Violation> {
    if !is_surface(s) {
        return Vec::new();
    }
    s.mentions(
        &[
            "Action::",
            "Task::",
            ".act(",
            ".may(",
            ".apply(",
            "person_by_",
            "has_role(",
            ".roles",
            "crate::domain::Action",
            "crate::domain::Task",
            "form::intake(",
            "form::update(",
            "form::renew(",
            "form::send_back(",
            "form::assess(",
            "form::feedback(",
            "form::approve(",
            "form::reject(",
            "form::revoke(",
            "form::attest(",
            "Command::parse(",
        ],
        "a surface decides what an action means, which form to show or who may act",
    )
}

/// Every file of `chat/` but the neutral planning and the surface enum.
fn is_surface(s: &Source) -> bool {
    s.under("chat/") && !["chat/mod.rs", "chat/plan.rs"].contains(&s.path.as_str())
}

/// The service, the store and the domain know no surface and no interaction layer.
fn the_engine_knows_no_surface(s: &Source) -> Vec<Violation> {
    if !(s.under("service/") || s.path == "service.rs" || s.under("store/") || s.under("domain/")) {
        return Vec::new();
    }
    s.mentions(
        &[
            "crate::chat::slack",
            "crate::chat::teams",
            "crate::interact",
            "crate::http",
        ],
        "the engine names a surface",
    )
}

/// The interaction layer is neutral: it names no surface and reaches the database only
/// through the service.
fn the_interaction_layer_is_neutral(s: &Source) -> Vec<Violation> {
    if !s.under("interact/") {
        return Vec::new();
    }
    s.mentions(
        &[
            "crate::chat::slack",
            "crate::chat::teams",
            "crate::http",
            "crate::store",
            "crate::delivery",
            "slack_morphism",
        ],
        "the interaction layer names a surface or the store",
    )
}

/// Only the clock reads the system clock, and only the wiring (and the test-only
/// fakes and demo, which wire themselves) chooses it.
fn only_the_clock_reads_the_system_clock(s: &Source) -> Vec<Violation> {
    if s.path == "clock.rs" {
        return Vec::new();
    }
    let mut out = s.mentions(
        &[
            "Utc::now",
            "SystemTime::now",
            "Local::now",
            "OffsetDateTime::now",
        ],
        "reads the system clock (take `now` or a Clock)",
    );
    let wiring =
        ["app.rs", "main.rs"].contains(&s.path.as_str()) || s.under("fakes/") || s.under("demo/");
    if !wiring {
        out.extend(s.mentions(
            &["Clock::System", "Clock::default("],
            "chooses the system clock (only the wiring does)",
        ));
    }
    out
}

/// No grab-bag modules.
fn no_grab_bag_modules(s: &Source) -> Vec<Violation> {
    const NAMES: [&str; 4] = ["utils", "common", "helpers", "manager"];
    let mut out = Vec::new();
    let stem = Path::new(&s.path)
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    if let Some(bad) = stem.iter().find(|c| NAMES.contains(&c.as_str())) {
        out.push(Violation {
            at: format!("src/{}", s.path),
            what: format!("a module named `{bad}`"),
        });
    }
    for (n, line) in &s.lines {
        let t = line.trim_start();
        let decl = t
            .strip_prefix("pub mod ")
            .or_else(|| t.strip_prefix("mod "));
        if let Some(name) = decl.map(|d| d.trim_end_matches([';', '{', ' ']))
            && NAMES.contains(&name)
        {
            out.push(Violation {
                at: format!("src/{}:{n}", s.path),
                what: format!("a module named `{name}`"),
            });
        }
    }
    out
}

/// Test-only code stays out of the product: only the demo (and test modules) use
/// the fakes.
fn fakes_stay_out_of_the_product(s: &Source) -> Vec<Violation> {
    if s.under("fakes/") || s.under("demo/") || s.path.ends_with("/tests.rs") {
        return Vec::new();
    }
    s.mentions(
        &["fakes::", "crate::fakes"],
        "the product uses test-only code",
    )
}

type Rule = fn(&Source) -> Vec<Violation>;

const RULES: [(&str, Rule); 9] = [
    ("test-only code", fakes_stay_out_of_the_product),
    ("domain imports", domain_imports_only_governance_and_std),
    ("store layering", store_knows_no_chat_or_interaction),
    ("surface → store", surfaces_do_not_reach_the_store),
    ("surfaces translate", surfaces_decide_nothing),
    ("engine → surface", the_engine_knows_no_surface),
    ("neutral interaction", the_interaction_layer_is_neutral),
    ("system clock", only_the_clock_reads_the_system_clock),
    ("module names", no_grab_bag_modules),
];

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    assert!(files.len() > 20, "found the sources");
    files
        .iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            Source::new(&rel, &std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

#[test]
fn src_follows_every_rule() {
    let mut broken = Vec::new();
    for s in sources() {
        for (name, rule) in RULES {
            for v in rule(&s) {
                broken.push(format!("{} [{name}] {}", v.at, v.what));
            }
        }
    }
    assert!(broken.is_empty(), "\n{}\n", broken.join("\n"));
}

fn caught(rule: Rule, path: &str, text: &str) -> Vec<String> {
    rule(&Source::new(path, text))
        .into_iter()
        .map(|v| v.at)
        .collect()
}

#[test]
fn a_domain_importing_the_store_or_tokio_is_caught() {
    let text = "use std::fmt;\nuse tokio::sync::Mutex;\nfn f() { crate::store::Store::x(); }\nuse crate::governance::Tier;\n";
    assert_eq!(
        caught(
            domain_imports_only_governance_and_std,
            "domain/request.rs",
            text
        ),
        vec!["src/domain/request.rs:2", "src/domain/request.rs:3"]
    );
    // Comments and test modules are not code.
    let fine = "mod content;\npub use content::Field;\n// use tokio::x;\nuse serde::Serialize;\n#[cfg(test)]\nmod tests { use tokio::x; }\n";
    assert!(
        caught(
            domain_imports_only_governance_and_std,
            "domain/request.rs",
            fine
        )
        .is_empty()
    );
}

#[test]
fn a_store_importing_chat_or_interact_is_caught() {
    let text = "use crate::message::Outgoing;\nuse crate::chat::plan::digest;\nuse crate::interact::Reply;\n";
    assert_eq!(
        caught(
            store_knows_no_chat_or_interaction,
            "store/schedule.rs",
            text
        ),
        vec!["src/store/schedule.rs:2", "src/store/schedule.rs:3"]
    );
}

#[test]
fn a_surface_reaching_the_store_is_caught() {
    let text = "use crate::store::Store;\nlet r = svc.store.load(id);\nlet r = svc.request(id);\n";
    assert_eq!(
        caught(
            surfaces_do_not_reach_the_store,
            "chat/slack/inbound.rs",
            text
        ),
        vec!["src/chat/slack/inbound.rs:1", "src/chat/slack/inbound.rs:2"]
    );
    // Planning is not a surface.
    assert!(
        caught(
            surfaces_do_not_reach_the_store,
            "chat/plan.rs",
            "use crate::store::X;"
        )
        .is_empty()
    );
}

#[test]
fn a_surface_deciding_an_action_is_caught() {
    let text = "let a = Action::MarkComplete;\nsvc.act(attempt, now);\ninteract::click(svc, &o, c, now);\nButtonAction::parse(id);\n";
    assert_eq!(
        caught(surfaces_decide_nothing, "chat/teams/inbound.rs", text),
        vec!["src/chat/teams/inbound.rs:1", "src/chat/teams/inbound.rs:2"]
    );
}

#[test]
fn an_engine_naming_a_surface_is_caught() {
    let text =
        "use crate::chat::plan;\nuse crate::chat::slack::render;\nuse crate::interact::Reply;\n";
    assert_eq!(
        caught(the_engine_knows_no_surface, "service/sweep.rs", text),
        vec!["src/service/sweep.rs:2", "src/service/sweep.rs:3"]
    );
}

#[test]
fn reading_the_system_clock_outside_the_clock_is_caught() {
    let text = "let t = chrono::Utc::now();\nlet i = std::time::Instant::now();\nlet s = std::time::SystemTime::now();\n";
    assert_eq!(
        caught(only_the_clock_reads_the_system_clock, "delivery.rs", text),
        vec!["src/delivery.rs:1", "src/delivery.rs:3"]
    );
    assert!(caught(only_the_clock_reads_the_system_clock, "clock.rs", text).is_empty());
}

#[test]
fn grab_bag_modules_are_caught() {
    assert_eq!(
        caught(no_grab_bag_modules, "chat/utils.rs", ""),
        vec!["src/chat/utils.rs"]
    );
    assert_eq!(
        caught(
            no_grab_bag_modules,
            "service.rs",
            "mod sweep;\npub mod helpers;\n"
        ),
        vec!["src/service.rs:2"]
    );
    assert!(caught(no_grab_bag_modules, "service.rs", "mod sweep;\n").is_empty());
}

#[test]
fn the_product_using_the_fakes_is_caught() {
    let text =
        "use crate::fakes::slack::FakeSlack;\nlet f = waiver::fakes::testkit::sample_form(d);\n";
    assert_eq!(
        caught(fakes_stay_out_of_the_product, "app.rs", text),
        vec!["src/app.rs:1", "src/app.rs:2"]
    );
    assert!(caught(fakes_stay_out_of_the_product, "demo/teams.rs", text).is_empty());
}

#[test]
fn grouped_nested_and_relative_imports_are_seen_through() {
    let grouped = "use crate::{\n    message::Outgoing,\n    chat::{plan, slack::render},\n};\n";
    assert_eq!(
        caught(
            store_knows_no_chat_or_interaction,
            "store/outbox.rs",
            grouped
        ),
        vec!["src/store/outbox.rs:1"]
    );
    // `super::super::store` from chat/slack/inbound.rs is crate::store.
    let relative = "use super::render;\nuse super::super::super::store::Store;\n";
    assert_eq!(
        caught(
            surfaces_do_not_reach_the_store,
            "chat/slack/inbound.rs",
            relative
        ),
        vec!["src/chat/slack/inbound.rs:2"]
    );
    assert!(
        caught(
            surfaces_do_not_reach_the_store,
            "chat/slack/inbound.rs",
            "use super::render;\n"
        )
        .is_empty()
    );
}

#[test]
fn a_domain_calling_another_crate_by_its_full_path_is_caught() {
    let text = "use std::fmt;\nfn f() {\n    let _ = fmt::format(format_args!(\"\"));\n    let _ = u64::from(1u32);\n    tokio::time::sleep(d);\n    let _ = sqlx::query(\"SELECT 1\");\n}\n";
    assert_eq!(
        caught(
            domain_imports_only_governance_and_std,
            "domain/schedule.rs",
            text
        ),
        vec!["src/domain/schedule.rs:5", "src/domain/schedule.rs:6"]
    );
}

#[test]
fn strings_and_test_only_items_neither_hide_nor_fake_code() {
    // Code after a URL in a string is still code; a path inside a string is not.
    let text = "let u = \"https://x\"; let t = chrono::Utc::now();\nlet s = \"Utc::now\";\n";
    assert_eq!(
        caught(only_the_clock_reads_the_system_clock, "delivery.rs", text),
        vec!["src/delivery.rs:1"]
    );
    // A test-only item in the middle of a file is skipped, and what follows it is not.
    let text = "#[cfg(test)]\nfn helper() {\n    let t = chrono::Utc::now();\n}\n\nfn real() { let t = chrono::Utc::now(); }\n";
    assert_eq!(
        caught(only_the_clock_reads_the_system_clock, "scheduler.rs", text),
        vec!["src/scheduler.rs:6"]
    );
}

#[test]
fn choosing_the_system_clock_outside_the_wiring_is_caught() {
    let text = "let c = Clock::System;\nlet d = Clock::default();\n";
    assert_eq!(
        caught(only_the_clock_reads_the_system_clock, "service.rs", text),
        vec!["src/service.rs:1", "src/service.rs:2"]
    );
    assert!(caught(only_the_clock_reads_the_system_clock, "app.rs", text).is_empty());
}

#[test]
fn a_single_file_surface_is_a_surface_too() {
    let text = "let spec = form::approve(&gov, &r, today);\nif gov.has_role(&me, &role) {}\n";
    assert_eq!(
        caught(surfaces_decide_nothing, "chat/teams.rs", text),
        vec!["src/chat/teams.rs:1", "src/chat/teams.rs:2"]
    );
    assert!(caught(surfaces_decide_nothing, "chat/plan.rs", text).is_empty());
}

#[test]
fn an_interaction_layer_naming_a_surface_or_the_store_is_caught() {
    let text =
        "use crate::service::Service;\nuse crate::chat::slack::render;\nuse crate::store::Store;\n";
    assert_eq!(
        caught(the_interaction_layer_is_neutral, "interact/mod.rs", text),
        vec!["src/interact/mod.rs:2", "src/interact/mod.rs:3"]
    );
}

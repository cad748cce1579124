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

/// A source file: its path under `src/` (with `/`) and its code lines, numbered from 1.
struct Source {
    path: String,
    lines: Vec<(usize, String)>,
}

impl Source {
    fn new(path: &str, text: &str) -> Self {
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            // What follows a test module is test code (they come last, by habit).
            if line.trim() == "#[cfg(test)]" {
                break;
            }
            let code = match line.find("//") {
                Some(at) => &line[..at],
                None => line,
            };
            if !code.trim().is_empty() {
                lines.push((i + 1, code.to_string()));
            }
        }
        Self {
            path: path.to_string(),
            lines,
        }
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
/// thiserror.
fn domain_imports_only_governance_and_std(s: &Source) -> Vec<Violation> {
    if !s.under("domain/") || s.path.ends_with("/tests.rs") {
        return Vec::new();
    }
    const ALLOWED: [&str; 9] = [
        "std",
        "core",
        "serde",
        "chrono",
        "thiserror",
        "crate",
        "super",
        "self",
        "{",
    ];
    // The file's own submodules are the domain too.
    let local: Vec<String> = s
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
    let mut out = Vec::new();
    for (n, line) in &s.lines {
        let t = line.trim_start();
        let Some(path) = t
            .strip_prefix("use ")
            .or_else(|| t.strip_prefix("pub use "))
        else {
            continue;
        };
        let head = path.split("::").next().unwrap_or_default().trim();
        if !ALLOWED.contains(&head) && !local.iter().any(|m| m == head) {
            out.push(Violation {
                at: format!("src/{}:{n}", s.path),
                what: format!("the domain imports `{head}`: {}", t.trim()),
            });
        }
    }
    for (n, line) in &s.lines {
        for at in line.match_indices("crate::").map(|(i, _)| i) {
            let module: String = line[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if module != "domain" && module != "governance" {
                out.push(Violation {
                    at: format!("src/{}:{n}", s.path),
                    what: format!("the domain reaches `crate::{module}`: {}", line.trim()),
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
            "person_by_",
            "crate::domain::Action",
        ],
        "a surface decides what an action means",
    )
}

fn is_surface(s: &Source) -> bool {
    s.under("chat/") && s.path.matches('/').count() >= 2
}

/// The service and the store know no surface: no chat adapter, no interaction layer.
fn the_engine_knows_no_surface(s: &Source) -> Vec<Violation> {
    if !(s.under("service/") || s.path == "service.rs" || s.under("store/") || s.under("domain/")) {
        return Vec::new();
    }
    s.mentions(
        &[
            "chat::slack",
            "chat::teams",
            "crate::interact",
            "crate::http",
        ],
        "the engine names a surface",
    )
}

/// Only the clock (and the wiring that chooses it) reads the system clock.
fn only_the_clock_reads_the_system_clock(s: &Source) -> Vec<Violation> {
    if ["clock.rs", "app.rs", "main.rs"].contains(&s.path.as_str()) {
        return Vec::new();
    }
    s.mentions(
        &[
            "Utc::now",
            "SystemTime::now",
            "Local::now",
            "OffsetDateTime::now",
        ],
        "reads the system clock (take `now` or a Clock)",
    )
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
    if s.under("fakes/") || s.path == "demo.rs" || s.path.ends_with("/tests.rs") {
        return Vec::new();
    }
    s.mentions(
        &["fakes::", "crate::fakes"],
        "the product uses test-only code",
    )
}

type Rule = fn(&Source) -> Vec<Violation>;

const RULES: [(&str, Rule); 8] = [
    ("test-only code", fakes_stay_out_of_the_product),
    ("domain imports", domain_imports_only_governance_and_std),
    ("store layering", store_knows_no_chat_or_interaction),
    ("surface → store", surfaces_do_not_reach_the_store),
    ("surfaces translate", surfaces_decide_nothing),
    ("engine → surface", the_engine_knows_no_surface),
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
    assert!(caught(fakes_stay_out_of_the_product, "demo.rs", text).is_empty());
}

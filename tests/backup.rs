//! Backups taken while the server runs, restored, then checked with the real binary's
//! `waiver audit verify` (README, "Backups and restore"). SQLite: `VACUUM INTO`, and
//! the sqlite3 CLI's `.backup` where the CLI is installed. PostgreSQL: `pg_dump -Fc`,
//! then `pg_restore` into a fresh database (skipped loudly without the PostgreSQL
//! client tools, unless WAIVER_REQUIRE_POSTGRES=1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{TempDir, TestDb, p};
use waiver::service::Submitted;

/// Runs a command off the runtime's threads (the server under test runs on them) and
/// returns its exit code, stdout and stderr.
async fn run(mut cmd: Command) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `waiver audit verify` on `url`: its line, and the entry count it names.
async fn audit_verify(url: &str) -> (String, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waiver"));
    cmd.args(["audit", "verify"])
        .env("WAIVER_DATABASE_URL", url)
        .env_remove("WAIVER_GOVERNANCE")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "waiver audit verify on {url}: {err}");
    let line = out.trim().to_string();
    let entries = line
        .strip_prefix("audit trail intact: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {line}"));
    (line, entries)
}

/// The hash of the live chain's entry `seq`.
async fn hash_at(url: &str, seq: u64) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let (hash,): (String,) = sqlx::query_as("SELECT hash FROM audit WHERE seq = $1")
        .bind(seq as i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    hash
}

/// Files requests through the running service until stopped: a bot in use.
struct Traffic {
    stop: Arc<AtomicBool>,
    filed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(svc: waiver::service::Service) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let filed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, filed) = (stop.clone(), filed.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let filing = svc
                        .submit(&p("james.carter"), &common::form(), None, common::now())
                        .await
                        .unwrap();
                    assert!(matches!(filing, Submitted::Filed(_)), "{filing:?}");
                    filed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { stop, filed, task }
    }

    /// Waits until `n` more requests were filed.
    async fn more(&self, n: u64) {
        let target = self.filed.load(Ordering::Relaxed) + n;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.filed.load(Ordering::Relaxed) < target {
            assert!(tokio::time::Instant::now() < deadline, "no requests filed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the traffic never failed");
    }
}

/// A restored copy of the database, and what keeps it alive.
struct Restored {
    url: String,
    _dir: Option<TempDir>,
    _db: Option<TestDb>,
}

/// Backs up the live SQLite database with `VACUUM INTO` over a connection of its own,
/// as `sqlite3 waiver.db "VACUUM INTO 'file'"` does, and restores the file into a
/// directory of its own.
async fn vacuum_into(live: &TestDb) -> Restored {
    use sqlx::Connection;
    let dir = TempDir::new();
    let backup = dir.path.join("backup.db");
    let mut conn = sqlx::AnyConnection::connect(&live.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = 10000; VACUUM INTO '{}'",
        backup.display()
    )))
    .execute(&mut conn)
    .await
    .expect("VACUUM INTO");
    let _ = conn.close().await;
    restore_file(dir, &backup)
}

/// The backup file, put where a restored server's WAIVER_DATABASE_URL points.
fn restore_file(dir: TempDir, backup: &Path) -> Restored {
    let restored = dir.path.join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(backup, restored.join("waiver.db")).unwrap();
    Restored {
        url: format!("sqlite://{}/waiver.db", restored.display()),
        _dir: Some(dir),
        _db: None,
    }
}

/// The sqlite3 CLI's online backup (the README's command), if the CLI is installed.
async fn sqlite3_backup(live: &TestDb) -> Option<Restored> {
    let Some(sqlite3) = tool("sqlite3", &[]) else {
        eprintln!("\n!!! SKIPPING the sqlite3 `.backup` check: the sqlite3 CLI is not installed\n");
        return None;
    };
    let dir = TempDir::new();
    let backup = dir.path.join("backup.db");
    let path = live.url.strip_prefix("sqlite://").unwrap();
    let mut cmd = Command::new(sqlite3);
    cmd.arg(path)
        .arg(".timeout 10000")
        .arg(format!(".backup '{}'", backup.display()));
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 0, "sqlite3 .backup: {err}");
    Some(restore_file(dir, &backup))
}

/// `pg_dump -Fc` of the live database, restored with `pg_restore` into a fresh one.
async fn pg_dump_restore(live: &TestDb, pg_dump: &Path, pg_restore: &Path) -> Restored {
    let dir = TempDir::new();
    let dump = dir.path.join("waiver.dump");
    let mut cmd = Command::new(pg_dump);
    cmd.arg("-Fc")
        .arg("--file")
        .arg(&dump)
        .arg("--dbname")
        .arg(&live.url);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 0, "pg_dump: {err}");
    let fresh = TestDb::postgres()
        .await
        .expect("PostgreSQL is reachable: the live database is on it");
    let mut cmd = Command::new(pg_restore);
    cmd.args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&fresh.url)
        .arg(&dump);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 0, "pg_restore: {err}");
    Restored {
        url: fresh.url.clone(),
        _dir: Some(dir),
        _db: Some(fresh),
    }
}

/// A program on PATH, or else in one of `dirs` (globs of one `*`), newest first.
fn tool(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(found) = on_path.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    for pattern in dirs {
        let (parent, rest) = pattern.split_once('*').expect("a glob");
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| PathBuf::from(format!("{}{rest}", e.path().display())).join(name))
            .filter(|p| p.is_file())
            .collect();
        // /usr/lib/postgresql/15/bin before /usr/lib/postgresql/13/bin.
        found.sort_by_key(|p| {
            std::cmp::Reverse(
                p.components()
                    .filter_map(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
                    .next(),
            )
        });
        if let Some(first) = found.into_iter().next() {
            return Some(first);
        }
    }
    None
}

/// pg_dump and pg_restore, or `None` with a loud message (a failure when PostgreSQL is
/// required).
fn pg_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name| tool(name, &["/usr/lib/postgresql/*/bin"]);
    match (find("pg_dump"), find("pg_restore")) {
        (Some(dump), Some(restore)) => Some((dump, restore)),
        _ if std::env::var("WAIVER_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("WAIVER_REQUIRE_POSTGRES=1 but pg_dump or pg_restore is not installed")
        }
        _ => {
            eprintln!(
                "\n!!! SKIPPING the PostgreSQL backup test: pg_dump or pg_restore is not installed \
                 (Debian: postgresql-client)\n"
            );
            None
        }
    }
}

/// One backup of the live database, as the backend's README command takes it.
async fn backup(live: &TestDb, tools: &Option<(PathBuf, PathBuf)>) -> Restored {
    match tools {
        Some((dump, restore)) => pg_dump_restore(live, dump, restore).await,
        None => vacuum_into(live).await,
    }
}

both!(
    a_backup_taken_while_the_server_runs_restores_and_verifies,
    |db: TestDb| async move {
        let tools = match db.backend {
            "postgres" => match pg_tools() {
                Some(tools) => Some(tools),
                None => return,
            },
            _ => None,
        };
        let app = common::App::spawn(db).await;
        common::flow::four_lifecycles(app.service()).await;
        let live = &app.db;

        // While people keep filing requests, and the delivery worker keeps posting
        // (each post is audited): the backup is one consistent moment of the chain.
        let traffic = Traffic::start(app.service().clone());
        traffic.more(3).await;
        let before = audit_verify(&live.url).await.1;
        let restored = backup(live, &tools).await;
        traffic.more(3).await;
        traffic.stop().await;
        let (line, entries) = audit_verify(&restored.url).await;
        let after = audit_verify(&live.url).await.1;
        assert!(
            before <= entries && entries < after,
            "the backup holds {entries} entries; the live chain had {before} before it and {after} after"
        );
        eprintln!(
            "{}: a backup under traffic holds {entries} entries (live: {before} before, {after} after)",
            live.backend
        );
        let head = line.rsplit(' ').next().unwrap();
        assert_eq!(
            head,
            hash_at(&live.url, entries).await,
            "the backup's head is the live chain's entry {entries}"
        );

        // Once the bot is idle (still running, the SQLite WAL not checkpointed): the
        // restored copy verifies exactly as the live database does.
        app.drained().await;
        let (live_line, live_entries) = audit_verify(&live.url).await;
        let restored = backup(live, &tools).await;
        assert_eq!(audit_verify(&restored.url).await.0, live_line);
        if tools.is_none()
            && let Some(restored) = sqlite3_backup(live).await
        {
            assert_eq!(audit_verify(&restored.url).await.0, live_line);
        }
        eprintln!(
            "{}: restored and verified {live_entries} entries",
            live.backend
        );
        app.stop().await;
    }
);

//! The `waiver` command line. Every command prints a clear error and exits non-zero on
//! bad input; none panics.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use waiver::config::{self, Config};
use waiver::domain::Timestamp;
use waiver::export::{self, Format};
use waiver::{app, governance};

/// glibc's allocator spent over a third of the CPU under load (measured with perf
/// during the acknowledgement benchmark, now `cargo bench --bench load`); jemalloc serves the same allocation pattern
/// far cheaper.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "waiver",
    version,
    about = "AI policy exceptions, run in Slack and Teams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk one request through all seven steps against a built-in fake Slack (or,
    /// with --teams, a fake Microsoft Teams), and print what each person saw. Needs no
    /// Slack workspace or Teams tenant.
    #[cfg(feature = "fakes")]
    Demo {
        /// People act from Microsoft Teams (a fake token issuer and Bot Connector).
        #[arg(long)]
        teams: bool,
    },
    /// Run the server (HTTP on WAIVER_LISTEN), applying migrations first.
    Serve,
    /// Exit 0 when the server on WAIVER_LISTEN (0.0.0.0 and [::] mean this machine)
    /// answers GET /healthz with 200 within 2 s: a container HEALTHCHECK, where the
    /// image has no curl.
    Healthcheck,
    /// Apply database migrations to WAIVER_DATABASE_URL and exit.
    Migrate,
    /// Check the configuration `waiver serve` would run with against the governance
    /// file, the database, Slack and Teams, one line per check with the fix for each
    /// failure. Changes nothing; exits 1 if any check fails.
    Doctor,
    /// Run one scheduler sweep as of an instant: reassessments after a policy version
    /// change, transitions (activation, review due, expiry), reminders in digests.
    Sweep {
        /// The instant to sweep at (RFC 3339, e.g. 2026-12-01T09:00:00Z); default now.
        #[arg(long)]
        at: Option<String>,
        /// Print what the sweep would do and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a governance file (default: WAIVER_GOVERNANCE).
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Audit trail commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Export every exception with its full history, for auditors.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only exceptions changed on or after this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Import past exceptions from a CSV register (columns: manifests/import-template.csv).
    /// Any bad row and nothing is imported; a sheet imported before adds nothing.
    Import {
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// Validate every row and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Messages not delivered yet (waiting for an app install, retrying, parked), and
    /// sending parked ones again.
    Outbox {
        #[command(subcommand)]
        command: Option<OutboxCommand>,
    },
    /// Print the workflow the governance file enforces, as Mermaid text or SVG.
    Diagram {
        /// The governance file (default: WAIVER_GOVERNANCE).
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: DiagramFormat,
    },
    /// Write the Teams app package (manifest and icons) for a Teams admin to upload.
    TeamsPackage {
        /// The bot's Microsoft App ID (TEAMS_APP_ID).
        #[arg(long)]
        app_id: String,
        /// The public host name that reaches WAIVER_LISTEN, e.g. waiver.example.com.
        #[arg(long)]
        host: String,
        /// Where to write the zip.
        #[arg(long, short, default_value = "waiver-teams.zip")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and name the first broken entry; with --pack, verify
    /// an evidence pack instead, with no database.
    Verify {
        /// An evidence pack (`waiver export --format pack`).
        #[arg(long)]
        pack: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// List every message not delivered yet, oldest first (the default).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Send parked messages again (audited), once what parked them is fixed.
    Retry {
        /// The messages (the `#` numbers `waiver outbox` shows).
        #[arg(conflicts_with = "all_parked")]
        ids: Vec<i64>,
        /// Every parked message.
        #[arg(long)]
        all_parked: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DiagramFormat {
    Mermaid,
    /// Drawn by Waiver itself: no browser or JavaScript needed to view it.
    Svg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
    /// A self-verifying evidence pack (verify it with `waiver audit verify --pack`).
    Pack,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.command {
        Command::Serve => "info",
        _ => "warn",
    };
    let format = match config::LogFormat::parse(std::env::var("WAIVER_LOG_FORMAT").ok().as_deref())
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One object per line: the event's fields, its span's fields (request id,
        // reference) and the spans it is in.
        config::LogFormat::Json => logs.json().with_current_span(true).init(),
        config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once (a cause whose text its parent already
/// quotes is left out), with the database URL's secrets scrubbed.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    config::scrub(&out, &database_url())
}

fn governance_path(file: Option<PathBuf>) -> PathBuf {
    file.or_else(|| std::env::var_os("WAIVER_GOVERNANCE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_GOVERNANCE))
}

fn database_url() -> String {
    std::env::var("WAIVER_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| config::DEFAULT_DATABASE_URL.into())
}

/// How long `waiver healthcheck` waits for the connection and the status line.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz` on the server that `WAIVER_LISTEN` configures; Ok only on 200.
async fn healthcheck() -> anyhow::Result<()> {
    let text = std::env::var("WAIVER_LISTEN")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.into());
    let mut addr: SocketAddr = text
        .parse()
        .map_err(|_| config::ConfigError::Listen(text.clone()))?;
    // A server bound to every address is reached on loopback of the same family.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/healthz");
    let status = tokio::time::timeout(HEALTHCHECK_TIMEOUT, http_status(addr, "/healthz"))
        .await
        .map_err(|_| anyhow!("{url} did not answer within 2 s"))?
        .with_context(|| format!("cannot get {url}"))?;
    if status != 200 {
        bail!("{url} answered {status}, not 200");
    }
    Ok(())
}

/// The status code of `GET path` over plain HTTP/1.1: the one request the health
/// check makes needs no HTTP client.
async fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default();
    // "HTTP/1.1 200 OK"
    let mut words = line.split(' ');
    match (words.next(), words.next().and_then(|c| c.parse().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => Ok(code),
        _ => bail!("the answer is not HTTP: {line:?}"),
    }
}

fn parse_since(s: &str) -> anyhow::Result<Timestamp> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(Timestamp::start_of(d)),
        Err(_) => bail!("--since {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant"),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        #[cfg(feature = "fakes")]
        Command::Demo { teams } => {
            let platform = if teams {
                waiver::demo::Platform::Teams
            } else {
                waiver::demo::Platform::Slack
            };
            waiver::demo::run(platform).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let config = Config::from_env()?;
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            app::serve(config, listener, app::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck => {
            healthcheck().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let url = database_url();
            let store = app::open_store(&url).await?;
            store.close().await;
            println!("migrated {}", config::redact_url(&url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let mut report = waiver::doctor::Report::new(|line| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            });
            waiver::doctor::run(Config::from_env(), &mut report).await;
            let checks = report.lines.len();
            if report.passed() {
                eprintln!("waiver doctor: no check failed ({checks} lines)");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "waiver doctor: {} of {checks} lines failed; fix them and run `waiver doctor` again",
                    report.failures()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Sweep { at, dry_run } => {
            let now = match at.as_deref() {
                Some(s) => Timestamp::parse_rfc3339(s).with_context(|| {
                    format!("--at {s:?} is not an RFC 3339 instant (e.g. 2026-12-01T09:00:00Z)")
                })?,
                None => waiver::clock::Clock::System.now(),
            };
            let gov = governance::load(&governance_path(None))?;
            let store = app::open_store(&database_url()).await?;
            let service = waiver::service::Service::new(
                store.clone(),
                std::sync::Arc::new(gov),
                waiver::clock::Clock::System,
            );
            let reassessed = service.reassess_policies(now, dry_run).await?;
            let mut report = service.sweep(now, dry_run).await?;
            report.reassessed = reassessed;
            store.close().await;
            print!("{}", report.render());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { file } => {
            let path = governance_path(file);
            match governance::load(&path) {
                Ok(gov) => {
                    println!(
                        "{} is valid: {} people, {} roles, {} policies, {} assessment rules (sha256 {})",
                        path.display(),
                        gov.people.len(),
                        gov.roles.len(),
                        gov.policies.len(),
                        gov.assessment_rules.len(),
                        gov.hash.short()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { pack: Some(path) },
        } => {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            match waiver::export::pack::verify(std::io::BufReader::new(file)) {
                Ok(report) => {
                    println!("{report}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!("error: {}: {broken}", path.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { pack: None },
        } => {
            let store = app::open_store(&database_url()).await?;
            let result = store.verify_audit().await?;
            store.close().await;
            match result {
                Ok(report) => {
                    println!(
                        "audit trail intact: {} entries, head {}",
                        report.entries, report.head
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!("error: {broken}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Export {
            format,
            since,
            output,
        } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let format = match format {
                ExportFormat::Csv => Format::Csv,
                ExportFormat::Json => Format::Json,
                ExportFormat::Pack => {
                    let gov = governance::load(&governance_path(None))?;
                    let store = app::open_store(&database_url()).await?;
                    let path = output.unwrap_or_else(|| PathBuf::from("waiver-evidence.json"));
                    let mut sink = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .with_context(|| format!("cannot create {}", path.display()))?,
                    );
                    let now = waiver::clock::Clock::System.now();
                    let manifest =
                        waiver::export::pack::write(&store, &gov, since, now, &mut sink).await?;
                    drop(sink);
                    store.close().await;
                    println!(
                        "wrote {}: {} exception(s), audit entries {}..{} (head {}); verify it with `waiver audit verify --pack {}`",
                        path.display(),
                        manifest.exceptions,
                        manifest.chain.from_seq,
                        manifest.chain.head_seq,
                        manifest.chain.head_hash,
                        path.display()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let store = app::open_store(&database_url()).await?;
            let mut sink: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let count = export::export(&store, format, since, &mut sink).await?;
            drop(sink);
            store.close().await;
            eprintln!("exported {count} exception(s)");
            Ok(ExitCode::SUCCESS)
        }
        Command::TeamsPackage {
            app_id,
            host,
            output,
        } => {
            let zip = waiver::teams_package::package(&app_id, &host)?;
            std::fs::write(&output, zip)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "wrote {}: upload it in Teams admin center → Teams apps → Manage apps → Upload new app",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { csv, dry_run } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("cannot read {}", csv.display()))?;
            let gov = governance::load(&governance_path(None))?;
            let store = app::open_store(&database_url()).await?;
            let service = waiver::service::Service::new(
                store.clone(),
                std::sync::Arc::new(gov),
                waiver::clock::Clock::System,
            );
            let actor = format!(
                "import:{}",
                std::env::var("USER").unwrap_or_else(|_| "cli".into())
            );
            let now = waiver::clock::Clock::System.now();
            let name = csv.display().to_string();
            let result = waiver::import::import(&service, &text, &name, &actor, dry_run, now).await;
            store.close().await;
            match result {
                Ok(report) => {
                    println!("{report}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(waiver::import::ImportError::Rows(errors)) => {
                    eprintln!("error: {}", waiver::import::ImportError::Rows(errors));
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Outbox { command } => {
            let store = app::open_store(&database_url()).await?;
            let now = waiver::clock::Clock::System.now();
            match command.unwrap_or(OutboxCommand::List { limit: 200 }) {
                OutboxCommand::List { limit } => {
                    let rows = store.undelivered(limit).await?;
                    print!("{}", waiver::delivery::undelivered_report(&rows, now));
                }
                OutboxCommand::Retry { ids, all_parked } => {
                    if ids.is_empty() && !all_parked {
                        bail!(
                            "name the messages to send again (the # numbers `waiver outbox` shows), or --all-parked"
                        );
                    }
                    let wanted = (!all_parked).then_some(ids.clone());
                    let actor = format!(
                        "operator:{}",
                        std::env::var("USER").unwrap_or_else(|_| "cli".into())
                    );
                    let done = store.requeue_parked(wanted, &actor, now).await?;
                    let missed: Vec<String> = ids
                        .iter()
                        .filter(|id| !done.contains(id))
                        .map(|id| format!("#{id}"))
                        .collect();
                    store.close().await;
                    println!(
                        "{} parked message(s) queued again; `waiver serve` delivers them",
                        done.len()
                    );
                    if !missed.is_empty() {
                        eprintln!(
                            "error: not parked (delivered, superseded by a newer card message, or unknown): {}",
                            missed.join(", ")
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diagram { file, format } => {
            let path = governance_path(file);
            let gov = governance::load(&path)?;
            match format {
                DiagramFormat::Mermaid => print!("{}", governance::mermaid(&gov)),
                DiagramFormat::Svg => print!("{}", governance::svg(&gov)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

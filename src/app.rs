//! Wiring: config → store → service → HTTP + delivery worker + scheduler, with
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chat::Surface;
use crate::chat::slack::client::SlackApi;
use crate::chat::slack::inbound::SlackEdge;
use crate::chat::slack::socket::SocketMode;
use crate::chat::teams::auth::Verifier;
use crate::chat::teams::deliver::TeamsDelivery;
use crate::chat::teams::inbound::TeamsEdge;
use crate::clock::Clock;
use crate::config::{Config, SlackConfig, redact_url};
use crate::delivery::{Deliverer, DeliveryConfig};
use crate::governance;
use crate::http::{self, AppState};
use crate::message::Platform;
use crate::service::Service;
use crate::store::Store;

/// Opens the database and applies migrations.
pub async fn open_store(url: &str) -> anyhow::Result<Store> {
    open_store_with(url, crate::store::DEFAULT_WRITER_QUEUE).await
}

/// Like [`open_store`], with room for `queue` changes waiting for the writer.
pub async fn open_store_with(url: &str, queue: usize) -> anyhow::Result<Store> {
    let store = Store::connect_with(url, queue)
        .await
        .with_context(|| format!("cannot open the database at {}", redact_url(url)))?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    Ok(store)
}

/// How to run (tests and the demo tune delivery; production uses the defaults).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub delivery: DeliveryConfig,
    /// Run no delivery worker (messages stay queued): for crash-recovery tests.
    pub no_delivery: bool,
    /// Run no timers: tests move time with explicit sweeps instead.
    pub no_scheduler: bool,
    /// Room for changes waiting for the writer (default
    /// [`crate::store::DEFAULT_WRITER_QUEUE`]); tests make it small.
    pub writer_queue: Option<usize>,
    /// The clock every edge reads (tests and the demo fix the day; `serve` uses the
    /// system clock).
    pub clock: Clock,
    /// Slack Socket Mode's websockets (with `SLACK_SOCKET_MODE=1`).
    pub socket: crate::chat::slack::socket::SocketOptions,
}

/// What `waiver serve` says when no chat platform is configured.
pub const NO_PLATFORM: &str = "no chat platform is configured: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN (and SLACK_API_URL to use another Web API endpoint) for Slack, and/or TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID for Microsoft Teams. To see Waiver work without either, run `waiver demo`.";

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub service: Service,
    /// The database, for tests and the demo to inspect (surfaces go through the
    /// service).
    pub store: Store,
    /// Work started after an acknowledgement (opening a modal, publishing Home).
    tasks: tokio_util::task::TaskTracker,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: Option<JoinHandle<()>>,
    scheduler: Option<JoinHandle<()>>,
    socket: Option<SocketMode>,
}

impl Running {
    /// Stops gracefully: in-flight requests and the delivery batch finish.
    pub async fn stop(self) {
        if let Some(socket) = &self.socket {
            socket.stop().await;
        }
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.tasks.close();
        self.tasks.wait().await;
        if let Some(w) = self.worker {
            let _ = w.await;
        }
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
        self.store.close().await;
    }

    /// Stops abruptly, as a crash would (for recovery tests).
    pub fn crash(self) {
        if let Some(socket) = self.socket {
            // No goodbye: the sockets just drop, as a killed process's would.
            tokio::spawn(async move { socket.stop().await });
        }
        self.server.abort();
        if let Some(w) = self.worker {
            w.abort();
        }
        if let Some(s) = self.scheduler {
            s.abort();
        }
    }
}

/// Starts the server and the delivery worker on `listener`.
pub async fn start(
    config: Config,
    listener: TcpListener,
    options: Options,
) -> anyhow::Result<Running> {
    if config.slack.is_none() && config.teams.is_none() {
        anyhow::bail!(NO_PLATFORM);
    }
    let gov = governance::load(&config.governance)?;
    let store = open_store_with(
        &config.database_url,
        options
            .writer_queue
            .unwrap_or(crate::store::DEFAULT_WRITER_QUEUE),
    )
    .await?;
    // Decisions name this file's hash; keep its text so that evidence packs carry it.
    store
        .remember_governance(gov.hash.as_str(), &gov.source, options.clock.now())
        .await
        .context("cannot record the governance file")?;
    let mut platforms = Vec::new();
    let mut surfaces = Vec::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let slack_edge = match &config.slack {
        Some(slack) => {
            let api = SlackApi::new(&slack.api_url, &slack.bot_token)
                .context("cannot build the Slack client")?;
            platforms.push(Platform::Slack);
            surfaces.push(Surface::Slack(
                crate::chat::slack::deliver::SlackDelivery::new(
                    api.clone(),
                    options.delivery.call_timeout,
                ),
            ));
            Some(SlackEdge {
                signing_secret: slack.signing_secret.clone(),
                api,
                tasks: tasks.clone(),
            })
        }
        None => None,
    };
    let teams_edge = match &config.teams {
        Some(teams) => {
            crate::chat::install_tls_provider();
            let http = reqwest::Client::builder()
                .build()
                .context("cannot build the Teams client")?;
            let delivery = Arc::new(TeamsDelivery::new(
                teams.clone(),
                http.clone(),
                options.delivery.call_timeout,
                store.metrics().clone(),
            ));
            platforms.push(Platform::Teams);
            surfaces.push(Surface::Teams(delivery.clone()));
            Some(TeamsEdge {
                verifier: Arc::new(
                    Verifier::new(teams.clone(), http, options.clock.clone())
                        .with_metrics(store.metrics().clone()),
                ),
                delivery,
                tasks: tasks.clone(),
                remembered: Default::default(),
            })
        }
        None => None,
    };
    let mut service = Service::with_platforms(
        store.clone(),
        Arc::new(gov),
        options.clock.clone(),
        &platforms,
    );
    // Evidence links are signed with a secret every replica has.
    let secret = config
        .slack
        .as_ref()
        .map(|s| {
            s.signing_secret
                .as_ref()
                .or(s.socket_mode.as_ref())
                .unwrap_or(&s.bot_token)
                .expose()
                .to_string()
        })
        .or_else(|| {
            config
                .teams
                .as_ref()
                .map(|t| t.app_password.expose().to_string())
        });
    if let (Some(base), Some(secret)) = (&config.public_url, secret) {
        service = service.with_evidence_links(base, &secret);
    }
    let (stop, stopped) = watch::channel(false);
    let worker = (!options.no_delivery).then(|| {
        let deliverer = Arc::new(Deliverer::new(
            store.clone(),
            surfaces,
            options.delivery.clone(),
            service.outbox_ready(),
            options.clock.clone(),
        ));
        tokio::spawn(deliverer.run(stopped.clone()))
    });
    let scheduler = if options.no_scheduler {
        None
    } else {
        let schedule = service.governance().reminders.schedule.clone();
        Some(
            crate::scheduler::start(service.clone(), &schedule, stopped.clone())
                .await
                .context("cannot start the scheduler")?,
        )
    };
    let state = Arc::new(AppState {
        service: service.clone(),
        slack: slack_edge,
        teams: teams_edge,
        dashboard: config.dashboard.clone(),
        metrics_token: config.metrics_token.clone(),
    });
    // Socket Mode: Slack's envelopes arrive over websockets this process opens.
    let socket = match (&config.slack, &state.slack) {
        (
            Some(SlackConfig {
                socket_mode: Some(app_token),
                ..
            }),
            Some(edge),
        ) => Some(
            SocketMode::start(service.clone(), edge.clone(), app_token, &options.socket)
                .await
                .context("cannot start Slack Socket Mode")?,
        ),
        _ => None,
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "waiver is listening");
    let mut until = stopped;
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = until.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the HTTP server failed");
        }
    });
    Ok(Running {
        addr,
        service,
        store,
        tasks,
        stop,
        server,
        worker,
        scheduler,
        socket,
    })
}

/// Runs until `shutdown` resolves, then stops gracefully.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let running = start(config, listener, Options::default()).await?;
    shutdown.await;
    running.stop().await;
    tracing::info!("waiver stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

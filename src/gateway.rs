//! Wires the stages together for one configuration, and takes them down in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use prometheus_client::registry::Registry;

use crate::admin::Admin;
use crate::config::{Config, LogSettings};
use crate::deliver::{Dispatcher, Pauses, build_client};
use crate::ingress::{self, Backlog, Ingress, Limits, Live};
use crate::route::Router;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

/// How long open requests and attempts under way may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(10);
/// How often pending deliveries are recounted for the high-water mark.
const BACKLOG_RECOUNT: Duration = Duration::from_secs(1);
/// How often the store is purged when there was nothing to purge.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often idle clients are dropped from the per-client limiter.
const LIMITER_SWEEP: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The certificate or key is unusable.
    #[error("tls: {0}")]
    Tls(#[from] ingress::tls::TlsError),
    /// The listen address could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Why a new configuration was refused; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The change needs a restart.
    #[error("{0} changed: restart to apply it")]
    NeedsRestart(&'static str),
    /// The new certificate or key is unusable.
    #[error("tls: {0}")]
    Tls(#[from] ingress::tls::TlsError),
    /// An upstream that was removed still has deliveries to make.
    #[error(
        "upstream {upstream} was removed but has {pending} pending delivery(ies): keep it \
         until they are delivered or dead (`hookgate deliveries list --state pending \
         --upstream {upstream}` shows them)"
    )]
    PendingForRemoved {
        /// The upstream.
        upstream: String,
        /// How many.
        pending: i64,
    },
    /// The store could not be asked.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    ingress: JoinHandle<()>,
    live: Arc<Live>,
    dispatcher: Dispatcher,
    /// What a reload may not change: listen address, store, admin listener, TLS or not.
    fixed: Fixed,
}

#[derive(Debug, PartialEq)]
struct Fixed {
    listen: SocketAddr,
    store: std::path::PathBuf,
    admin: Option<SocketAddr>,
    admin_token: Option<crate::config::secret::Secret>,
    tls: bool,
    log: LogSettings,
    max_connections: usize,
    max_inflight_body: u64,
    high_water: u64,
    retention: Duration,
}

impl Fixed {
    fn of(config: &Config) -> Fixed {
        Fixed {
            listen: config.server.listen,
            store: config.store_path.clone(),
            admin: config.admin.as_ref().map(|a| a.listen),
            admin_token: config.admin.as_ref().and_then(|a| a.token.clone()),
            tls: config.server.tls.is_some(),
            log: config.log.clone(),
            max_connections: config.server.max_connections,
            max_inflight_body: config.server.max_inflight_body,
            high_water: config.high_water,
            retention: config.retention,
        }
    }
}

impl Gateway {
    /// Opens the store, starts the delivery schedulers, and starts listening.
    pub async fn start(config: &Config) -> Result<Gateway, StartError> {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        // Before the store, so that a start without its certificate leaves nothing behind.
        let tls = tls_acceptor(config)?;
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let sqlite = SqliteStore::open(&config.store_path)?;
        let observed = metrics.clone();
        sqlite.observe_commits(move |requests, took| observed.commit(requests, took));
        let store: Arc<dyn Store> = Arc::new(sqlite);
        warn_of_orphans(store.as_ref(), config).await;
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);

        let (stop, stopped) = watch::channel(false);
        let names = config.upstreams.iter().map(|u| u.name.clone());
        let pauses = Pauses::new(names, &store.paused().await?);
        let dispatcher = Dispatcher::start(
            &config.upstreams,
            &pauses,
            store.clone(),
            build_client(),
            GRACE,
            metrics.clone(),
        );
        let admin_addr = match &config.admin {
            Some(admin) => {
                let state = Arc::new(Admin {
                    token: admin.token.clone(),
                    registry,
                    metrics: metrics.clone(),
                    store: store.clone(),
                    wakers: dispatcher.wakers(),
                    health: dispatcher.health(),
                    pauses,
                });
                let addr = admin.listen;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                let addr = listener.local_addr().unwrap_or(addr);
                let header_timeout = config.server.header_timeout;
                let serve = crate::admin::serve(listener, state, header_timeout, stopped.clone());
                tokio::spawn(serve);
                tracing::info!(admin = %ingress::describe(addr, false), "admin listening");
                if admin.token.is_none() && !addr.ip().is_loopback() {
                    tracing::warn!(admin = %addr, "the admin listener is not on loopback and \
                        has no admin.token: anyone who reaches it can pause and replay");
                }
                Some(addr)
            }
            None => None,
        };
        let backlog = Arc::new(Backlog::new(config.high_water));
        let kib = usize::try_from(config.server.max_inflight_body / 1024).unwrap_or(usize::MAX);
        let body_budget = Arc::new(Semaphore::new(kib.clamp(1, Semaphore::MAX_PERMITS)));
        let ingress = new_ingress(config, &store, metrics, backlog, body_budget);
        let live = Arc::new(Live::new(ingress, tls));
        tokio::spawn(sweep_limiters(live.clone(), stopped.clone()));
        tokio::spawn(count_backlog(live.clone(), stopped.clone()));
        tokio::spawn(purge_store(store, config.retention, stopped.clone()));
        let serve = ingress::serve(listener, live.clone(), stopped, GRACE);

        tracing::info!(
            listen = %ingress::describe(addr, config.server.tls.is_some()),
            routes = config.routes.len(),
            upstreams = config.upstreams.len(),
            store = %config.store_path.display(),
            "hookgate started"
        );
        Ok(Gateway {
            addr,
            admin_addr,
            stop,
            ingress: tokio::spawn(serve),
            live,
            dispatcher,
            fixed: Fixed::of(config),
        })
    }

    /// Serves `config` from now on without dropping a connection or a queued delivery:
    /// routes, secrets, limits, upstreams and certificates. Refused, with the old
    /// configuration still serving, when it would strand deliveries or needs a restart.
    pub async fn reload(&mut self, config: &Config) -> Result<(), ReloadError> {
        let fixed = Fixed::of(config);
        for (same, what) in [
            (fixed.listen == self.fixed.listen, "server.listen"),
            (fixed.store == self.fixed.store, "store.path"),
            (fixed.admin == self.fixed.admin, "admin.listen"),
            (fixed.admin_token == self.fixed.admin_token, "admin.token"),
            (fixed.log == self.fixed.log, "[log]"),
            (fixed.tls == self.fixed.tls, "server.tls (on or off)"),
            (
                fixed.max_connections == self.fixed.max_connections,
                "server.max_connections",
            ),
            (
                fixed.max_inflight_body == self.fixed.max_inflight_body,
                "server.max_inflight_body",
            ),
            (
                fixed.high_water == self.fixed.high_water,
                "store.high_water",
            ),
            (fixed.retention == self.fixed.retention, "store.retention"),
        ] {
            if !same {
                return Err(ReloadError::NeedsRestart(what));
            }
        }
        let old = self.live.ingress();
        let removed: Vec<Arc<str>> = old
            .upstreams
            .iter()
            .filter(|name| !config.upstreams.iter().any(|u| u.name == **name))
            .cloned()
            .collect();
        let pending = old.store.pending(&removed).await?;
        if pending > 0 {
            let upstream = removed
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ReloadError::PendingForRemoved { upstream, pending });
        }
        let tls = tls_acceptor(config).map_err(|e| match e {
            StartError::Tls(e) => ReloadError::Tls(e),
            other => ReloadError::Store(StoreError::Database(other.to_string())),
        })?;

        self.dispatcher.reload(&config.upstreams);
        let ingress = new_ingress(
            config,
            &old.store,
            old.metrics.clone(),
            old.backlog.clone(),
            old.body_budget.clone(),
        );
        self.live.replace(ingress, tls);
        if !removed.is_empty() {
            let store = old.store.clone();
            tokio::spawn(recheck_removed(Arc::downgrade(&old), store, removed));
        }
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            routes = config.routes.len(),
            upstreams = config.upstreams.len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the admin listener is bound to, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stops accepting, lets open requests and attempts finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.ingress.await;
        self.dispatcher.shutdown().await;
        tracing::info!("hookgate stopped");
    }
}

fn tls_acceptor(config: &Config) -> Result<Option<ingress::Tls>, StartError> {
    match &config.server.tls {
        Some(files) => Ok(Some(ingress::Tls::load(files)?)),
        None => Ok(None),
    }
}

fn new_ingress(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: Arc<Metrics>,
    backlog: Arc<Backlog>,
    body_budget: Arc<Semaphore>,
) -> Arc<Ingress> {
    Arc::new(Ingress {
        router: Router::new(config.routes.clone()),
        limits: Limits::new(
            config.server.client_rate,
            config.server.global_rate,
            &config.routes,
        ),
        server: config.server.clone(),
        store: store.clone(),
        proto: if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        },
        metrics,
        backlog,
        body_budget,
        upstreams: config.upstreams.iter().map(|u| u.name.clone()).collect(),
    })
}

/// Says so when the store holds pending deliveries for upstreams the file no longer names:
/// they are kept, but nothing sends them until the upstream is configured again.
async fn warn_of_orphans(store: &dyn Store, config: &Config) {
    let Ok(depths) = store.queue_depth().await else {
        return;
    };
    for depth in depths.iter().filter(|d| d.state == "pending") {
        if !config.upstreams.iter().any(|u| *u.name == *depth.upstream) {
            tracing::warn!(upstream = %depth.upstream, pending = depth.count,
                "pending deliveries for an upstream that is no longer configured");
        }
    }
}

/// A request that was being read when a reload removed an upstream can still create a
/// delivery for it. Once no request uses the replaced configuration, says so if any did.
async fn recheck_removed(replaced: Weak<Ingress>, store: Arc<dyn Store>, removed: Vec<Arc<str>>) {
    while replaced.strong_count() > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Ok(pending) = store.pending(&removed).await
        && pending > 0
    {
        let upstream = removed.join(", ");
        tracing::warn!(
            upstream,
            pending,
            "requests under way during the reload left deliveries for removed upstreams; \
             they are kept, but nothing sends them until the upstream is configured again"
        );
    }
}

async fn sweep_limiters(live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LIMITER_SWEEP) => {
                live.ingress().limits.forget_idle_clients();
            }
            _ = stop.changed() => return,
        }
    }
}

/// Recounts pending deliveries every second for the high-water mark.
async fn count_backlog(live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    loop {
        let ingress = live.ingress();
        match ingress.store.pending(&ingress.upstreams).await {
            Ok(pending) => ingress.backlog.set(pending),
            Err(error) => tracing::warn!(%error, "cannot count the delivery queue"),
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKLOG_RECOUNT) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Removes expired dedup keys and old delivered events, a bounded batch at a time, so the
/// store does not grow without bound.
async fn purge_store(store: Arc<dyn Store>, retention: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        let cutoff = crate::store::now_ms().saturating_sub(crate::store::millis(retention));
        match store.purge(cutoff).await {
            Ok(purged) if purged.events + purged.dedup_keys > 0 => {
                tracing::debug!(
                    events = purged.events,
                    dedup_keys = purged.dedup_keys,
                    "purged"
                );
                // More may be waiting: go again soon, but leave the writer room.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs the gateway until `SIGTERM` or `SIGINT`, then shuts it down gracefully. `SIGHUP`
/// reloads `path`: a file that does not load, or a change that is refused, is logged and the
/// running configuration keeps serving.
pub async fn run(path: &Path, config: &Config) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};

    // The handlers come first: a signal that arrives while the gateway starts, once it
    // has said so, must not find the default action (for `SIGHUP`, ending the process).
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let mut gateway = Gateway::start(config).await?;
    let (Ok(mut term), Ok(mut hup)) = signals else {
        tracing::warn!("signal handlers unavailable: only Ctrl-C stops the gateway");
        let _ = tokio::signal::ctrl_c().await;
        gateway.shutdown().await;
        return Ok(());
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload(&mut gateway, path).await,
        }
    }
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

async fn reload(gateway: &mut Gateway, path: &Path) {
    tracing::info!(file = %path.display(), "reloading the configuration");
    let outcome = match Config::load(path) {
        Ok(config) => gateway.reload(&config).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = outcome {
        tracing::error!(%error, "configuration reload refused; the running one keeps serving");
    }
}

//! Wires the stages together for one configuration, and takes them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use prometheus_client::registry::Registry;

use crate::admin::Admin;
use crate::config::Config;
use crate::deliver::{Dispatcher, Pauses, build_client};
use crate::ingress::{self, Backlog, Ingress, Limits};
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
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

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

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    ingress: JoinHandle<()>,
    dispatcher: Dispatcher,
}

impl Gateway {
    /// Opens the store, starts the delivery schedulers, and starts listening.
    pub async fn start(config: &Config) -> Result<Gateway, StartError> {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store_path)?);
        warn_of_orphans(store.as_ref(), config).await;
        let tls = match &config.server.tls {
            Some(files) => Some(TlsAcceptor::from(ingress::tls::server_config(files)?)),
            None => None,
        };
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);

        let (stop, stopped) = watch::channel(false);
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let names = config.upstreams.iter().map(|u| u.name.clone());
        let pauses = Pauses::new(names, &store.paused().await?);
        let dispatcher = Dispatcher::start(
            &config.upstreams,
            &pauses,
            store.clone(),
            build_client(),
            stopped.clone(),
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
                    pauses,
                });
                let addr = admin.listen;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                let addr = listener.local_addr().unwrap_or(addr);
                tokio::spawn(crate::admin::serve(listener, state, stopped.clone()));
                tracing::info!(admin = %ingress::describe(addr, false), "admin listening");
                Some(addr)
            }
            None => None,
        };
        let ingress = Arc::new(Ingress {
            router: Router::new(config.routes.clone()),
            limits: Limits::new(config.server.client_rate, &config.routes),
            server: config.server.clone(),
            store,
            wakers: dispatcher.wakers(),
            proto: if tls.is_some() { "https" } else { "http" },
            metrics,
            backlog: Arc::new(Backlog::new(config.high_water)),
        });
        tokio::spawn(sweep_limiters(ingress.clone(), stopped.clone()));
        let names: Vec<Arc<str>> = config.upstreams.iter().map(|u| u.name.clone()).collect();
        tokio::spawn(count_backlog(ingress.clone(), names, stopped.clone()));
        tokio::spawn(purge_store(
            ingress.store.clone(),
            config.retention,
            stopped.clone(),
        ));
        let serve = ingress::serve(listener, tls, ingress, stopped, GRACE);

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
            dispatcher,
        })
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
        self.dispatcher.join().await;
        tracing::info!("hookgate stopped");
    }
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

async fn sweep_limiters(ingress: Arc<Ingress>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LIMITER_SWEEP) => ingress.limits.forget_idle_clients(),
            _ = stop.changed() => return,
        }
    }
}

/// Recounts pending deliveries every second for the high-water mark.
async fn count_backlog(
    ingress: Arc<Ingress>,
    upstreams: Vec<Arc<str>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match ingress.store.pending(&upstreams).await {
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
        let cutoff = crate::store::now_ms() - retention.as_millis() as i64;
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

/// Runs the gateway until `SIGTERM` or `SIGINT`, then shuts it down gracefully.
pub async fn run(config: &Config) -> Result<(), StartError> {
    let gateway = Gateway::start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! The public listener: accepts connections, terminates TLS, speaks HTTP/1.1 and HTTP/2,
//! and hands each request to [`handler`].

pub mod answer;
mod backlog;
mod body;
mod client_ip;
mod connection;
mod encoding;
mod handler;
mod limit;
mod per_client;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

pub use backlog::Backlog;
pub use limit::Limits;
pub use tls::{ClientCert, Tls};

use crate::config::Server;
use crate::route::Router;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

/// Everything a request needs, for one configuration.
#[derive(Debug)]
pub struct Ingress {
    /// The routes.
    pub router: Router,
    /// Client and route rate limits.
    pub limits: Limits,
    /// The `[server]` settings.
    pub server: Server,
    /// Where accepted events go.
    pub store: Arc<dyn Store>,
    /// `https` when the listener terminates TLS.
    pub proto: &'static str,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
    /// The queue's high-water mark.
    pub backlog: Arc<Backlog>,
    /// Bytes of request bodies being read at once, in KiB: a bound on ingress memory.
    pub body_budget: Arc<Semaphore>,
    /// The configured upstreams' names.
    pub upstreams: Vec<Arc<str>>,
}

/// What ingress serves now: a reload swaps both at once; requests already under way finish
/// with what they started with.
pub struct Live {
    ingress: RwLock<Arc<Ingress>>,
    tls: RwLock<Option<Tls>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("ingress", &self.ingress())
            .finish()
    }
}

impl Live {
    /// The first configuration.
    pub fn new(ingress: Arc<Ingress>, tls: Option<Tls>) -> Live {
        Live {
            ingress: RwLock::new(ingress),
            tls: RwLock::new(tls),
        }
    }

    /// The configuration for a new request.
    pub fn ingress(&self) -> Arc<Ingress> {
        // Held only to clone an `Arc`; nothing panics under it.
        self.ingress
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The certificate for a new connection; `None` for plain HTTP.
    pub fn tls(&self) -> Option<Tls> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `ingress` and `tls` from now on.
    pub fn replace(&self, ingress: Arc<Ingress>, tls: Option<Tls>) {
        *self.ingress.write().unwrap_or_else(|p| p.into_inner()) = ingress;
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }
}

/// Accepts connections on `listener` until `stop` turns true, then lets open requests
/// finish for up to `grace`. At most `server.max_connections` are open at once, and at most
/// `server.max_connections_per_client` from one client that is not a trusted proxy; past
/// either, new connections are closed at once so the ones already open keep being served.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let most = live.ingress().server.max_connections;
    let slots = Arc::new(Semaphore::new(most.min(Semaphore::MAX_PERMITS)));
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let by_client = Arc::new(per_client::OpenByClient::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::warn_throttled!(%peer, "connection limit reached, closing a new connection");
            continue;
        };
        let server = &live.ingress().server;
        let counted = if server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()))
        {
            None
        } else {
            let most = server.max_connections_per_client;
            let Some(counted) = by_client.admit(peer.ip(), most) else {
                crate::warn_throttled!(%peer, limit = most, "client connection limit reached, \
                    closing a new connection");
                continue;
            };
            Some(counted)
        };
        let held = connection::Held {
            _slot: slot,
            _per_client: counted,
            _alive: alive.clone(),
        };
        let task = connection::serve(stream, peer, live.clone(), stop.clone(), held);
        tokio::spawn(task);
    }
    drop(listener);
    drop(alive);
    if tokio::time::timeout(grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period were closed");
    }
}

/// The address a listener is bound to, for logs.
pub fn describe(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

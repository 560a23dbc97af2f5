//! The public listener: accepts connections, terminates TLS, speaks HTTP/1.1 and HTTP/2,
//! and hands each request to [`handler`].

pub mod answer;
mod body;
mod client_ip;
mod encoding;
mod handler;
mod limit;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use limit::Limits;

use crate::config::Server;
use crate::deliver::Wakers;
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
    /// Tells delivery schedulers about new work.
    pub wakers: Wakers,
    /// `https` when the listener terminates TLS.
    pub proto: &'static str,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
}

/// Accepts connections on `listener` until `stop` turns true, then lets open requests
/// finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ingress: Arc<Ingress>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&ingress.server);
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
        let _ = stream.set_nodelay(true);
        let handshake_timeout = ingress.server.header_timeout;
        let ingress = ingress.clone();
        let service = service_fn(move |request| {
            let ingress = ingress.clone();
            async move {
                let response = handler::handle(&ingress, peer.ip(), request).await;
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period were closed");
    }
}

/// HTTP/1.1 and HTTP/2 with the server's header timeout.
fn connection_builder(server: &Server) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128);
    builder
}

/// The address a listener is bound to, for logs.
pub fn describe(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

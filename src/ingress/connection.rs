//! One client connection: TLS handshake, HTTP by ALPN, and the timers that keep idle and
//! silent connections from holding a file descriptor forever.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;

use super::handler::Peer;
use super::{ClientCert, Live, handler};
use crate::config::Server;

/// How often a connection checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// HTTP/2 streams open at once on one connection.
const MAX_STREAMS: u32 = 128;
/// HTTP/2 streams reset by the client before the gateway took them up.
const MAX_PENDING_RESETS: usize = 20;
/// HTTP/2 streams the gateway reset because the client broke the protocol.
const MAX_LOCAL_RESETS: usize = 256;

/// What a connection holds until it ends: its slot under the connection cap, its place
/// among its client's connections (none for a trusted proxy), and a handle the listener
/// waits on at shutdown.
pub(super) struct Held {
    pub(super) _slot: OwnedSemaphorePermit,
    pub(super) _per_client: Option<super::per_client::Counted>,
    pub(super) _alive: mpsc::Sender<()>,
}

/// Serves one accepted connection until it closes, idles out, or the gateway stops.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
    held: Held,
) {
    let _ = stream.set_nodelay(true);
    let server = live.ingress().server.clone();
    let Some(tls) = live.tls() else {
        let builder = builder(&server, None);
        let peer = Peer::new(peer, ClientCert::NotAsked);
        return drive(TokioIo::new(stream), builder, peer, live, stop, held).await;
    };
    let accept = tls.acceptor().accept(stream);
    let stream = match tokio::time::timeout(server.header_timeout, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    // ALPN already chose the protocol, so no bytes are read to guess it.
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let cert = tls.judge(stream.get_ref().1);
    if let ClientCert::Untrusted(reason) = &cert {
        tracing::info!(%peer, reason, "client certificate not trusted");
    }
    let builder = builder(&server, Some(h2));
    let peer = Peer::new(peer, cert);
    drive(TokioIo::new(stream), builder, peer, live, stop, held).await;
}

/// HTTP/1.1 with the header timeout, HTTP/2 with bounded streams and resets; both with the
/// header caps. `h2` fixes the protocol.
fn builder(server: &Server, h2: Option<bool>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_headers(server.max_headers)
        // The read buffer holds the request head; past this hyper answers `431`.
        .max_buf_size((server.max_header_size as usize).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(server.max_header_size)
        // Streams the client opens and cancels before they are served (rapid reset), and
        // streams the gateway had to reset, are bounded; past either the connection ends
        // with GOAWAY.
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_RESETS);
    match h2 {
        Some(true) => builder.http2_only(),
        Some(false) => builder.http1_only(),
        None => builder,
    }
}

/// Requests under way on a connection, and when the last one ended.
struct Activity {
    active: AtomicUsize,
    since: Mutex<(Instant, bool)>,
}

impl Activity {
    fn change(&self, by: isize) {
        if by > 0 {
            self.active.fetch_add(1, Ordering::SeqCst);
        } else {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
        if let Ok(mut since) = self.since.lock() {
            *since = (Instant::now(), true);
        }
    }

    /// How long the connection has had no request under way, and whether it ever had one.
    fn idle(&self) -> Option<(Duration, bool)> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let (since, served) = *self.since.lock().ok()?;
        Some((since.elapsed(), served))
    }
}

async fn drive<I>(
    io: TokioIo<I>,
    builder: auto::Builder<TokioExecutor>,
    peer: Peer,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
    held: Held,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = live.ingress().server.clone();
    let activity = Arc::new(Activity {
        active: AtomicUsize::new(0),
        since: Mutex::new((Instant::now(), false)),
    });
    let tracker = activity.clone();
    let address = peer.address;
    let peer = Arc::new(peer);
    let service = service_fn(move |request| {
        let (ingress, tracker, peer) = (live.ingress(), tracker.clone(), peer.clone());
        async move {
            tracker.change(1);
            let response = handler::handle(&ingress, &peer, request).await;
            tracker.change(-1);
            Ok::<_, std::convert::Infallible>(response)
        }
    });

    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = tokio::time::sleep(IDLE_CHECK) => {
                if let Some(since) = closing {
                    // A peer that ignores the close gets the header timeout, then is cut off.
                    if since.elapsed() > server.header_timeout + server.body_timeout {
                        break;
                    }
                } else if idle_too_long(&activity, &server) {
                    tracing::debug!(peer = %address, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
        }
    }
    drop(held);
}

/// A connection that never sent a request gets the header timeout; one that did, the idle
/// timeout after its last request ended.
fn idle_too_long(activity: &Activity, server: &Server) -> bool {
    match activity.idle() {
        Some((idle, false)) => idle > server.header_timeout,
        Some((idle, true)) => idle > server.idle_timeout,
        None => false,
    }
}

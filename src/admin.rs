//! The admin listener, apart from ingress and on loopback by default: health, readiness,
//! Prometheus metrics, and the operator API under `/api/` ([`api`]), all behind a bearer
//! token when one is configured.

mod api;
mod query;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::secret::Secret;
use crate::deliver::{Health, Pauses, Wakers};
use crate::store::Store;
use crate::telemetry::metrics::{Metrics, UpstreamState};
use crate::verify::header::strip_prefix_ignore_case;

/// The validated `[admin]` table.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the admin listener listens.
    pub listen: SocketAddr,
    /// The bearer token every request must carry, when set.
    pub token: Option<Secret>,
}

/// What the admin endpoints read.
#[derive(Debug)]
pub struct Admin {
    /// The bearer token, when set.
    pub token: Option<Secret>,
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// The series refreshed at each scrape.
    pub metrics: Arc<Metrics>,
    /// The store, for readiness, queue depth and the operator API.
    pub store: Arc<dyn Store>,
    /// Wakes an upstream's scheduler after a replay or a resume.
    pub wakers: Wakers,
    /// The upstreams' pause flags.
    pub pauses: Pauses,
    /// The delivery schedulers' signs of life.
    pub health: Health,
}

/// Connections open at once on the admin listener; more are closed as they arrive. Its
/// clients are an operator, a scraper and probes, so a few dozen is plenty, and a client
/// that opens many cannot take file descriptors the public listener needs.
pub const MAX_CONNECTIONS: usize = 64;

/// How long the store may take to answer a readiness probe.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

type Answer = Response<Full<Bytes>>;

/// Serves admin requests over HTTP/1.1 on `listener` until `stop` turns true.
///
/// A request's headers must arrive within `header_timeout` (the server's), as must the next
/// request's on a kept-alive connection; past [`MAX_CONNECTIONS`] open connections, new ones
/// are closed at once. HTTP/2 is not offered: it has no such bound on a stream's headers,
/// and no client of this listener needs it.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    header_timeout: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::warn_throttled!(%peer, limit = MAX_CONNECTIONS, "admin connection limit \
                reached, closing a new connection");
            continue;
        };
        let admin = admin.clone();
        let service = service_fn(move |request| {
            let admin = admin.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&admin, request).await) }
        });
        tokio::spawn(async move {
            let _slot = slot;
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "admin connection ended");
            }
        });
    }
}

async fn handle(admin: &Admin, request: Request<hyper::body::Incoming>) -> Answer {
    if let Some(reason) = from_a_web_page(admin, &request) {
        tracing::info!(reason, "admin request refused: sent by a web page");
        let body = serde_json::json!({ "error": "forbidden", "message": reason });
        return text(StatusCode::FORBIDDEN, &format!("{body}\n"));
    }
    if !authorized(admin, &request) {
        return text(
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"unauthorized\",\"message\":\"a valid bearer token is required\"}\n",
        );
    }
    if request.uri().path().starts_with("/api/") {
        return api::handle(admin, request.method(), request.uri()).await;
    }
    if request.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "{\"error\":\"method_not_allowed\"}\n",
        );
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "{\"status\":\"ok\"}\n"),
        "/readyz" => readiness(admin).await,
        "/metrics" => metrics(admin).await,
        _ => text(
            StatusCode::NOT_FOUND,
            "{\"error\":\"not_found\",\"message\":\"no such admin endpoint\"}\n",
        ),
    }
}

/// Ready when the store answers reads and writes in time and every scheduler is working.
async fn readiness(admin: &Admin) -> Answer {
    let mut problems = admin.health.problems();
    match tokio::time::timeout(READY_WITHIN, admin.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => problems.push(error.to_string()),
        Err(_) => problems.push("the store does not answer".to_owned()),
    }
    let (status, body) = if problems.is_empty() {
        (StatusCode::OK, serde_json::json!({ "status": "ready" }))
    } else {
        let body = serde_json::json!({ "status": "not ready", "problems": problems });
        (StatusCode::SERVICE_UNAVAILABLE, body)
    };
    text(status, &format!("{body}\n"))
}

/// Why a request looks sent by a web page, which is refused whatever the token says.
///
/// A browser on the operator's machine reaches this listener for any page it opens: a
/// page can send simple cross-site `POST`s (pause an upstream, replay dead letters), and
/// read answers through DNS rebinding, where its own host name resolves to 127.0.0.1. No
/// client of this API is a browser, so a request that names an `Origin`, or that the
/// browser marks as cross-site, is refused. Without a token, so is an `/api/` request whose
/// `Host` is not an IP address or `localhost`, as a rebound page's is; with one, the page
/// cannot know it. Health and metrics stay open to any host name, as scrapers use them.
fn from_a_web_page(
    admin: &Admin,
    request: &Request<hyper::body::Incoming>,
) -> Option<&'static str> {
    let headers = request.headers();
    if headers.contains_key(header::ORIGIN) {
        return Some("requests from web pages (with an Origin header) are not served");
    }
    let fetched = headers
        .get("sec-fetch-site")
        .map(header::HeaderValue::as_bytes);
    if fetched.is_some_and(|site| site != b"none" && site != b"same-origin") {
        return Some("cross-site requests are not served");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().host().map(str::to_owned));
    let api = request.uri().path().starts_with("/api/");
    if api && admin.token.is_none() && !host.as_deref().is_none_or(names_this_machine) {
        return Some(
            "without admin.token, the API is served only to an IP address or localhost as host",
        );
    }
    None
}

/// Whether a `Host` value is an IP address or `localhost`, with or without a port.
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn authorized(admin: &Admin, request: &Request<hyper::body::Incoming>) -> bool {
    let Some(token) = &admin.token else {
        return true;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(token.expose()))
}

/// The token of an `Authorization: Bearer <token>` value; the scheme's name is matched in
/// any case (RFC 9110, 11.1), and one or more spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    strip_prefix_ignore_case(value, "Bearer ").map(|token| token.trim_start_matches(' '))
}

async fn metrics(admin: &Admin) -> Answer {
    if let Ok(depths) = admin.store.queue_depth().await {
        admin.metrics.queue.clear();
        for depth in depths {
            // Pending deliveries of a paused upstream are reported as the API reports them.
            let paused = depth.state == "pending" && admin.pauses.is_paused(&depth.upstream);
            let labels = UpstreamState {
                state: if paused { "paused".into() } else { depth.state },
                upstream: depth.upstream,
            };
            admin.metrics.queue.get_or_create(&labels).set(depth.count);
        }
    }
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &admin.registry).is_err() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"internal\",\"message\":\"metrics could not be encoded\"}\n",
        );
    }
    let mut answer = text(StatusCode::OK, &body);
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    answer
}

/// An answer with a JSON body; `/metrics` replaces the content type.
fn text(status: StatusCode, body: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    answer
}

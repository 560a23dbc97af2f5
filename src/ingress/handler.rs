//! One request's way through the gateway: route, limit, read, verify, store, answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response};
use tokio::time::Instant;

use super::answer::{self, Body, Rejection};
use super::body::{Charge, declared_length, discard, read_capped};
use super::client_ip::client_ip;
use super::encoding::{content_encoding, content_type, inflate, transfer_coding};
use super::{ClientCert, Ingress};
use crate::route::{Examined, Route, SignatureOver};
use crate::store::{NewEvent, now_ms};
use crate::telemetry::metrics::{RouteLabel, RouteOutcome, RouteReason};
use crate::telemetry::redacted_headers;
use crate::verify::Incoming;

/// Seconds a sender is asked to wait when the store cannot take the event.
const STORE_RETRY_AFTER: u64 = 5;
/// Seconds a sender is asked to wait while the queue is past its high-water mark.
const BACKLOG_RETRY_AFTER: u64 = 30;

/// Who is at the other end of a connection.
#[derive(Debug)]
pub(super) struct Peer {
    /// The TCP peer.
    pub(super) address: SocketAddr,
    /// What its client certificate proved.
    cert: ClientCert,
}

impl Peer {
    pub(super) fn new(address: SocketAddr, cert: ClientCert) -> Peer {
        Peer { address, cert }
    }
}

/// Answers one request. Never fails: every problem becomes an answer.
pub(super) async fn handle(
    ingress: &Ingress,
    peer: &Peer,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // Refused before its body was read, a sender may still be writing it. Over HTTP/1 a
    // connection closed with unread bytes is reset, which loses the answer on its way; over
    // HTTP/2 the stream is reset, which some clients report in place of the answer. So the
    // rest is read and dropped; not when the sender waits for `100 Continue` before it
    // sends (it will not send), nor past the cap.
    let lingers = !parts.headers.contains_key(http::header::EXPECT)
        && declared_length(&parts.headers).is_none_or(|n| n <= ingress.server.max_body);
    let mut unread = Some(body);
    let response = answer(ingress, peer, parts, &mut unread).await;
    if let Some(body) = unread
        && lingers
    {
        discard(body, ingress.server.max_body, ingress.server.body_timeout);
    }
    response
}

async fn answer(
    ingress: &Ingress,
    peer: &Peer,
    parts: Parts,
    body: &mut Option<hyper::body::Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    if let Err(rejection) = at_the_door(ingress, peer, &parts) {
        let (status, error) = (rejection.status().as_u16(), rejection.code());
        let latency_ms = started.elapsed().as_millis() as u64;
        tracing::info!(status, error, client = %peer.address.ip(), latency_ms, "rejected");
        ingress.metrics.request("none", error);
        return rejection.into_response();
    }
    let host = host_of(&parts);
    let Some(matched) = ingress.router.find(host.as_deref(), parts.uri.path()) else {
        let latency_ms = started.elapsed().as_millis() as u64;
        tracing::info!(status = 404, error = "not_found", client = %peer.address.ip(),
            latency_ms, "rejected");
        ingress.metrics.request("none", Rejection::NotFound.code());
        return Rejection::NotFound.into_response();
    };
    let route = matched.route.clone();
    let tail = matched.tail.map(str::to_owned);
    let client = client_ip(
        peer.address.ip(),
        &parts.headers,
        &ingress.server.trusted_proxies,
    );

    let outcome = accept(ingress, &route, client, parts, body, tail.as_deref()).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(accepted) => {
            let status = if accepted.duplicate { 200 } else { 202 };
            tracing::info!(route = %route.name, event_id = %accepted.id, status,
                duplicate = accepted.duplicate, client = %client, latency_ms, "accepted");
            count_accepted(ingress, &route.name, accepted.duplicate);
            answer::accepted(&accepted.id, accepted.duplicate)
        }
        Err(rejection) => {
            let status = rejection.status().as_u16();
            let reason = match &rejection {
                Rejection::Unauthorized(e) => e.reason(),
                other => other.code(),
            };
            tracing::info!(route = %route.name, status, error = reason, client = %client,
                latency_ms, "rejected");
            count_rejected(ingress, &route.name, &rejection);
            rejection.into_response()
        }
    }
}

fn count_accepted(ingress: &Ingress, route: &str, duplicate: bool) {
    let metrics = &ingress.metrics;
    if duplicate {
        metrics.request(route, "duplicate");
        let labels = RouteLabel {
            route: route.to_owned(),
        };
        metrics.duplicates.get_or_create(&labels).inc();
    } else {
        metrics.request(route, "accepted");
    }
}

fn count_rejected(ingress: &Ingress, route: &str, rejection: &Rejection) {
    let metrics = &ingress.metrics;
    metrics.request(route, rejection.code());
    match rejection {
        Rejection::Unauthorized(error) => {
            let labels = RouteReason {
                route: route.to_owned(),
                reason: error.reason().to_owned(),
            };
            metrics.verify_failures.get_or_create(&labels).inc();
        }
        Rejection::Limited { limiter, .. } => {
            let labels = RouteOutcome {
                route: route.to_owned(),
                outcome: (*limiter).to_owned(),
            };
            metrics.limited.get_or_create(&labels).inc();
        }
        _ => {}
    }
}

/// What is refused before routing: a connection without a trusted client certificate when
/// the listener wants one, a request with too many header fields (HTTP/1.1 refuses those
/// while parsing; HTTP/2 has no count of its own), two `Host` headers, a transfer coding
/// under `chunked`, and a `Content-Type` that cannot be stored and forwarded as it came.
fn at_the_door(ingress: &Ingress, peer: &Peer, parts: &Parts) -> Result<(), Rejection> {
    match peer.cert {
        ClientCert::NotAsked | ClientCert::Trusted => {}
        ClientCert::Missing => return Err(Rejection::ClientCertificate { missing: true }),
        ClientCert::Untrusted(_) => return Err(Rejection::ClientCertificate { missing: false }),
    }
    if parts.headers.len() > ingress.server.max_headers {
        return Err(Rejection::TooManyHeaders);
    }
    if parts
        .headers
        .get_all(http::header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(Rejection::BadHost);
    }
    transfer_coding(&parts.headers)?;
    content_type(&parts.headers)
}

/// Admits, reads, verifies and stores one request. What `body` holds when this returns is
/// what is left unread of a refused request, for the caller to drop.
async fn accept(
    ingress: &Ingress,
    route: &Arc<Route>,
    client: IpAddr,
    parts: Parts,
    body: &mut Option<hyper::body::Incoming>,
    tail: Option<&str>,
) -> Result<crate::store::Accepted, Rejection> {
    let now = now_ms() as u64 / 1_000;
    admit(ingress, route, client, &parts, tail, now)?;

    let read = read_verified(ingress, route, &parts, body, tail, now).await?;
    let examined = examine(route, &parts, &read.body).await?;
    let event = new_event(
        ingress, route, client, &parts, read.body, read.scope, examined,
    );
    store(ingress, route, event).await
}

/// Bodies from this size on are read for their dedup key and filters on a blocking thread.
const EXAMINE_APART: usize = 256 << 10;

/// The dedup key and upstreams of a verified body. A large body takes a blocking thread
/// for it, so that scanning megabytes of JSON holds up no other connection.
async fn examine(route: &Arc<Route>, parts: &Parts, body: &Bytes) -> Result<Examined, Rejection> {
    if body.len() < EXAMINE_APART {
        return Ok(route.examine(&parts.headers, body)?);
    }
    let (route, headers, body) = (route.clone(), parts.headers.clone(), body.clone());
    tokio::task::spawn_blocking(move || route.examine(&headers, &body))
        .await
        .map_err(|_| Rejection::BadBody)?
        .map_err(Rejection::from)
}

/// A verified body, with its share of the budget for bodies in flight, held until stored.
struct Read {
    body: Bytes,
    scope: Option<String>,
    _held: [Charge; 2],
}

/// Reads the body within its reservation, inflates it, and verifies the bytes the sender
/// signed. A signature over the wire bytes is checked before anything is inflated, so only
/// a genuine sender can make the gateway inflate; inflating takes a reservation of its own,
/// as a small body can grow to the route's cap.
async fn read_verified(
    ingress: &Ingress,
    route: &Route,
    parts: &Parts,
    unread: &mut Option<hyper::body::Incoming>,
    tail: Option<&str>,
    now: u64,
) -> Result<Read, Rejection> {
    let encoding = content_encoding(&parts.headers)?;
    let body = unread.as_mut().ok_or(Rejection::BadBody)?;
    let mut reading = Charge::new(&ingress.body_budget);
    let timeout = ingress.server.body_timeout;
    let read = read_capped(body, route.max_body, timeout, &mut reading).await;
    // Read whole, or too slow or broken to be worth reading on: nothing is left to drop.
    if matches!(read, Ok(_) | Err(Rejection::Timeout | Rejection::BadBody)) {
        *unread = None;
    }
    let wire = read?;
    let incoming = |body| Incoming {
        headers: &parts.headers,
        query: parts.uri.query(),
        path_tail: tail,
        body,
        now,
    };

    if route.signature_over == SignatureOver::Wire {
        verify(ingress, route, &incoming(&wire))?;
    }
    let inflating = Charge::new(&ingress.body_budget);
    let (body, inflating) = inflate(wire.clone(), encoding, route.max_body, inflating).await?;
    let signed = match route.signature_over {
        SignatureOver::Wire => incoming(&wire),
        SignatureOver::Inflated => {
            verify(ingress, route, &incoming(&body))?;
            incoming(&body)
        }
    };
    let scope = route.verifier.dedup_scope(&signed);
    Ok(Read {
        body,
        scope,
        _held: [reading, inflating],
    })
}

/// What is decided before the body is read: allow list, method, client rate, declared
/// size, and whatever the scheme can judge from the URL and headers alone.
fn admit(
    ingress: &Ingress,
    route: &Route,
    client: IpAddr,
    parts: &Parts,
    tail: Option<&str>,
    now: u64,
) -> Result<(), Rejection> {
    if !route.allow.is_empty() && !route.allow.iter().any(|net| net.contains(&client)) {
        return Err(Rejection::Forbidden);
    }
    if parts.method != Method::POST {
        return Err(Rejection::MethodNotAllowed);
    }
    ingress
        .limits
        .check_client(client)
        .map_err(|retry_after| limited(route, "client", retry_after))?;
    if declared_length(&parts.headers).is_some_and(|n| n > route.max_body) {
        return Err(Rejection::TooLarge {
            limit: route.max_body,
        });
    }
    let before_body = Incoming {
        headers: &parts.headers,
        query: parts.uri.query(),
        path_tail: tail,
        body: &[],
        now,
    };
    route
        .verifier
        .precheck(&before_body)
        .map_err(Rejection::Unauthorized)
}

/// The scheme's verdict on the whole request, then the route's and the gateway's rates.
fn verify(ingress: &Ingress, route: &Route, incoming: &Incoming<'_>) -> Result<(), Rejection> {
    let verified = route
        .verifier
        .verify(incoming)
        .map_err(Rejection::Unauthorized)?;
    ingress
        .limits
        .check_verified(&route.name)
        .map_err(|(limiter, retry_after)| limited(route, limiter, retry_after))?;
    if let Some(skew) = verified.skew_secs {
        let labels = RouteLabel {
            route: route.name.to_string(),
        };
        let histogram = ingress.metrics.clock_skew.get_or_create(&labels);
        histogram.observe(skew as f64);
    }
    Ok(())
}

fn limited(route: &Route, limiter: &'static str, retry_after: u64) -> Rejection {
    Rejection::Limited {
        status: route.limited_status,
        retry_after,
        limiter,
    }
}

/// Stores the event durably, unless the queue is past its high-water mark. The store hands
/// the new deliveries to their upstreams itself, so they are sent even when the sender
/// hangs up while its event is being committed.
async fn store(
    ingress: &Ingress,
    route: &Route,
    event: NewEvent,
) -> Result<crate::store::Accepted, Rejection> {
    if ingress.backlog.is_full() {
        tracing::warn!(route = %route.name, "delivery queue past its high-water mark");
        return Err(Rejection::Unavailable {
            retry_after: BACKLOG_RETRY_AFTER,
        });
    }
    let outcome = ingress.store.accept(event).await;
    if let Ok(accepted) = &outcome {
        ingress.backlog.add(accepted.deliveries.len());
    }
    outcome.map_err(|error| {
        tracing::error!(route = %route.name, %error, "event not stored");
        Rejection::Unavailable {
            retry_after: STORE_RETRY_AFTER,
        }
    })
}

fn new_event(
    ingress: &Ingress,
    route: &Route,
    client: IpAddr,
    parts: &Parts,
    body: Bytes,
    scope: Option<String>,
    examined: Examined,
) -> NewEvent {
    let key = examined.key;
    if key.fell_back {
        tracing::info!(route = %route.name, "dedup value missing, keyed on the body hash");
        let labels = RouteLabel {
            route: route.name.to_string(),
        };
        ingress.metrics.dedup_fallbacks.get_or_create(&labels).inc();
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let dedup_key = key.stored(scope.as_deref());
    let hidden = route.verifier.credential_header();
    NewEvent {
        route: route.name.clone(),
        dedup_key,
        window: route.window,
        received_at: now_ms(),
        headers: redacted_headers(&parts.headers, hidden),
        content_type,
        upstreams: examined.upstreams,
        body,
        client_ip: client.to_string(),
        proto: ingress.proto,
    }
}

/// The request's host, lowercase and without port: `Host`, or the HTTP/2 authority.
fn host_of(parts: &Parts) -> Option<String> {
    let raw = parts
        .uri
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = host.parse().ok()?;
            Some(authority.host().to_owned())
        })?;
    Some(raw.to_ascii_lowercase())
}

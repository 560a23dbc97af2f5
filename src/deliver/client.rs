//! The outbound HTTP client: one connection pool for all upstreams, http and https.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;

use super::Upstream;
use crate::store::DueDelivery;
use crate::telemetry::REDACTED;

/// The shared client.
pub type Client = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

// The gateway's own request headers, named once rather than parsed for every attempt.
const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const EVENT_ID: HeaderName = HeaderName::from_static("hookgate-event-id");
const ROUTE: HeaderName = HeaderName::from_static("hookgate-route");
const ATTEMPT: HeaderName = HeaderName::from_static("hookgate-attempt");

/// How many bytes of an upstream's answer are kept with the attempt.
pub(super) const RESPONSE_HEAD: usize = 1024;

/// Builds the client, trusting the system's root certificates for https upstreams.
pub fn build_client() -> Client {
    build_client_with(Vec::new())
}

/// Builds the client, trusting `extra` certificates besides the system's roots.
pub fn build_client_with(extra: Vec<CertificateDer<'static>>) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if let Some(error) = native.errors.first() {
        tracing::debug!(%error, "some system root certificates could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    roots.add_parsable_certificates(extra);
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    HyperClient::builder(TokioExecutor::new()).build(connector)
}

/// The request for one attempt: original bytes and content type, plus gateway headers.
pub(super) fn request(
    upstream: &Upstream,
    delivery: &DueDelivery,
    attempt: u32,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    let mut request = http::Request::new(Full::new(delivery.body.clone()));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = upstream.url.clone();
    let headers = request.headers_mut();
    headers.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    headers.insert(X_FORWARDED_FOR, HeaderValue::from_str(&delivery.client_ip)?);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_str(&delivery.proto)?);
    headers.insert(EVENT_ID, HeaderValue::from_str(&delivery.event_id)?);
    headers.insert(ROUTE, HeaderValue::from_str(&delivery.route)?);
    headers.insert(ATTEMPT, HeaderValue::from(attempt));
    if let Some(content_type) = &delivery.content_type {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type)?,
        );
    }
    for (name, value) in forwarded(upstream, delivery) {
        headers.append(name, value);
    }
    if let Some(signer) = &upstream.signer {
        let now = crate::store::now_ms() as u64 / 1_000;
        for (name, value) in signer.headers(&delivery.event_id, now, &delivery.body) {
            headers.append(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::try_from(value)?,
            );
        }
    }
    Ok(request)
}

/// The upstream's `forward_headers` that the original request carried, read from the
/// stored copy of its headers (where credentials are already redacted, and so never sent).
fn forwarded(upstream: &Upstream, delivery: &DueDelivery) -> Vec<(HeaderName, HeaderValue)> {
    if upstream.forward_headers.is_empty() {
        return Vec::new();
    }
    let Ok(serde_json::Value::Object(stored)) = serde_json::from_str(&delivery.headers) else {
        return Vec::new();
    };
    upstream
        .forward_headers
        .iter()
        .filter_map(|name| {
            let value = stored.get(name.as_str())?.as_str()?;
            let value = HeaderValue::from_str(value).ok()?;
            (value != REDACTED).then(|| (name.clone(), value))
        })
        .collect()
}

/// Reads at most [`RESPONSE_HEAD`] bytes of an answer's body; the rest is dropped.
pub(super) async fn read_head(body: hyper::body::Incoming) -> Vec<u8> {
    let mut head = Vec::new();
    let mut body = body;
    while head.len() < RESPONSE_HEAD {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = RESPONSE_HEAD - head.len();
                    head.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    head
}

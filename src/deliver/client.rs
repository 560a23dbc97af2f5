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
    let mut builder = http::Request::post(upstream.url.clone())
        .header(
            "user-agent",
            concat!("hookgate/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-forwarded-for", &delivery.client_ip)
        .header("x-forwarded-proto", &delivery.proto)
        .header("hookgate-event-id", &delivery.event_id)
        .header("hookgate-route", &delivery.route)
        .header("hookgate-attempt", attempt);
    if let Some(content_type) = &delivery.content_type {
        builder = builder.header(http::header::CONTENT_TYPE, content_type);
    }
    for (name, value) in forwarded(upstream, delivery) {
        builder = builder.header(name, value);
    }
    if let Some(signer) = &upstream.signer {
        let now = crate::store::now_ms() as u64 / 1_000;
        for (name, value) in signer.headers(&delivery.event_id, now, &delivery.body) {
            builder = builder.header(name, value);
        }
    }
    builder.body(Full::new(delivery.body.clone()))
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

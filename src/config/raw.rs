//! The serde layer: mirrors `gateway.toml` one to one, with every default in one place.
//!
//! Nothing here is validated beyond its type; [`super::Config::from_raw`] turns it into the
//! runtime types and reports what is wrong with a file, line and key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::secret::SecretSource;
use super::units::{Rate, Size, Span, above_zero, above_zero_opt};
use crate::route::SignatureOver;
use crate::verify::VerifyConfig;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The ingress listener.
    #[serde(default)]
    pub server: RawServer,
    /// Log level and format.
    #[serde(default)]
    pub log: RawLog,
    /// The admin listener; absent means none.
    pub admin: Option<RawAdmin>,
    /// Where events and deliveries are kept.
    #[serde(default)]
    pub store: RawStore,
    /// Internal services that receive events, by name.
    #[serde(default)]
    pub upstreams: BTreeMap<Spanned<String>, RawUpstream>,
    /// Paths that accept webhooks.
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

/// `[server]`: the public listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address and port to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: Spanned<String>,
    /// Certificate and key; without it the listener speaks plain HTTP (warned).
    pub tls: Option<RawTls>,
    /// Largest body any route accepts.
    #[serde(default = "defaults::max_body", deserialize_with = "above_zero")]
    pub max_body: Size,
    /// Peers whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Requests per client IP, checked before the body is read.
    pub client_rate: Option<Rate>,
    /// Verified requests per second for the whole gateway, all routes together.
    pub global_rate: Option<Rate>,
    /// Time allowed to receive a request's headers.
    #[serde(default = "defaults::header_timeout", deserialize_with = "above_zero")]
    pub header_timeout: Span,
    /// Time allowed to receive a request's body.
    #[serde(default = "defaults::body_timeout", deserialize_with = "above_zero")]
    pub body_timeout: Span,
    /// A connection with no request under way for this long is closed.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: Span,
    /// Connections open at once; more are closed as they arrive.
    #[serde(default = "defaults::max_connections", deserialize_with = "above_zero")]
    pub max_connections: usize,
    /// Connections open at once from one client that is not a trusted proxy.
    #[serde(
        default = "defaults::max_connections_per_client",
        deserialize_with = "above_zero"
    )]
    pub max_connections_per_client: usize,
    /// Request bodies held in memory at once, all requests together.
    #[serde(
        default = "defaults::max_inflight_body",
        deserialize_with = "above_zero"
    )]
    pub max_inflight_body: Size,
    /// Header fields one request may carry.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// Bytes of all header fields of one request together.
    #[serde(default = "defaults::max_header_size")]
    pub max_header_size: Size,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            tls: None,
            max_body: defaults::max_body(),
            trusted_proxies: Vec::new(),
            client_rate: None,
            global_rate: None,
            header_timeout: defaults::header_timeout(),
            body_timeout: defaults::body_timeout(),
            idle_timeout: defaults::idle_timeout(),
            max_connections: defaults::max_connections(),
            max_connections_per_client: defaults::max_connections_per_client(),
            max_inflight_body: defaults::max_inflight_body(),
            max_headers: defaults::max_headers(),
            max_header_size: defaults::max_header_size(),
        }
    }
}

/// `[log]`: read before the rest of the file, so the first lines already follow it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A `RUST_LOG`-style filter such as `"info"` or `"hookgate=debug,info"`; `RUST_LOG`
    /// wins when set.
    pub level: Option<String>,
    /// `"text"` (the default) or `"json"`.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[admin]`: health, readiness and metrics, apart from ingress.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address and port; keep it on loopback or a private network.
    #[serde(default = "defaults::admin_listen")]
    pub listen: Spanned<String>,
    /// A bearer token every admin request must carry.
    pub token: Option<SecretSource>,
}

/// `server.tls`: PEM files, relative to the configuration file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf certificate.
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; set, every request must
    /// present one that does (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Create a self-signed pair for `localhost` when neither file exists (development).
    #[serde(default)]
    pub create: bool,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// Which store: only `"embedded"` (SQLite) for now.
    #[serde(default)]
    pub kind: StoreKind,
    /// The database file, relative to the configuration file's folder.
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// How long a fully delivered event is kept; expired dedup keys go at once.
    #[serde(default = "defaults::retention")]
    pub retention: Span,
    /// Pending deliveries past which new events are answered `503`.
    #[serde(default = "defaults::high_water", deserialize_with = "above_zero")]
    pub high_water: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: defaults::store_path(),
            retention: defaults::retention(),
            high_water: defaults::high_water(),
        }
    }
}

/// The kinds of store.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A single SQLite file in WAL mode.
    #[default]
    Embedded,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Where events are POSTed: `http://` or `https://`.
    pub url: Spanned<String>,
    /// Time allowed for one attempt, connection included.
    #[serde(
        default = "defaults::upstream_timeout",
        deserialize_with = "above_zero"
    )]
    pub timeout: Span,
    /// Outbound requests per period to this upstream.
    pub rate: Option<Rate>,
    /// Attempts in flight at once to this upstream.
    #[serde(default = "defaults::concurrency", deserialize_with = "above_zero")]
    pub concurrency: u32,
    /// When and how often to try again.
    #[serde(default)]
    pub retry: RawRetry,
    /// When to stop sending to an upstream that keeps failing.
    #[serde(default)]
    pub breaker: RawBreaker,
    /// Sign each delivery for this upstream with the Standard Webhooks scheme.
    pub sign: Option<RawSign>,
    /// Headers of the original request copied onto each delivery, when the request had
    /// them (such as `X-GitHub-Event`).
    #[serde(default)]
    pub forward_headers: Vec<Spanned<String>>,
}

/// `sign = { secrets = [...] }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSign {
    /// `whsec_` secrets; each delivery carries one `v1,` signature per secret.
    pub secrets: Vec<SecretSource>,
}

/// `breaker = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Consecutive failed attempts that open the breaker.
    #[serde(
        default = "defaults::breaker_failures",
        deserialize_with = "above_zero"
    )]
    pub failures: u32,
    /// How long it stays open before a probe; doubled after each failed probe.
    #[serde(default = "defaults::breaker_cooldown")]
    pub cooldown: Span,
    /// The longest it stays open.
    #[serde(default = "defaults::breaker_max_cooldown")]
    pub max_cooldown: Span,
}

impl Default for RawBreaker {
    fn default() -> Self {
        Self {
            failures: defaults::breaker_failures(),
            cooldown: defaults::breaker_cooldown(),
            max_cooldown: defaults::breaker_max_cooldown(),
        }
    }
}

/// `retry = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    // The defaults (5 s doubling to 2 h, 30 attempts, 24 h) put the mean last attempt about
    // 20 hours after acceptance: an upstream may be down for most of a day.
    /// Attempts in all, the first included.
    #[serde(default = "defaults::max_attempts", deserialize_with = "above_zero")]
    pub max_attempts: u32,
    /// Upper bound of the first backoff.
    #[serde(default = "defaults::initial")]
    pub initial: Span,
    /// Growth of the bound from one attempt to the next.
    #[serde(default = "defaults::multiplier")]
    pub multiplier: f64,
    /// Largest bound, and the cap on an upstream's `Retry-After`.
    #[serde(default = "defaults::max_delay")]
    pub max_delay: Span,
    /// Give up on a delivery this long after the event was accepted.
    #[serde(default = "defaults::max_age", deserialize_with = "above_zero")]
    pub max_age: Span,
    /// Answers tried again: codes and classes such as `"5xx"`.
    #[serde(default = "defaults::retry_on")]
    pub on: Vec<StatusItem>,
    /// Codes left out of `on`'s classes.
    #[serde(default = "defaults::retry_except")]
    pub except: Vec<u16>,
}

/// A status code (`503`) or class (`"5xx"`).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a status such as 503 or a class such as \"5xx\""
)]
pub enum StatusItem {
    /// A single code.
    Code(u16),
    /// A class or a code written as text.
    Text(String),
}

impl StatusItem {
    /// The item as text.
    pub fn text(&self) -> String {
        match self {
            StatusItem::Code(code) => code.to_string(),
            StatusItem::Text(text) => text.clone(),
        }
    }
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            max_attempts: defaults::max_attempts(),
            initial: defaults::initial(),
            multiplier: defaults::multiplier(),
            max_delay: defaults::max_delay(),
            max_age: defaults::max_age(),
            on: defaults::retry_on(),
            except: defaults::retry_except(),
        }
    }
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, used in logs, metrics and the `Hookgate-Route` header.
    pub name: String,
    /// The exact path webhooks are POSTed to.
    pub path: String,
    /// Only requests for this `Host` (without port) match, when set.
    pub host: Option<String>,
    /// How requests are proven genuine.
    pub verify: VerifyConfig,
    /// For compressed bodies: whether the signature covers the `wire` or `inflated` bytes.
    #[serde(default)]
    pub signature_over: SignatureOver,
    /// How duplicates are recognised.
    #[serde(default)]
    pub dedup: RawDedup,
    /// Verified requests per period on this route.
    pub rate: Option<Rate>,
    /// Status answered when limited: `429`, or `503` for senders that retry only on `5xx`.
    #[serde(default = "defaults::limited_status")]
    pub limited_status: u16,
    /// Largest body for this route; never above `server.max_body`.
    #[serde(default, deserialize_with = "above_zero_opt")]
    pub max_body: Option<Size>,
    /// Client networks allowed to post here; empty allows all.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// Upstreams that receive this route's events.
    pub upstreams: Vec<RawTarget>,
}

/// `dedup = { key = ..., window = ... }` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedup {
    /// `"json:/pointer"`, `"header:name"` or `"body"` (SHA-256 of the body).
    #[serde(default = "defaults::dedup_key")]
    pub key: String,
    /// How long a key is remembered.
    #[serde(default = "defaults::dedup_window")]
    pub window: Span,
}

impl Default for RawDedup {
    fn default() -> Self {
        Self {
            key: defaults::dedup_key(),
            window: defaults::dedup_window(),
        }
    }
}

/// One entry of a route's `upstreams`: a name, or a name with a filter.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an upstream name, or { name = \"...\", when = { ... } }"
)]
pub enum RawTarget {
    /// Every event goes to this upstream.
    Name(String),
    /// Only events matching every condition go to this upstream.
    Filtered {
        /// The upstream's name.
        name: String,
        /// JSON pointer → expected value (or a list of accepted values).
        #[serde(default)]
        when: BTreeMap<String, serde_json::Value>,
    },
}

/// The defaults, in one place.
pub mod defaults {
    use super::*;

    pub(super) fn listen() -> Spanned<String> {
        Spanned::new(0..0, "0.0.0.0:8443".to_owned())
    }
    pub(super) fn admin_listen() -> Spanned<String> {
        Spanned::new(0..0, "127.0.0.1:9090".to_owned())
    }
    pub(super) fn max_body() -> Size {
        Size(32 << 20)
    }
    pub(super) fn header_timeout() -> Span {
        Span(std::time::Duration::from_secs(10))
    }
    pub(super) fn body_timeout() -> Span {
        Span(std::time::Duration::from_secs(30))
    }
    pub(super) fn idle_timeout() -> Span {
        Span(std::time::Duration::from_secs(60))
    }
    pub(super) fn max_inflight_body() -> Size {
        Size(512 << 20)
    }
    pub(super) fn max_connections() -> usize {
        10_000
    }
    pub(super) fn max_connections_per_client() -> usize {
        256
    }
    pub(super) fn max_headers() -> usize {
        64
    }
    pub(super) fn max_header_size() -> Size {
        Size(16 * 1024)
    }
    pub(super) fn store_path() -> PathBuf {
        PathBuf::from("data/hookgate.db")
    }
    pub(super) fn high_water() -> u64 {
        1_000_000
    }
    pub(super) fn retention() -> Span {
        Span(std::time::Duration::from_secs(7 * 86_400))
    }
    pub(super) fn upstream_timeout() -> Span {
        Span(std::time::Duration::from_secs(30))
    }
    pub(super) fn concurrency() -> u32 {
        16
    }
    pub(super) fn max_attempts() -> u32 {
        30
    }
    pub(super) fn initial() -> Span {
        Span(std::time::Duration::from_secs(5))
    }
    pub(super) fn multiplier() -> f64 {
        2.0
    }
    pub(super) fn max_delay() -> Span {
        Span(std::time::Duration::from_secs(2 * 3_600))
    }
    pub(super) fn max_age() -> Span {
        Span(std::time::Duration::from_secs(24 * 3_600))
    }
    pub(super) fn breaker_failures() -> u32 {
        5
    }
    pub(super) fn breaker_cooldown() -> Span {
        Span(std::time::Duration::from_secs(10))
    }
    pub(super) fn breaker_max_cooldown() -> Span {
        Span(std::time::Duration::from_secs(300))
    }
    pub(super) fn retry_on() -> Vec<StatusItem> {
        vec![
            StatusItem::Code(408),
            StatusItem::Code(429),
            StatusItem::Text("5xx".into()),
        ]
    }
    pub(super) fn retry_except() -> Vec<u16> {
        vec![501]
    }
    pub(super) fn limited_status() -> u16 {
        429
    }
    pub(super) fn dedup_key() -> String {
        "body".to_owned()
    }
    pub(super) fn dedup_window() -> Span {
        Span(std::time::Duration::from_secs(24 * 3_600))
    }
}

//! Which route a request is for, what its dedup key is, and which upstreams get it.

mod dedup;
mod filter;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use ipnet::IpNet;

pub use dedup::{DedupKey, Key, KeyError};
pub use filter::Filter;

use crate::config::units::Rate;
use crate::json::{self, JsonError, Read};
use crate::verify::Verifier;

/// A validated `[[routes]]` entry.
#[derive(Debug)]
pub struct Route {
    /// Unique name.
    pub name: Arc<str>,
    /// The path webhooks are POSTed to.
    pub path: String,
    /// Lowercase host the route is limited to, if any.
    pub host: Option<String>,
    /// The verification scheme with its secrets.
    pub verifier: Arc<dyn Verifier>,
    /// Whether a compressed body's signature covers the wire bytes or the inflated ones.
    pub signature_over: SignatureOver,
    /// Where the dedup key comes from.
    pub dedup: DedupKey,
    /// How long a dedup key is remembered.
    pub window: Duration,
    /// Verified requests per period on this route.
    pub rate: Option<Rate>,
    /// `429` or `503`.
    pub limited_status: StatusCode,
    /// Largest body accepted.
    pub max_body: u64,
    /// Client networks allowed; empty allows all.
    pub allow: Vec<IpNet>,
    /// Upstreams that receive the route's events.
    pub targets: Vec<Target>,
    /// What the route reads of JSON bodies, prepared from `dedup` and `targets` by
    /// [`json_reads`] when the route is built.
    pub json_reads: json::Reads,
}

/// Which bytes of a compressed body the sender signed. The inflated bytes are what is
/// stored and forwarded either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureOver {
    /// The bytes as they travelled, still compressed.
    #[default]
    Wire,
    /// The bytes after inflating.
    Inflated,
}

/// What a route with this dedup key and these targets reads of a JSON body: the dedup
/// key's value and its filters' values.
pub fn json_reads(dedup: &DedupKey, targets: &[Target]) -> json::Reads {
    let dedup = match dedup {
        DedupKey::Json(pointer) => Some((pointer.as_str(), Read::Scalar)),
        _ => None,
    };
    let filters = targets.iter().flat_map(|t| t.when.reads());
    json::Reads::new(&dedup.into_iter().chain(filters).collect::<Vec<_>>())
}

/// Why a verified request's dedup key or upstreams cannot be read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Examine {
    /// The body, which the route reads as JSON.
    #[error(transparent)]
    Json(JsonError),
    /// The dedup key.
    #[error(transparent)]
    Key(KeyError),
}

/// An upstream a route fans out to, with the condition an event must meet.
#[derive(Debug)]
pub struct Target {
    /// The upstream's name.
    pub upstream: Arc<str>,
    /// Conditions on the JSON body; empty matches every event.
    pub when: Filter,
}

impl Route {
    /// Whether the body must be JSON (a JSON dedup key or a filter needs it).
    pub fn needs_json(&self) -> bool {
        matches!(self.dedup, DedupKey::Json(_)) || self.targets.iter().any(|t| !t.when.is_empty())
    }

    /// The dedup key and upstreams of a verified request. The body is parsed as JSON only
    /// when the route needs it, and then strictly (see [`crate::json`]).
    pub fn examine(&self, headers: &HeaderMap, body: &[u8]) -> Result<Examined, Examine> {
        let json = match self.needs_json() {
            true => Some(json::view(body, &self.json_reads).map_err(Examine::Json)?),
            false => None,
        };
        let key = self
            .dedup
            .extract(headers, body, json.as_ref())
            .map_err(Examine::Key)?;
        let upstreams = self.upstreams_for(json.as_ref());
        Ok(Examined { key, upstreams })
    }

    /// The upstreams that should receive an event with this (parsed) body.
    pub fn upstreams_for(&self, json: Option<&serde_json::Value>) -> Vec<Arc<str>> {
        self.targets
            .iter()
            .filter(|t| t.when.matches(json))
            .map(|t| t.upstream.clone())
            .collect()
    }
}

/// What a route reads from a verified body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examined {
    /// The event's dedup key.
    pub key: Key,
    /// The upstreams that receive it.
    pub upstreams: Vec<Arc<str>>,
}

/// The routes of one configuration, looked up by host and path.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

/// A request's route and the path segment after the route's path, if the scheme takes one.
#[derive(Debug)]
pub struct Matched<'a> {
    /// The route.
    pub route: &'a Arc<Route>,
    /// The segment after the route's path.
    pub tail: Option<&'a str>,
}

impl Router {
    /// A router over `routes`.
    pub fn new(routes: Vec<Arc<Route>>) -> Self {
        Self { routes }
    }

    /// The route for `path` on `host` (lowercase, without port), if any.
    pub fn find<'a>(&'a self, host: Option<&str>, path: &'a str) -> Option<Matched<'a>> {
        let host_ok = |route: &Route| route.host.is_none() || route.host.as_deref() == host;
        let exact = self
            .routes
            .iter()
            .filter(|r| r.path == path && host_ok(r))
            .max_by_key(|r| r.host.is_some());
        if let Some(route) = exact {
            return Some(Matched { route, tail: None });
        }
        self.routes
            .iter()
            .filter(|r| r.verifier.takes_path_tail() && host_ok(r))
            .find_map(|route| {
                let rest = path.strip_prefix(route.path.trim_end_matches('/'))?;
                let tail = rest.strip_prefix('/')?;
                (!tail.is_empty() && !tail.contains('/')).then_some(Matched {
                    route,
                    tail: Some(tail),
                })
            })
    }

    /// All routes, in configuration order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

//! `gateway.toml`: read, checked, and turned into the runtime types each stage takes.
//!
//! Two layers: [`raw`] mirrors the file for serde; [`Config`] holds validated values
//! (parsed durations, resolved secrets, built verifiers). Every error names the file, the
//! line and the key.

mod forward;
mod locate;
pub mod raw;
pub mod secret;
pub mod units;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use ipnet::IpNet;

use crate::admin::AdminConfig;
use crate::deliver::{BreakerPolicy, RetryPolicy, RetryStatuses, Upstream};
use crate::route::{DedupKey, Filter, Route, Target};
use crate::verify::{BuildContext, OutboundSigner};
use locate::Locator;
use raw::{RawConfig, RawRoute, RawTarget, RawUpstream};
use secret::{Reading, Secret, SecretError, SecretSource};
use units::Rate;

/// A validated configuration, ready to run.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// The `[log]` settings, as loaded.
    pub log: LogSettings,
    /// The public listener.
    pub server: Server,
    /// The admin listener, when configured.
    pub admin: Option<AdminConfig>,
    /// The database file.
    pub store_path: PathBuf,
    /// How long fully delivered events are kept.
    pub retention: Duration,
    /// Pending deliveries past which new events are refused with `503`.
    pub high_water: u64,
    /// Upstreams, in name order.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Routes, in file order.
    pub routes: Vec<Arc<Route>>,
    /// Things that work but that an operator should hear about at start.
    pub warnings: Vec<String>,
    /// Secrets that could not be read and were stood in for; empty unless loaded with
    /// [`Reading::Lenient`].
    pub unread: Vec<Unread>,
}

/// The validated `[server]` table.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Certificate and key files; `None` means plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Largest body accepted by any route.
    pub max_body: u64,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Requests per client IP before the body is read.
    pub client_rate: Option<Rate>,
    /// Verified requests for the whole gateway.
    pub global_rate: Option<Rate>,
    /// Time allowed for a request's headers.
    pub header_timeout: Duration,
    /// Time allowed for a request's body.
    pub body_timeout: Duration,
    /// A connection idle this long after its last request is closed.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client (IPv4 address or IPv6 /64) that is not a
    /// trusted proxy.
    pub max_connections_per_client: usize,
    /// Request bodies held in memory at once, in bytes.
    pub max_inflight_body: u64,
    /// Header fields one request may carry.
    pub max_headers: usize,
    /// Bytes of one request's header fields together.
    pub max_header_size: u32,
}

/// The `[log]` settings, read on their own before logging starts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The filter, when the file sets one.
    pub level: Option<String>,
    /// Whether lines are JSON.
    pub json: bool,
}

impl LogSettings {
    /// The `[log]` table of `path`; defaults when the file cannot be read or parsed (loading
    /// it properly reports why, once logging runs).
    pub fn peek(path: &Path) -> LogSettings {
        #[derive(serde::Deserialize)]
        struct OnlyLog {
            #[serde(default)]
            log: raw::RawLog,
        }
        let parsed = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
            .and_then(|table| {
                let log = table
                    .get("log")
                    .cloned()
                    .unwrap_or(toml::Value::Table(Default::default()));
                let mut only = toml::Table::new();
                only.insert("log".into(), log);
                toml::Value::Table(only).try_into::<OnlyLog>().ok()
            });
        parsed.map_or_else(LogSettings::default, |only| LogSettings::from(only.log))
    }
}

impl From<raw::RawLog> for LogSettings {
    fn from(log: raw::RawLog) -> LogSettings {
        LogSettings {
            level: log.level,
            json: log.format == raw::LogFormat::Json,
        }
    }
}

/// Paths of the ingress certificate chain and key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates that clients must present a certificate from (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Whether a start creates a self-signed development pair when neither file exists;
    /// otherwise missing files are an error, as a production listener should have.
    pub create: bool,
}

/// What is wrong with a configuration file, and where.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no place in the file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key at fault, as a dotted path (`routes[1].verify`); empty when the file itself
    /// is at fault.
    pub key: String,
    /// What is wrong, and how to fix it when that is not obvious.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.display();
        if self.key.is_empty() {
            write!(f, "{file}: {}", self.message)
        } else if self.line == 0 {
            write!(f, "{file}: {}: {}", self.key, self.message)
        } else {
            let (line, column) = (self.line, self.column);
            write!(f, "{file}:{line}:{column}: {}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates `path`. Relative paths inside are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Reading::Start)
    }

    /// Reads and validates `path`, reading its secrets as `reading` says.
    pub fn load_with(path: &Path, reading: Reading) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot be read: {e} (name another file with -c FILE)"),
        })?;
        Config::parse_with(path, &text, reading)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(path, text, Reading::Start)
    }

    /// Validates `text` as if read from `path`, reading its secrets as `reading` says.
    pub fn parse_with(path: &Path, text: &str, reading: Reading) -> Result<Config, ConfigError> {
        let locate = Locator { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = locate.key_at(span.clone());
            locate.error(span, &key, locate::with_suggestion(e.message()))
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let unread = RefCell::new(Vec::new());
        let files = Files {
            base: &base,
            reading,
            unread: &unread,
        };
        let mut config = Config::from_raw(raw, files, &locate)?;
        config.unread = unread.into_inner();
        Ok(config)
    }

    /// Fails, saying why, when a secret of the setting `key` was stood in for because it
    /// could not be read (see [`Reading::Lenient`]).
    pub fn require(&self, key: &str) -> Result<(), String> {
        match self.unread.iter().find(|u| u.key == key) {
            Some(unread) => Err(format!("{}: {}", unread.key, unread.reason)),
            None => Ok(()),
        }
    }

    fn from_raw(raw: RawConfig, files: Files, locate: &Locator) -> Result<Config, ConfigError> {
        let base = files.base;
        let mut warnings = Vec::new();
        let server = server(raw.server, base, locate, &mut warnings)?;
        let admin = raw
            .admin
            .map(|a| admin(a, files, locate, &mut warnings))
            .transpose()?;

        let mut upstreams = Vec::new();
        for (name, upstream) in raw.upstreams {
            upstreams.push(Arc::new(upstream_from_raw(name, upstream, files, locate)?));
        }

        let mut routes: Vec<Arc<Route>> = Vec::new();
        for (index, spanned) in raw.routes.into_iter().enumerate() {
            let span = spanned.span();
            let key = format!("routes[{index}]");
            let ctx = RouteCtx {
                key: &key,
                span: span.clone(),
                files,
                locate,
                server: &server,
                upstreams: &upstreams,
            };
            let route = route_from_raw(spanned.into_inner(), &ctx, &mut warnings)?;
            if let Some(other) = routes.iter().find(|r| r.name == route.name) {
                let msg = format!("route name {:?} is used twice", other.name);
                return Err(locate.error(span, &format!("{key}.name"), msg));
            }
            if routes
                .iter()
                .any(|r| r.path == route.path && r.host == route.host)
            {
                let msg = format!("another route already serves {}", route.path);
                return Err(locate.error(span, &format!("{key}.path"), msg));
            }
            routes.push(Arc::new(route));
        }

        let retention = raw.store.retention.0;
        if let Some(route) = routes.iter().find(|r| r.window > retention) {
            warnings.push(format!(
                "route {}: dedup.window is longer than store.retention; a late duplicate may \
                 name an event that was already purged",
                route.name
            ));
        }
        if routes.is_empty() {
            warnings.push("no [[routes]]: every request would be answered 404".into());
        }
        Ok(Config {
            source: locate.file.to_owned(),
            log: raw.log.into(),
            server,
            admin,
            store_path: base.join(raw.store.path),
            retention,
            high_water: raw.store.high_water,
            upstreams,
            routes,
            warnings,
            unread: Vec::new(),
        })
    }
}

/// Where the configuration reaches outside its own text: the folder its relative paths
/// start from, and how its secrets are read.
#[derive(Clone, Copy)]
struct Files<'a> {
    base: &'a Path,
    reading: Reading,
    unread: &'a RefCell<Vec<Unread>>,
}

impl Files<'_> {
    /// The secret for the setting `key`; under [`Reading::Lenient`] one that cannot be read
    /// is stood in and noted.
    fn secret(&self, key: &str, source: &SecretSource) -> Result<Secret, SecretError> {
        match (source.read(self.base, self.reading), self.reading) {
            (Err(error), Reading::Lenient) => {
                self.unread.borrow_mut().push(Unread {
                    key: key.to_owned(),
                    reason: error.to_string(),
                });
                Ok(Secret::new(secret::STAND_IN.as_bytes()))
            }
            (read, _) => read,
        }
    }
}

/// A secret that [`Reading::Lenient`] could not read, and stood in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// The setting it belongs to, as errors name it: `admin.token`, `routes[2].verify`,
    /// `upstreams.alerts.sign`.
    pub key: String,
    /// Why it could not be read.
    pub reason: String,
}

/// A listen address; the error shows the expected form with `example`.
fn socket_addr(
    text: &toml::Spanned<String>,
    key: &str,
    example: &str,
    locate: &Locator,
) -> Result<SocketAddr, ConfigError> {
    text.get_ref().parse().map_err(|_| {
        let msg = format!("{:?} must be IP:port, such as {example:?}", text.get_ref());
        locate.error(text.span(), key, msg)
    })
}

fn server(
    raw: raw::RawServer,
    base: &Path,
    locate: &Locator,
    warnings: &mut Vec<String>,
) -> Result<Server, ConfigError> {
    let listen = socket_addr(&raw.listen, "server.listen", "0.0.0.0:8443", locate)?;
    let tls = raw.tls.map(|t| TlsFiles {
        cert: base.join(t.cert),
        key: base.join(t.key),
        client_ca: t.client_ca.map(|ca| base.join(ca)),
        create: t.create,
    });
    if tls.is_none() {
        warnings.push("server.tls is not set: the listener speaks plain HTTP".into());
    }
    Ok(Server {
        listen,
        tls,
        max_body: raw.max_body.0,
        trusted_proxies: raw.trusted_proxies,
        client_rate: raw.client_rate,
        global_rate: raw.global_rate,
        header_timeout: raw.header_timeout.0,
        body_timeout: raw.body_timeout.0,
        idle_timeout: raw.idle_timeout.0,
        max_connections: raw.max_connections,
        max_connections_per_client: raw.max_connections_per_client,
        max_inflight_body: raw.max_inflight_body.0,
        max_headers: within(raw.max_headers, 8, 1024, "server.max_headers", warnings),
        max_header_size: within(
            raw.max_header_size.0,
            4096,
            1 << 20,
            "server.max_header_size",
            warnings,
        ) as u32,
    })
}

/// `value` brought within `low..=high`, warning when it had to be moved.
fn within<T>(value: T, low: T, high: T, key: &str, warnings: &mut Vec<String>) -> T
where
    T: Ord + Copy + std::fmt::Display,
{
    let kept = value.clamp(low, high);
    if kept != value {
        warnings.push(format!(
            "{key} = {value} is outside {low}..={high}; using {kept}"
        ));
    }
    kept
}

fn admin(
    raw: raw::RawAdmin,
    files: Files,
    locate: &Locator,
    warnings: &mut Vec<String>,
) -> Result<AdminConfig, ConfigError> {
    let listen = socket_addr(&raw.listen, "admin.listen", "127.0.0.1:9090", locate)?;
    if raw.token.as_ref().is_some_and(SecretSource::is_inline) {
        warnings.push("admin.token: a secret is written inline; prefer env or file".into());
    }
    let token = match raw.token {
        Some(source) => Some(
            files
                .secret("admin.token", &source)
                .map_err(|e| locate.error(raw.listen.span(), "admin.token", e.to_string()))?,
        ),
        None => None,
    };
    Ok(AdminConfig { listen, token })
}

fn upstream_from_raw(
    name: toml::Spanned<String>,
    raw: RawUpstream,
    files: Files,
    locate: &Locator,
) -> Result<Upstream, ConfigError> {
    let key = format!("upstreams.{}", name.get_ref());
    let url: http::Uri = raw.url.get_ref().parse().map_err(|_| {
        let msg = format!(
            "{:?} is not a URL; write an absolute http:// or https:// URL",
            raw.url.get_ref()
        );
        locate.error(raw.url.span(), &format!("{key}.url"), msg)
    })?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
        let msg = "must be an absolute http:// or https:// URL".to_owned();
        return Err(locate.error(raw.url.span(), &format!("{key}.url"), msg));
    }
    let on: Vec<String> = raw.retry.on.iter().map(raw::StatusItem::text).collect();
    let statuses = RetryStatuses::parse(&on, &raw.retry.except)
        .map_err(|m| locate.error(name.span(), &format!("{key}.retry.on"), m))?;
    let retry = RetryPolicy {
        statuses,
        max_attempts: raw.retry.max_attempts,
        initial: raw.retry.initial.0,
        multiplier: raw.retry.multiplier,
        max_delay: raw.retry.max_delay.0,
        max_age: raw.retry.max_age.0,
    };
    if !(retry.multiplier >= 1.0 && retry.multiplier.is_finite()) {
        let msg = "must be a number of at least 1.0".to_owned();
        return Err(locate.error(name.span(), &format!("{key}.retry.multiplier"), msg));
    }
    let signer = match raw.sign {
        Some(sign) => {
            let field = format!("{key}.sign");
            let secrets = sign
                .secrets
                .iter()
                .map(|s| files.secret(&field, s).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|secrets| OutboundSigner::new(&secrets))
                .map_err(|m| locate.error(name.span(), &field, m))?;
            Some(secrets)
        }
        None => None,
    };
    let names: Vec<String> = raw
        .forward_headers
        .iter()
        .map(|n| n.get_ref().clone())
        .collect();
    let forward_headers = forward::parse(&names, signer.is_some()).map_err(|m| {
        let span = raw
            .forward_headers
            .first()
            .map_or(name.span(), |n| n.span());
        locate.error(span, &format!("{key}.forward_headers"), m)
    })?;
    Ok(Upstream {
        forward_headers,
        signer,
        name: name.into_inner().into(),
        url,
        timeout: raw.timeout.0,
        rate: raw.rate,
        concurrency: raw.concurrency as usize,
        retry,
        breaker: BreakerPolicy {
            failures: raw.breaker.failures,
            cooldown: raw.breaker.cooldown.0,
            max_cooldown: raw.breaker.max_cooldown.0.max(raw.breaker.cooldown.0),
        },
    })
}

/// A warning when the route is keyed on a header its signature does not cover: a captured
/// request sent again with a new value there is a new event, and verifies.
fn unsigned_dedup_header(
    key: &str,
    dedup: &DedupKey,
    verifier: &dyn crate::verify::Verifier,
) -> Option<String> {
    let DedupKey::Header(name) = dedup else {
        return None;
    };
    if verifier.signs_header(name.as_str()) {
        return None;
    }
    Some(format!(
        "{key}.dedup.key: the {} scheme does not sign the header {name}, so a replayed \
         request with a new {name} value is accepted and delivered again; key on a value of \
         the body (\"json:/...\") if the sender puts its event id there",
        verifier.scheme()
    ))
}

struct RouteCtx<'a, 'b> {
    key: &'a str,
    span: Range<usize>,
    files: Files<'a>,
    locate: &'a Locator<'b>,
    server: &'a Server,
    upstreams: &'a [Arc<Upstream>],
}

impl RouteCtx<'_, '_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let key = format!("{}.{field}", self.key);
        self.locate.error(self.span.clone(), &key, message.into())
    }
}

fn route_from_raw(
    raw: RawRoute,
    ctx: &RouteCtx,
    warnings: &mut Vec<String>,
) -> Result<Route, ConfigError> {
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#']) {
        return Err(ctx.error("path", "must start with / and hold no query"));
    }
    let limited_status = match raw.limited_status {
        429 => StatusCode::TOO_MANY_REQUESTS,
        503 => StatusCode::SERVICE_UNAVAILABLE,
        _ => return Err(ctx.error("limited_status", "must be 429 or 503")),
    };
    let dedup = DedupKey::parse(&raw.dedup.key).map_err(|m| ctx.error("dedup.key", m))?;

    let mut inline_secret = false;
    let build = BuildContext {
        route: raw.name.clone(),
        path: raw.path.clone(),
    };
    let verifier = raw
        .verify
        .build(&build, &mut |source| {
            inline_secret |= source.is_inline();
            ctx.files.secret(&format!("{}.verify", ctx.key), source)
        })
        .map_err(|m| ctx.error("verify", m))?;
    // The key is stored, listed by the admin API and shown by the command line.
    if let DedupKey::Header(name) = &dedup
        && crate::telemetry::is_credential(name.as_str(), verifier.credential_header())
    {
        let msg = format!("{name} carries a credential, which would be kept as the key");
        return Err(ctx.error("dedup.key", msg));
    }
    warnings.extend(unsigned_dedup_header(ctx.key, &dedup, verifier.as_ref()));
    if inline_secret {
        let msg = format!(
            "{}.verify: a secret is written inline; prefer env or file",
            ctx.key
        );
        warnings.push(msg);
    }

    let mut targets = Vec::new();
    for (i, target) in raw.upstreams.into_iter().enumerate() {
        let (name, when) = match target {
            RawTarget::Name(name) => (name, Default::default()),
            RawTarget::Filtered { name, when } => (name, when),
        };
        let field = format!("upstreams[{i}]");
        let upstream = ctx
            .upstreams
            .iter()
            .find(|u| *u.name == *name)
            .ok_or_else(|| {
                let known: Vec<String> = ctx
                    .upstreams
                    .iter()
                    .map(|u| format!("`{}`", u.name))
                    .collect();
                let message = format!(
                    "unknown upstream `{name}`: no [upstreams.{name}] is defined (defined: {})",
                    known.join(", ")
                );
                ctx.error(&field, locate::with_suggestion(&message))
            })?;
        let when = Filter::new(when).map_err(|m| ctx.error(&format!("{field}.when"), m))?;
        let credential = verifier.credential_header();
        if let Some(header) = credential.filter(|h| {
            upstream
                .forward_headers
                .iter()
                .any(|f| f.as_str().eq_ignore_ascii_case(h))
        }) {
            let msg =
                format!("upstream {name} forwards {header}, which carries this route's credential");
            return Err(ctx.error(&field, msg));
        }
        targets.push(Target {
            upstream: upstream.name.clone(),
            when,
        });
    }
    if targets.is_empty() {
        return Err(ctx.error("upstreams", "a route needs at least one upstream"));
    }

    let max_body = raw.max_body.map_or(ctx.server.max_body, |s| s.0);
    if max_body.min(ctx.server.max_body) > ctx.server.max_inflight_body {
        warnings.push(format!(
            "{}: a body of the route's full size is above server.max_inflight_body and would \
             always be refused",
            ctx.key
        ));
    }
    if max_body > ctx.server.max_body {
        warnings.push(format!(
            "{}.max_body is above server.max_body; the server's {} bytes apply",
            ctx.key, ctx.server.max_body
        ));
    }
    let json_reads = crate::route::json_reads(&dedup, &targets);
    Ok(Route {
        name: raw.name.into(),
        path: raw.path,
        host: raw.host.map(|h| h.to_ascii_lowercase()),
        verifier,
        signature_over: raw.signature_over,
        dedup,
        window: raw.dedup.window.0,
        rate: raw.rate,
        limited_status,
        max_body: max_body.min(ctx.server.max_body),
        allow: raw.allow,
        targets,
        json_reads,
    })
}

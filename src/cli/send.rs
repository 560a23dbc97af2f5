//! `hookgate sign` and `hookgate send`: credentials for a body, and a signed POST with them.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::CliResult;
use crate::config::Config;
use crate::route::{DedupKey, Route};
use crate::verify::Credentials;

/// Which route, which body, and where the gateway is.
#[derive(Debug, clap::Args)]
pub(super) struct Target {
    /// The route's name.
    #[arg(long)]
    route: String,
    /// A file holding the body to sign, sent byte for byte; `-` reads standard input.
    #[arg(value_name = "BODY_FILE")]
    body: PathBuf,
    /// The gateway's base URL; defaults to the configured listen address on 127.0.0.1.
    #[arg(long)]
    url: Option<String>,
}

/// `send`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct SendArgs {
    #[command(flatten)]
    target: Target,
    /// The body's content type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// A PEM certificate to trust besides the system roots (default: the configured one).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// A header to send as well, such as `X-GitHub-Event: push` or `Content-Encoding: gzip`
    /// (for a body file that is compressed); repeatable. It replaces a signed header of the
    /// same name.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = header)]
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// A `--header` value, `NAME: VALUE`.
fn header(text: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: write a header as NAME: VALUE"))?;
    let name = http::HeaderName::try_from(name.trim())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = http::HeaderValue::try_from(value.trim())
        .map_err(|_| format!("{:?} is not a header value", value.trim()))?;
    Ok((name, value))
}

/// A signed request, ready to print or send.
struct Signed {
    url: String,
    body: Vec<u8>,
    credentials: Credentials,
}

fn prepare(config: &Config, target: &Target) -> Result<Signed, String> {
    let route = find_route(config, &target.route)?;
    let body = if target.body.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).map_err(|e| e.to_string())?;
        body
    } else {
        std::fs::read(&target.body).map_err(|e| format!("{}: {e}", target.body.display()))?
    };
    let mut credentials = route
        .verifier
        .sign(&body, crate::store::now_ms() as u64 / 1_000);
    // A route keyed on a header (GitHub's delivery id) would otherwise key each send on
    // the body's hash, so that sending one file twice looks like a duplicate.
    if let DedupKey::Header(name) = &route.dedup
        && !credentials
            .headers
            .iter()
            .any(|(h, _)| name.as_str().eq_ignore_ascii_case(h))
    {
        let id = uuid::Uuid::now_v7().to_string();
        credentials.headers.push((name.to_string(), id));
    }
    let base = target.url.clone().unwrap_or_else(|| default_base(config));
    let url = signed_url(&base, route, &credentials);
    Ok(Signed {
        url,
        body,
        credentials,
    })
}

/// The route called `name`, whose secrets must have been read.
pub(super) fn find_route<'a>(config: &'a Config, name: &str) -> Result<&'a Arc<Route>, String> {
    let Some(index) = config.routes.iter().position(|r| *r.name == *name) else {
        let names: Vec<&str> = config.routes.iter().map(|r| &*r.name).collect();
        return Err(format!(
            "no route named {name:?} (routes: {})",
            names.join(", ")
        ));
    };
    config.require(&format!("routes[{index}].verify"))?;
    Ok(&config.routes[index])
}

/// `https://127.0.0.1:PORT` for the configured listener.
pub(super) fn default_base(config: &Config) -> String {
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("{scheme}://{addr}")
}

/// The route's URL on `base`, with the credentials' path segment and query parameters.
pub(crate) fn signed_url(base: &str, route: &Route, credentials: &Credentials) -> String {
    let mut url = format!("{}{}", base.trim_end_matches('/'), route.path);
    if let Some(tail) = &credentials.path_tail {
        url = format!("{}/{tail}", url.trim_end_matches('/'));
    }
    if !credentials.query.is_empty() {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&credentials.query)
            .finish();
        url = format!("{url}?{query}");
    }
    url
}

/// Prints a curl command line that posts the body with its credentials.
pub(super) fn sign(config: &Config, target: &Target) -> CliResult {
    let signed = prepare(config, target)?;
    for (name, value) in &signed.credentials.headers {
        say!("{name}: {value}");
    }
    say!("url: {}", signed.url);
    Ok(())
}

/// Signs the body and posts it; fails unless the gateway answers `2xx`.
pub(super) async fn send(config: &Config, args: &SendArgs) -> CliResult {
    let signed = prepare(config, &args.target)?;
    let cacert = args
        .cacert
        .clone()
        .or_else(|| config.server.tls.as_ref().map(|t| t.cert.clone()));
    let roots = match cacert {
        Some(path) if path.exists() => CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?,
        _ => Vec::new(),
    };
    let client = crate::deliver::build_client_with(roots);

    let given = |name: &str| {
        args.headers
            .iter()
            .any(|(h, _)| h.as_str().eq_ignore_ascii_case(name))
    };
    let mut request = http::Request::post(&signed.url);
    if !given("content-type") {
        request = request.header(http::header::CONTENT_TYPE, &args.content_type);
    }
    for (name, value) in &args.headers {
        request = request.header(name, value);
    }
    for (name, value) in signed.credentials.headers.iter().filter(|(n, _)| !given(n)) {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(signed.body)))
        .map_err(|e| format!("request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{}: {}", without_query(&signed.url), error_text(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    say!(
        "{} {}",
        status.as_u16(),
        String::from_utf8_lossy(&body.to_bytes())
    );
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the gateway answered {status}"))
    }
}

/// The URL without its query, which may carry a token.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// An error and its causes on one line, with what to do for the certificate problems a
/// first setup meets.
fn error_text(error: &dyn std::error::Error) -> String {
    let text = causes(error);
    let hint = if text.contains("CaUsedAsEndEntity") {
        " (the gateway's certificate is marked as a CA; make one with \
         `basicConstraints = CA:FALSE`, or let `create = true` make a development pair)"
    } else if text.contains("UnknownIssuer") {
        " (the gateway's certificate is not one this command trusts; pass --cacert with the \
         certificate or its CA)"
    } else {
        ""
    };
    text + hint
}

fn causes(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(cause) => format!("{error}: {}", causes(cause)),
        None => error.to_string(),
    }
}

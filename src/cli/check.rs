//! `hookgate check`: validate a configuration without starting anything.

use std::path::Path;

use super::CliResult;
use crate::config::Config;
use crate::config::secret::Reading;
use crate::ingress::tls::Tls;
use crate::route::DedupKey;

/// Prints the routes the configuration would serve, or the first error. Secret files
/// marked `create = true` are not created: a start does that.
pub(super) fn check(path: &Path) -> CliResult {
    let config = Config::load_with(path, Reading::Check).map_err(|e| e.to_string())?;
    let tls = match &config.server.tls {
        Some(files) => Some(Tls::check(files).map_err(|e| format!("tls: {e}"))?),
        None => None,
    };
    if tls == Some(false) {
        say!("note: no certificate or key yet: a start creates a self-signed development pair");
    }
    for warning in &config.warnings {
        say!("warning: {warning}");
    }
    say!(
        "{}: ok, listening on {}",
        path.display(),
        config.server.listen
    );
    for route in &config.routes {
        let dedup = match &route.dedup {
            DedupKey::Json(pointer) => format!("json:{pointer}"),
            DedupKey::Header(name) => format!("header:{name}"),
            DedupKey::Body => "body".to_owned(),
        };
        let targets: Vec<String> = route
            .targets
            .iter()
            .map(|t| match t.when.is_empty() {
                true => t.upstream.to_string(),
                false => format!("{} (filtered)", t.upstream),
            })
            .collect();
        say!(
            "  route {} POST {}{} verify={} dedup={} window={} -> {}",
            route.name,
            route.path,
            route
                .host
                .as_deref()
                .map(|h| format!(" host={h}"))
                .unwrap_or_default(),
            route.verifier.scheme(),
            dedup,
            human(route.window),
            targets.join(", ")
        );
    }
    for upstream in &config.upstreams {
        say!(
            "  upstream {} {} concurrency={} max_attempts={}",
            upstream.name,
            upstream.url,
            upstream.concurrency,
            upstream.retry.max_attempts
        );
    }
    Ok(())
}

/// `72h`, `90s`, `2d`: the largest unit that divides the duration.
fn human(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

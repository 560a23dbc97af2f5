//! `hookgate callback-url`: mints a signed per-job callback URL for a `signed-url` route.

use super::CliResult;
use super::send::{default_base, find_route};
use crate::config::Config;
use crate::config::units::parse_duration;

/// `callback-url`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct CallbackArgs {
    /// The route's name; its scheme must be `signed-url`.
    #[arg(long)]
    route: String,
    /// How long the URL stays valid, such as `24h`; defaults to the route's `ttl`.
    #[arg(long)]
    ttl: Option<String>,
    /// Correlation values to bind, `key:value`; repeat the flag or separate with commas.
    #[arg(long, value_delimiter = ',')]
    extra: Vec<String>,
    /// The public base URL senders reach the gateway at, such as `https://hooks.example.com`.
    #[arg(long)]
    url: Option<String>,
}

/// Prints the URL, and the same URL percent-encoded for use inside another URL's query.
pub(super) fn callback_url(config: &Config, args: &CallbackArgs) -> CliResult {
    let route = find_route(config, &args.route)?;
    let ttl = match &args.ttl {
        Some(text) => parse_duration(text).map_err(|e| format!("--ttl: {e}"))?,
        None => route.verifier.callback_ttl().unwrap_or_default(),
    };
    let mut extra = Vec::new();
    for pair in &args.extra {
        let (key, value) = pair
            .split_once(':')
            .ok_or_else(|| format!("--extra {pair:?}: write key:value"))?;
        extra.push((key.to_owned(), value.to_owned()));
    }
    let base = args.url.clone().unwrap_or_else(|| default_base(config));
    // Accept the route's full URL as well as the bare base.
    let base = base.trim_end_matches('/');
    let base = match base.ends_with(route.path.trim_end_matches('/')) {
        true => base.to_owned(),
        false => format!("{base}{}", route.path),
    };
    let expires = (crate::store::now_ms() / 1_000) as u64 + ttl.as_secs();

    let url = route
        .verifier
        .callback_url(&base, expires, &extra)
        .ok_or_else(|| {
            let scheme = route.verifier.scheme();
            format!(
                "route {:?} verifies with {scheme:?}; callback URLs need \"signed-url\"",
                args.route
            )
        })??;
    let encoded: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    say!("{url}");
    say!();
    say!("percent-encoded, to pass as a query parameter (webhook_url=...):");
    say!("{encoded}");
    Ok(())
}

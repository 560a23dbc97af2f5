//! Logging set-up and the one helper that keeps credentials out of logs and stored copies.

pub mod metrics;

use http::HeaderMap;
use tracing_subscriber::EnvFilter;

/// Starts the global subscriber: `RUST_LOG`, else `default_level`; human lines or JSON.
///
/// Without `RUST_LOG`, the TLS library logs errors only: its warnings are about what peers
/// send (an IP address as server name, as some clients do, on every connection), and the
/// gateway logs failed handshakes itself at `debug`.
pub fn init(json: bool, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},rustls=error")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    // A second initialisation (tests, the demo) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Whether a header carries a credential and must never be shown.
pub fn is_sensitive(name: &str) -> bool {
    const WORDS: [&str; 6] = [
        "authorization",
        "cookie",
        "signature",
        "token",
        "secret",
        "hmac",
    ];
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|w| name.contains(w)) || name == "x-hub-signature"
}

/// What a redacted header's value reads in stored copies.
pub const REDACTED: &str = "<redacted>";

/// Headers as a JSON object of name → value, credentials replaced by [`REDACTED`]:
/// those [`is_sensitive`] recognises, and `also`, a route's own credential header.
pub fn redacted_headers(headers: &HeaderMap, also: Option<&str>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for name in headers.keys() {
        let named = also.is_some_and(|a| a.eq_ignore_ascii_case(name.as_str()));
        let value = if named || is_sensitive(name.as_str()) {
            REDACTED.to_owned()
        } else {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            values.join(", ")
        };
        object.insert(name.as_str().to_owned(), serde_json::Value::String(value));
    }
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        headers.insert("x-hub-signature-256", "sha256=00".parse().unwrap());
        headers.insert("x-pulse-token", "tok".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("x-api-key", "key-value".parse().unwrap());
        let shown = redacted_headers(&headers, Some("X-Api-Key")).to_string();
        assert!(!shown.contains("key-value"));
        assert!(!shown.contains("abc") && !shown.contains("sha256=00") && !shown.contains("tok\""));
        assert!(shown.contains("application/json"));
    }
}

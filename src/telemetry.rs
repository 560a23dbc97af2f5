//! Logging set-up and the one helper that keeps credentials out of logs and stored copies.

pub mod metrics;
pub mod throttle;

use http::HeaderMap;
use serde::ser::{Serialize, SerializeMap, Serializer};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// Standard output: the gateway's own stream, which a service manager collects.
    Stdout,
    /// Standard error: for commands whose standard output is their result, such as `sign`.
    Stderr,
}

/// Starts the global subscriber: `RUST_LOG`, else `default_level`; human lines or JSON.
///
/// Without `RUST_LOG`, the TLS library logs errors only: its warnings are about what peers
/// send (an IP address as server name, as some clients do, on every connection), and the
/// gateway logs failed handshakes itself at `debug`.
pub fn init(json: bool, default_level: &str, to: LogTo) {
    match to {
        LogTo::Stdout => install(json, default_level, std::io::stdout),
        LogTo::Stderr => install(json, default_level, std::io::stderr),
    }
}

fn install<S>(json: bool, default_level: &str, stream: fn() -> S)
where
    S: std::io::Write + std::io::IsTerminal + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},rustls=error")));
    let ansi = stream().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(stream);
    // A second initialisation (tests, the demo) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else if ansi {
        builder.try_init()
    } else {
        builder.fmt_fields(plain_fields()).try_init()
    };
}

/// Fields as `name=value`, the message bare, separated by spaces: what the library's own
/// field format writes without colours, at about half its cost, which counts at two lines
/// for every webhook.
fn plain_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            write!(writer, "{field}={value:?}")
        }
    })
    .delimited(" ")
}

/// Whether a header carries a credential and must never be shown: its name holds, in any
/// case, `auth` (`authorization` too), `api-key`, `api_key`, `apikey`, `access-key`,
/// `access_key`, `cookie`, `credential`, `signature`, `secret`, `session`, `token`, `hmac`,
/// `password`, `passwd`, `private-key` or `private_key`.
pub fn is_sensitive(name: &str) -> bool {
    // One pass over the name, trying only the words that start with the byte at hand: this
    // runs for every header of every request.
    let name = name.as_bytes();
    (0..name.len()).any(|at| {
        let rest = &name[at..];
        let starts = |word: &str| {
            rest.get(..word.len())
                .is_some_and(|part| part.eq_ignore_ascii_case(word.as_bytes()))
        };
        match rest[0].to_ascii_lowercase() {
            b'a' => {
                starts("auth")
                    || starts("api-key")
                    || starts("api_key")
                    || starts("apikey")
                    || starts("access-key")
                    || starts("access_key")
            }
            b'c' => starts("cookie") || starts("credential"),
            b's' => starts("signature") || starts("secret") || starts("session"),
            b't' => starts("token"),
            b'h' => starts("hmac"),
            b'p' => {
                starts("password")
                    || starts("passwd")
                    || starts("private-key")
                    || starts("private_key")
            }
            _ => false,
        }
    })
}

/// Whether header `name` carries a credential on a route whose own credential header is
/// `own`: that header, or any name [`is_sensitive`] recognises.
pub fn is_credential(name: &str, own: Option<&str>) -> bool {
    own.is_some_and(|own| own.eq_ignore_ascii_case(name)) || is_sensitive(name)
}

/// What a redacted header's value reads in stored copies.
pub const REDACTED: &str = "<redacted>";

/// Headers as the text of a JSON object of name → value, credentials replaced by
/// [`REDACTED`]: those [`is_sensitive`] recognises, and `also`, a route's own credential
/// header. A header sent several times has its values joined by `, `.
pub fn redacted_headers(headers: &HeaderMap, also: Option<&str>) -> String {
    // Writing string keys and values into a String cannot fail.
    serde_json::to_string(&Redacted { headers, also }).unwrap_or_default()
}

/// The headers of [`redacted_headers`], written out as they are read, with no tree between.
struct Redacted<'a> {
    headers: &'a HeaderMap,
    also: Option<&'a str>,
}

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.headers.keys_len()))?;
        for name in self.headers.keys() {
            if is_credential(name.as_str(), self.also) {
                map.serialize_entry(name.as_str(), REDACTED)?;
                continue;
            }
            let mut values = self.headers.get_all(name).iter();
            let first = values.next().map(|v| String::from_utf8_lossy(v.as_bytes()));
            let mut value = first.unwrap_or_default();
            for more in values {
                let value = value.to_mut();
                value.push_str(", ");
                value.push_str(&String::from_utf8_lossy(more.as_bytes()));
            }
            map.serialize_entry(name.as_str(), &value)?;
        }
        map.end()
    }
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
        let shown = redacted_headers(&headers, Some("X-Api-Key"));
        assert!(!shown.contains("key-value"));
        assert!(!shown.contains("abc") && !shown.contains("sha256=00") && !shown.contains("tok\""));
        assert!(shown.contains("application/json"));
    }

    #[test]
    fn credential_names_are_recognised_in_any_case() {
        for name in [
            "Authorization",
            "X-Pulse-TOKEN",
            "set-cookie",
            "X-Hub-Signature",
            "x-hmac",
            "X-Api-Key",
            "x-apikey",
            "X-Password",
            "x-client-credentials",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["content-type", "x-request-id", "tok", "x-sig"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_check_finds_each_word_anywhere_in_any_case(
            name in "[a-zA-Z0-9_-]{0,12}(Auth|API-key|api_KEY|apikey|access-key|Access_Key|cookie|credential|signature|secret|Session|token|hmac|password|passwd|private-key|PRIVATE_key|tok|api|pass|sig|ses)?[a-zA-Z0-9_-]{0,12}"
        ) {
            const WORDS: [&str; 17] = [
                "auth", "api-key", "api_key", "apikey", "access-key", "access_key", "cookie",
                "credential", "signature", "secret", "session", "token", "hmac", "password",
                "passwd", "private-key", "private_key",
            ];
            let lower = name.to_ascii_lowercase();
            let expected = WORDS.iter().any(|w| lower.contains(w));
            proptest::prop_assert_eq!(is_sensitive(&name), expected);
        }
    }

    #[test]
    fn stored_headers_are_one_json_object_with_repeated_values_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-tag", "a".parse().unwrap());
        headers.append("x-tag", "b \"quoted\"".parse().unwrap());
        headers.insert("stripe-signature", "t=1,v1=00".parse().unwrap());
        let stored: serde_json::Value =
            serde_json::from_str(&redacted_headers(&headers, None)).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"x-tag": "a, b \"quoted\"", "stripe-signature": REDACTED})
        );
    }
}

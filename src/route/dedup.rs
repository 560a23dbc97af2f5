//! The dedup key of an event: a header, a value inside the JSON body, or the body's hash.

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

/// Where a route takes its dedup key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupKey {
    /// The value at a JSON pointer in the body (`"json:/request_id"`).
    Json(String),
    /// The value of a request header (`"header:webhook-id"`).
    Header(HeaderName),
    /// The SHA-256 of the body (`"body"`).
    Body,
}

/// Why a key could not be taken from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The route keys on JSON but the body is not JSON.
    #[error("body is not JSON")]
    NotJson,
    /// The route keys on a header the request sends more than once: which copy names the
    /// event is not for the gateway to guess.
    #[error("dedup header: sent more than once")]
    RepeatedHeader,
    /// The route keys on a header whose value is not UTF-8 text.
    #[error("dedup header: not text")]
    HeaderNotText,
}

/// A key taken from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key's text.
    pub value: String,
    /// True when the configured source was absent and the body hash was used instead.
    pub fell_back: bool,
}

impl DedupKey {
    /// Parses the `dedup.key` setting.
    pub fn parse(text: &str) -> Result<DedupKey, String> {
        if text == "body" {
            return Ok(DedupKey::Body);
        }
        if let Some(pointer) = text.strip_prefix("json:") {
            if !pointer.starts_with('/') {
                return Err(format!("{text:?}: a JSON pointer starts with /"));
            }
            return Ok(DedupKey::Json(pointer.to_owned()));
        }
        if let Some(name) = text.strip_prefix("header:") {
            let name = HeaderName::try_from(name.trim())
                .map_err(|_| format!("{text:?}: not a valid header name"))?;
            return Ok(DedupKey::Header(name));
        }
        Err(format!(
            "{text:?}: use \"json:/pointer\", \"header:name\" or \"body\""
        ))
    }

    /// The key of a request. `json` is the parsed body, present when the route needs JSON.
    pub fn extract(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        json: Option<&serde_json::Value>,
    ) -> Result<Key, KeyError> {
        let found = match self {
            DedupKey::Body => None,
            DedupKey::Header(name) => match (header_text(headers, name)?, other_name(name)) {
                (None, Some(other)) => header_text(headers, &other)?,
                (found, _) => found,
            },
            DedupKey::Json(pointer) => {
                let json = json.ok_or(KeyError::NotJson)?;
                json.pointer(pointer).and_then(scalar_text)
            }
        };
        Ok(match found {
            Some(value) => Key {
                value: bounded(value),
                fell_back: false,
            },
            None => Key {
                value: body_hash(body),
                fell_back: !matches!(self, DedupKey::Body),
            },
        })
    }
}

/// Longest key kept as it was sent; a longer one is kept as its hash. A key is stored twice
/// (with its event and in the dedup table) and listed by the admin API, so its size is the
/// gateway's to bound, not the sender's.
const MAX_KEY: usize = 256;

impl Key {
    /// The key as stored: after `scope` (the values a signed URL binds) when there is one,
    /// and bounded like every key.
    pub fn stored(self, scope: Option<&str>) -> String {
        match scope {
            Some(scope) => bounded(format!("{scope}|{}", self.value)),
            None => self.value,
        }
    }
}

/// `key`, or `long:` and its hex SHA-256 when it is longer than [`MAX_KEY`] bytes.
fn bounded(key: String) -> String {
    if key.len() <= MAX_KEY {
        return key;
    }
    format!("long:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// The Standard Webhooks message id goes by two names, `webhook-id` and Svix's `svix-id`.
/// A key on one reads the other when the first is absent, so that an event keeps its key
/// whichever names its sender uses (the verifier refuses a request whose two differ).
fn other_name(name: &HeaderName) -> Option<HeaderName> {
    match name.as_str() {
        "webhook-id" => Some(HeaderName::from_static("svix-id")),
        "svix-id" => Some(HeaderName::from_static("webhook-id")),
        _ => None,
    }
}

/// The one value of header `name` as text; none when it is absent or empty.
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::RepeatedHeader);
    }
    // Text beyond ASCII (an id with an accent) is kept as it is, not dropped for the hash.
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| KeyError::HeaderNotText)?;
    if text.is_empty() {
        return Ok(None);
    }
    // The gateway's own keys start `sha256:` (a body's hash) and `long:` (a long key's
    // hash). A value that starts so, or with the `h:` this puts before it, is marked, so
    // that no value a sender chooses can stand for one of the gateway's keys.
    if ["sha256:", "long:", "h:"]
        .iter()
        .any(|p| text.starts_with(p))
    {
        return Ok(Some(format!("h:{text}")));
    }
    Ok(Some(text.to_owned()))
}

/// A JSON scalar as key text, typed so that `1`, `"1"` and `true` differ; numbers keep the
/// digits they were sent with. Objects, arrays, null and empty strings are no key.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(format!("s:{s}")),
        serde_json::Value::Number(n) => Some(format!("n:{n}")),
        serde_json::Value::Bool(b) => Some(format!("b:{b}")),
        _ => None,
    }
}

/// `sha256:` and the hex SHA-256 of `body`.
pub(super) fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    #[test]
    fn json_pointer_key_reads_the_value() {
        let key = DedupKey::parse("json:/request_id").unwrap();
        let body = br#"{"request_id":"abc"}"#;
        let json = json!({"request_id": "abc"});
        let got = key.extract(&HeaderMap::new(), body, Some(&json)).unwrap();
        assert_eq!(got.value, "s:abc");
        assert!(!got.fell_back);
    }

    #[test]
    fn missing_json_value_falls_back_to_body_hash() {
        let key = DedupKey::parse("json:/request_id").unwrap();
        let json = json!({"other": 1});
        let got = key
            .extract(&HeaderMap::new(), b"{\"other\":1}", Some(&json))
            .unwrap();
        assert_eq!(got.value, body_hash(b"{\"other\":1}"));
        assert!(got.fell_back);
    }

    #[test]
    fn keys_of_different_types_or_beyond_float_precision_differ() {
        let key = DedupKey::parse("json:/id").unwrap();
        let of = |text: &str| {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            key.extract(&HeaderMap::new(), text.as_bytes(), Some(&json))
                .unwrap()
                .value
        };
        assert_ne!(of(r#"{"id":1}"#), of(r#"{"id":"1"}"#));
        assert_ne!(of(r#"{"id":true}"#), of(r#"{"id":"true"}"#));
        assert_ne!(
            of(r#"{"id":18446744073709551616}"#),
            of(r#"{"id":18446744073709551617}"#)
        );
        assert_ne!(
            of(r#"{"id":0.30000000000000004}"#),
            of(r#"{"id":0.30000000000000005}"#)
        );
    }

    #[test]
    fn json_key_without_json_body_is_an_error() {
        let key = DedupKey::parse("json:/id").unwrap();
        assert_eq!(
            key.extract(&HeaderMap::new(), b"x", None),
            Err(KeyError::NotJson)
        );
    }

    #[test]
    fn header_key_reads_any_case() {
        let key = DedupKey::parse("header:X-GitHub-Delivery").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-github-delivery", "d-1".parse().unwrap());
        assert_eq!(key.extract(&headers, b"", None).unwrap().value, "d-1");
    }

    #[test]
    fn the_standard_webhooks_id_is_one_key_under_either_name() {
        let key = DedupKey::parse("header:webhook-id").unwrap();
        let mut svix = HeaderMap::new();
        svix.insert("svix-id", "msg_1".parse().unwrap());
        let read = key.extract(&svix, b"{}", None).unwrap();
        assert_eq!((read.value.as_str(), read.fell_back), ("msg_1", false));

        let mut both = svix.clone();
        both.insert("webhook-id", "msg_2".parse().unwrap());
        assert_eq!(key.extract(&both, b"{}", None).unwrap().value, "msg_2");

        let other = DedupKey::parse("header:x-request-id").unwrap();
        let read = other.extract(&svix, b"{}", None).unwrap();
        assert!(read.fell_back);
    }

    #[test]
    fn a_header_key_is_one_value_of_text() {
        let key = DedupKey::parse("header:x-request-id").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-request-id",
            HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        );
        assert_eq!(key.extract(&headers, b"", None).unwrap().value, "café");

        headers.append("x-request-id", "other".parse().unwrap());
        assert_eq!(
            key.extract(&headers, b"", None),
            Err(KeyError::RepeatedHeader)
        );

        headers.insert("x-request-id", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert_eq!(
            key.extract(&headers, b"", None),
            Err(KeyError::HeaderNotText)
        );

        for (sent, key_text) in [
            ("sha256:00ff", "h:sha256:00ff"),
            ("long:00ff", "h:long:00ff"),
            ("h:x", "h:h:x"),
            ("sha256", "sha256"),
        ] {
            headers.insert("x-request-id", HeaderValue::from_static(sent));
            assert_eq!(key.extract(&headers, b"", None).unwrap().value, key_text);
        }

        headers.insert("x-request-id", HeaderValue::from_static(""));
        let key = key.extract(&headers, b"{}", None).unwrap();
        assert!(key.fell_back && key.value.starts_with("sha256:"));
    }

    #[test]
    fn a_long_key_is_kept_as_its_hash_and_still_tells_events_apart() {
        let key = DedupKey::parse("json:/request_id").unwrap();
        let of = |id: &str| {
            let body = json!({ "request_id": id });
            key.extract(&HeaderMap::new(), b"", Some(&body))
                .unwrap()
                .value
        };
        let long = "r".repeat(MAX_KEY * 100);
        assert_eq!(of(&long), of(&long));
        assert!(of(&long).starts_with("long:") && of(&long).len() < 80);
        assert_ne!(of(&long), of(&(long.clone() + "x")));
        let short = "r".repeat(MAX_KEY - 2);
        assert_eq!(of(&short), format!("s:{short}"));
    }

    #[test]
    fn bad_key_settings_are_refused() {
        assert!(DedupKey::parse("json:request_id").is_err());
        assert!(DedupKey::parse("header:bad header").is_err());
        assert!(DedupKey::parse("cookie:x").is_err());
    }
}

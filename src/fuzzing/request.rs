//! A request for [`super::verify_request`], packed into bytes a fuzzer can mutate, and the
//! genuine requests its corpus starts from.

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::route::Route;
use crate::verify::Incoming;

/// One `verify` table per scheme, each with a single inline secret; the request's first
/// byte picks one.
pub const SCHEMES: &[&str] = &[
    r#"{ scheme = "hmac", header = "x-sig", prefix = "sha256=", signed = "{id}.{timestamp}.{body}", timestamp_header = "x-ts", id_header = "x-id", secrets = ["k"] }"#,
    r#"{ scheme = "hmac", header = "x-sig", algorithm = "sha512", encoding = "base64", secrets = ["k"] }"#,
    r#"{ scheme = "standard-webhooks", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }"#,
    r#"{ scheme = "github", secrets = ["k"] }"#,
    r#"{ scheme = "stripe", secrets = ["k"] }"#,
    r#"{ scheme = "token", header = "authorization", prefix = "Bearer ", secrets = ["k"] }"#,
    r#"{ scheme = "token", query = "token", secrets = ["k"] }"#,
    r#"{ scheme = "token", path = true, secrets = ["k"] }"#,
    r#"{ scheme = "basic", users = [{ user = "u", password = "p" }] }"#,
    r#"{ scheme = "signed-url", secrets = ["k"], match_extra = true }"#,
    r#"{ scheme = "shopify", secrets = ["k"] }"#,
    r#"{ scheme = "slack", secrets = ["k"] }"#,
    r#"{ scheme = "smallest", secrets = ["k"] }"#,
];

/// The clock of the seed requests: 2023-11-14, in Unix seconds.
const SEED_NOW: u64 = 1_700_000_000;

/// What a request record holds.
const HEADER: u8 = 0;
const QUERY: u8 = 1;
const PATH_TAIL: u8 = 2;
const BODY: u8 = 3;

/// A request as a verifier sees it, decoded from fuzzer bytes.
///
/// The bytes are: one byte choosing the scheme, eight bytes of clock (little-endian Unix
/// seconds), then records of one kind byte, a two-byte little-endian length and that many
/// bytes (fewer when the input ends first). A header record is `name:value`; a record of
/// another kind replaces the query, the path tail or the body. Whatever does not decode
/// (a bad header name, a query that is not UTF-8) is left out, as the HTTP layer would.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Index into [`SCHEMES`], modulo its length.
    pub scheme: u8,
    /// The gateway's clock.
    pub now: u64,
    /// Headers, in order.
    pub headers: HeaderMap,
    /// The query string.
    pub query: Option<String>,
    /// The path segment after the route's path.
    pub path_tail: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// Decodes fuzzer bytes; every input decodes to some request.
    pub fn decode(data: &[u8]) -> Request {
        let mut request = Request {
            scheme: data.first().copied().unwrap_or(0),
            ..Request::default()
        };
        let after = data.get(1..).unwrap_or_default();
        let mut clock = [0u8; 8];
        let taken = after.len().min(8);
        clock[..taken].copy_from_slice(&after[..taken]);
        request.now = u64::from_le_bytes(clock);

        let mut rest = data.get(9..).unwrap_or_default();
        while rest.len() >= 3 {
            let kind = rest[0] % 4;
            let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
            let end = (3 + len).min(rest.len());
            request.take(kind, &rest[3..end]);
            rest = &rest[end..];
        }
        request
    }

    fn take(&mut self, kind: u8, payload: &[u8]) {
        let text = || std::str::from_utf8(payload).ok().map(str::to_owned);
        match kind {
            HEADER => {
                let Some(colon) = payload.iter().position(|b| *b == b':') else {
                    return;
                };
                let name = HeaderName::from_bytes(&payload[..colon]);
                let value = HeaderValue::from_bytes(&payload[colon + 1..]);
                if let (Ok(name), Ok(value)) = (name, value) {
                    self.headers.append(name, value);
                }
            }
            QUERY => self.query = text(),
            PATH_TAIL => self.path_tail = text(),
            _ => self.body = payload.to_vec(),
        }
    }

    /// Packs the request into the bytes [`Request::decode`] reads back.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.scheme];
        out.extend_from_slice(&self.now.to_le_bytes());
        let mut record = |kind: u8, payload: &[u8]| {
            let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
            out.push(kind);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&payload[..usize::from(len)]);
        };
        for (name, value) in &self.headers {
            record(
                HEADER,
                &[name.as_str().as_bytes(), b":", value.as_bytes()].concat(),
            );
        }
        if let Some(query) = &self.query {
            record(QUERY, query.as_bytes());
        }
        if let Some(tail) = &self.path_tail {
            record(PATH_TAIL, tail.as_bytes());
        }
        record(BODY, &self.body);
        out
    }

    /// The request as ingress hands it to a verifier.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            headers: &self.headers,
            query: self.query.as_deref(),
            path_tail: self.path_tail.as_deref(),
            body: &self.body,
            now: self.now,
        }
    }
}

/// One route per entry of [`SCHEMES`], in that order.
pub(super) fn routes() -> &'static [Arc<Route>] {
    static ROUTES: OnceLock<Vec<Arc<Route>>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut toml = String::from("[upstreams.u]\nurl = \"http://127.0.0.1:9/\"\n");
        for (i, verify) in SCHEMES.iter().enumerate() {
            toml += &format!(
                "[[routes]]\nname = \"s{i}\"\npath = \"/s{i}\"\nverify = {verify}\nupstreams = [\"u\"]\n"
            );
        }
        super::offline_routes(&toml)
    })
}

/// A genuine request for each scheme, signed at a fixed time over a Pulse result: the
/// starting corpus of `verify_request`, named by scheme.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let body = include_bytes!("../../fixtures/pulse/success.json");
    routes()
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let credentials = route.verifier.sign(body, SEED_NOW);
            let mut request = Request {
                scheme: i as u8,
                now: SEED_NOW,
                body: body.to_vec(),
                path_tail: credentials.path_tail,
                ..Request::default()
            };
            for (name, value) in &credentials.headers {
                let name = HeaderName::try_from(name.as_str());
                let value = HeaderValue::try_from(value.as_str());
                if let (Ok(name), Ok(value)) = (name, value) {
                    request.headers.append(name, value);
                }
            }
            if !credentials.query.is_empty() {
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&credentials.query)
                    .finish();
                request.query = Some(query);
            }
            let name = format!("seed-{i:02}-{}", route.verifier.scheme());
            (name, request.encode())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_encoding() {
        let (_, data) = &seeds()[0];
        let decoded = Request::decode(data);
        assert_eq!(decoded.encode(), *data);
        assert_eq!(decoded.now, SEED_NOW);
        assert!(decoded.headers.contains_key("x-sig"));
    }

    #[test]
    fn short_and_empty_inputs_decode() {
        for data in [
            &b""[..],
            b"\x01",
            b"\x01\x02\x03",
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ] {
            let _ = Request::decode(data);
        }
    }
}

//! Property tests: no parser of network input panics, whatever the sender writes.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::encoding::Encoding;
use super::testing::build;
use super::{Incoming, Verifier};

/// Every scheme, and the header names each reads.
const SCHEMES: &[&str] = &[
    "scheme = \"hmac\"\nheader = \"x-sig\"\nprefix = \"sha256=\"\nsigned = \"{id}.{timestamp}.{body}\"\n\
     timestamp_header = \"x-ts\"\nid_header = \"x-id\"\nsecrets = [\"k\"]",
    "scheme = \"standard-webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
    "scheme = \"github\"\nsecrets = [\"k\"]",
    "scheme = \"stripe\"\nsecrets = [\"k\"]",
    "scheme = \"token\"\nheader = \"authorization\"\nprefix = \"Bearer \"\nsecrets = [\"k\"]",
    "scheme = \"token\"\nquery = \"token\"\nsecrets = [\"k\"]",
    "scheme = \"token\"\npath = true\nsecrets = [\"k\"]",
    "scheme = \"basic\"\nusers = [{ user = \"u\", password = \"p\" }]",
    "scheme = \"signed-url\"\nsecrets = [\"k\"]\nmatch_extra = true",
    "scheme = \"shopify\"\nsecrets = [\"k\"]",
    "scheme = \"slack\"\nsecrets = [\"k\"]",
    "scheme = \"smallest\"\nsecrets = [\"k\"]",
];

const HEADERS: &[&str] = &[
    "x-sig",
    "x-ts",
    "x-id",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "authorization",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-signature",
];

fn verifiers() -> Vec<Arc<dyn Verifier>> {
    SCHEMES.iter().map(|table| build(table)).collect()
}

/// Header values shaped like real credentials, mangled, plus arbitrary bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "(t=[0-9]{0,14},?)?(v[01a]?[=,][0-9a-fA-F+/=]{0,90}[ ,]?){0,4}"
            .prop_map(String::into_bytes),
        "(sha256=|v0=|Basic |Bearer )?[ -~]{0,100}".prop_map(String::into_bytes),
        "[0-9]{0,25}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..120),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((0..HEADERS.len(), value()), 0..12).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, bytes) in pairs {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                map.append(HeaderName::from_static(HEADERS[name]), value);
            }
        }
        map
    })
}

fn query() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "((hg_exp|hg_sig|hg_x\\.[a-z%]{0,4}|token|x)=[ -~]{0,30}&?){0,6}",
        any::<String>(),
    ])
}

proptest! {
    #[test]
    fn no_scheme_panics_on_arbitrary_requests(
        headers in headers(),
        query in query(),
        path_tail in proptest::option::of(any::<String>()),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in any::<u64>(),
    ) {
        for verifier in verifiers() {
            let request = Incoming {
                headers: &headers,
                query: query.as_deref(),
                path_tail: path_tail.as_deref(),
                body: &body,
                now,
            };
            let _ = verifier.verify(&request);
        }
    }

    #[test]
    fn signature_decoding_never_panics(text in any::<String>(), len in 0usize..80) {
        let _ = Encoding::Hex.decode(&text, len, "signature");
        let _ = Encoding::Base64.decode(&text, len, "signature");
    }

    #[test]
    fn timestamp_parsing_never_panics(text in any::<String>()) {
        let _ = super::timestamp::parse(&text, "timestamp");
    }

    #[test]
    fn duration_parsing_never_panics(text in "[0-9a-z .+-]{0,30}|\\PC{0,20}") {
        let _ = crate::config::units::parse_duration(&text);
    }

    #[test]
    fn template_parsing_never_panics(text in "[{}a-z.:|]{0,30}|\\PC{0,20}") {
        let _ = super::template::Template::parse(&text);
    }
}

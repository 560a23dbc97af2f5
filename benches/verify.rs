//! What verifying one request costs, for every scheme, on the short Pulse sample and on a
//! body the size of a two-hour transcript.
#![allow(
    missing_docs,
    reason = "criterion's macros define undocumented public functions"
)]
#![allow(
    clippy::expect_used,
    reason = "a benchmark with a broken setup should stop at once"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookgate::verify::{BuildContext, Credentials, Incoming, Verifier, VerifyConfig};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Each scheme as a route would configure it.
const SCHEMES: &[(&str, &str)] = &[
    (
        "hmac-sha256",
        r#"scheme = "hmac"
header = "x-signature"
secrets = ["bench-secret"]"#,
    ),
    (
        "hmac-sha512-template",
        r#"scheme = "hmac"
header = "x-signature"
algorithm = "sha512"
encoding = "base64"
signed = "{timestamp}.{body}"
timestamp_header = "x-timestamp"
secrets = ["bench-secret"]"#,
    ),
    (
        "standard-webhooks",
        r#"scheme = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
    ),
    (
        "github",
        r#"scheme = "github"
secrets = ["bench-secret"]"#,
    ),
    (
        "stripe",
        r#"scheme = "stripe"
secrets = ["whsec_bench"]"#,
    ),
    (
        "shopify",
        r#"scheme = "shopify"
secrets = ["bench-secret"]"#,
    ),
    (
        "slack",
        r#"scheme = "slack"
secrets = ["bench-secret"]"#,
    ),
    (
        "smallest",
        r#"scheme = "smallest"
secrets = ["bench-secret"]"#,
    ),
    (
        "token-query",
        r#"scheme = "token"
query = "token"
secrets = ["a-token-of-thirty-two-characters"]"#,
    ),
    (
        "basic",
        r#"scheme = "basic"
users = [{ user = "pulse", password = "a-password-of-some-length" }]"#,
    ),
    (
        "signed-url",
        r#"scheme = "signed-url"
secrets = ["bench-url-key"]"#,
    ),
];

const NOW: u64 = 1_700_000_000;

fn verifier(table: &str) -> Arc<dyn Verifier> {
    let config: VerifyConfig = toml::from_str(table).expect("a valid verify table");
    let context = BuildContext {
        route: "pulse".into(),
        path: "/hooks/pulse".into(),
    };
    config
        .build(&context, &mut |source| source.resolve(Path::new(".")))
        .expect("the verifier builds")
}

/// The headers and query string that `credentials` add to a request.
fn request_parts(credentials: &Credentials) -> (HeaderMap, String) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in &credentials.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        headers.append(name, HeaderValue::from_str(value).expect("a header value"));
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&credentials.query)
        .finish();
    (headers, query)
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let short = include_bytes!("../fixtures/pulse/success.json").to_vec();
    // About the size of a two-hour transcript (1.4 MB); the bytes themselves do not matter.
    let long = short.iter().copied().cycle().take(1_400_000).collect();
    vec![("short", short), ("1.4MB", long)]
}

fn verify(c: &mut Criterion) {
    for (size, body) in bodies() {
        let mut group = c.benchmark_group(format!("verify/{size}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (name, table) in SCHEMES {
            let verifier = verifier(table);
            let credentials = verifier.sign(&body, NOW);
            let (headers, query) = request_parts(&credentials);
            let incoming = Incoming {
                headers: &headers,
                query: Some(&query),
                path_tail: credentials.path_tail.as_deref(),
                body: &body,
                now: NOW,
            };
            verifier
                .verify(&incoming)
                .expect("the signed request passes");
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| verifier.verify(black_box(&incoming)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);

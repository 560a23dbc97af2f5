//! Entry points that take arbitrary bytes and drive one parser of outside input the way the
//! gateway does: request verification (every signature header parser), the configuration
//! loader, and what is read from a body (the strict JSON view, dedup keys, filters and
//! bound callback values). None may panic or hang, whatever the bytes.
//!
//! `fuzz/` runs each under libFuzzer; `tests/fuzz_corpus.rs` replays the saved corpus
//! through the same functions, and the property tests below drive them with generated input.

mod request;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::HeaderMap;

use crate::config::Config;
use crate::config::secret::Reading;
use crate::json::Read;
use crate::route::Route;

pub use request::{Request, SCHEMES, seeds as request_seeds};

/// The names of the fuzz targets, as `fuzz/fuzz_targets/` and `fuzz/corpus/` spell them.
pub const TARGETS: &[&str] = &["verify_request", "load_config", "examine_body"];

/// Runs the target called `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "verify_request" => verify_request(data),
        "load_config" => load_config(data),
        "examine_body" => examine_body(data),
        _ => return false,
    }
    true
}

/// Decodes `data` as a [`Request`] and puts it through one scheme's checks, as ingress
/// does: the check before the body, the full verification, and the dedup scope.
pub fn verify_request(data: &[u8]) {
    let (request, route) = decoded(data);
    let incoming = request.incoming();
    let before_body = crate::verify::Incoming {
        body: &[],
        ..incoming
    };
    let _ = route.verifier.precheck(&before_body);
    if route.verifier.verify(&incoming).is_ok() {
        let _ = route.verifier.dedup_scope(&incoming);
    }
}

/// Whether `data`, decoded as for [`verify_request`], passes its scheme: true for the seeds,
/// which are genuine requests.
pub fn genuine(data: &[u8]) -> bool {
    let (request, route) = decoded(data);
    route.verifier.verify(&request.incoming()).is_ok()
}

/// The request packed in `data`, and the route of the scheme its first byte picks.
fn decoded(data: &[u8]) -> (Request, &'static Arc<Route>) {
    let request = Request::decode(data);
    let routes = request::routes();
    let route = &routes[usize::from(request.scheme) % routes.len()];
    (request, route)
}

/// Loads `data` as the text of a `gateway.toml`, reading no secret and no file, and
/// formats the error the way `hookgate check` would show it.
pub fn load_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/gateway.toml");
    match Config::parse_with(path, text, Reading::Offline) {
        Ok(config) => {
            let _ = config.routes.len();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// Reads `data` as a verified body on routes keyed and filtered on JSON, on a header and
/// on the body's hash, and checks it against bound callback values.
///
/// It also checks the strict JSON view against serde_json's own: both accept the same
/// bodies and read the same value, except that the strict one refuses repeated keys.
pub fn examine_body(data: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert("x-delivery", http::HeaderValue::from_static("d-1"));
    for route in body_routes() {
        if let Ok(examined) = route.examine(&headers, data) {
            assert!(!examined.key.value.is_empty(), "a dedup key is never empty");
        }
    }
    let bound = BTreeMap::from([
        ("case_id".to_owned(), "42".to_owned()),
        ("region".to_owned(), "us-east".to_owned()),
    ]);
    let _ = crate::verify::check_bound(data, &bound);

    // The view reads what the whole parse reads at each of its pointers, wherever that
    // succeeds; at a pointer read as a scalar, an object or array counts as nothing.
    let reads = [
        ("/request_id", Read::Scalar),
        ("/status", Read::Scalar),
        ("/webhook_extra/region", Read::Scalar),
        ("/words/0/speaker", Read::Scalar),
        ("/webhook_extra", Read::Whole),
    ];
    if let Ok(whole) = crate::json::parse(data) {
        let view = crate::json::view(data, &crate::json::Reads::new(&reads));
        let view = view.unwrap_or_else(|e| panic!("the whole parse takes it, the view: {e}"));
        for (pointer, read) in reads {
            let plain =
                |v: &&serde_json::Value| read == Read::Whole || !(v.is_array() || v.is_object());
            let expected = whole.pointer(pointer).filter(plain);
            assert_eq!(expected, view.pointer(pointer).filter(plain), "{pointer}");
        }
    }

    let plain = serde_json::from_slice::<serde_json::Value>(data);
    match crate::json::parse(data) {
        Ok(strict) => assert_eq!(
            plain.ok(),
            Some(strict),
            "the strict view reads differently"
        ),
        Err(crate::json::JsonError::RepeatedKey) => assert!(plain.is_ok(), "a repeated key"),
        // serde_json reads such an object as a number, or refuses it.
        Err(crate::json::JsonError::ReservedKey) => {}
        Err(crate::json::JsonError::NotJson) => assert!(plain.is_err(), "JSON refused"),
    }
}

/// The routes [`examine_body`] reads bodies with.
fn body_routes() -> &'static [Arc<Route>] {
    static ROUTES: OnceLock<Vec<Arc<Route>>> = OnceLock::new();
    ROUTES.get_or_init(|| offline_routes(BODY_ROUTES))
}

const BODY_ROUTES: &str = r#"
[upstreams.all]
url = "http://127.0.0.1:9/"
[upstreams.failed]
url = "http://127.0.0.1:9/"

[[routes]]
name = "json"
path = "/json"
verify = { scheme = "token", header = "x-token", secrets = ["k"] }
dedup = { key = "json:/request_id" }
upstreams = ["all", { name = "failed", when = { "/status" = "failed", "/webhook_extra/region" = ["us-east", "eu-west"] } }]

[[routes]]
name = "header"
path = "/header"
verify = { scheme = "token", header = "x-token", secrets = ["k"] }
dedup = { key = "header:x-delivery" }
upstreams = ["all", { name = "failed", when = { "/0/status" = 7 } }]

[[routes]]
name = "body"
path = "/body"
verify = { scheme = "token", header = "x-token", secrets = ["k"] }
upstreams = ["all"]
"#;

/// The routes of a configuration that must load. Its secrets are all stand-ins.
fn offline_routes(toml: &str) -> Vec<Arc<Route>> {
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n{toml}");
    match Config::parse_with(Path::new("/fuzz/gateway.toml"), &text, Reading::Offline) {
        Ok(config) => config.routes,
        // The text is a constant of this module; failing here is a bug in it, caught by
        // the first test that runs a target.
        Err(error) => panic!("the fuzzing configuration does not load: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid configuration, cut into lines the property test drops, repeats and mangles.
    const CONFIG_LINES: &[&str] = &[
        "[server]",
        "listen = \"127.0.0.1:8443\"",
        "max_body = \"1MiB\"",
        "client_rate = \"50/s\"",
        "trusted_proxies = [\"10.0.0.0/8\"]",
        "[admin]",
        "listen = \"127.0.0.1:9090\"",
        "token = { env = \"HOOKGATE_ADMIN_TOKEN\" }",
        "[store]",
        "retention = \"7d\"",
        "[upstreams.u]",
        "url = \"http://127.0.0.1:7001/\"",
        "retry = { max_attempts = 3, initial = \"1s\", on = [429, \"5xx\"], except = [501] }",
        "sign = { secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }",
        "[[routes]]",
        "name = \"pulse\"",
        "path = \"/hooks/pulse\"",
        "verify = { scheme = \"token\", query = \"token\", secrets = [{ file = \"t\" }] }",
        "verify = { scheme = \"hmac\", header = \"x-sig\", signed = \"{timestamp}.{body}\", \
         timestamp_header = \"x-ts\", secrets = [{ env = \"S\" }] }",
        "dedup = { key = \"json:/request_id\", window = \"72h\" }",
        "limited_status = 503",
        "upstreams = [\"u\", { name = \"u\", when = { \"/status\" = \"failed\" } }]",
    ];

    fn config_text() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            4 => (0..CONFIG_LINES.len()).prop_map(|i| CONFIG_LINES[i].to_owned()),
            1 => "[\\[\\]{}=\",. a-z0-9_/:]{0,40}",
            1 => any::<String>(),
        ];
        proptest::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
    }

    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            "-?[0-9]{1,30}(\\.[0-9]{1,5})?(e[+-]?[0-9]{1,3})?",
            "\"([a-z_]|\\\\u00[0-9a-f]{2}|\\\\n){0,8}\"",
            Just("\"failed\"".to_owned()),
            Just("\"us-east\"".to_owned()),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            let key = prop_oneof![
                Just("request_id"),
                Just("status"),
                Just("webhook_extra"),
                Just("region"),
                Just("case_id"),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec((key, inner), 0..5).prop_map(|pairs| {
                    let fields: Vec<String> =
                        pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn configuration_text_never_panics_the_loader(text in config_text()) {
            load_config(text.as_bytes());
        }

        #[test]
        fn bodies_never_panic_and_read_as_serde_json_reads_them(
            json in json_text(),
            cut in any::<prop::sample::Index>(),
            noise in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            examine_body(json.as_bytes());
            // The same text cut short, or with stray bytes after it, is still handled.
            let end = cut.index(json.len() + 1);
            examine_body(&json.as_bytes()[..end]);
            examine_body(&[json.as_bytes(), &noise].concat());
        }

        #[test]
        fn mangled_genuine_requests_never_panic_a_verifier(
            seed in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let seeds = request_seeds();
            let mut data = seeds[seed.index(seeds.len())].1.clone();
            for (at, byte) in flips {
                let at = at.index(data.len());
                data[at] ^= byte;
            }
            data.truncate(cut.index(data.len() + 1));
            verify_request(&data);
        }
    }

    #[test]
    fn every_seed_request_verifies_before_it_is_mangled() {
        let seeds = request_seeds();
        assert_eq!(seeds.len(), SCHEMES.len());
        for (name, data) in seeds {
            assert!(genuine(&data), "{name}");
            // One flipped body byte, and a scheme that signs the body refuses it.
            let mut forged = data.clone();
            *forged.last_mut().unwrap() ^= 1;
            let signs_body = !["token", "basic", "signed-url"]
                .iter()
                .any(|s| name.ends_with(s));
            assert_eq!(genuine(&forged), !signs_body, "{name} forged");
        }
    }

    #[test]
    fn the_shipped_configuration_loads_offline() {
        let text = include_str!("../gateway.toml");
        let config = Config::parse_with(Path::new("/x/gateway.toml"), text, Reading::Offline);
        assert_eq!(config.map(|c| c.routes.len()).ok(), Some(1));
    }

    #[test]
    fn unknown_targets_are_refused() {
        assert!(!run("nope", b""));
        assert!(TARGETS.iter().all(|name| run(name, b"")));
    }
}

//! Published and independently computed test vectors, checked through the public API.
//!
//! Each file in `tests/vectors/` holds a `[verify]` table exactly as a route would write it,
//! the cases to verify, and optionally the credentials `sign` must reproduce.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use hookgate::verify::{BuildContext, Incoming, Verifier, VerifyConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    /// Where the vector comes from.
    source: String,
    #[serde(default)]
    route: Option<Route>,
    verify: VerifyConfig,
    #[serde(default)]
    sign: Option<Sign>,
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    route: String,
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sign {
    now: u64,
    body: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    query: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    now: u64,
    body: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    path_tail: Option<String>,
    /// `ok`, or the expected `VerifyError::reason()`.
    expect: String,
    #[serde(default)]
    skew: Option<i64>,
    #[serde(default)]
    secret_index: Option<usize>,
}

struct Loaded {
    path: PathBuf,
    file: VectorFile,
    verifier: std::sync::Arc<dyn Verifier>,
}

fn load_all() -> Vec<Loaded> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    paths.into_iter().map(|path| load(&path)).collect()
}

fn load(path: &Path) -> Loaded {
    let text = std::fs::read_to_string(path).unwrap();
    let file: VectorFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let route = file.route.as_ref();
    let ctx = BuildContext {
        route: route.map_or("pulse", |r| &r.route).to_owned(),
        path: route.map_or("/hooks/pulse", |r| &r.path).to_owned(),
    };
    let verifier = file
        .verify
        .build(&ctx, &mut |source| source.resolve(Path::new(".")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Loaded {
        path: path.to_owned(),
        file,
        verifier,
    }
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        headers.append(name, HeaderValue::from_str(value).unwrap());
    }
    headers
}

/// The inline secrets and passwords of a vector file's `[verify]` table.
fn inline_secrets(path: &Path) -> Vec<String> {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut found = Vec::new();
    collect_secrets(&table["verify"], false, &mut found);
    found
}

fn collect_secrets(value: &toml::Value, secret: bool, found: &mut Vec<String>) {
    match value {
        toml::Value::String(text) if secret => found.push(text.clone()),
        toml::Value::Array(items) => {
            items
                .iter()
                .for_each(|item| collect_secrets(item, secret, found));
        }
        toml::Value::Table(table) => {
            for (key, item) in table {
                collect_secrets(item, secret || key == "secrets" || key == "password", found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_vector_file_is_loaded() {
    let loaded = load_all();
    assert!(loaded.len() >= 10, "only {} vector files", loaded.len());
    for vector in &loaded {
        assert!(!vector.file.source.is_empty(), "{:?}", vector.path);
        assert!(!vector.file.case.is_empty(), "{:?}", vector.path);
    }
}

#[test]
fn every_case_verifies_as_expected() {
    for vector in load_all() {
        for case in &vector.file.case {
            let headers = header_map(&case.headers);
            let request = Incoming {
                headers: &headers,
                query: case.query.as_deref(),
                path_tail: case.path_tail.as_deref(),
                body: case.body.as_bytes(),
                now: case.now,
            };
            let label = format!("{:?}: {}", vector.path.file_name().unwrap(), case.name);
            match vector.verifier.verify(&request) {
                Ok(verified) => {
                    assert_eq!(case.expect, "ok", "{label}: accepted");
                    if let Some(skew) = case.skew {
                        assert_eq!(verified.skew_secs, Some(skew), "{label}");
                    }
                    if let Some(index) = case.secret_index {
                        assert_eq!(verified.secret_index, index, "{label}");
                    }
                }
                Err(error) => assert_eq!(error.reason(), case.expect, "{label}: {error}"),
            }
        }
    }
}

#[test]
fn sign_reproduces_the_published_credentials() {
    for vector in load_all() {
        let Some(sign) = &vector.file.sign else {
            continue;
        };
        let credentials = vector.verifier.sign(sign.body.as_bytes(), sign.now);
        let mut produced = credentials.headers.clone();
        let mut expected = sign.headers.clone();
        produced.sort();
        expected.sort();
        assert_eq!(produced, expected, "{:?}", vector.path);
        assert_eq!(credentials.query, sign.query, "{:?}", vector.path);
    }
}

#[test]
fn no_error_text_contains_a_secret() {
    for vector in load_all() {
        let secrets = inline_secrets(&vector.path);
        assert!(!secrets.is_empty(), "{:?}", vector.path);
        for case in &vector.file.case {
            let headers = header_map(&case.headers);
            let request = Incoming {
                headers: &headers,
                query: case.query.as_deref(),
                path_tail: case.path_tail.as_deref(),
                body: case.body.as_bytes(),
                now: case.now,
            };
            if let Err(error) = vector.verifier.verify(&request) {
                let text = error.to_string();
                assert!(secrets.iter().all(|s| !text.contains(s.as_str())), "{text}");
            }
        }
        let shown = format!("{:?}", vector.verifier);
        assert!(
            secrets.iter().all(|s| !shown.contains(s.as_str())),
            "{shown}"
        );
    }
}

#[test]
fn a_route_signs_what_it_then_accepts_for_every_scheme() {
    for vector in load_all() {
        let body = br#"{"job_id":"42"}"#;
        let now = 1_700_000_000;
        let credentials = vector.verifier.sign(body, now);
        let headers = header_map(&credentials.headers);
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&credentials.query)
            .finish();
        let request = Incoming {
            headers: &headers,
            query: Some(&query),
            path_tail: credentials.path_tail.as_deref(),
            body,
            now,
        };
        let verified = vector.verifier.verify(&request);
        assert_eq!(verified.map(|v| v.secret_index), Ok(0), "{:?}", vector.path);
    }
}

//! Helpers the scheme tests share: build from a TOML table, and make requests.

use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{BuildContext, Credentials, Incoming, Verified, Verifier, VerifyConfig, VerifyError};

/// The route every test verifier guards.
pub(crate) fn context() -> BuildContext {
    BuildContext {
        route: "pulse".into(),
        path: "/hooks/pulse".into(),
    }
}

/// Parses a `verify` table.
pub(crate) fn parse(table: &str) -> Result<VerifyConfig, String> {
    toml::from_str(table).map_err(|e| e.to_string())
}

/// Parses and builds a `verify` table, or says why not.
pub(crate) fn try_build(table: &str) -> Result<Arc<dyn Verifier>, String> {
    let config = parse(table)?;
    config.build(&context(), &mut |source| source.resolve(Path::new(".")))
}

/// Parses and builds a `verify` table that must be valid.
pub(crate) fn build(table: &str) -> Arc<dyn Verifier> {
    try_build(table).unwrap()
}

/// The build error of a `verify` table that must be invalid.
pub(crate) fn build_err(table: &str) -> String {
    try_build(table).unwrap_err()
}

/// A request as the gateway would hand it to a verifier.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub(crate) headers: HeaderMap,
    pub(crate) query: Option<String>,
    pub(crate) path_tail: Option<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) now: u64,
}

impl Request {
    /// A request carrying `body` at time `now`, with no credentials.
    pub(crate) fn new(body: &[u8], now: u64) -> Self {
        Self {
            body: body.to_vec(),
            now,
            ..Self::default()
        }
    }

    /// The request `verifier.sign` produces for `body` at `now`.
    pub(crate) fn signed(verifier: &dyn Verifier, body: &[u8], now: u64) -> Self {
        Self::new(body, now).with(&verifier.sign(body, now))
    }

    /// Adds credentials as `hookgate send` would.
    pub(crate) fn with(mut self, credentials: &Credentials) -> Self {
        for (name, value) in &credentials.headers {
            self = self.header(name, value);
        }
        if !credentials.query.is_empty() {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&credentials.query)
                .finish();
            self.query = Some(query);
        }
        self.path_tail = credentials.path_tail.clone();
        self
    }

    /// Appends a header (a second call with the same name adds a second copy).
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        self.headers
            .append(name, HeaderValue::from_str(value).unwrap());
        self
    }

    /// Replaces every copy of a header.
    pub(crate) fn replace(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    /// The header's single value.
    pub(crate) fn get(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }

    /// Runs the verifier's check before the body on this request's headers and URL.
    pub(crate) fn precheck(&self, verifier: &dyn Verifier) -> Result<(), VerifyError> {
        verifier.precheck(&self.incoming(&[]))
    }

    /// Runs the verifier on this request.
    pub(crate) fn verify(&self, verifier: &dyn Verifier) -> Result<Verified, VerifyError> {
        verifier.verify(&self.incoming(&self.body))
    }

    fn incoming<'a>(&'a self, body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            headers: &self.headers,
            query: self.query.as_deref(),
            path_tail: self.path_tail.as_deref(),
            body,
            now: self.now,
        }
    }
}

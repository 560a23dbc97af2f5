//! Proves a webhook is genuine: each route's scheme checks the raw body bytes as received.
//!
//! A scheme is a [`Verifier`]; [`VerifyConfig`] is the `verify = { scheme = ... }` table of a
//! route and [`VerifyConfig::build`] turns it into one. Adding a scheme is a new file here.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

use crate::config::secret::Secret;

/// What a verifier may look at: the request as it arrived, never re-encoded.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Request headers (names are case-insensitive, over HTTP/1.1 and HTTP/2 alike).
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// The path segment after the route's path (`/hooks/pulse/<tail>`), when there is one.
    pub path_tail: Option<&'a str>,
    /// The body bytes exactly as received.
    pub body: &'a [u8],
    /// Seconds since the Unix epoch, as the gateway's clock reads now.
    pub now: u64,
}

/// Credentials that make a body pass a scheme, for `hookgate sign` and `hookgate send`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Headers to add to the request.
    pub headers: Vec<(String, String)>,
    /// Query parameters to add to the URL.
    pub query: Vec<(String, String)>,
    /// A path segment to append to the route's path.
    pub path_tail: Option<String>,
}

/// A verification scheme with its active secrets.
pub trait Verifier: Send + Sync + fmt::Debug {
    /// Accepts the request, or says why not.
    fn verify(&self, request: &Incoming<'_>) -> Result<(), VerifyError>;

    /// Produces credentials for `body` with the first configured secret at time `now`.
    fn sign(&self, body: &[u8], now: u64) -> Credentials;

    /// The scheme's name, as written in `verify.scheme`.
    fn scheme(&self) -> &'static str;

    /// Whether the route must also match one path segment after its path.
    fn takes_path_tail(&self) -> bool {
        false
    }
}

/// Why a request failed verification. Every variant is answered `401`; the text never holds
/// a secret or an expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header, parameter or segment the scheme needs is absent.
    #[error("{0}: missing")]
    Missing(&'static str),
    /// The credential is present but cannot be parsed.
    #[error("{0}: malformed")]
    Malformed(&'static str),
    /// The signature or token does not match any active secret.
    #[error("signature does not match")]
    Mismatch,
}

impl VerifyError {
    /// A low-cardinality reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Missing(_) => "missing",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Mismatch => "mismatch",
        }
    }
}

/// Names the route a verifier is built for.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The route's name.
    pub route: String,
    /// The route's path.
    pub path: String,
}

/// A route's `verify` table (interim: token only).
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VerifyConfig {
    /// A shared token.
    Token {
        /// Query parameter name.
        query: String,
        /// Secrets.
        secrets: Vec<crate::config::secret::SecretSource>,
    },
}

#[derive(Debug)]
struct Token {
    query: String,
    secrets: Vec<Secret>,
}

impl Verifier for Token {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        let query = request.query.ok_or(VerifyError::Missing("token"))?;
        let given = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| *k == *self.query)
            .ok_or(VerifyError::Missing("token"))?
            .1;
        use subtle::ConstantTimeEq;
        let ok = self
            .secrets
            .iter()
            .any(|s| bool::from(s.expose().ct_eq(given.as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn sign(&self, _body: &[u8], _now: u64) -> Credentials {
        let token = self.secrets[0].expose_str().unwrap_or_default().to_owned();
        Credentials {
            query: vec![(self.query.clone(), token)],
            ..Default::default()
        }
    }

    fn scheme(&self) -> &'static str {
        "token"
    }
}

impl VerifyConfig {
    /// Builds the verifier.
    pub fn build(
        &self,
        _ctx: &BuildContext,
        resolve: &mut dyn FnMut(
            &crate::config::secret::SecretSource,
        ) -> Result<Secret, crate::config::secret::SecretError>,
    ) -> Result<Arc<dyn Verifier>, String> {
        let VerifyConfig::Token { query, secrets } = self;
        let secrets = secrets
            .iter()
            .map(|s| resolve(s).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Token {
            query: query.clone(),
            secrets,
        }))
    }
}

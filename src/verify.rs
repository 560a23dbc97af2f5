//! Proves a webhook is genuine: each route's scheme checks the raw body bytes as received.
//!
//! A scheme is a [`Verifier`]; [`VerifyConfig`] is the `verify = { scheme = ... }` table of a
//! route and [`VerifyConfig::build`] turns it into one. Adding a scheme is a new file here.
//!
//! Every scheme tries each of its active secrets, so a secret can be rotated by listing the
//! new one first and removing the old one once [`Verified::secret_index`] no longer points
//! at it. Errors are low-cardinality and never carry a secret, a token or an expected
//! signature, so a rejected sender learns nothing it could use for a next guess.

use std::fmt;

use http::HeaderMap;

mod basic;
mod bound;
mod callback;
mod compare;
mod config;
mod encoding;
pub(crate) mod header;
mod hmac;
mod keys;
mod mac;
mod presets;
mod signed_url;
mod standard_webhooks;
mod stripe;
mod template;
mod timestamp;
mod token;

pub use self::basic::{BasicConfig, BasicUser};
pub(crate) use self::bound::check as check_bound;
pub use self::callback::mint_callback_url;
pub use self::config::{BuildContext, VerifyConfig};
pub use self::encoding::Encoding;
pub use self::hmac::HmacConfig;
pub use self::mac::Algorithm;
pub use self::presets::{GithubConfig, ShopifyConfig, SlackConfig, SmallestConfig};
pub use self::signed_url::SignedUrlConfig;
pub use self::standard_webhooks::{OutboundSigner, StandardWebhooksConfig};
pub use self::stripe::StripeConfig;
pub use self::token::TokenConfig;

/// What a verifier may look at: the request as it arrived, never re-encoded.
///
/// Its `Debug` output shows header names and sizes only, since headers, query and path may
/// carry a token.
#[derive(Clone, Copy)]
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

impl fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        f.debug_struct("Incoming")
            .field("headers", &names)
            .field("query_len", &self.query.map(str::len))
            .field("path_tail_len", &self.path_tail.map(str::len))
            .field("body_len", &self.body.len())
            .field("now", &self.now)
            .finish()
    }
}

/// Credentials that make a body pass a scheme, for `hookgate sign` and `hookgate send`.
///
/// They may hold a token or a password, so `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Headers to add to the request.
    pub headers: Vec<(String, String)>,
    /// Query parameters to add to the URL.
    pub query: Vec<(String, String)>,
    /// A path segment to append to the route's path.
    pub path_tail: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs
                .iter()
                .map(|(name, _)| format!("{name}=<redacted>"))
                .collect()
        };
        f.debug_struct("Credentials")
            .field("headers", &names(&self.headers))
            .field("query", &names(&self.query))
            .field("path_tail", &self.path_tail.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What an accepted request proved, beyond being genuine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// The gateway's clock minus the sender's signed timestamp, in seconds (negative when the
    /// sender's clock runs ahead), for schemes that carry a timestamp.
    pub skew_secs: Option<i64>,
    /// Which configured secret (for `basic`, which user entry) matched, in configuration
    /// order; a rotated-out secret can be removed once nothing matches it any more.
    pub secret_index: usize,
}

/// A verification scheme with its active secrets.
pub trait Verifier: Send + Sync + fmt::Debug {
    /// Accepts the request, or says why not.
    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError>;

    /// Produces credentials for `body` with the first configured secret at time `now`.
    fn sign(&self, body: &[u8], now: u64) -> Credentials;

    /// Whether the route must also match one path segment after its path.
    fn takes_path_tail(&self) -> bool {
        false
    }

    /// The scheme's name as written in `verify.scheme`, for logs and metrics.
    fn scheme(&self) -> &'static str;

    /// Judges what can be judged before the body is read (`request.body` is empty then): a
    /// request that fails here is refused without its body being read or buffered.
    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        let _ = request;
        Ok(())
    }

    /// A request header that carries the credential under a name of the operator's choosing,
    /// so that stored copies of the headers can hide it.
    fn credential_header(&self) -> Option<&str> {
        None
    }

    /// Whether the signature covers the request header `name` (any case), so that a copy
    /// with another value in it fails verification. Schemes that sign the body alone, and
    /// those that sign nothing, cover no header.
    fn signs_header(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// Text that scopes the request's dedup key, so one credential cannot claim another's key.
    fn dedup_scope(&self, request: &Incoming<'_>) -> Option<String> {
        let _ = request;
        None
    }

    /// A callback URL on `base_url` valid until `expires` (Unix seconds) that binds `extra`;
    /// `None` for schemes that do not mint URLs.
    fn callback_url(
        &self,
        base_url: &str,
        expires: u64,
        extra: &[(String, String)],
    ) -> Option<Result<String, String>> {
        let _ = (base_url, expires, extra);
        None
    }

    /// How long a minted callback URL lives when the caller asks for no other lifetime.
    fn callback_ttl(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Why a request failed verification. Every variant is answered `401`; the text never holds
/// a secret, a token or an expected signature, and names only fixed labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header, parameter or segment the scheme needs is absent.
    #[error("{0}: missing")]
    Missing(&'static str),
    /// The credential is present but cannot be parsed.
    #[error("{0}: malformed")]
    Malformed(&'static str),
    /// The same header or parameter arrived more than once with different values.
    #[error("{0}: sent more than once with different values")]
    Conflicting(&'static str),
    /// Two names of one credential (a header under both its names) hold different values.
    #[error("{0} and {1} differ")]
    Disagreeing(&'static str, &'static str),
    /// The signature or token does not match any active secret.
    #[error("credentials do not match")]
    Mismatch,
    /// The signed timestamp lies outside the route's tolerance, in the past or the future.
    #[error("timestamp outside tolerance")]
    Stale,
    /// A signed callback URL is past its expiry.
    #[error("callback url expired")]
    Expired,
    /// The body does not carry the values a signed callback URL was bound to.
    #[error("body does not match the values bound to the callback url")]
    Unbound,
}

impl VerifyError {
    /// A low-cardinality reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Missing(_) => "missing",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Conflicting(_) | VerifyError::Disagreeing(..) => "conflicting",
            VerifyError::Mismatch => "mismatch",
            VerifyError::Stale => "stale",
            VerifyError::Expired => "expired",
            VerifyError::Unbound => "unbound",
        }
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_debug_shows_header_names_but_no_values() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer hunter2".parse().unwrap());
        let request = Incoming {
            headers: &headers,
            query: Some("token=hunter2"),
            path_tail: Some("hunter2"),
            body: b"{}",
            now: 0,
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("authorization"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn credentials_debug_shows_names_but_no_values() {
        let credentials = Credentials {
            headers: vec![("authorization".into(), "Bearer hunter2".into())],
            query: vec![("token".into(), "hunter2".into())],
            path_tail: Some("hunter2".into()),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("authorization") && shown.contains("token"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn every_error_text_is_a_fixed_phrase_and_reason_is_one_word() {
        let errors = [
            VerifyError::Missing("signature"),
            VerifyError::Malformed("timestamp"),
            VerifyError::Conflicting("signature"),
            VerifyError::Mismatch,
            VerifyError::Stale,
            VerifyError::Expired,
            VerifyError::Unbound,
        ];
        for error in errors {
            assert!(!error.to_string().is_empty());
            assert!(error.reason().chars().all(|c| c.is_ascii_lowercase()));
        }
    }
}

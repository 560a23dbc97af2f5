//! The `token` scheme: a shared token in a header, a query parameter or the path segment after
//! the route's path, compared in constant time and never shown.

use std::fmt;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::compare::{self, digest};
use super::{Credentials, Incoming, Verified, Verifier, VerifyError, header, keys};
use crate::config::secret::{Secret, SecretSource};

/// `scheme = "token"`: exactly one of `header`, `query` or `path = true` says where the
/// token is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Accepted tokens, newest first; each is tried. The first one is used by `hookgate send`.
    pub secrets: Vec<SecretSource>,
    /// The token is the value of this header, such as `X-Webhook-Token`.
    #[serde(default)]
    pub header: Option<String>,
    /// Text before the token in the header, such as `"Bearer "`; matched in any case.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The token is the value of this query parameter, as in `?token=...`.
    #[serde(default)]
    pub query: Option<String>,
    /// The token is the path segment after the route's path, as in `/hooks/pulse/<token>`;
    /// path tokens may hold only letters, digits and `-._~`.
    #[serde(default)]
    pub path: bool,
}

/// Where the token travels.
#[derive(Debug, Clone)]
enum Place {
    Header { name: HeaderName, prefix: String },
    Query(String),
    Path,
}

/// A built `token` verifier. It keeps SHA-256 digests of the tokens for comparison, so every
/// comparison takes the same time whatever the lengths, and the first token for signing.
pub(crate) struct Token {
    place: Place,
    digests: Vec<[u8; 32]>,
    first: Secret,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("place", &self.place)
            .field("tokens", &self.digests.len())
            .finish_non_exhaustive()
    }
}

impl TokenConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<Token, String> {
        let place = self.place()?;
        let secrets = keys::resolve_checked(&self.secrets, resolve, |t| fits(&place, t))?;
        let digests = secrets.iter().map(|s| digest(s.expose())).collect();
        // Never empty: `keys::resolve_all` refuses an empty list.
        let first = secrets[0].clone();
        Ok(Token {
            place,
            digests,
            first,
        })
    }

    fn place(&self) -> Result<Place, String> {
        if self.prefix.is_some() && self.header.is_none() {
            return Err("prefix: only applies with `header`".into());
        }
        match (&self.header, &self.query, self.path) {
            (Some(name), None, false) => Ok(Place::Header {
                name: header::parse_name("header", name)?,
                prefix: self.prefix.clone().unwrap_or_default(),
            }),
            (None, Some(name), false) if !name.is_empty() => Ok(Place::Query(name.clone())),
            (None, Some(_), false) => Err("query: name the parameter".into()),
            (None, None, true) => Ok(Place::Path),
            _ => Err("set exactly one of `header = NAME`, `query = NAME` or `path = true`".into()),
        }
    }
}

/// Checks that a token can travel where it is configured to, without quoting it.
fn fits(place: &Place, token: &Secret) -> Result<(), String> {
    let bytes = token.expose();
    match place {
        Place::Header { prefix, .. } => {
            let value = [prefix.as_bytes(), bytes].concat();
            HeaderValue::from_bytes(&value)
                .map(|_| ())
                .map_err(|_| "a header token must be printable ASCII".into())
        }
        Place::Query(_) => Ok(()),
        Place::Path
            if bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b)) =>
        {
            Ok(())
        }
        Place::Path => Err("a path token may hold only letters, digits and - . _ ~".into()),
    }
}

impl Token {
    /// The presented token, or why there is none.
    fn presented<'a>(
        &self,
        request: &Incoming<'a>,
    ) -> Result<std::borrow::Cow<'a, str>, VerifyError> {
        let missing = VerifyError::Missing("token");
        match &self.place {
            Place::Header { name, prefix } => {
                let value = header::required(request.headers, name, "token")?;
                let token = header::strip_prefix_ignore_case(value, prefix)
                    .ok_or(VerifyError::Malformed("token"))?;
                Ok(token.into())
            }
            Place::Query(name) => header::query_param(request.query, name, "token")?.ok_or(missing),
            Place::Path => request.path_tail.map(Into::into).ok_or(missing),
        }
    }
}

impl Verifier for Token {
    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError> {
        let presented = self.presented(request)?;
        if presented.is_empty() {
            return Err(VerifyError::Missing("token"));
        }
        let secret_index =
            compare::find(&self.digests, presented.as_bytes()).ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            skew_secs: None,
            secret_index,
        })
    }

    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        // The token does not depend on the body: the whole check can run up front.
        self.verify(request).map(|_| ())
    }

    fn credential_header(&self) -> Option<&str> {
        match &self.place {
            Place::Header { name, .. } => Some(name.as_str()),
            _ => None,
        }
    }

    fn sign(&self, _body: &[u8], _now: u64) -> Credentials {
        let token = String::from_utf8_lossy(self.first.expose()).into_owned();
        match &self.place {
            Place::Header { name, prefix } => Credentials {
                headers: vec![(name.to_string(), format!("{prefix}{token}"))],
                ..Credentials::default()
            },
            Place::Query(name) => Credentials {
                query: vec![(name.clone(), token)],
                ..Credentials::default()
            },
            Place::Path => Credentials {
                path_tail: Some(token),
                ..Credentials::default()
            },
        }
    }

    fn takes_path_tail(&self) -> bool {
        matches!(self.place, Place::Path)
    }

    fn scheme(&self) -> &'static str {
        "token"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Request, build, build_err};
    use super::*;

    const TOKEN: &str = "s3cr3t-t0ken_value";

    fn table(place: &str) -> String {
        format!("scheme = \"token\"\n{place}\nsecrets = [\"{TOKEN}\", \"older-token\"]")
    }

    #[test]
    fn a_token_passes_in_each_place_it_can_travel() {
        for place in ["header = \"X-Token\"", "query = \"token\"", "path = true"] {
            let verifier = build(&table(place));
            let request = Request::signed(&*verifier, b"{}", 0);
            assert_eq!(
                request.verify(&*verifier).unwrap().secret_index,
                0,
                "{place}"
            );
        }
    }

    #[test]
    fn only_a_path_token_takes_a_path_tail() {
        assert!(build(&table("path = true")).takes_path_tail());
        assert!(!build(&table("query = \"token\"")).takes_path_tail());
    }

    #[test]
    fn an_older_token_still_passes_during_rotation() {
        let verifier = build(&table("query = \"token\""));
        let request = Request {
            query: Some("a=1&token=older-token".into()),
            ..Request::default()
        };
        assert_eq!(request.verify(&*verifier).unwrap().secret_index, 1);
    }

    #[test]
    fn wrong_truncated_extended_and_empty_tokens_are_rejected() {
        let verifier = build(&table("header = \"x-token\""));
        for bad in ["nope", &TOKEN[..5], &format!("{TOKEN}x")] {
            let request = Request::default().header("x-token", bad);
            assert_eq!(
                request.verify(&*verifier),
                Err(VerifyError::Mismatch),
                "{bad}"
            );
        }
        let empty = Request::default().header("x-token", "");
        assert_eq!(
            empty.verify(&*verifier),
            Err(VerifyError::Malformed("token"))
        );
        assert_eq!(
            Request::default().verify(&*verifier),
            Err(VerifyError::Missing("token"))
        );
    }

    #[test]
    fn a_bearer_prefix_is_required_when_configured() {
        let verifier = build(&table("header = \"authorization\"\nprefix = \"Bearer \""));
        let good = Request::default().header("Authorization", &format!("bearer {TOKEN}"));
        assert!(good.verify(&*verifier).is_ok());
        let bare = Request::default().header("Authorization", TOKEN);
        assert_eq!(
            bare.verify(&*verifier),
            Err(VerifyError::Malformed("token"))
        );
    }

    #[test]
    fn conflicting_query_tokens_are_rejected() {
        let verifier = build(&table("query = \"token\""));
        let query = format!("token={TOKEN}&token=other");
        let request = Request {
            query: Some(query),
            ..Request::default()
        };
        assert_eq!(
            request.verify(&*verifier),
            Err(VerifyError::Conflicting("token"))
        );
    }

    #[test]
    fn exactly_one_place_must_be_configured() {
        for place in [
            "",
            "header = \"x\"\nquery = \"t\"",
            "query = \"t\"\npath = true",
            "query = \"\"",
        ] {
            assert!(build_err(&table(place)).contains("query"), "{place:?}");
        }
        assert!(build_err(&table("query = \"t\"\nprefix = \"Bearer \"")).starts_with("prefix:"));
    }

    #[test]
    fn a_path_token_must_be_url_safe() {
        let err = build_err("scheme = \"token\"\npath = true\nsecrets = [\"a/b\"]");
        assert_eq!(
            err,
            "secrets[0]: a path token may hold only letters, digits and - . _ ~"
        );
    }

    #[test]
    fn the_token_never_appears_in_debug_or_errors() {
        let verifier = build(&table("header = \"x-token\""));
        assert!(!format!("{verifier:?}").contains(TOKEN));
        let credentials = verifier.sign(b"", 0);
        assert!(!format!("{credentials:?}").contains(TOKEN));
        let near_miss = Request::default().header("x-token", &format!("{TOKEN}x"));
        let error = near_miss.verify(&*verifier).unwrap_err();
        assert!(!error.to_string().contains(TOKEN));
    }
}

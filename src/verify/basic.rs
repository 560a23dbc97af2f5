//! The `basic` scheme: `Authorization: Basic <base64 user:password>`, compared in constant
//! time against every configured user.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use http::header::AUTHORIZATION;
use serde::Deserialize;

use super::compare::{self, digest};
use super::{Credentials, Incoming, Verified, Verifier, VerifyError, header, keys};
use crate::config::secret::SecretSource;

/// `scheme = "basic"`: `users = [{ user = "name", password = { env = "..." } }, ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// Accepted users; list a user twice to rotate its password. The first entry signs.
    pub users: Vec<BasicUser>,
}

/// One accepted user of the `basic` scheme.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUser {
    /// The user name; it may not contain `:`.
    pub user: String,
    /// Where the password comes from, like any secret.
    pub password: SecretSource,
}

const LABEL: &str = "authorization";

/// A built `basic` verifier. It keeps SHA-256 digests of each `user:password` for the
/// comparison, and the first pair for signing.
pub(crate) struct Basic {
    digests: Vec<[u8; 32]>,
    first: String,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic")
            .field("users", &self.digests.len())
            .finish_non_exhaustive()
    }
}

impl BasicConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<Basic, String> {
        if self.users.is_empty() {
            return Err("users: list at least one user".into());
        }
        let mut pairs = Vec::with_capacity(self.users.len());
        for (i, entry) in self.users.iter().enumerate() {
            pairs.push(entry.pair(resolve).map_err(|e| format!("users[{i}].{e}"))?);
        }
        let digests = pairs.iter().map(|pair| digest(pair.as_bytes())).collect();
        // Never empty: checked above.
        let first = pairs.swap_remove(0);
        Ok(Basic { digests, first })
    }
}

impl BasicUser {
    /// `user:password`, or an error naming the field.
    fn pair(&self, resolve: &mut keys::Resolve<'_>) -> Result<String, String> {
        if self.user.is_empty() || self.user.contains(':') {
            return Err("user: must be non-empty and may not contain `:`".into());
        }
        let password = resolve(&self.password).map_err(|e| format!("password: {e}"))?;
        let password = password
            .expose_str()
            .ok_or_else(|| "password: must be UTF-8 text".to_owned())?;
        Ok(format!("{}:{password}", self.user))
    }
}

/// The decoded `user:password` bytes of an `Authorization: Basic` value.
fn credentials(value: &str) -> Result<Vec<u8>, VerifyError> {
    let malformed = VerifyError::Malformed(LABEL);
    let (scheme, encoded) = value.split_once(' ').ok_or(malformed.clone())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed);
    }
    let decoded = STANDARD_PAD_INDIFFERENT
        .decode(encoded.trim_start())
        .map_err(|_| malformed.clone())?;
    if !decoded.contains(&b':') {
        return Err(malformed);
    }
    Ok(decoded)
}

impl Verifier for Basic {
    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError> {
        let value = header::required(request.headers, &AUTHORIZATION, LABEL)?;
        let presented = credentials(value)?;
        let secret_index = compare::find(&self.digests, &presented).ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            skew_secs: None,
            secret_index,
        })
    }

    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        self.verify(request).map(|_| ())
    }

    fn sign(&self, _body: &[u8], _now: u64) -> Credentials {
        let value = format!("Basic {}", STANDARD.encode(&self.first));
        Credentials {
            headers: vec![(LABEL.to_owned(), value)],
            ..Credentials::default()
        }
    }

    fn scheme(&self) -> &'static str {
        "basic"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Request, build, build_err};
    use super::*;

    const USERS: &str = r#"
        scheme = "basic"
        users = [
            { user = "pulse", password = "new-password" },
            { user = "pulse", password = "old-password" },
        ]
    "#;

    fn basic(pair: &str) -> String {
        format!("Basic {}", STANDARD.encode(pair))
    }

    #[test]
    fn every_listed_password_passes_and_the_entry_is_reported() {
        let verifier = build(USERS);
        let request = Request::default().header("authorization", &basic("pulse:old-password"));
        assert_eq!(request.verify(&*verifier).unwrap().secret_index, 1);
        let signed = Request::signed(&*verifier, b"", 0);
        assert_eq!(signed.verify(&*verifier).unwrap().secret_index, 0);
    }

    #[test]
    fn wrong_user_or_password_is_a_mismatch() {
        let verifier = build(USERS);
        for pair in [
            "pulse:wrong",
            "other:new-password",
            "pulse:new-password ",
            ":",
        ] {
            let request = Request::default().header("authorization", &basic(pair));
            assert_eq!(
                request.verify(&*verifier),
                Err(VerifyError::Mismatch),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn the_scheme_word_is_matched_in_any_case() {
        let value = basic("pulse:new-password").replace("Basic", "bAsIc");
        let request = Request::default().header("Authorization", &value);
        assert!(request.verify(&*build(USERS)).is_ok());
    }

    #[test]
    fn other_schemes_and_bad_encodings_are_malformed() {
        let verifier = build(USERS);
        let bearer = "Bearer abc".to_owned();
        let no_colon = basic("pulse");
        for value in [bearer.as_str(), "Basic", "Basic !!!", no_colon.as_str()] {
            let request = Request::default().header("authorization", value);
            assert_eq!(
                request.verify(&*verifier),
                Err(VerifyError::Malformed(LABEL)),
                "{value}"
            );
        }
    }

    #[test]
    fn user_names_with_a_colon_are_refused() {
        let err = build_err("scheme = \"basic\"\nusers = [{ user = \"a:b\", password = \"p\" }]");
        assert!(err.starts_with("users[0].user:"), "{err}");
        assert!(build_err("scheme = \"basic\"\nusers = []").starts_with("users:"));
    }

    #[test]
    fn passwords_never_appear_in_debug() {
        assert!(!format!("{:?}", build(USERS)).contains("password"));
    }
}

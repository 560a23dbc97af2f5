//! The `signed-url` scheme, for senders such as Pulse that do not sign: the gateway mints a
//! per-job callback URL whose query carries an expiry, optional bound correlation values and
//! an HMAC-SHA256 over them, the route's name and the route's path.
//!
//! Parameter order does not matter and parameters the gateway did not mint are ignored, but a
//! signed one cannot be changed, added or removed. The URL format itself lives in
//! [`super::callback`].

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT;
use serde::Deserialize;

use super::callback::{EXPIRES, SIGNATURE, canonical, mint_callback_url, presented, signed_query};
use super::mac::Algorithm;
use super::{BuildContext, Credentials, Incoming, Verified, Verifier, VerifyError, bound, keys};
use crate::config::secret::{Secret, SecretSource};
use crate::config::units::deserialize_opt_duration;

/// `scheme = "signed-url"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedUrlConfig {
    /// Minting secrets, newest first; each is tried. The first one mints.
    pub secrets: Vec<SecretSource>,
    /// Also require the JSON body to carry each bound `key:value` pair, at its top level or
    /// under `webhook_extra`. Default `false`.
    #[serde(default)]
    pub match_extra: bool,
    /// Lifetime of URLs minted when no other is asked for (`hookgate send`, and
    /// `hookgate callback-url` without `--ttl`). Default `"24h"`.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub ttl: Option<Duration>,
}

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// A built `signed-url` verifier for one route.
#[derive(Debug)]
pub(crate) struct SignedUrl {
    route: BuildContext,
    secrets: Vec<Secret>,
    match_extra: bool,
    ttl: Duration,
}

impl SignedUrlConfig {
    pub(crate) fn build(
        &self,
        ctx: &BuildContext,
        resolve: &mut keys::Resolve<'_>,
    ) -> Result<SignedUrl, String> {
        let secrets = keys::resolve_all("secrets", &self.secrets, resolve)?;
        let ttl = self.url_ttl();
        if ttl.as_secs() == 0 {
            return Err("ttl: must be at least one second".into());
        }
        Ok(SignedUrl {
            route: ctx.clone(),
            secrets,
            match_extra: self.match_extra,
            ttl,
        })
    }

    /// The lifetime of a minted URL when the caller asks for none.
    pub fn url_ttl(&self) -> Duration {
        self.ttl.unwrap_or(DEFAULT_TTL)
    }
}

impl SignedUrl {
    /// Checks the URL's signature and expiry; returns the matching secret and bound pairs.
    fn check_url(
        &self,
        request: &Incoming<'_>,
    ) -> Result<(usize, BTreeMap<String, String>), VerifyError> {
        let found = presented(request.query.unwrap_or_default())?;
        let signature = found.signature.ok_or(VerifyError::Missing(SIGNATURE))?;
        let expires = found.expires.ok_or(VerifyError::Missing(EXPIRES))?;
        let signature = URL_SAFE_NO_PAD_INDIFFERENT
            .decode(signature)
            .ok()
            .filter(|tag| tag.len() == Algorithm::Sha256.output_len())
            .ok_or(VerifyError::Malformed(SIGNATURE))?;
        let expires = super::timestamp::parse(&expires, EXPIRES)?;

        let message = canonical(&self.route, expires, &found.bound);
        let secret_index = Algorithm::Sha256
            .find_key(&self.secrets, &[&message], &[signature])
            .ok_or(VerifyError::Mismatch)?;
        if request.now > expires {
            return Err(VerifyError::Expired);
        }
        Ok((secret_index, found.bound))
    }
}

impl Verifier for SignedUrl {
    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        self.check_url(request).map(|_| ())
    }

    fn dedup_scope(&self, request: &Incoming<'_>) -> Option<String> {
        // Keys are scoped by the bound values, so a URL minted for one job cannot take
        // another job's dedup key.
        let found = presented(request.query.unwrap_or_default()).ok()?;
        // Length-prefixed, so no value can pass for another pair.
        (!found.bound.is_empty()).then(|| {
            let pairs = found.bound.iter();
            pairs
                .map(|(k, v)| format!("{}:{k}{}:{v}", k.len(), v.len()))
                .collect()
        })
    }

    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError> {
        let (secret_index, bound) = self.check_url(request)?;
        if self.match_extra {
            bound::check(request.body, &bound)?;
        }
        Ok(Verified {
            skew_secs: None,
            secret_index,
        })
    }

    fn sign(&self, _body: &[u8], now: u64) -> Credentials {
        let expires = now.saturating_add(self.ttl.as_secs());
        // Never empty: `keys::resolve_all` refuses an empty list.
        let query = signed_query(&self.route, &self.secrets[0], expires, &BTreeMap::new());
        Credentials {
            query,
            ..Credentials::default()
        }
    }

    fn scheme(&self) -> &'static str {
        "signed-url"
    }

    fn callback_url(
        &self,
        base_url: &str,
        expires: u64,
        extra: &[(String, String)],
    ) -> Option<Result<String, String>> {
        // Never empty: `keys::resolve_all` refuses an empty list.
        let secret = &self.secrets[0];
        Some(mint_callback_url(
            base_url,
            &self.route,
            secret,
            expires,
            extra,
        ))
    }

    fn callback_ttl(&self) -> Option<Duration> {
        Some(self.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::super::VerifyConfig;
    use super::super::testing::{Request, build, context};
    use super::*;

    type Query = Vec<(String, String)>;

    const NOW: u64 = 1_700_000_000;
    const BASE: &str = "https://gw.example.com/hooks/pulse";
    const TABLE: &str = "scheme = \"signed-url\"\nsecrets = [\"mint-key\", \"old-key\"]";
    const MATCHING: &str =
        "scheme = \"signed-url\"\nsecrets = [\"mint-key\"]\nmatch_extra = true\nttl = \"1h\"";

    fn mint(secret: &str, expires: u64, extra: &[(&str, &str)]) -> String {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        mint_callback_url(BASE, &context(), &Secret::new(secret), expires, &extra).unwrap()
    }

    fn query_of(url: &str) -> String {
        url.split_once('?').unwrap().1.to_owned()
    }

    fn delivered(query: &str, body: &[u8], now: u64) -> Request {
        Request {
            query: Some(query.to_owned()),
            ..Request::new(body, now)
        }
    }

    fn pairs(query: &str) -> Query {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    fn rebuilt(pairs: &Query) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    #[test]
    fn a_minted_url_verifies_until_it_expires() {
        let verifier = build(TABLE);
        let url = mint("mint-key", NOW + 60, &[("job_id", "42")]);
        assert!(
            url.starts_with("https://gw.example.com/hooks/pulse?hg_exp="),
            "{url}"
        );
        let query = query_of(&url);
        assert!(
            delivered(&query, b"{}", NOW + 60)
                .verify(&*verifier)
                .is_ok()
        );
        assert_eq!(
            delivered(&query, b"{}", NOW + 61).verify(&*verifier),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn parameter_order_does_not_matter_and_unknown_parameters_are_ignored() {
        let verifier = build(TABLE);
        let mut reordered = pairs(&query_of(&mint(
            "mint-key",
            NOW + 60,
            &[("a", "1"), ("b", "2")],
        )));
        reordered.reverse();
        reordered.insert(1, ("utm_source".into(), "pulse".into()));
        let request = delivered(&rebuilt(&reordered), b"{}", NOW);
        assert!(request.verify(&*verifier).is_ok());
    }

    #[test]
    fn signed_parameters_cannot_be_changed_added_or_removed() {
        let verifier = build(TABLE);
        let original = pairs(&query_of(&mint("mint-key", NOW + 60, &[("job_id", "42")])));
        let edits: [&dyn Fn(&mut Query); 4] = [
            &|q| q[0].1 = (NOW + 6000).to_string(),
            &|q| q[1].1 = "43".into(),
            &|q| drop(q.remove(1)),
            &|q| q.push(("hg_x.user".into(), "ann".into())),
        ];
        for edit in edits {
            let mut query = original.clone();
            edit(&mut query);
            let request = delivered(&rebuilt(&query), b"{}", NOW);
            assert_eq!(
                request.verify(&*verifier),
                Err(VerifyError::Mismatch),
                "{query:?}"
            );
        }
    }

    #[test]
    fn a_url_minted_for_another_route_or_path_is_rejected() {
        let query = query_of(&mint("mint-key", NOW + 60, &[]));
        let config: VerifyConfig = toml::from_str(TABLE).unwrap();
        for (route, path) in [("other", "/hooks/pulse"), ("pulse", "/hooks/other")] {
            let ctx = BuildContext {
                route: route.into(),
                path: path.into(),
            };
            let verifier = config
                .build(&ctx, &mut |s| s.resolve(".".as_ref()))
                .unwrap();
            let request = delivered(&query, b"{}", NOW);
            assert_eq!(request.verify(&*verifier), Err(VerifyError::Mismatch));
        }
    }

    #[test]
    fn a_url_minted_with_a_rotated_out_secret_still_verifies() {
        let query = query_of(&mint("old-key", NOW + 60, &[]));
        let accepted = delivered(&query, b"{}", NOW).verify(&*build(TABLE));
        assert_eq!(accepted.unwrap().secret_index, 1);
    }

    #[test]
    fn with_match_extra_the_body_must_carry_the_bound_values() {
        let verifier = build(MATCHING);
        let query = query_of(&mint("mint-key", NOW + 60, &[("job_id", "42")]));
        let nested = br#"{"status":"success","webhook_extra":{"job_id":"42"}}"#;
        assert!(delivered(&query, nested, NOW).verify(&*verifier).is_ok());
        let other_job = br#"{"status":"success","job_id":41}"#;
        assert_eq!(
            delivered(&query, other_job, NOW).verify(&*verifier),
            Err(VerifyError::Unbound)
        );
        let unchecked = delivered(&query, other_job, NOW).verify(&*build(TABLE));
        assert!(unchecked.is_ok());
    }

    #[test]
    fn missing_malformed_and_conflicting_parameters_are_rejected() {
        let verifier = build(TABLE);
        let query = query_of(&mint("mint-key", NOW + 60, &[]));
        let cases = [
            (String::new(), VerifyError::Missing(SIGNATURE)),
            (
                query.replace("hg_exp", "exp"),
                VerifyError::Missing(EXPIRES),
            ),
            (format!("{query}x"), VerifyError::Malformed(SIGNATURE)),
            (
                format!("{query}&hg_exp=1"),
                VerifyError::Conflicting("callback url"),
            ),
            (
                format!(
                    "hg_exp=1700000000000&{}",
                    &query[query.find("hg_sig").unwrap()..]
                ),
                VerifyError::Malformed(EXPIRES),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(
                delivered(&query, b"{}", NOW).verify(&*verifier),
                Err(expected),
                "{query}"
            );
        }
    }

    #[test]
    fn sign_returns_query_parameters_valid_for_the_configured_ttl() {
        let verifier = build(MATCHING);
        let request = Request::signed(&*verifier, b"{}", NOW);
        let query = request.query.clone().unwrap();
        assert!(query.contains(&format!("hg_exp={}", NOW + 3600)), "{query}");
        assert!(request.verify(&*verifier).is_ok());
    }
}

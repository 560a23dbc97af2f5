//! The `stripe` scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, an
//! HMAC-SHA256 over `{t}.{body}` keyed with the whole endpoint secret.

use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::encoding::Encoding;
use super::mac::Algorithm;
use super::{Credentials, Incoming, Verified, Verifier, VerifyError, header, keys, timestamp};
use crate::config::secret::{Secret, SecretSource};
use crate::config::units::deserialize_opt_duration;

/// `scheme = "stripe"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Endpoint signing secrets (`whsec_...`, used whole as the key), newest first; each is
    /// tried.
    pub secrets: Vec<SecretSource>,
    /// How far `t` may lie from the gateway's clock, either way. Default `"5m"`.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub tolerance: Option<Duration>,
}

const SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
const LABEL: &str = "stripe-signature";

/// More elements than this in one header is not a rotation but an attempt to make the
/// gateway compare forever.
const MAX_ELEMENTS: usize = 32;

/// A built `stripe` verifier.
#[derive(Debug)]
pub(crate) struct Stripe {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl StripeConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<Stripe, String> {
        let secrets = keys::resolve_checked(&self.secrets, resolve, |secret| {
            keys::not_a_signature(secret, &["t=", "v1="])
        })?;
        let tolerance = timestamp::tolerance(self.tolerance)?;
        Ok(Stripe { secrets, tolerance })
    }
}

/// The parts of a `Stripe-Signature` value that matter.
#[derive(Debug, PartialEq, Eq)]
struct Parsed<'a> {
    timestamp: &'a str,
    signatures: Vec<Vec<u8>>,
}

/// Parses `t=...,v1=...`; `t` must appear once, unknown schemes (`v0`) are ignored, and at
/// least one `v1` must be well-formed hex of the right length.
fn parse(value: &str) -> Result<Parsed<'_>, VerifyError> {
    let malformed = VerifyError::Malformed(LABEL);
    let mut timestamp = None;
    let mut signatures = Vec::new();

    for (n, element) in value.split(',').enumerate() {
        if n >= MAX_ELEMENTS {
            return Err(malformed);
        }
        let (key, text) = element.trim().split_once('=').ok_or(malformed.clone())?;
        match key {
            "t" if timestamp.is_some() => return Err(malformed),
            "t" => timestamp = Some(text),
            "v1" => signatures.extend(Encoding::Hex.decode(text, 32, LABEL).ok()),
            _ => {}
        }
    }

    match timestamp {
        Some(timestamp) if !signatures.is_empty() => Ok(Parsed {
            timestamp,
            signatures,
        }),
        _ => Err(malformed),
    }
}

impl Verifier for Stripe {
    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        let value = header::required(request.headers, &SIGNATURE, LABEL)?;
        let parsed = parse(value)?;
        let signed_at = timestamp::parse(parsed.timestamp, LABEL)?;
        timestamp::check(signed_at, request.now, self.tolerance).map(|_| ())
    }

    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError> {
        let value = header::required(request.headers, &SIGNATURE, LABEL)?;
        let parsed = parse(value)?;
        let signed_at = timestamp::parse(parsed.timestamp, LABEL)?;
        let skew = timestamp::check(signed_at, request.now, self.tolerance)?;

        let parts = [parsed.timestamp.as_bytes(), b".", request.body];
        let secret_index = Algorithm::Sha256
            .find_key(&self.secrets, &parts, &parsed.signatures)
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            skew_secs: Some(skew),
            secret_index,
        })
    }

    fn sign(&self, body: &[u8], now: u64) -> Credentials {
        let t = now.to_string();
        // Never empty: `keys::resolve_all` refuses an empty list.
        let tag = Algorithm::Sha256.compute(self.secrets[0].expose(), &[t.as_bytes(), b".", body]);
        let value = format!("t={t},v1={}", hex::encode(tag));
        Credentials {
            headers: vec![(LABEL.to_owned(), value)],
            ..Credentials::default()
        }
    }

    fn scheme(&self) -> &'static str {
        "stripe"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Request, build, build_err};
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;

    fn verifier() -> std::sync::Arc<dyn Verifier> {
        build("scheme = \"stripe\"\nsecrets = [\"whsec_new\", \"whsec_old\"]\ntolerance = \"5m\"")
    }

    fn signature(secret: &str, t: u64, body: &[u8]) -> String {
        let t = t.to_string();
        hex::encode(Algorithm::Sha256.compute(secret.as_bytes(), &[t.as_bytes(), b".", body]))
    }

    #[test]
    fn any_v1_signature_from_any_secret_passes_and_v0_is_ignored() {
        let value = format!(
            "t={NOW},v1={},v1={},v0={}",
            "0".repeat(64),
            signature("whsec_old", NOW, BODY),
            "1".repeat(64)
        );
        let request = Request::new(BODY, NOW + 10).header("Stripe-Signature", &value);
        let accepted = request.verify(&*verifier()).unwrap();
        assert_eq!((accepted.secret_index, accepted.skew_secs), (1, Some(10)));
    }

    #[test]
    fn the_timestamp_and_body_are_signed() {
        let value = format!("t={},v1={}", NOW + 1, signature("whsec_new", NOW, BODY));
        let request = Request::new(BODY, NOW).header("stripe-signature", &value);
        assert_eq!(request.verify(&*verifier()), Err(VerifyError::Mismatch));
    }

    #[test]
    fn requests_outside_tolerance_are_rejected_either_way() {
        for now in [NOW + 301, NOW - 301] {
            let request = Request {
                now,
                ..Request::signed(&*verifier(), BODY, NOW)
            };
            assert_eq!(request.verify(&*verifier()), Err(VerifyError::Stale));
        }
    }

    #[test]
    fn malformed_headers_are_rejected_cleanly() {
        let good = signature("whsec_new", NOW, BODY);
        let cases = [
            String::new(),
            format!("v1={good}"),
            format!("t={NOW}"),
            format!("t={NOW},t={NOW},v1={good}"),
            format!("t={NOW},v1={}", &good[..10]),
            format!("t={NOW},v1"),
            format!("t=,v1={good}"),
            format!("t={NOW}000,v1={good}"),
        ];
        for value in cases {
            let request = Request::new(BODY, NOW).header("stripe-signature", &value);
            assert_eq!(
                request.verify(&*verifier()),
                Err(VerifyError::Malformed(LABEL)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_pasted_signature_header_is_refused_as_a_secret() {
        let err = build_err("scheme = \"stripe\"\nsecrets = [\"t=1,v1=abc\"]");
        assert_eq!(
            err,
            "secrets[0]: secret starts with `t=`: paste the secret, not a signature"
        );
    }

    #[test]
    fn signing_then_verifying_round_trips() {
        let request = Request::signed(&*verifier(), BODY, NOW);
        assert_eq!(request.verify(&*verifier()).unwrap().secret_index, 0);
    }
}

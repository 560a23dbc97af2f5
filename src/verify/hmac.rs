//! The `hmac` scheme: an HMAC of the body, or of a template around it, carried in a header.
//!
//! The presets (`github`, `shopify`, `slack`, `smallest`) are fixed settings of this scheme.

use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::encoding::Encoding;
use super::header::{self, parse_name};
use super::mac::Algorithm;
use super::template::{Fields, Template};
use super::{Credentials, Incoming, Verified, Verifier, VerifyError, keys, timestamp};
use crate::config::secret::{Secret, SecretSource};
use crate::config::units::deserialize_opt_duration;

/// `scheme = "hmac"`: the signature header holds `prefix` followed by the encoded HMAC of the
/// `signed` template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Active secrets, newest first; each is tried. The first one signs.
    pub secrets: Vec<SecretSource>,
    /// The header that carries the signature, such as `X-Signature`.
    pub header: String,
    /// The hash under the HMAC: `sha256` (default), `sha1` or `sha512`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// How the signature is written: `hex` (default, either case) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Text before the signature in the header, such as `sha256=`; matched in any case.
    #[serde(default)]
    pub prefix: String,
    /// What is signed: a template of `{body}` (exactly once), `{timestamp}` and `{id}`
    /// around literal text, such as `"{timestamp}.{body}"`. Default `"{body}"`.
    #[serde(default)]
    pub signed: Option<String>,
    /// The header holding the Unix-seconds timestamp; required when `signed` has
    /// `{timestamp}`, which it must have when this is set.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// The header holding a delivery id; required when `signed` has `{id}`.
    #[serde(default)]
    pub id_header: Option<String>,
    /// How far the timestamp may lie from the gateway's clock, either way. Default `"5m"`;
    /// needs `timestamp_header`.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub tolerance: Option<Duration>,
}

/// A built `hmac` verifier (also behind the presets).
#[derive(Debug)]
pub(crate) struct HmacScheme {
    scheme: &'static str,
    header: HeaderName,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    template: Template,
    timestamp: Option<(HeaderName, Duration)>,
    id_header: Option<HeaderName>,
    secrets: Vec<Secret>,
}

impl HmacConfig {
    /// Builds the `hmac` scheme.
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<HmacScheme, String> {
        self.build_as("hmac", resolve)
    }

    /// Builds the scheme, reporting itself as `scheme` (a preset's name).
    pub(crate) fn build_as(
        &self,
        scheme: &'static str,
        resolve: &mut keys::Resolve<'_>,
    ) -> Result<HmacScheme, String> {
        let template = Template::parse(self.signed.as_deref().unwrap_or("{body}"))?;
        let header = parse_name("header", &self.header)?;
        let timestamp = self.timestamp(&template)?;
        let id_header = self.id_header(&template)?;
        let prefixes = [self.prefix.as_str()];
        let secrets = keys::resolve_checked(&self.secrets, resolve, |secret| {
            keys::not_a_signature(secret, &prefixes)
        })?;

        Ok(HmacScheme {
            scheme,
            header,
            algorithm: self.algorithm,
            encoding: self.encoding,
            prefix: self.prefix.clone(),
            template,
            timestamp,
            id_header,
            secrets,
        })
    }

    fn timestamp(&self, template: &Template) -> Result<Option<(HeaderName, Duration)>, String> {
        match (&self.timestamp_header, template.has_timestamp()) {
            (Some(name), true) => {
                let tolerance = timestamp::tolerance(self.tolerance)?;
                Ok(Some((parse_name("timestamp_header", name)?, tolerance)))
            }
            (Some(_), false) => Err("timestamp_header: `signed` must include {timestamp}, \
                                     or the timestamp is not protected"
                .into()),
            (None, true) => Err("signed: {timestamp} needs timestamp_header".into()),
            (None, false) if self.tolerance.is_some() => {
                Err("tolerance: needs timestamp_header".into())
            }
            (None, false) => Ok(None),
        }
    }

    fn id_header(&self, template: &Template) -> Result<Option<HeaderName>, String> {
        match (&self.id_header, template.has_id()) {
            (Some(name), true) => Ok(Some(parse_name("id_header", name)?)),
            (Some(_), false) => Err("id_header: `signed` must include {id}".into()),
            (None, true) => Err("signed: {id} needs id_header".into()),
            (None, false) => Ok(None),
        }
    }
}

impl HmacScheme {
    fn signature(&self, request: &Incoming<'_>) -> Result<Vec<u8>, VerifyError> {
        let value = header::required(request.headers, &self.header, "signature")?;
        let encoded = header::strip_prefix_ignore_case(value, &self.prefix)
            .ok_or(VerifyError::Malformed("signature"))?;
        self.encoding
            .decode(encoded, self.algorithm.output_len(), "signature")
    }

    fn timestamp<'a>(
        &self,
        request: &Incoming<'a>,
    ) -> Result<(Option<&'a str>, Option<i64>), VerifyError> {
        let Some((name, tolerance)) = &self.timestamp else {
            return Ok((None, None));
        };
        let text = header::required(request.headers, name, "timestamp")?;
        let signed_at = timestamp::parse(text, "timestamp")?;
        let skew = timestamp::check(signed_at, request.now, *tolerance)?;
        Ok((Some(text), Some(skew)))
    }
}

impl Verifier for HmacScheme {
    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        self.signature(request)?;
        self.timestamp(request).map(|_| ())
    }

    fn credential_header(&self) -> Option<&str> {
        Some(self.header.as_str())
    }

    fn signs_header(&self, name: &str) -> bool {
        // Each is present only when the template signs it.
        let timestamp = self.timestamp.as_ref().map(|(header, _)| header);
        [timestamp, self.id_header.as_ref()]
            .into_iter()
            .flatten()
            .any(|header| header.as_str().eq_ignore_ascii_case(name))
    }

    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError> {
        let signature = self.signature(request)?;
        let (timestamp, skew_secs) = self.timestamp(request)?;
        let id = match &self.id_header {
            Some(name) => Some(header::required(request.headers, name, "id")?),
            None => None,
        };

        let fields = Fields {
            timestamp,
            id,
            body: request.body,
        };
        let parts = self.template.parts(&fields);
        let secret_index = self
            .algorithm
            .find_key(&self.secrets, &parts, &[signature])
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            skew_secs,
            secret_index,
        })
    }

    fn sign(&self, body: &[u8], now: u64) -> Credentials {
        let timestamp = now.to_string();
        let id = format!("msg_{}", hex::encode(rand::random::<[u8; 12]>()));
        let fields = Fields {
            timestamp: Some(&timestamp),
            id: Some(&id),
            body,
        };
        let parts = self.template.parts(&fields);
        // Never empty: `keys::resolve_all` refuses an empty list.
        let tag = self.algorithm.compute(self.secrets[0].expose(), &parts);

        let mut headers = vec![(
            self.header.to_string(),
            format!("{}{}", self.prefix, self.encoding.encode(&tag)),
        )];
        if let Some((name, _)) = &self.timestamp {
            headers.push((name.to_string(), timestamp));
        }
        if let Some(name) = &self.id_header {
            headers.push((name.to_string(), id));
        }
        Credentials {
            headers,
            ..Credentials::default()
        }
    }

    fn scheme(&self) -> &'static str {
        self.scheme
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Request, build, build_err};
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"status":"success"}"#;

    const PLAIN: &str = r#"
        scheme = "hmac"
        header = "X-Signature"
        secrets = ["new-secret", "old-secret"]
    "#;

    const STAMPED: &str = r#"
        scheme = "hmac"
        header = "X-Signature"
        prefix = "t1="
        signed = "{timestamp}.{body}"
        timestamp_header = "X-Timestamp"
        tolerance = "2m"
        secrets = ["k"]
    "#;

    fn hex_of(key: &str, message: &[u8]) -> String {
        hex::encode(Algorithm::Sha256.compute(key.as_bytes(), &[message]))
    }

    #[test]
    fn a_signed_request_passes_with_every_algorithm_and_encoding() {
        for algorithm in ["sha1", "sha256", "sha512"] {
            for encoding in ["hex", "base64"] {
                let table = format!(
                    "scheme = \"hmac\"\nheader = \"x-sig\"\nalgorithm = \"{algorithm}\"\n\
                     encoding = \"{encoding}\"\nsecrets = [\"k\"]"
                );
                let verifier = build(&table);
                let request = Request::signed(&*verifier, BODY, NOW);
                assert!(request.verify(&*verifier).is_ok(), "{algorithm} {encoding}");
            }
        }
    }

    #[test]
    fn the_signature_covers_the_exact_body_bytes() {
        let verifier = build(PLAIN);
        let mut request = Request::signed(&*verifier, BODY, NOW);
        request.body = br#"{"status": "success"}"#.to_vec();
        assert_eq!(request.verify(&*verifier), Err(VerifyError::Mismatch));
    }

    #[test]
    fn every_active_secret_is_tried_and_the_match_reported() {
        let verifier = build(PLAIN);
        let request = Request::new(BODY, NOW).header("x-signature", &hex_of("old-secret", BODY));
        assert_eq!(request.verify(&*verifier).unwrap().secret_index, 1);
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let verifier = build(PLAIN);
        let upper = hex_of("new-secret", BODY).to_uppercase();
        let request = Request::new(BODY, NOW).header("X-SIGNATURE", &upper);
        assert_eq!(request.verify(&*verifier).unwrap().secret_index, 0);
    }

    #[test]
    fn a_conflicting_second_signature_header_is_rejected() {
        let verifier = build(PLAIN);
        let request = Request::signed(&*verifier, BODY, NOW).header("x-signature", &"0".repeat(64));
        assert_eq!(
            request.verify(&*verifier),
            Err(VerifyError::Conflicting("signature"))
        );
    }

    #[test]
    fn missing_prefix_or_malformed_signature_is_malformed() {
        let verifier = build(STAMPED);
        let signed = Request::signed(&*verifier, BODY, NOW);
        let bare = signed.get("x-signature").replace("t1=", "");
        for bad in [bare.as_str(), "t1=", "t1=xyz", "t1=00"] {
            let request = signed.clone().replace("x-signature", bad);
            assert_eq!(
                request.verify(&*verifier),
                Err(VerifyError::Malformed("signature")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_timestamped_signature_reports_skew_and_refuses_stale_requests() {
        let verifier = build(STAMPED);
        let request = Request::signed(&*verifier, BODY, NOW - 90);
        let accepted = Request {
            now: NOW,
            ..request.clone()
        };
        assert_eq!(accepted.verify(&*verifier).unwrap().skew_secs, Some(90));

        let stale = Request {
            now: NOW + 31,
            ..request
        };
        assert_eq!(stale.verify(&*verifier), Err(VerifyError::Stale));
    }

    #[test]
    fn the_timestamp_is_signed() {
        let verifier = build(STAMPED);
        let request = Request::signed(&*verifier, BODY, NOW).replace("x-timestamp", "1700000001");
        assert_eq!(request.verify(&*verifier), Err(VerifyError::Mismatch));
    }

    #[test]
    fn an_id_template_needs_and_signs_the_id_header() {
        let table = r#"
            scheme = "hmac"
            header = "x-sig"
            signed = "{id}:{body}"
            id_header = "x-id"
            secrets = ["k"]
        "#;
        let verifier = build(table);
        let request = Request::signed(&*verifier, BODY, NOW);
        assert!(request.verify(&*verifier).is_ok());
        let swapped = request.replace("x-id", "msg_other");
        assert_eq!(swapped.verify(&*verifier), Err(VerifyError::Mismatch));
    }

    #[test]
    fn inconsistent_timestamp_settings_are_refused() {
        let base = "scheme = \"hmac\"\nheader = \"x-sig\"\nsecrets = [\"k\"]\n";
        let unsigned = format!("{base}timestamp_header = \"x-ts\"");
        assert!(build_err(&unsigned).starts_with("timestamp_header:"));
        let headerless = format!("{base}signed = \"{{timestamp}}.{{body}}\"");
        assert!(build_err(&headerless).starts_with("signed:"));
        let tolerance_only = format!("{base}tolerance = \"5m\"");
        assert!(build_err(&tolerance_only).starts_with("tolerance:"));
    }

    #[test]
    fn bad_header_names_are_refused() {
        let err = build_err("scheme = \"hmac\"\nheader = \"x sig\"\nsecrets = [\"k\"]");
        assert!(err.starts_with("header:"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let shown = format!("{:?}", build(PLAIN));
        assert!(!shown.contains("new-secret") && !shown.contains("old-secret"));
    }

    #[test]
    fn only_the_headers_the_template_signs_are_covered() {
        assert!(!build(PLAIN).signs_header("x-event-id"));
        let stamped = build(STAMPED);
        assert!(stamped.signs_header("x-timestamp") && !stamped.signs_header("x-event-id"));
        let with_id = r#"
            scheme = "hmac"
            header = "X-Signature"
            signed = "{id}.{body}"
            id_header = "X-Event-Id"
            secrets = ["k"]
        "#;
        assert!(build(with_id).signs_header("x-event-id"));
    }
}

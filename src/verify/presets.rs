//! Named senders whose signatures are a fixed setting of the `hmac` scheme: GitHub, Shopify,
//! Slack and Smallest.

use std::time::Duration;

use serde::Deserialize;

use super::encoding::Encoding;
use super::hmac::{HmacConfig, HmacScheme};
use super::keys;
use super::mac::Algorithm;
use crate::config::secret::SecretSource;
use crate::config::units::deserialize_opt_duration;

/// `scheme = "github"`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The webhook secrets set in GitHub, newest first; each is tried.
    pub secrets: Vec<SecretSource>,
}

/// `scheme = "shopify"`: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// The app's client secrets, newest first; each is tried.
    pub secrets: Vec<SecretSource>,
}

/// `scheme = "slack"`: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`, with the
/// timestamp in `X-Slack-Request-Timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The app's signing secrets, newest first; each is tried.
    pub secrets: Vec<SecretSource>,
    /// How far the timestamp may lie from the gateway's clock, either way. Default `"5m"`.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub tolerance: Option<Duration>,
}

/// `scheme = "smallest"`: the Smallest voice-agent platform, `X-Signature: <lowercase hex
/// HMAC-SHA256 of the body>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallestConfig {
    /// The webhook secrets set in Smallest, newest first; each is tried.
    pub secrets: Vec<SecretSource>,
}

/// The `hmac` settings every preset starts from: SHA-256 of the body, hex, no timestamp.
fn body_hmac(secrets: &[SecretSource], header: &str) -> HmacConfig {
    HmacConfig {
        secrets: secrets.to_vec(),
        header: header.into(),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: String::new(),
        signed: None,
        timestamp_header: None,
        id_header: None,
        tolerance: None,
    }
}

impl GithubConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<HmacScheme, String> {
        HmacConfig {
            prefix: "sha256=".into(),
            ..body_hmac(&self.secrets, "x-hub-signature-256")
        }
        .build_as("github", resolve)
    }
}

impl ShopifyConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<HmacScheme, String> {
        HmacConfig {
            encoding: Encoding::Base64,
            ..body_hmac(&self.secrets, "x-shopify-hmac-sha256")
        }
        .build_as("shopify", resolve)
    }
}

impl SlackConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<HmacScheme, String> {
        HmacConfig {
            prefix: "v0=".into(),
            signed: Some("v0:{timestamp}:{body}".into()),
            timestamp_header: Some("x-slack-request-timestamp".into()),
            tolerance: self.tolerance,
            ..body_hmac(&self.secrets, "x-slack-signature")
        }
        .build_as("slack", resolve)
    }
}

impl SmallestConfig {
    pub(crate) fn build(&self, resolve: &mut keys::Resolve<'_>) -> Result<HmacScheme, String> {
        body_hmac(&self.secrets, "x-signature").build_as("smallest", resolve)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Request, build, build_err};
    use super::super::{Verifier, VerifyError};

    const NOW: u64 = 1_700_000_000;
    const BODY: &[u8] = b"Hello, World!";

    fn round_trips(verifier: &dyn Verifier) {
        let request = Request::signed(verifier, BODY, NOW);
        assert!(request.verify(verifier).is_ok(), "{}", verifier.scheme());
        let tampered = Request {
            body: b"Hello, World?".to_vec(),
            ..request
        };
        assert_eq!(tampered.verify(verifier), Err(VerifyError::Mismatch));
    }

    #[test]
    fn github_signs_the_body_with_a_sha256_prefix() {
        let verifier = build("scheme = \"github\"\nsecrets = [\"It's a Secret to Everybody\"]");
        let request = Request::signed(&*verifier, BODY, NOW);
        assert_eq!(
            request.get("x-hub-signature-256"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        round_trips(&*verifier);
    }

    #[test]
    fn github_refuses_a_pasted_signature_as_secret() {
        let err = build_err("scheme = \"github\"\nsecrets = [\"sha256=757107ea\"]");
        assert!(err.contains("paste the secret"), "{err}");
        assert!(!err.contains("757107ea"), "{err}");
    }

    #[test]
    fn shopify_uses_base64() {
        let verifier = build("scheme = \"shopify\"\nsecrets = [\"k\"]");
        let request = Request::signed(&*verifier, BODY, NOW);
        assert!(request.get("x-shopify-hmac-sha256").ends_with('='));
        round_trips(&*verifier);
    }

    #[test]
    fn slack_signs_the_timestamp_and_enforces_tolerance() {
        let verifier = build("scheme = \"slack\"\nsecrets = [\"k\"]\ntolerance = \"1m\"");
        round_trips(&*verifier);
        let request = Request::signed(&*verifier, BODY, NOW);
        assert!(request.get("x-slack-signature").starts_with("v0="));
        let late = Request {
            now: NOW + 61,
            ..request
        };
        assert_eq!(late.verify(&*verifier), Err(VerifyError::Stale));
    }

    #[test]
    fn smallest_uses_lowercase_hex_in_x_signature() {
        let verifier = build("scheme = \"smallest\"\nsecrets = [\"k\"]");
        let signature = Request::signed(&*verifier, BODY, NOW).get("x-signature");
        assert_eq!(signature, signature.to_lowercase());
        assert_eq!(signature.len(), 64);
        round_trips(&*verifier);
    }

    #[test]
    fn presets_take_no_hmac_keys() {
        assert!(
            super::super::testing::parse("scheme = \"github\"\nsecrets = [\"k\"]\nheader = \"x\"")
                .is_err()
        );
    }
}

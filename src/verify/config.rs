//! The `verify = { scheme = "...", ... }` table of a route, and how it becomes a verifier.

use std::sync::Arc;

use serde::Deserialize;

use super::Verifier;
use super::basic::BasicConfig;
use super::hmac::HmacConfig;
use super::presets::{GithubConfig, ShopifyConfig, SlackConfig, SmallestConfig};
use super::signed_url::SignedUrlConfig;
use super::standard_webhooks::StandardWebhooksConfig;
use super::stripe::StripeConfig;
use super::token::TokenConfig;
use crate::config::secret::{Secret, SecretError, SecretSource};

/// A route's `verify` table; `scheme` picks the variant and the other keys are its fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum VerifyConfig {
    /// `scheme = "hmac"`: an HMAC of the body or of a template, in a header.
    Hmac(HmacConfig),
    /// `scheme = "standard-webhooks"`: Standard Webhooks, as sent by Svix and others.
    StandardWebhooks(StandardWebhooksConfig),
    /// `scheme = "github"`: `X-Hub-Signature-256: sha256=<hex>`.
    Github(GithubConfig),
    /// `scheme = "stripe"`: `Stripe-Signature: t=...,v1=...`.
    Stripe(StripeConfig),
    /// `scheme = "token"`: a shared token in a header, a query parameter or the path.
    Token(TokenConfig),
    /// `scheme = "basic"`: HTTP basic credentials.
    Basic(BasicConfig),
    /// `scheme = "signed-url"`: a callback URL minted by the gateway, for unsigned senders.
    SignedUrl(SignedUrlConfig),
    /// `scheme = "shopify"`: `X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 of the body.
    Shopify(ShopifyConfig),
    /// `scheme = "slack"`: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack(SlackConfig),
    /// `scheme = "smallest"`: `X-Signature`, lowercase hex HMAC-SHA256 of the body.
    Smallest(SmallestConfig),
}

/// What a scheme may need to know about the route it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// The route's name.
    pub route: String,
    /// The route's path, such as `/hooks/pulse`.
    pub path: String,
}

impl VerifyConfig {
    /// Builds the verifier, resolving each secret source through `resolve`.
    ///
    /// The error says what to fix in the user's words (`secrets[1]: ...`); the caller adds
    /// the file and line.
    pub fn build(
        &self,
        ctx: &BuildContext,
        resolve: &mut dyn FnMut(&SecretSource) -> Result<Secret, SecretError>,
    ) -> Result<Arc<dyn Verifier>, String> {
        match self {
            VerifyConfig::Hmac(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::StandardWebhooks(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::Github(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::Stripe(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::Token(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::Basic(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::SignedUrl(c) => Ok(Arc::new(c.build(ctx, resolve)?)),
            VerifyConfig::Shopify(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::Slack(c) => Ok(Arc::new(c.build(resolve)?)),
            VerifyConfig::Smallest(c) => Ok(Arc::new(c.build(resolve)?)),
        }
    }

    /// The scheme's name as written in `verify.scheme`.
    pub fn scheme(&self) -> &'static str {
        match self {
            VerifyConfig::Hmac(_) => "hmac",
            VerifyConfig::StandardWebhooks(_) => "standard-webhooks",
            VerifyConfig::Github(_) => "github",
            VerifyConfig::Stripe(_) => "stripe",
            VerifyConfig::Token(_) => "token",
            VerifyConfig::Basic(_) => "basic",
            VerifyConfig::SignedUrl(_) => "signed-url",
            VerifyConfig::Shopify(_) => "shopify",
            VerifyConfig::Slack(_) => "slack",
            VerifyConfig::Smallest(_) => "smallest",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{build, build_err, parse};

    #[test]
    fn every_scheme_name_parses_and_builds() {
        let tables = [
            r#"scheme = "hmac"
               header = "x-sig"
               secrets = ["k"]"#,
            r#"scheme = "standard-webhooks"
               secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
            r#"scheme = "github"
               secrets = ["k"]"#,
            r#"scheme = "stripe"
               secrets = ["whsec_k"]"#,
            r#"scheme = "token"
               header = "x-token"
               secrets = ["k"]"#,
            r#"scheme = "basic"
               users = [{ user = "u", password = "p" }]"#,
            r#"scheme = "signed-url"
               secrets = ["k"]"#,
            r#"scheme = "shopify"
               secrets = ["k"]"#,
            r#"scheme = "slack"
               secrets = ["k"]"#,
            r#"scheme = "smallest"
               secrets = ["k"]"#,
        ];
        for table in tables {
            let config = parse(table).unwrap();
            let verifier = build(table);
            assert_eq!(verifier.scheme(), config.scheme(), "{table}");
        }
    }

    #[test]
    fn unknown_keys_and_schemes_are_errors() {
        let typo = parse("scheme = \"github\"\nsecrets = [\"k\"]\ntolerence = \"5m\"");
        assert!(typo.unwrap_err().contains("tolerence"));
        let unknown = parse("scheme = \"gitlab\"\nsecrets = [\"k\"]");
        assert!(unknown.unwrap_err().contains("gitlab"));
    }

    #[test]
    fn secrets_are_required_and_may_not_be_empty() {
        assert!(
            parse("scheme = \"github\"")
                .unwrap_err()
                .contains("secrets")
        );
        let err = build_err("scheme = \"github\"\nsecrets = []");
        assert!(err.starts_with("secrets:"), "{err}");
    }

    #[test]
    fn secret_errors_name_the_entry() {
        let err =
            build_err("scheme = \"github\"\nsecrets = [\"k\", { env = \"HOOKGATE_UNSET_X\" }]");
        assert_eq!(
            err,
            "secrets[1]: environment variable HOOKGATE_UNSET_X is not set"
        );
    }
}

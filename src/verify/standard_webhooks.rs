//! The `standard-webhooks` scheme (Svix and every sender following standardwebhooks.com):
//! `v1,<base64>` HMAC-SHA256 signatures over `{id}.{timestamp}.{body}`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD_INDIFFERENT,
};
use http::HeaderName;
use serde::Deserialize;

use super::mac::Algorithm;
use super::{Credentials, Incoming, Verified, Verifier, VerifyError, header, keys, timestamp};
use crate::config::secret::{Secret, SecretSource};
use crate::config::units::deserialize_opt_duration;

/// `scheme = "standard-webhooks"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksConfig {
    /// Secrets written `whsec_<base64>`, newest first; each is tried. The base64 part alone
    /// is accepted too, as the reference libraries do. Each must decode to 16 bytes or more.
    pub secrets: Vec<SecretSource>,
    /// How far `webhook-timestamp` may lie from the gateway's clock, either way. Default `"5m"`.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub tolerance: Option<Duration>,
}

/// The three header names of one family (`webhook-*` or Svix's `svix-*`).
#[derive(Debug)]
struct Names {
    id: HeaderName,
    timestamp: HeaderName,
    signature: HeaderName,
    labels: [&'static str; 3],
}

const STANDARD_NAMES: Names = Names {
    id: HeaderName::from_static("webhook-id"),
    timestamp: HeaderName::from_static("webhook-timestamp"),
    signature: HeaderName::from_static("webhook-signature"),
    labels: ["webhook-id", "webhook-timestamp", "webhook-signature"],
};

const SVIX_NAMES: Names = Names {
    id: HeaderName::from_static("svix-id"),
    timestamp: HeaderName::from_static("svix-timestamp"),
    signature: HeaderName::from_static("svix-signature"),
    labels: ["svix-id", "svix-timestamp", "svix-signature"],
};

/// More signatures than this in one header is not a rotation but an attempt to make the
/// gateway compare forever.
const MAX_SIGNATURES: usize = 32;

/// A built `standard-webhooks` verifier; `keys` hold the decoded secret bytes.
#[derive(Debug)]
pub(crate) struct StandardWebhooks {
    keys: Vec<Secret>,
    tolerance: Duration,
}

impl StandardWebhooksConfig {
    pub(crate) fn build(
        &self,
        resolve: &mut keys::Resolve<'_>,
    ) -> Result<StandardWebhooks, String> {
        let secrets = keys::resolve_all("secrets", &self.secrets, resolve)?;
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| decode_secret(secret).map_err(|e| format!("secrets[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let tolerance = timestamp::tolerance(self.tolerance)?;
        Ok(StandardWebhooks { keys, tolerance })
    }
}

/// The three Standard Webhooks headers for `body` sent as message `id` at `now`, with one
/// `v1,` signature per key.
fn signed_headers(keys: &[Secret], id: &str, now: u64, body: &[u8]) -> [(&'static str, String); 3] {
    let sent_at = now.to_string();
    let parts = [id.as_bytes(), b".", sent_at.as_bytes(), b".", body];
    let signatures: Vec<String> = keys
        .iter()
        .map(|key| {
            format!(
                "v1,{}",
                STANDARD.encode(Algorithm::Sha256.compute(key.expose(), &parts))
            )
        })
        .collect();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", sent_at),
        ("webhook-signature", signatures.join(" ")),
    ]
}

/// Signs deliveries to an upstream with the Standard Webhooks scheme, so an internal service
/// can verify the gateway with any Standard Webhooks library.
#[derive(Debug, Clone)]
pub struct OutboundSigner {
    keys: Vec<Secret>,
}

impl OutboundSigner {
    /// A signer for `whsec_` (or bare base64) secrets; the error says which one is wrong.
    pub fn new(secrets: &[Secret]) -> Result<OutboundSigner, String> {
        if secrets.is_empty() {
            return Err("secrets: at least one is needed".into());
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| decode_secret(secret).map_err(|e| format!("secrets[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(OutboundSigner { keys })
    }

    /// The headers for `body` sent as message `id` at `now` (Unix seconds).
    pub fn headers(&self, id: &str, now: u64, body: &[u8]) -> [(&'static str, String); 3] {
        signed_headers(&self.keys, id, now, body)
    }
}

/// Turns `whsec_<base64>` (or bare base64) into key bytes.
fn decode_secret(secret: &Secret) -> Result<Secret, String> {
    keys::not_a_signature(secret, &["v1,"])?;
    let text = secret.expose_str().unwrap_or_default();
    let (encoded, prefixed) = match text.strip_prefix("whsec_") {
        Some(rest) => (rest, true),
        None => (text, false),
    };

    let decoded = STANDARD_PAD_INDIFFERENT
        .decode(encoded)
        .or_else(|_| URL_SAFE_NO_PAD_INDIFFERENT.decode(encoded));
    let bytes = match decoded {
        Ok(bytes) => bytes,
        Err(_) if prefixed => return Err("whsec_ secret is not valid base64".into()),
        Err(_) => return Err("secret is neither whsec_<base64> nor base64".into()),
    };
    if bytes.len() < 16 {
        return Err(format!(
            "secret decodes to {} bytes; at least 16 are needed",
            bytes.len()
        ));
    }
    Ok(Secret::new(bytes))
}

/// The well-formed `v1` signatures of a `webhook-signature` value; other versions (such as
/// the asymmetric `v1a`) and undecodable entries are skipped.
fn v1_signatures(value: &str, label: &'static str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let entries: Vec<&str> = value.split_ascii_whitespace().collect();
    if entries.len() > MAX_SIGNATURES {
        return Err(VerifyError::Malformed(label));
    }
    let signatures: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD_PAD_INDIFFERENT.decode(encoded).ok())
        .filter(|bytes| bytes.len() == Algorithm::Sha256.output_len())
        .collect();
    if signatures.is_empty() {
        return Err(VerifyError::Malformed(label));
    }
    Ok(signatures)
}

/// What a request's headers claim: its signatures, id and time.
struct Claimed<'a> {
    signatures: Vec<Vec<u8>>,
    id: &'a str,
    sent_at: &'a str,
    skew: i64,
}

impl StandardWebhooks {
    /// Reads and checks the headers alone: present, well formed, and inside the tolerance.
    fn claimed<'a>(&self, request: &Incoming<'a>) -> Result<Claimed<'a>, VerifyError> {
        let (names, other) = if request.headers.contains_key(&STANDARD_NAMES.signature)
            || !request.headers.contains_key(&SVIX_NAMES.signature)
        {
            (&STANDARD_NAMES, &SVIX_NAMES)
        } else {
            (&SVIX_NAMES, &STANDARD_NAMES)
        };
        let [id_label, timestamp_label, signature_label] = names.labels;

        let signature = header::required(request.headers, &names.signature, signature_label)?;
        let signatures = v1_signatures(signature, signature_label)?;
        let id = header::required(request.headers, &names.id, id_label)?;
        let sent_at = header::required(request.headers, &names.timestamp, timestamp_label)?;
        // A sender may send both families. Whatever reads a header later (a dedup key on
        // `webhook-id`, an upstream) must not find there a value that was not signed.
        for (i, (name, signed)) in [
            (&other.id, id),
            (&other.timestamp, sent_at),
            (&other.signature, signature),
        ]
        .into_iter()
        .enumerate()
        {
            let label = other.labels[i];
            if header::optional(request.headers, name, label)?.is_some_and(|value| value != signed)
            {
                return Err(VerifyError::Disagreeing(names.labels[i], label));
            }
        }
        let skew = timestamp::check(
            timestamp::parse(sent_at, timestamp_label)?,
            request.now,
            self.tolerance,
        )?;
        Ok(Claimed {
            signatures,
            id,
            sent_at,
            skew,
        })
    }
}

impl Verifier for StandardWebhooks {
    fn precheck(&self, request: &Incoming<'_>) -> Result<(), VerifyError> {
        self.claimed(request).map(|_| ())
    }

    fn verify(&self, request: &Incoming<'_>) -> Result<Verified, VerifyError> {
        let claimed = self.claimed(request)?;
        let parts = [
            claimed.id.as_bytes(),
            b".",
            claimed.sent_at.as_bytes(),
            b".",
            request.body,
        ];
        let secret_index = Algorithm::Sha256
            .find_key(&self.keys, &parts, &claimed.signatures)
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            skew_secs: Some(claimed.skew),
            secret_index,
        })
    }

    fn sign(&self, body: &[u8], now: u64) -> Credentials {
        let id = format!("msg_{}", hex::encode(rand::random::<[u8; 12]>()));
        // Never empty: `keys::resolve_all` refuses an empty list.
        let headers = signed_headers(&self.keys[..1], &id, now, body)
            .map(|(name, value)| (name.to_owned(), value))
            .to_vec();
        Credentials {
            headers,
            ..Credentials::default()
        }
    }

    fn signs_header(&self, name: &str) -> bool {
        [&STANDARD_NAMES, &SVIX_NAMES]
            .iter()
            .flat_map(|names| [&names.id, &names.timestamp])
            .any(|header| header.as_str().eq_ignore_ascii_case(name))
    }

    fn scheme(&self) -> &'static str {
        "standard-webhooks"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Request, build, build_err};
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SENT_AT: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn verifier() -> std::sync::Arc<dyn Verifier> {
        build(&format!(
            "scheme = \"standard-webhooks\"\nsecrets = [\"{SECRET}\"]"
        ))
    }

    fn published(prefix: &str, signature: &str) -> Request {
        Request::new(BODY, SENT_AT)
            .header(&format!("{prefix}-id"), ID)
            .header(&format!("{prefix}-timestamp"), &SENT_AT.to_string())
            .header(&format!("{prefix}-signature"), signature)
    }

    #[test]
    fn missing_malformed_and_stale_headers_are_refused_before_the_body() {
        let verifier = verifier();
        assert_eq!(published("webhook", SIGNATURE).precheck(&*verifier), Ok(()));
        assert_eq!(
            Request::new(BODY, SENT_AT).precheck(&*verifier),
            Err(VerifyError::Missing("webhook-signature"))
        );
        let garbled = published("svix", "v1,!!!").precheck(&*verifier);
        assert_eq!(garbled, Err(VerifyError::Malformed("svix-signature")));
        let stale = Request {
            now: SENT_AT + 3_600,
            ..published("webhook", SIGNATURE)
        };
        assert!(matches!(
            stale.precheck(&*verifier),
            Err(VerifyError::Stale)
        ));
    }

    #[test]
    fn the_published_example_verifies_under_both_header_families() {
        for prefix in ["webhook", "svix", "Webhook", "SVIX"] {
            let accepted = published(prefix, SIGNATURE).verify(&*verifier());
            assert_eq!(accepted.unwrap().skew_secs, Some(0), "{prefix}");
        }
    }

    #[test]
    fn any_one_matching_v1_signature_passes_and_other_versions_are_ignored() {
        let list = format!("v1a,AAAA v2,xyz v1,bm9wZQ== {SIGNATURE}");
        assert!(published("webhook", &list).verify(&*verifier()).is_ok());
    }

    #[test]
    fn a_header_without_any_usable_v1_signature_is_malformed() {
        for value in [
            "v1a,AAAA",
            "v1,",
            "v1,!!!",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            assert_eq!(
                published("webhook", value).verify(&*verifier()),
                Err(VerifyError::Malformed("webhook-signature")),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_id_and_timestamp_are_signed() {
        let other_id = published("webhook", SIGNATURE).replace("webhook-id", "msg_other");
        assert_eq!(other_id.verify(&*verifier()), Err(VerifyError::Mismatch));
        let shifted = published("webhook", SIGNATURE).replace("webhook-timestamp", "1614265331");
        assert_eq!(shifted.verify(&*verifier()), Err(VerifyError::Mismatch));
    }

    #[test]
    fn old_future_and_millisecond_timestamps_are_rejected() {
        let late = Request {
            now: SENT_AT + 301,
            ..published("webhook", SIGNATURE)
        };
        assert_eq!(late.verify(&*verifier()), Err(VerifyError::Stale));
        let early = Request {
            now: SENT_AT - 301,
            ..published("webhook", SIGNATURE)
        };
        assert_eq!(early.verify(&*verifier()), Err(VerifyError::Stale));
        let millis = published("webhook", SIGNATURE).replace("webhook-timestamp", "1614265330000");
        assert_eq!(
            millis.verify(&*verifier()),
            Err(VerifyError::Malformed("webhook-timestamp"))
        );
    }

    #[test]
    fn both_families_are_accepted_only_when_they_agree() {
        let both = published("svix", SIGNATURE)
            .header("webhook-id", ID)
            .header("webhook-timestamp", &SENT_AT.to_string());
        assert!(both.verify(&*verifier()).is_ok());

        // A copy of a signed Svix request with a `webhook-id` of someone else's choosing.
        for (name, value) in [
            ("webhook-id", "msg_chosen"),
            ("webhook-timestamp", "1614265331"),
        ] {
            let added = published("svix", SIGNATURE).header(name, value);
            let ours = name.replace("webhook", "svix");
            let refused = added.verify(&*verifier()).unwrap_err();
            assert_eq!(refused.to_string(), format!("{ours} and {name} differ"));
        }
        // A `webhook-signature` of its own makes it a `webhook-*` request, and the three
        // of that family must then be whole and signed.
        let whole = published("svix", SIGNATURE)
            .header("webhook-id", "msg_chosen")
            .header("webhook-timestamp", &SENT_AT.to_string())
            .header("webhook-signature", SIGNATURE);
        assert_eq!(
            whole.verify(&*verifier()),
            Err(VerifyError::Disagreeing("webhook-id", "svix-id"))
        );
        let added = published("webhook", SIGNATURE).header("svix-id", "msg_chosen");
        assert_eq!(
            added.verify(&*verifier()),
            Err(VerifyError::Disagreeing("webhook-id", "svix-id"))
        );
    }

    #[test]
    fn a_conflicting_second_signature_header_is_rejected() {
        let doubled = published("webhook", SIGNATURE).header("webhook-signature", "v1,bm9wZQ==");
        assert_eq!(
            doubled.verify(&*verifier()),
            Err(VerifyError::Conflicting("webhook-signature"))
        );
    }

    #[test]
    fn a_secret_without_the_whsec_prefix_is_accepted() {
        let bare = build(
            "scheme = \"standard-webhooks\"\nsecrets = [\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
        );
        assert!(published("webhook", SIGNATURE).verify(&*bare).is_ok());
    }

    #[test]
    fn rotation_reports_which_secret_matched() {
        let table = format!(
            "scheme = \"standard-webhooks\"\nsecrets = [\"whsec_{}\", \"{SECRET}\"]",
            STANDARD.encode([7u8; 32])
        );
        let accepted = published("webhook", SIGNATURE).verify(&*build(&table));
        assert_eq!(accepted.unwrap().secret_index, 1);
    }

    #[test]
    fn bad_secrets_are_refused_at_build_time() {
        let table =
            |secret: &str| format!("scheme = \"standard-webhooks\"\nsecrets = [\"{secret}\"]");
        assert_eq!(
            build_err(&table("whsec_not*base64")),
            "secrets[0]: whsec_ secret is not valid base64"
        );
        assert!(build_err(&table("whsec_c2hvcnQ=")).contains("at least 16"));
        assert_eq!(
            build_err(&table(SIGNATURE)),
            "secrets[0]: secret starts with `v1,`: paste the secret, not a signature"
        );
    }

    #[test]
    fn signing_then_verifying_round_trips() {
        let verifier = verifier();
        let request = Request::signed(&*verifier, b"{}", SENT_AT);
        assert!(request.get("webhook-id").starts_with("msg_"));
        assert!(request.verify(&*verifier).is_ok());
    }
}

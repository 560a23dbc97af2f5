//! `forward_headers` of an upstream: which headers of the original request a delivery may
//! carry. Credentials never, nor the headers the gateway sets on deliveries itself.

use http::HeaderName;

use crate::telemetry::is_sensitive;

/// Headers every delivery already has, or that belong to one connection only.
const SET_BY_THE_GATEWAY: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// Headers an outbound signature sets.
const SET_BY_SIGNING: &[&str] = &["webhook-id", "webhook-timestamp", "webhook-signature"];

/// Validates the names; `signs` says whether the upstream signs its deliveries.
pub(super) fn parse(names: &[String], signs: bool) -> Result<Vec<HeaderName>, String> {
    let mut parsed: Vec<HeaderName> = Vec::new();
    for name in names {
        let header = HeaderName::try_from(name.trim())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let lower = header.as_str();
        if is_sensitive(lower) {
            return Err(format!(
                "{name:?} carries a credential: it is never stored, so never forwarded"
            ));
        }
        let signed = signs && SET_BY_SIGNING.contains(&lower);
        if SET_BY_THE_GATEWAY.contains(&lower) || lower.starts_with("hookgate-") || signed {
            return Err(format!("{name:?} is set on every delivery by the gateway"));
        }
        if !parsed.contains(&header) {
            parsed.push(header);
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn event_headers_are_taken_in_lowercase_once() {
        let parsed = parse(
            &names(&["X-GitHub-Event", "x-github-event", "X-Shopify-Topic"]),
            false,
        );
        let parsed: Vec<String> = parsed.unwrap().iter().map(|h| h.to_string()).collect();
        assert_eq!(parsed, ["x-github-event", "x-shopify-topic"]);
    }

    #[test]
    fn credentials_and_the_gateways_own_headers_are_refused() {
        for name in [
            "X-Hub-Signature-256",
            "Authorization",
            "Cookie",
            "Stripe-Signature",
        ] {
            let error = parse(&names(&[name]), false).unwrap_err();
            assert!(error.contains("credential"), "{name}: {error}");
        }
        for name in [
            "Content-Type",
            "Host",
            "Hookgate-Attempt",
            "X-Forwarded-For",
        ] {
            let error = parse(&names(&[name]), false).unwrap_err();
            assert!(error.contains("set on every delivery"), "{name}: {error}");
        }
        assert!(parse(&names(&["webhook-id"]), false).is_ok());
        assert!(parse(&names(&["webhook-id"]), true).is_err());
        assert!(parse(&names(&["bad header"]), false).is_err());
    }
}

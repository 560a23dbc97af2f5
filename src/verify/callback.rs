//! The callback URL format of the `signed-url` scheme: parameter names, the canonical signed
//! message, minting, and reading a delivered query back.
//!
//! A minted query reads `?hg_exp=<unix seconds>&hg_x.<key>=<value>...&hg_sig=<mac>`, the MAC
//! being HMAC-SHA256 over the route's name and path, the expiry and the bound pairs.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::mac::Algorithm;
use super::{BuildContext, VerifyError};
use crate::config::secret::Secret;

/// The query parameter holding the expiry, in Unix seconds.
pub(crate) const EXPIRES: &str = "hg_exp";
/// The query parameter holding the MAC, unpadded URL-safe base64.
pub(crate) const SIGNATURE: &str = "hg_sig";
/// The prefix of query parameters holding bound correlation values.
pub(crate) const EXTRA: &str = "hg_x.";

/// Mints a callback URL for `route`: `base_url` (such as `https://gw.example.com/hooks/pulse`)
/// plus a query that expires at `expires` (Unix seconds) and binds the `extra` pairs.
///
/// Signed with `secret`, which should be the route's first secret. The error says what to fix.
pub fn mint_callback_url(
    base_url: &str,
    route: &BuildContext,
    secret: &Secret,
    expires: u64,
    extra: &[(String, String)],
) -> Result<String, String> {
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(format!(
            "base url {base_url:?}: must start with https:// or http://"
        ));
    }
    if base_url.contains('#') {
        return Err(format!("base url {base_url:?}: may not have a #fragment"));
    }
    let bound = bound_pairs(extra)?;

    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(signed_query(route, secret, expires, &bound))
        .finish();
    let joiner = match base_url.find('?') {
        None => "?",
        Some(_) if base_url.ends_with('?') || base_url.ends_with('&') => "",
        Some(_) => "&",
    };
    Ok(format!("{base_url}{joiner}{query}"))
}

/// Checks the `extra` pairs a caller asks to bind: keys non-empty and distinct.
fn bound_pairs(extra: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut bound = BTreeMap::new();
    for (key, value) in extra {
        if key.is_empty() {
            return Err("extra: a key may not be empty".into());
        }
        if bound.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("extra: key {key:?} given twice"));
        }
    }
    Ok(bound)
}

/// The query parameters of a minted URL, in the order they are written.
pub(crate) fn signed_query(
    route: &BuildContext,
    secret: &Secret,
    expires: u64,
    bound: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let message = canonical(route, expires, bound);
    let tag = Algorithm::Sha256.compute(secret.expose(), &[&message]);

    let mut query = vec![(EXPIRES.to_owned(), expires.to_string())];
    query.extend(
        bound
            .iter()
            .map(|(k, v)| (format!("{EXTRA}{k}"), v.clone())),
    );
    query.push((SIGNATURE.to_owned(), URL_SAFE_NO_PAD.encode(tag)));
    query
}

/// The signed message: a version tag, then route name, route path, expiry, the number of
/// bound pairs and each key and value in key order, every field written as `<length>:<bytes>`
/// so no two different inputs give the same message.
pub(crate) fn canonical(
    route: &BuildContext,
    expires: u64,
    bound: &BTreeMap<String, String>,
) -> Vec<u8> {
    let expires = expires.to_string();
    let count = bound.len().to_string();
    let fields = [route.route.as_str(), route.path.as_str(), &expires, &count]
        .into_iter()
        .chain(bound.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));

    let mut message = b"hookgate signed-url v1\n".to_vec();
    for field in fields {
        message.extend_from_slice(format!("{}:", field.len()).as_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message
}

/// What a delivered callback URL's query claims.
#[derive(Debug, Default)]
pub(crate) struct Presented {
    /// The `hg_exp` text.
    pub(crate) expires: Option<String>,
    /// The `hg_sig` text.
    pub(crate) signature: Option<String>,
    /// The bound pairs, by key.
    pub(crate) bound: BTreeMap<String, String>,
}

/// Reads the signed parameters; a repeated one must repeat the same value.
pub(crate) fn presented(query: &str) -> Result<Presented, VerifyError> {
    let mut found = Presented::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = if key == EXPIRES {
            &mut found.expires
        } else if key == SIGNATURE {
            &mut found.signature
        } else if let Some(name) = key.strip_prefix(EXTRA) {
            let entry = found
                .bound
                .entry(name.to_owned())
                .or_insert_with(|| value.to_string());
            if *entry != value {
                return Err(VerifyError::Conflicting("callback url"));
            }
            continue;
        } else {
            continue;
        };
        match slot {
            Some(seen) if *seen != value => return Err(VerifyError::Conflicting("callback url")),
            Some(_) => {}
            None => *slot = Some(value.into_owned()),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::testing::context;
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const BASE: &str = "https://gw.example.com/hooks/pulse";

    #[test]
    fn a_minted_url_carries_expiry_bound_pairs_and_signature() {
        let extra = [("job id".to_owned(), "4&2".to_owned())];
        let url = mint_callback_url(BASE, &context(), &Secret::new("k"), NOW, &extra).unwrap();
        let query = url
            .strip_prefix("https://gw.example.com/hooks/pulse?")
            .unwrap();
        let found = presented(query).unwrap();
        assert_eq!(found.expires.as_deref(), Some("1700000000"));
        assert_eq!(found.bound["job id"], "4&2");
        assert_eq!(found.signature.unwrap().len(), 43);
    }

    #[test]
    fn minting_appends_to_an_existing_query_and_refuses_bad_input() {
        let secret = Secret::new("k");
        let url = mint_callback_url("https://gw/h?a=1", &context(), &secret, NOW, &[]).unwrap();
        assert!(url.starts_with("https://gw/h?a=1&hg_exp="), "{url}");
        assert!(mint_callback_url("gw/h", &context(), &secret, NOW, &[]).is_err());
        assert!(mint_callback_url("https://gw/h#x", &context(), &secret, NOW, &[]).is_err());
        let twice = [
            ("k".to_owned(), "1".to_owned()),
            ("k".to_owned(), "2".to_owned()),
        ];
        assert!(mint_callback_url(BASE, &context(), &secret, NOW, &twice).is_err());
        let empty = [(String::new(), "1".to_owned())];
        assert!(mint_callback_url(BASE, &context(), &secret, NOW, &empty).is_err());
    }

    #[test]
    fn repeated_parameters_must_repeat_the_same_value() {
        assert!(presented("hg_exp=1&hg_exp=1&hg_x.a=2&hg_x.a=2").is_ok());
        for query in [
            "hg_exp=1&hg_exp=2",
            "hg_sig=a&hg_sig=b",
            "hg_x.a=1&hg_x.a=2",
        ] {
            assert_eq!(
                presented(query).unwrap_err(),
                VerifyError::Conflicting("callback url")
            );
        }
    }

    #[test]
    fn the_canonical_message_keeps_fields_apart() {
        let ctx = |route: &str, path: &str| BuildContext {
            route: route.into(),
            path: path.into(),
        };
        let none = BTreeMap::new();
        assert_ne!(
            canonical(&ctx("ab", "c"), 1, &none),
            canonical(&ctx("a", "bc"), 1, &none)
        );
        let one: BTreeMap<_, _> = [("a=b".to_owned(), "c".to_owned())].into();
        let other: BTreeMap<_, _> = [("a".to_owned(), "b=c".to_owned())].into();
        assert_ne!(
            canonical(&ctx("r", "p"), 1, &one),
            canonical(&ctx("r", "p"), 1, &other)
        );
    }
}

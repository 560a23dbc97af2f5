//! Reads the one value of a credential header or query parameter, refusing conflicting copies.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use super::VerifyError;

/// The value of header `name`, if present; `label` names it in errors.
///
/// A header sent twice is accepted only when both copies are byte-identical, so a proxy or
/// an attacker cannot slip a second signature past a check that reads only the first.
/// Values that are empty or not visible ASCII are malformed.
pub(crate) fn optional<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<Option<&'a str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|other| other.as_bytes() != first.as_bytes()) {
        return Err(VerifyError::Conflicting(label));
    }

    match first.to_str() {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text)),
        _ => Err(VerifyError::Malformed(label)),
    }
}

/// The value of header `name`, which must be present.
pub(crate) fn required<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<&'a str, VerifyError> {
    optional(headers, name, label)?.ok_or(VerifyError::Missing(label))
}

/// The decoded value of query parameter `name`, with the same rule for repeats as headers.
pub(crate) fn query_param<'a>(
    query: Option<&'a str>,
    name: &str,
    label: &'static str,
) -> Result<Option<Cow<'a, str>>, VerifyError> {
    let mut found: Option<Cow<'a, str>> = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != name {
            continue;
        }
        match &found {
            Some(seen) if *seen != value => return Err(VerifyError::Conflicting(label)),
            Some(_) => {}
            None => found = Some(value),
        }
    }
    Ok(found)
}

/// Strips `prefix` from `value`, ignoring ASCII case; `None` when it is not there.
pub(crate) fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Parses a configured header name, in the user's words when it is not one.
pub(crate) fn parse_name(key: &str, name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{key}: {name:?} is not a valid header name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NAME: HeaderName = HeaderName::from_static("x-signature");

    fn map(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(NAME, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn header_names_match_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert("X-SIGNATURE", HeaderValue::from_static("abc"));
        assert_eq!(optional(&headers, &NAME, "signature"), Ok(Some("abc")));
    }

    #[test]
    fn identical_repeats_are_accepted_but_conflicting_ones_rejected() {
        assert_eq!(required(&map(&[b"a", b"a"]), &NAME, "sig"), Ok("a"));
        assert_eq!(
            required(&map(&[b"a", b"b"]), &NAME, "sig"),
            Err(VerifyError::Conflicting("sig"))
        );
    }

    #[test]
    fn empty_and_non_ascii_values_are_malformed() {
        for value in [&b""[..], b"   ", b"caf\xc3\xa9"] {
            assert_eq!(
                required(&map(&[value]), &NAME, "sig"),
                Err(VerifyError::Malformed("sig"))
            );
        }
    }

    #[test]
    fn absent_header_is_missing() {
        assert_eq!(
            required(&HeaderMap::new(), &NAME, "sig"),
            Err(VerifyError::Missing("sig"))
        );
    }

    #[test]
    fn query_params_are_decoded_and_conflicting_repeats_rejected() {
        let value = query_param(Some("a=1&token=x%2By&b=2"), "token", "token");
        assert_eq!(value.unwrap().as_deref(), Some("x+y"));
        assert_eq!(
            query_param(Some("token=x&token=y"), "token", "token"),
            Err(VerifyError::Conflicting("token"))
        );
        assert_eq!(query_param(None, "token", "token"), Ok(None));
    }

    #[test]
    fn prefix_is_stripped_in_any_case_and_never_panics_mid_character() {
        assert_eq!(strip_prefix_ignore_case("SHA256=ab", "sha256="), Some("ab"));
        assert_eq!(strip_prefix_ignore_case("sha1=ab", "sha256="), None);
        assert_eq!(strip_prefix_ignore_case("é", "x"), None);
    }
}

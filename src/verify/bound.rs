//! Checks that a delivered JSON body carries the correlation values a callback URL was
//! minted for, so a URL minted for one job cannot deliver another job's result.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::VerifyError;
use crate::json::{Read, Reads};

/// The object under which Pulse echoes the caller's `webhook_extra` pairs.
const NESTED: &str = "webhook_extra";

/// Accepts `body` when, for each bound pair, the key appears at the top level of the JSON
/// object or under `webhook_extra`, and every place it appears holds the bound value.
///
/// Values are compared as text: a JSON string by its contents, a number or boolean by its
/// JSON spelling (`42`, `true`). Anything else never matches.
pub(crate) fn check(body: &[u8], bound: &BTreeMap<String, String>) -> Result<(), VerifyError> {
    if bound.is_empty() {
        return Ok(());
    }
    // The view reads an array by index, as a pointer would; the pairs live in an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(VerifyError::Malformed("body"));
    }
    // Strictly: a repeated key could be read one way here and another way upstream. Only
    // the values at the bound keys are built.
    let pointers: Vec<String> = bound
        .keys()
        .flat_map(|key| {
            let token = key.replace('~', "~0").replace('/', "~1");
            [format!("/{token}"), format!("/{NESTED}/{token}")]
        })
        .collect();
    let reads: Vec<(&str, Read)> = pointers
        .iter()
        .map(|p| (p.as_str(), Read::Scalar))
        .collect();
    let json =
        crate::json::view(body, &Reads::new(&reads)).map_err(|_| VerifyError::Malformed("body"))?;
    let top = json.as_object().ok_or(VerifyError::Malformed("body"))?;
    let nested = top.get(NESTED).and_then(Value::as_object);

    if bound
        .iter()
        .all(|(key, value)| holds(top, nested, key, value))
    {
        Ok(())
    } else {
        Err(VerifyError::Unbound)
    }
}

fn holds(
    top: &Map<String, Value>,
    nested: Option<&Map<String, Value>>,
    key: &str,
    value: &str,
) -> bool {
    let found: Vec<&Value> = [top.get(key), nested.and_then(|n| n.get(key))]
        .into_iter()
        .flatten()
        .collect();
    !found.is_empty() && found.iter().all(|v| as_text(v).as_deref() == Some(value))
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn values_match_at_the_top_level_or_under_webhook_extra() {
        let wanted = bound(&[("job_id", "42"), ("user", "ann")]);
        let top = br#"{"job_id": 42, "user": "ann", "status": "success"}"#;
        let nested = br#"{"status": "success", "webhook_extra": {"job_id": "42", "user": "ann"}}"#;
        let mixed = br#"{"job_id": "42", "webhook_extra": {"user": "ann"}}"#;
        for body in [&top[..], nested, mixed] {
            assert_eq!(check(body, &wanted), Ok(()));
        }
    }

    #[test]
    fn a_different_or_absent_value_is_unbound() {
        let wanted = bound(&[("job_id", "42")]);
        for body in [
            &br#"{"job_id": 43}"#[..],
            br#"{"webhook_extra": {"job_id": "42 "}}"#,
            br#"{"other": 42}"#,
            br#"{"job_id": null}"#,
            br#"{"job_id": [42]}"#,
            br#"{"job_id": 42.0}"#,
        ] {
            assert_eq!(check(body, &wanted), Err(VerifyError::Unbound), "{body:?}");
        }
    }

    #[test]
    fn disagreeing_copies_are_unbound() {
        let wanted = bound(&[("job_id", "42")]);
        let body = br#"{"job_id": 42, "webhook_extra": {"job_id": 7}}"#;
        assert_eq!(check(body, &wanted), Err(VerifyError::Unbound));
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_malformed() {
        let wanted = bound(&[("job_id", "42")]);
        for body in [
            &b"not json"[..],
            b"[42]",
            b"",
            br#"{"job_id": 7, "job_id": 42}"#,
        ] {
            assert_eq!(check(body, &wanted), Err(VerifyError::Malformed("body")));
        }
    }

    #[test]
    fn nothing_bound_needs_no_json() {
        assert_eq!(check(b"not json", &BTreeMap::new()), Ok(()));
    }
}

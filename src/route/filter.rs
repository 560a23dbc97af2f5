//! `when` conditions: an upstream receives only events whose JSON body matches.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::json::Read;

/// Every condition must hold: the value at each JSON pointer equals the expected value,
/// or one of them when a list is given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    conditions: Vec<(String, Vec<Value>)>,
}

impl Filter {
    /// Builds a filter from the `when` table.
    pub fn new(when: BTreeMap<String, Value>) -> Result<Filter, String> {
        let mut conditions = Vec::new();
        for (pointer, expected) in when {
            if !pointer.starts_with('/') {
                return Err(format!("{pointer:?}: a JSON pointer starts with /"));
            }
            plain_json(&expected).map_err(|e| format!("{pointer:?}: {e}"))?;
            let accepted = match expected {
                Value::Array(values) if values.is_empty() => {
                    return Err(format!("{pointer:?}: an empty list matches nothing"));
                }
                Value::Array(values) => values,
                value => vec![value],
            };
            conditions.push((pointer, accepted));
        }
        Ok(Filter { conditions })
    }

    /// The JSON pointers the conditions read.
    pub fn reads(&self) -> impl Iterator<Item = (&str, Read)> {
        self.conditions.iter().map(|(pointer, accepted)| {
            let whole = accepted.iter().any(|a| a.is_array() || a.is_object());
            (
                pointer.as_str(),
                if whole { Read::Whole } else { Read::Scalar },
            )
        })
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether a body matches; a body that is not JSON matches only an empty filter.
    pub fn matches(&self, json: Option<&Value>) -> bool {
        if self.conditions.is_empty() {
            return true;
        }
        let Some(json) = json else { return false };
        self.conditions.iter().all(|(pointer, accepted)| {
            json.pointer(pointer)
                .is_some_and(|found| accepted.iter().any(|a| same(a, found)))
        })
    }
}

/// Refuses what TOML can write but a JSON body cannot hold, so that a condition never
/// silently means something else: `nan` and `inf` (which arrive as `null`) and dates.
fn plain_json(value: &Value) -> Result<(), String> {
    match value {
        Value::Null => Err("nan and inf are no JSON numbers".into()),
        Value::Array(values) => values.iter().try_for_each(plain_json),
        Value::Object(map) if map.contains_key("$__toml_private_datetime") => {
            Err("a TOML date is no JSON value; write it as a string".into())
        }
        Value::Object(map) => map.values().try_for_each(plain_json),
        _ => Ok(()),
    }
}

/// JSON equality with numbers compared by value: `100`, `100.0` and `1e2` are one number,
/// however the sender's language writes it. (The parser keeps each number's text, so
/// `Value`'s own equality compares how numbers are written.)
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Decimal::of(x) == Decimal::of(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A number as `±digits × 10^exponent`, the digits without leading or trailing zeros, so
/// that two writings of one value compare equal, exactly and at any size.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn of(number: &serde_json::Number) -> Decimal {
        let text = number.to_string();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            // An exponent past i64 is a value no filter names; it only has to stay apart.
            Some((mantissa, exponent)) => (
                mantissa,
                exponent.parse().unwrap_or_else(|_| {
                    if exponent.starts_with('-') {
                        i64::MIN / 2
                    } else {
                        i64::MAX / 2
                    }
                }),
            ),
            None => (unsigned, 0_i64),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all = format!("{whole}{fraction}");
        let significant = all.trim_start_matches('0');
        let digits = significant.trim_end_matches('0');
        if digits.is_empty() {
            return Decimal {
                negative: false,
                digits: String::new(),
                exponent: 0,
            };
        }
        let trailing = (significant.len() - digits.len()) as i64;
        Decimal {
            negative,
            digits: digits.to_owned(),
            exponent: exponent
                .saturating_sub(fraction.len() as i64)
                .saturating_add(trailing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(pairs: &[(&str, Value)]) -> Filter {
        Filter::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn matches_equal_values_only() {
        let f = filter(&[("/status", json!("failed"))]);
        assert!(f.matches(Some(&json!({"status": "failed"}))));
        assert!(!f.matches(Some(&json!({"status": "success"}))));
        assert!(!f.matches(Some(&json!({}))));
        assert!(!f.matches(None));
    }

    #[test]
    fn a_list_accepts_any_of_its_values() {
        let f = filter(&[("/region", json!(["us-east", "eu-west"]))]);
        assert!(f.matches(Some(&json!({"region": "eu-west"}))));
        assert!(!f.matches(Some(&json!({"region": "ap-south"}))));
    }

    /// Values as a sender's JSON writes them; the parser keeps each number's text.
    fn body(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_match_by_value_however_they_are_written() {
        let f = filter(&[("/amount", body("100.0")), ("/score", body("[0.1, 7]"))]);
        for amount in ["100", "100.0", "1e2", "100.00", "1E+2", "0.001e5"] {
            let event = body(&format!(r#"{{"amount": {amount}, "score": 7.0}}"#));
            assert!(f.matches(Some(&event)), "{amount}");
        }
        assert!(f.matches(Some(&body(r#"{"amount": 100, "score": 1e-1}"#))));
        for amount in ["101", "10", "-100", "100.0000001", "\"100\""] {
            let event = body(&format!(r#"{{"amount": {amount}, "score": 7}}"#));
            assert!(!f.matches(Some(&event)), "{amount}");
        }
        let zero = filter(&[("/n", body("0"))]);
        assert!(zero.matches(Some(&body(r#"{"n": -0.0}"#))));
        let large = filter(&[("/n", body("9007199254740993"))]);
        assert!(!large.matches(Some(&body(r#"{"n": 9007199254740992}"#))));
        assert!(large.matches(Some(&body(r#"{"n": 9.007199254740993e15}"#))));
        let huge = filter(&[("/n", body("1e99999999999999999999"))]);
        assert!(!huge.matches(Some(&body(r#"{"n": 1e999}"#))));
    }

    #[test]
    fn lists_and_objects_compare_their_numbers_by_value_too() {
        let f = filter(&[
            ("/pair", body("[[1, 2.5]]")),
            ("/meta", body(r#"[{"v": 2}]"#)),
        ]);
        let event = body(r#"{"pair": [1.0, 25e-1], "meta": {"v": 2.0}}"#);
        assert!(f.matches(Some(&event)));
        let other = body(r#"{"pair": [1, 2.5, 3], "meta": {"v": 2}}"#);
        assert!(!f.matches(Some(&other)));
    }

    #[test]
    fn what_toml_writes_but_json_cannot_hold_is_refused() {
        for when in [
            "\"/x\" = nan",
            "\"/x\" = inf",
            "\"/x\" = [1, -inf]",
            "\"/d\" = 1979-05-27T07:32:00Z",
            "\"/m\" = { at = 1979-05-27 }",
        ] {
            let table: BTreeMap<String, Value> = toml::from_str(when).unwrap();
            assert!(Filter::new(table).is_err(), "{when}");
        }
        let table: BTreeMap<String, Value> = toml::from_str("\"/d\" = \"1979-05-27\"").unwrap();
        assert!(Filter::new(table).is_ok());
    }

    #[test]
    fn every_condition_must_hold() {
        let f = filter(&[("/status", json!("failed")), ("/region", json!("us-east"))]);
        assert!(f.matches(Some(&json!({"status": "failed", "region": "us-east"}))));
        assert!(!f.matches(Some(&json!({"status": "failed", "region": "eu-west"}))));
    }

    #[test]
    fn empty_filter_matches_anything() {
        assert!(Filter::default().matches(None));
    }
}

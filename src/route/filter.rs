//! `when` conditions: an upstream receives only events whose JSON body matches.

use std::collections::BTreeMap;

use serde_json::Value;

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

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The JSON pointers the conditions read.
    pub fn pointers(&self) -> impl Iterator<Item = &str> {
        self.conditions.iter().map(|(pointer, _)| pointer.as_str())
    }

    /// Whether a body matches; a body that is not JSON matches only an empty filter.
    pub fn matches(&self, json: Option<&Value>) -> bool {
        if self.conditions.is_empty() {
            return true;
        }
        let Some(json) = json else { return false };
        self.conditions.iter().all(|(pointer, accepted)| {
            json.pointer(pointer)
                .is_some_and(|found| accepted.iter().any(|a| a == found))
        })
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

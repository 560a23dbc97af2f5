//! The JSON view of a raw body, parsed strictly: an object that names a key twice is an
//! error, not a value.
//!
//! JSON parsers disagree on repeated keys (some keep the first value, some the last), so a
//! body such as `{"job_id": 7, "job_id": 42}` could be judged by its last value here and
//! acted on by its first in an upstream. The gateway reads dedup keys, filters and bound
//! callback values from bodies, so it refuses the ambiguity instead of picking a side.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The key serde_json uses to carry a number's digits when it keeps them exactly.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why a body has no JSON view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The body is not JSON.
    #[error("body is not JSON")]
    NotJson,
    /// The body is JSON, but an object in it names the same key twice.
    #[error("body repeats a key inside one JSON object")]
    RepeatedKey,
    /// The body is JSON, but an object in it uses the key serde_json reserves for the
    /// digits of a number, which it would read as that number.
    #[error("body uses a key reserved by the JSON parser")]
    ReservedKey,
}

/// Parses `body` as one JSON value, refusing repeated keys.
pub fn parse(body: &[u8]) -> Result<Value, JsonError> {
    let found = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = deserializer.deserialize_any(Strict(&found));
    match (parsed, deserializer.end(), found.get()) {
        (Ok(value), Ok(()), None) => Ok(value),
        (Ok(_), Ok(()), Some(error)) => Err(error),
        _ => Err(JsonError::NotJson),
    }
}

/// The top-level members of a JSON object body named in `members`, parsed as [`parse`]
/// would, in an object of their own; a body that is not an object is parsed whole.
///
/// A long body (a two-hour transcript holds a timestamp object per word) costs far more to
/// build as a tree than everything else the gateway does with it, and a route reads only
/// the members its JSON pointers start in. The other members are checked to be JSON but
/// not built, so a repeated key inside them goes unremarked: nothing the gateway decides
/// reads them. The top level's own keys are all checked for repeats.
pub fn view(body: &[u8], members: &[&str]) -> Result<Value, JsonError> {
    // Text that is skipped rather than built is not checked for UTF-8 by the parser.
    std::str::from_utf8(body).map_err(|_| JsonError::NotJson)?;
    if body.trim_ascii_start().first() != Some(&b'{') {
        return parse(body);
    }
    let found = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = deserializer.deserialize_map(Members {
        wanted: members,
        found: &found,
    });
    match (parsed, deserializer.end(), found.get()) {
        (Ok(value), Ok(()), None) => Ok(value),
        (Ok(_), Ok(()), Some(error)) => Err(error),
        _ => Err(JsonError::NotJson),
    }
}

/// The top level of [`view`]: builds the wanted members, skips the rest.
struct Members<'a> {
    wanted: &'a [&'a str],
    found: &'a Cell<Option<JsonError>>,
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        // Keys borrowed from the body where they have no escapes; ordered rather than hashed,
        // which for the dozen keys of a usual body is cheaper and for a hostile one still
        // takes O(log n) a key.
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let problem = match &*key {
                // The body began with `{`, so this is no number but an object posing as one.
                NUMBER_TOKEN => Some(JsonError::ReservedKey),
                _ if seen.contains(&key) => Some(JsonError::RepeatedKey),
                _ => None,
            };
            if problem.is_some() && self.found.get().is_none() {
                self.found.set(problem);
            }
            if self.wanted.contains(&&*key) {
                let value = map.next_value_seed(Strict(self.found))?;
                object.insert(key.clone().into_owned(), value);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
            seen.insert(key);
        }
        Ok(Value::Object(object))
    }
}

/// A key of the top-level object: borrowed from the body, or owned when it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(key.to_owned()))
    }

    fn visit_string<E>(self, key: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(key))
    }
}

/// Builds a [`Value`] as serde_json does, and notes in the cell it holds an object that
/// names a key twice. It reads on past that, so that text which is not JSON at all is still
/// told apart from JSON with a repeated key.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a Cell<Option<JsonError>>);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(self)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == NUMBER_TOKEN {
            // A number whose digits serde_json keeps as text, or an object in the body that
            // names the same key to pass for one: serde_json hands a number's digits over
            // as an owned string, and a string from the body as a borrowed or escaped one.
            return match map.next_value_seed(Digits)? {
                Some(digits) => digits
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom),
                None => {
                    self.0.set(Some(JsonError::ReservedKey));
                    while map
                        .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                        .is_some()
                    {}
                    Ok(Value::Null)
                }
            };
        }
        let mut object = Map::new();
        let mut key = Some(first);
        while let Some(name) = key {
            let value = map.next_value_seed(self)?;
            if object.insert(name, value).is_some() && self.0.get().is_none() {
                self.0.set(Some(JsonError::RepeatedKey));
            }
            key = map.next_key::<String>()?;
        }
        Ok(Value::Object(object))
    }
}

/// The value under [`NUMBER_TOKEN`]: the digits when serde_json made them (an owned
/// string), `None` when the body wrote the key itself.
struct Digits;

impl<'de> DeserializeSeed<'de> for Digits {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Digits {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number's digits")
    }

    fn visit_string<E>(self, digits: String) -> Result<Option<String>, E> {
        Ok(Some(digits))
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_parses_as_serde_json_would() {
        let body = br#"{"a": [1, -2, 3.5, 12345678901234567890123], "b": {"c": null, "d": true},
                        "e": "\u00e9\n"}"#;
        let strict = parse(body).unwrap();
        let plain: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(strict, plain);
        // The big number keeps its digits.
        assert_eq!(strict["a"][3].to_string(), "12345678901234567890123");
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for body in [
            &br#"{"job_id": 7, "job_id": 42}"#[..],
            br#"{"webhook_extra": {"case": 1, "case": 1}}"#,
            br#"[{"x": 1}, {"y": 2, "y": 3}]"#,
            br#"{"a": 1, "\u0061": 2}"#,
        ] {
            assert_eq!(parse(body), Err(JsonError::RepeatedKey), "{body:?}");
        }
    }

    #[test]
    fn an_object_naming_the_parsers_number_key_does_not_pass_for_a_number() {
        for body in [
            &br#"{"request_id": {"$serde_json::private::Number": "42"}}"#[..],
            br#"{"$serde_json::private::Number": "42"}"#,
            br#"{"$serde_json::private::Number": "4\u0032"}"#,
            br#"[{"\u0024serde_json::private::Number": "1"}]"#,
            br#"{"$serde_json::private::Number": {"a": [1]}, "b": 2}"#,
        ] {
            assert_eq!(parse(body), Err(JsonError::ReservedKey), "{body:?}");
        }
        // Real numbers still keep their digits.
        let digits = b"[42, 123456789012345678901234567890]";
        assert_eq!(
            parse(digits).unwrap().to_string(),
            "[42,123456789012345678901234567890]"
        );
    }

    #[test]
    fn a_view_builds_the_wanted_members_as_the_whole_parse_does() {
        let body =
            br#"{"request_id": "r1", "words": [{"w": "a", "w": "b"}], "n": 12345678901234567890123,
                        "webhook_extra": {"region": "us-east"}, "status": "failed"}"#;
        let view = view(body, &["request_id", "webhook_extra", "n", "absent"]).unwrap();
        let whole: Value = serde_json::from_slice(body).unwrap();
        for member in ["request_id", "webhook_extra", "n"] {
            assert_eq!(view[member], whole[member], "{member}");
        }
        // What no pointer starts in is left out, repeated keys inside it included.
        assert_eq!(view.as_object().unwrap().len(), 3);
    }

    #[test]
    fn a_view_refuses_repeats_at_the_top_and_inside_wanted_members() {
        let top = br#"{"request_id": "a", "words": [], "request_id": "b"}"#;
        assert_eq!(view(top, &["request_id"]), Err(JsonError::RepeatedKey));
        let skipped_twice = br#"{"words": 1, "words": 2, "request_id": "a"}"#;
        assert_eq!(
            view(skipped_twice, &["request_id"]),
            Err(JsonError::RepeatedKey)
        );
        let nested = br#"{"webhook_extra": {"region": "us", "region": "eu"}}"#;
        assert_eq!(
            view(nested, &["webhook_extra"]),
            Err(JsonError::RepeatedKey)
        );
        let posing = br#"{"$serde_json::private::Number": "1"}"#;
        assert_eq!(view(posing, &[]), Err(JsonError::ReservedKey));
        let inside = br#"{"id": {"$serde_json::private::Number": "1"}}"#;
        assert_eq!(view(inside, &["id"]), Err(JsonError::ReservedKey));
    }

    #[test]
    fn a_view_reads_top_level_keys_written_with_escapes_as_their_text() {
        let escaped = br#"{"\u0069d": "x", "other": 1}"#;
        assert_eq!(
            view(escaped, &["id"]).unwrap(),
            serde_json::json!({"id": "x"})
        );
        let twice = br#"{"id": "x", "\u0069d": "y"}"#;
        assert_eq!(view(twice, &[]), Err(JsonError::RepeatedKey));
    }

    #[test]
    fn a_view_of_what_is_not_a_json_object() {
        assert_eq!(view(b"[1, 2]", &["x"]).unwrap(), serde_json::json!([1, 2]));
        for body in [&b"{"[..], b"{\"a\": [}", b"{\"a\": \"\xff\"}", b"{} x", b""] {
            assert_eq!(view(body, &["a"]), Err(JsonError::NotJson), "{body:?}");
        }
    }

    #[test]
    fn the_same_key_in_different_objects_is_fine() {
        let body = br#"{"id": 1, "nested": {"id": 2}, "list": [{"id": 3}, {"id": 4}]}"#;
        assert!(parse(body).is_ok());
    }

    #[test]
    fn text_that_is_not_one_json_value_is_not_json() {
        for body in [&b""[..], b"{", b"{} {}", b"nope", b"{\"a\":1,}", b"\xff"] {
            assert_eq!(parse(body), Err(JsonError::NotJson), "{body:?}");
        }
    }

    #[test]
    fn nesting_past_the_parsers_depth_limit_is_not_json() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::NotJson));
    }
}

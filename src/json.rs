//! The JSON view of a raw body, parsed strictly: an object that names a key twice is an
//! error, not a value.
//!
//! JSON parsers disagree on repeated keys (some keep the first value, some the last), so a
//! body such as `{"job_id": 7, "job_id": 42}` could be judged by its last value here and
//! acted on by its first in an upstream. The gateway reads dedup keys, filters and bound
//! callback values from bodies, so it refuses the ambiguity instead of picking a side.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
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

/// How much of the value at a JSON pointer a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Read {
    /// A string, number, boolean or null; an object or array there is left out of the
    /// view, as no such reader (a dedup key, a filter on a plain value) can use one.
    Scalar,
    /// The value whatever it is, built whole (a filter that compares an object or a list).
    Whole,
}

/// The parts of a JSON body that `reads` reach, parsed as [`parse`] would: the values at
/// their pointers, in objects that hold only the keys on the way to them (an array on the
/// way becomes an object keyed by the indices read). What is off those paths is checked to
/// be JSON but not built, and the view answers [`serde_json::Value::pointer`] for each
/// pointer read as the whole parse would, but for objects and arrays read as a scalar.
///
/// A long body (a two-hour transcript holds a timestamp object per word) costs far more to
/// build as a tree than everything else the gateway does with it, and a tree costs tens of
/// times the body's size in memory. A key on a path given twice in one object is refused,
/// and so is a repeat anywhere in what is built whole; a repeat elsewhere goes unremarked,
/// as nothing the gateway decides reads it. Off the paths the body is checked to be JSON
/// text as the parser scans it, which lets pass some text that [`parse`] refuses: nesting
/// past its depth limit, and escapes of lone surrogates.
pub fn view(body: &[u8], reads: &Reads) -> Result<Value, JsonError> {
    // Text that is skipped rather than built is not checked for UTF-8 by the parser.
    std::str::from_utf8(body).map_err(|_| JsonError::NotJson)?;
    let found = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = Node {
        paths: &reads.0,
        found: &found,
    }
    .deserialize(&mut deserializer);
    match (parsed, deserializer.end(), found.get()) {
        (Ok(value), Ok(()), None) => Ok(value.unwrap_or(Value::Null)),
        (Ok(_), Ok(()), Some(error)) => Err(error),
        _ => Err(JsonError::NotJson),
    }
}

/// What a reader reads of JSON bodies (pointers, and how much at each), prepared once for
/// the many bodies it reads with [`view`].
#[derive(Debug, Default)]
pub struct Reads(Paths);

impl Reads {
    /// Prepares `reads`: pointers (empty, or starting with `/`) and what is read there.
    pub fn new(reads: &[(&str, Read)]) -> Reads {
        let mut paths = Paths::default();
        for (pointer, read) in reads {
            paths.add(pointer, *read);
        }
        Reads(paths)
    }
}

/// The pointers read, as a tree of their unescaped tokens.
#[derive(Debug, Default)]
struct Paths {
    /// What is read where a pointer ends here.
    end: Option<Read>,
    next: BTreeMap<String, Paths>,
}

impl Paths {
    fn add(&mut self, pointer: &str, read: Read) {
        let mut node = self;
        // A pointer is empty (the whole body) or starts with `/`.
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            node = node.next.entry(token).or_default();
        }
        node.end = node.end.max(Some(read));
    }

    /// The children read by array index: tokens that name one (`0`, `17`; not `017`, `+1`).
    fn indices(&self) -> BTreeMap<usize, (&str, &Paths)> {
        self.next
            .iter()
            .filter(|(token, _)| token.bytes().all(|b| b.is_ascii_digit()))
            .filter(|(token, _)| token.as_str() == "0" || !token.starts_with('0'))
            .filter_map(|(token, paths)| Some((token.parse().ok()?, (token.as_str(), paths))))
            .collect()
    }
}

/// One value of [`view`]: built whole, built in part along the paths below it, or left
/// out (`None`).
#[derive(Clone, Copy)]
struct Node<'a> {
    paths: &'a Paths,
    found: &'a Cell<Option<JsonError>>,
}

impl Node<'_> {
    /// Notes the first problem found; reading goes on so that text which is not JSON at
    /// all is still told apart.
    fn note(&self, problem: JsonError) {
        if self.found.get().is_none() {
            self.found.set(Some(problem));
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        if self.paths.end == Some(Read::Whole) {
            return Strict(self.found).deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

/// An array element: read along its paths, or skipped.
struct Element<'a>(Option<Node<'a>>);

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        match self.0 {
            Some(node) => node.deserialize(d),
            None => <de::IgnoredAny as de::Deserialize>::deserialize(d).map(|_| None),
        }
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    // A plain value is built as the whole parse builds it.
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Option<Value>, E> {
        Strict(self.found).visit_bool(value).map(Some)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Option<Value>, E> {
        Strict(self.found).visit_i64(value).map(Some)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Option<Value>, E> {
        Strict(self.found).visit_u64(value).map(Some)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Option<Value>, E> {
        Strict(self.found).visit_f64(value).map(Some)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Option<Value>, E> {
        Strict(self.found).visit_str(value).map(Some)
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Option<Value>, E> {
        Strict(self.found).visit_string(value).map(Some)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Strict(self.found).visit_unit().map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        let indices = self.paths.indices();
        let mut read = Map::new();
        let mut index = 0_usize;
        loop {
            let wanted = indices.get(&index);
            let node = wanted.map(|(_, paths)| Node { paths, ..self });
            let Some(value) = seq.next_element_seed(Element(node))? else {
                break;
            };
            if let (Some((token, _)), Some(value)) = (wanted, value) {
                read.insert((*token).to_owned(), value);
            }
            index += 1;
        }
        Ok((!self.paths.next.is_empty()).then_some(Value::Object(read)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let Some(first) = map.next_key_seed(Key)? else {
            return Ok((!self.paths.next.is_empty()).then(|| Value::Object(Map::new())));
        };
        if first == NUMBER_TOKEN {
            let number = number_under_token(&mut map)?;
            if number.is_none() {
                self.note(JsonError::ReservedKey);
            }
            return Ok(number.map(Value::Number));
        }
        if self.paths.next.is_empty() {
            // An object where a plain value is read: nothing in it is read, so it is only
            // checked to be JSON.
            map.next_value::<de::IgnoredAny>()?;
            skip_rest(&mut map)?;
            return Ok(None);
        }
        let mut read = Map::new();
        // Only the keys on a path are remembered, so an object of millions of keys costs
        // no more memory than one of a few.
        let mut seen = BTreeSet::new();
        let mut key = Some(first);
        while let Some(name) = key {
            if name == NUMBER_TOKEN {
                self.note(JsonError::ReservedKey);
            }
            match self.paths.next.get_key_value(&*name) {
                Some((token, paths)) => {
                    if !seen.insert(token.as_str()) {
                        self.note(JsonError::RepeatedKey);
                    }
                    if let Some(value) = map.next_value_seed(Node { paths, ..self })? {
                        read.insert(token.clone(), value);
                    }
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            key = map.next_key_seed(Key)?;
        }
        Ok(Some(Value::Object(read)))
    }
}

/// An object's key: borrowed from the body, or owned when it had escapes.
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
            return Ok(match number_under_token(&mut map)? {
                Some(number) => Value::Number(number),
                None => {
                    self.0.set(Some(JsonError::ReservedKey));
                    Value::Null
                }
            });
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

/// What follows a first key of [`NUMBER_TOKEN`]: the number whose digits serde_json keeps
/// as text that way, or `None` for an object in the body that names the key to pass for
/// one, whose rest is then skipped. serde_json hands a number's digits over as an owned
/// string, and a string from the body as a borrowed or escaped one.
fn number_under_token<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Number>, A::Error> {
    match map.next_value_seed(Digits)? {
        Some(digits) => digits.parse().map(Some).map_err(de::Error::custom),
        None => skip_rest(map).map(|()| None),
    }
}

/// Reads the rest of an object without building it.
fn skip_rest<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    while map
        .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
        .is_some()
    {}
    Ok(())
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
        skip_rest(&mut map).map(|()| None)
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

    /// [`super::view`] with `reads` prepared for this one body.
    fn view(body: &[u8], reads: &[(&str, Read)]) -> Result<Value, JsonError> {
        super::view(body, &Reads::new(reads))
    }

    /// Reads of plain values at `pointers`.
    fn scalars<'a>(pointers: &[&'a str]) -> Vec<(&'a str, Read)> {
        pointers.iter().map(|p| (*p, Read::Scalar)).collect()
    }

    #[test]
    fn a_view_reads_what_the_whole_parse_reads_at_each_pointer() {
        let body = br#"{"request_id": "r1", "words": [{"w": "a", "w": "b"}, {"speaker": 2}],
                        "n": 12345678901234567890123, "a/b": {"~": true},
                        "webhook_extra": {"region": "us-east", "case": [1]}, "status": "failed"}"#;
        let reads = [
            ("/request_id", Read::Scalar),
            ("/n", Read::Scalar),
            ("/words/1/speaker", Read::Scalar),
            ("/a~1b/~0", Read::Scalar),
            ("/webhook_extra", Read::Whole),
            ("/absent", Read::Scalar),
        ];
        let view = view(body, &reads).unwrap();
        let whole: Value = serde_json::from_slice(body).unwrap();
        for (pointer, _) in reads {
            assert_eq!(view.pointer(pointer), whole.pointer(pointer), "{pointer}");
        }
        // What no pointer reaches is left out, the repeated key in the first word included.
        assert!(view.get("status").is_none() && view.pointer("/words/0").is_none());
    }

    #[test]
    fn an_object_or_array_read_as_a_scalar_is_left_out_unbuilt() {
        let body = br#"{"status": [{"a": 1}, {"a": 1, "a": 2}], "id": {"x": 1}, "n": null}"#;
        let scalar = view(body, &scalars(&["/status", "/id", "/n"])).unwrap();
        assert_eq!(scalar, serde_json::json!({"n": null}));
        let whole = view(body, &[("/id", Read::Whole)]).unwrap();
        assert_eq!(whole, serde_json::json!({"id": {"x": 1}}));
    }

    #[test]
    fn a_view_refuses_a_key_on_its_paths_given_twice_and_no_other() {
        let top = br#"{"request_id": "a", "words": [], "request_id": "b"}"#;
        let request_id = scalars(&["/request_id"]);
        assert_eq!(view(top, &request_id), Err(JsonError::RepeatedKey));
        // Nothing the gateway decides reads `words`, nor what is in an object read as a
        // plain value.
        let skipped_twice = br#"{"words": 1, "words": 2, "request_id": "a"}"#;
        assert!(view(skipped_twice, &request_id).is_ok());
        let inside_a_scalar = br#"{"request_id": {"a": 1, "a": 2}}"#;
        assert!(view(inside_a_scalar, &request_id).is_ok());
        let nested = br#"{"webhook_extra": {"region": "us", "region": "eu"}}"#;
        let region = scalars(&["/webhook_extra/region"]);
        assert_eq!(view(nested, &region), Err(JsonError::RepeatedKey));
        let whole = [("/webhook_extra", Read::Whole)];
        let deep = br#"{"webhook_extra": {"x": {"y": 1, "y": 2}}}"#;
        assert_eq!(view(deep, &whole), Err(JsonError::RepeatedKey));
        let posing = br#"{"$serde_json::private::Number": "1"}"#;
        assert_eq!(view(posing, &[]), Err(JsonError::ReservedKey));
        let inside = br#"{"id": {"$serde_json::private::Number": "1"}}"#;
        assert_eq!(
            view(inside, &scalars(&["/id"])),
            Err(JsonError::ReservedKey)
        );
    }

    #[test]
    fn a_view_reads_keys_written_with_escapes_as_their_text() {
        let escaped = br#"{"\u0069d": "x", "other": 1}"#;
        let id = scalars(&["/id"]);
        assert_eq!(view(escaped, &id).unwrap(), serde_json::json!({"id": "x"}));
        let twice = br#"{"id": "x", "\u0069d": "y"}"#;
        assert_eq!(view(twice, &id), Err(JsonError::RepeatedKey));
    }

    #[test]
    fn a_view_reads_arrays_by_index_and_bodies_that_are_not_objects() {
        let list = view(b"[1, 2]", &scalars(&["/1", "/x", "/01", "/+0", "/-1"])).unwrap();
        assert_eq!(list.pointer("/+0"), None);
        assert_eq!(list.pointer("/-1"), None);
        assert_eq!(list.pointer("/1"), Some(&serde_json::json!(2)));
        assert_eq!(list.pointer("/x"), None);
        assert_eq!(list.pointer("/01"), None);
        assert_eq!(view(b"\"text\"", &scalars(&["/a"])).unwrap(), "text");
        for body in [&b"{"[..], b"{\"a\": [}", b"{\"a\": \"\xff\"}", b"{} x", b""] {
            assert_eq!(
                view(body, &scalars(&["/a"])),
                Err(JsonError::NotJson),
                "{body:?}"
            );
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

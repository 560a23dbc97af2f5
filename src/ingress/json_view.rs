//! The parts of a JSON body a route looks at, parsed; the rest is only checked.
//!
//! A route reads a few values at JSON pointers (its dedup key, its upstreams' `when`
//! conditions). Building the whole document as a tree costs far more than the rest of a
//! request for a long body, such as a two-hour transcript with a timestamp per word. The
//! body is therefore checked whole, but only the top-level members that a pointer starts in
//! are parsed; every pointer then finds exactly what it would in the whole tree.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

/// A body that is not JSON.
#[derive(Debug)]
pub(super) struct NotJson;

/// The body as a tree with the members `pointers` reach; other members are left out.
pub(super) fn view<'p>(
    body: &[u8],
    pointers: impl IntoIterator<Item = &'p str>,
) -> Result<Value, NotJson> {
    // JSON text is UTF-8; checking it first means no member is taken unread.
    let text = std::str::from_utf8(body).map_err(|_| NotJson)?;
    let Ok(members) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
        // Not an object at the top (or not JSON at all): the whole parse decides.
        return serde_json::from_str(text).map_err(|_| NotJson);
    };
    let mut object = serde_json::Map::new();
    for pointer in pointers {
        let Some(name) = first_token(pointer) else {
            continue;
        };
        if let Some(raw) = members.get(&name).filter(|_| !object.contains_key(&name)) {
            let value = serde_json::from_str(raw.get()).map_err(|_| NotJson)?;
            object.insert(name, value);
        }
    }
    Ok(Value::Object(object))
}

/// The member name a pointer starts with, unescaped (`~1` is `/`, `~0` is `~`).
fn first_token(pointer: &str) -> Option<String> {
    let rest = pointer.strip_prefix('/')?;
    let token = rest.split('/').next().unwrap_or("");
    Some(token.replace("~1", "/").replace("~0", "~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &str) -> Value {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn pointers_find_what_they_find_in_the_whole_tree() {
        let body = r#"{"request_id":"r1","words":[{"w":"a"}],"a/b":{"~c":[1,2.50]},"n":1e400,
                      "request_id":"r2","meta":{"id":7}}"#;
        let pointers = [
            "/request_id",
            "/a~1b/~0c/1",
            "/meta/id",
            "/missing",
            "/n",
            "/words/0/w",
        ];
        let view = view(body.as_bytes(), pointers).unwrap();
        for pointer in pointers {
            assert_eq!(
                view.pointer(pointer),
                whole(body).pointer(pointer),
                "{pointer}"
            );
        }
    }

    #[test]
    fn members_no_pointer_reaches_are_left_out() {
        let view = view(br#"{"request_id":"r1","words":[1,2,3]}"#, ["/request_id"]).unwrap();
        assert_eq!(view, serde_json::json!({"request_id": "r1"}));
    }

    #[test]
    fn a_body_that_is_not_json_anywhere_is_refused() {
        let bad: [&[u8]; 5] = [
            b"{\"request_id\":\"r1\",\"words\":[1,2",
            b"{\"request_id\":\"r1\",\"words\":[01]}",
            b"{\"request_id\":\"r1\",\"words\":\"\xff\"}",
            b"{\"request_id\":\"r1\"} trailing",
            b"not json",
        ];
        for body in bad {
            assert!(view(body, ["/request_id"]).is_err(), "{body:?}");
        }
    }

    #[test]
    fn a_document_that_is_not_an_object_is_parsed_whole() {
        let view = view(br#"[{"id":1}]"#, ["/0/id"]).unwrap();
        assert_eq!(view.pointer("/0/id"), Some(&serde_json::json!(1)));
    }
}

//! A JSON object read into a value and, in the same pass, where its top-level members stand in
//! its text: what [`super::set_members`] needs to edit the client's bytes without scanning
//! them again. The top level is walked here; each member's value is read by serde_json, whose
//! stream reader says where the value ended.

use super::{Layout, Member};
use crate::json_scan::{plain_run, space_end};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// serde_json's marker key for a raw value: an object whose first key it is reads as the JSON
/// text of its value (serde_json's quirk, feature `raw_value`). Such a text goes to serde_json
/// whole, so the value is what serde_json makes of it.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// `text` read as `serde_json::from_str` reads it, with the layout of its members when it is an
/// object whose bytes can be edited safely: every top-level key written plainly (no escapes:
/// one might spell a key an edit sets) and no key repeated in any object (parsers differ on
/// which of a repeated key's values counts: the gateway reads the last, an upstream might read
/// the first; bytes that can mean two things are not sent). Anything else (not an object, not
/// JSON) is read by serde_json alone, so its value, or its error and where it stands, are
/// exactly serde_json's.
pub fn read(text: &str) -> serde_json::Result<(Value, Option<Layout>)> {
    match read_object(text) {
        Some(read) => Ok(read),
        None => serde_json::from_str(text).map(|value| (value, None)),
    }
}

/// The walk over the top-level object; `None` hands the text to serde_json.
fn read_object(text: &str) -> Option<(Value, Option<Layout>)> {
    let bytes = text.as_bytes();
    let open = space_end(bytes, 0);
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let mut map = Map::new();
    let mut members = Vec::new();
    let mut repeated = false;
    let mut at = space_end(bytes, open + 1);
    if bytes.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if bytes.get(at) != Some(&b'"') {
                return None;
            }
            let key_start = at + 1;
            let key_end = plain_run(bytes, key_start)?;
            if bytes[key_end] != b'"' {
                return None;
            }
            let key = &text[key_start..key_end];
            if members.is_empty() && key == RAW_VALUE_KEY {
                return None;
            }
            at = space_end(bytes, key_end + 1);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = space_end(bytes, at + 1);
            let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Checked>();
            let Checked { value, repeated: inside } = values.next()?.ok()?;
            let end = at + values.byte_offset();
            repeated |= inside | map.insert(key.to_owned(), value).is_some();
            members.push(Member { key: key_start..key_end, value: at..end });
            at = space_end(bytes, end);
            match bytes.get(at) {
                Some(b',') => at = space_end(bytes, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if space_end(bytes, at) != bytes.len() {
        return None;
    }
    let layout = (!repeated).then_some(Layout { open, members });
    Some((Value::Object(map), layout))
}

/// The most arrays and objects serde_json reads nested in one another (its recursion limit).
/// A member's value is read by a reader of its own, which would allow one more level than
/// reading the whole text does; the visitor counts the levels so both refuse the same texts.
const MOST_NESTED: usize = 127;

/// A top-level member's value read as serde_json reads a `Value`, and whether any object in it
/// repeated a key.
struct Checked {
    value: Value,
    repeated: bool,
}

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        let repeated = Cell::new(false);
        // Inside the top-level object: one level deep already.
        let value = Seed { repeated: &repeated, depth: 1 }.deserialize(d)?;
        Ok(Checked { value, repeated: repeated.get() })
    }
}

/// serde_json's `Value` visitor, but for the flag it raises on a repeated key (whose last value
/// stays, in the first one's place, as serde_json's map keeps it) and the levels it counts.
#[derive(Clone, Copy)]
struct Seed<'a> {
    repeated: &'a Cell<bool>,
    /// Arrays and objects around the value read.
    depth: usize,
}

impl Seed<'_> {
    /// The seed for what a container holds, or an error past serde_json's limit.
    fn inside<E: de::Error>(self) -> Result<Self, E> {
        match self.depth < MOST_NESTED {
            true => Ok(Seed { depth: self.depth + 1, ..self }),
            false => Err(E::custom("recursion limit exceeded")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let inside = self.inside()?;
        let mut list = Vec::new();
        while let Some(item) = items.next_element_seed(inside)? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let inside = self.inside()?;
        let mut map = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            if map.is_empty() && key == RAW_VALUE_KEY {
                // serde_json's value differs here; the caller hands the text to it.
                return Err(de::Error::custom("serde_json's raw value marker"));
            }
            let value = entries.next_value_seed(inside)?;
            if map.insert(key, value).is_some() {
                self.repeated.set(true);
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `read` makes of `text`, checked against serde_json: the same value, or an error
    /// with the same message.
    fn layout(text: &str) -> Option<Vec<(String, String)>> {
        let ours = read(text);
        match serde_json::from_str::<Value>(text) {
            Ok(value) => assert_eq!(ours.as_ref().map(|(v, _)| v).ok(), Some(&value), "{text}"),
            Err(e) => assert_eq!(ours.as_ref().err().map(ToString::to_string), Some(e.to_string()), "{text}"),
        }
        let layout = ours.ok()?.1?;
        Some(
            layout.members.iter().map(|m| (text[m.key.clone()].to_owned(), text[m.value.clone()].to_owned())).collect(),
        )
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn an_objects_members_are_found_where_they_stand() {
        assert_eq!(
            layout(" {\"model\" : \"a\",\n \"n\":1.0e0,\"m\":[{\"c\":\"h\\u00e9\"}],\"t\":true,\"x\":null} "),
            pairs(&[("model", "\"a\""), ("n", "1.0e0"), ("m", "[{\"c\":\"h\\u00e9\"}]"), ("t", "true"), ("x", "null")])
        );
        assert_eq!(layout("{}"), pairs(&[]));
        assert_eq!(
            layout("{\"a\":-5,\"b\":18446744073709551616}"),
            pairs(&[("a", "-5"), ("b", "18446744073709551616")])
        );
        let layout = read("  {\"a\":1} ").unwrap().1.unwrap();
        assert_eq!(layout.open, 2);
    }

    #[test]
    fn bytes_that_cannot_be_edited_safely_have_no_layout_but_read_as_serde_json_reads_them() {
        // An escaped key might spell a key an edit sets.
        assert_eq!(layout(r#"{"mod\u0065l":"a"}"#), None);
        // A key repeated, at the top or deeper.
        assert_eq!(layout(r#"{"model":"a","model":"c"}"#), None);
        assert_eq!(layout(r#"{"m":[{"content":"a","content":"b"}]}"#), None);
        assert_eq!(layout(r#"{"m":[{"\u0061":1,"a":2}]}"#), None);
        // serde_json's raw value marker, first at the top and deeper.
        assert_eq!(layout(r#"{"$serde_json::private::RawValue":"{\"a\":1}"}"#), None);
        assert_eq!(layout(r#"{"x":{"$serde_json::private::RawValue":"[1]"}}"#), None);
        // Not objects, and not JSON: serde_json's value or error (the asserts in `layout`).
        for text in ["[1]", "\"s\"", "1", "", " ", "{\"a\":1", "{\"a\":1} x", "{\"a\":1}}", "{\"a\" 1}", "{\"a\":1,}"] {
            assert_eq!(layout(text), None, "{text}");
        }
        for text in ["{\"a\":1x}", "{\"a\":[1,]}", "{\"a\":\"\u{1}\"}", "{\"\u{1}\":1}", "{\"a\":01}", "{a:1}"] {
            assert_eq!(layout(text), None, "{text}");
        }
    }

    #[test]
    fn nesting_past_serde_jsons_limit_is_refused_as_serde_json_refuses_it() {
        let nested = |levels: usize| format!("{{\"a\":{}1{}}}", "[".repeat(levels), "]".repeat(levels));
        // The top-level object and 126 arrays: serde_json's most.
        assert!(layout(&nested(MOST_NESTED - 1)).is_some());
        for levels in [MOST_NESTED, MOST_NESTED + 1, 200] {
            assert!(read(&nested(levels)).is_err());
            assert_eq!(layout(&nested(levels)), None);
        }
    }
}

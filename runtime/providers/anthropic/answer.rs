//! An Anthropic `message` answer as the chat translation reads it, deserialized straight from
//! the upstream's bytes: text is borrowed where it has no escapes, and only the fields the
//! translation uses are kept. Parsing the whole answer into a `serde_json::Value` (every key
//! hashed into an order-keeping map) had cost more than the rest of the translation.
//!
//! Anything not of the expected shape reads as absent, as look-ups on a `Value` did: a `content`
//! that is not an array, a block that is not an object, a `type` that is not a string. A key
//! given twice keeps its last value.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// The `visit_*` methods of JSON's numbers, booleans and null, all giving `$value`.
macro_rules! non_strings_read_as {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The parts of a `message` the translation reads.
#[derive(Debug, Default)]
pub struct Answer<'a> {
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    /// `None` when `content` is missing or is not an array.
    pub content: Option<Vec<Block<'a>>>,
    pub stop_reason: Option<Cow<'a, str>>,
    /// `Some` whenever the answer has a `usage` member, whatever its value.
    pub usage: Option<Value>,
}

/// One content block; the members of a `tool_use` block are kept as they came.
#[derive(Debug, Default)]
pub struct Block<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub text: Option<Cow<'a, str>>,
    pub id: Option<Value>,
    pub name: Option<Value>,
    pub input: Option<Value>,
}

impl<'a> Answer<'a> {
    /// Reads an answer from its bytes (`Err` only when they are not JSON).
    pub fn from_slice(body: &'a [u8]) -> serde_json::Result<Answer<'a>> {
        serde_json::from_slice::<Lenient<Answer<'a>>>(body).map(|l| l.0)
    }

    /// Reads an answer already parsed.
    pub fn from_value(value: &'a Value) -> Answer<'a> {
        // A `Value` is JSON already: reading it cannot fail.
        Lenient::<Answer<'a>>::deserialize(value).map(|l| l.0).unwrap_or_default()
    }
}

/// A type read from a JSON object member by member.
trait FromMembers<'de>: Default {
    /// Reads the value of member `key` from `map`.
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

impl<'de> FromMembers<'de> for Answer<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "id" => self.id = map.next_value::<Text<'de>>()?.0,
            "model" => self.model = map.next_value::<Text<'de>>()?.0,
            "stop_reason" => self.stop_reason = map.next_value::<Text<'de>>()?.0,
            "content" => self.content = map.next_value::<ArrayOf<Block<'de>>>()?.0,
            "usage" => self.usage = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

impl<'de> FromMembers<'de> for Block<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = map.next_value::<Text<'de>>()?.0,
            "text" => self.text = map.next_value::<Text<'de>>()?.0,
            "id" => self.id = Some(map.next_value()?),
            "name" => self.name = Some(map.next_value()?),
            "input" => self.input = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

/// A `T` read from an object; any other JSON value reads as `T::default()`.
struct Lenient<T>(T);

impl<'de, T: FromMembers<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LenientVisitor<T>(PhantomData<T>);
        impl<'de, T: FromMembers<'de>> Visitor<'de> for LenientVisitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut value = T::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    value.member(key.as_deref().unwrap_or_default(), &mut map)?;
                }
                Ok(Lenient(value))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Lenient(T::default()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            non_strings_read_as!(Lenient(T::default()));
        }
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

/// `Some` of the array's elements (each read leniently), or `None` for any other JSON value.
struct ArrayOf<T>(Option<Vec<T>>);

impl<'de, T: FromMembers<'de>> Deserialize<'de> for ArrayOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T>(PhantomData<T>);
        impl<'de, T: FromMembers<'de>> Visitor<'de> for ArrayVisitor<T> {
            type Value = ArrayOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(Lenient(item)) = seq.next_element::<Lenient<T>>()? {
                    items.push(item);
                }
                Ok(ArrayOf(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| ArrayOf(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ArrayOf(None))
            }
            non_strings_read_as!(ArrayOf(None));
        }
        d.deserialize_any(ArrayVisitor(PhantomData))
    }
}

/// A string, or `None` for any other JSON value (which is read and skipped).
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Text(None))
            }
            non_strings_read_as!(Text(None));
        }
        d.deserialize_any(TextVisitor)
    }
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn odd_shapes_read_as_absent_and_the_last_of_a_repeated_key_wins() {
        let body = br#"{"id": 7, "id": "msg_1", "model": ["x"], "stop_reason": "end_turn", "usage": null,
            "content": [{"type": "text", "text": "a\"b"}, "not a block", {"type": 3, "text": "x"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": [1, {"r": null}]}}],
            "extra": {"nested": [true, false]}}"#;
        let a = Answer::from_slice(body).unwrap();
        assert_eq!(a.id.as_deref(), Some("msg_1"));
        assert_eq!(a.model, None);
        assert_eq!(a.usage, Some(Value::Null), "present, though null");
        let blocks = a.content.unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!((blocks[0].kind.as_deref(), blocks[0].text.as_deref()), (Some("text"), Some("a\"b")));
        assert!(blocks[1].kind.is_none() && blocks[2].kind.is_none());
        assert_eq!(blocks[3].input, Some(json!({"q": [1, {"r": null}]})));
        assert!(Answer::from_slice(br#"{"content": {"type": "text"}}"#).unwrap().content.is_none());
        assert!(Answer::from_slice(br#"[1, 2]"#).unwrap().content.is_none());
        assert!(Answer::from_slice(b"<html>").is_err());
    }

    #[test]
    fn reading_bytes_and_reading_a_value_agree() {
        let body = json!({"id": "m", "content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 3}});
        let bytes = serde_json::to_vec(&body).unwrap();
        let from_bytes = Answer::from_slice(&bytes).unwrap();
        let from_value = Answer::from_value(&body);
        assert_eq!(format!("{from_bytes:?}"), format!("{from_value:?}"));
    }
}

//! The lenient reader of what Anthropic answers: a `message`, a stream event, an error body,
//! read straight from the upstream's bytes into the wire types of `api::anthropic` (content
//! blocks, usage), text borrowed where it has no escapes. Only what the chat translation uses
//! is kept. Parsing an answer into a `serde_json::Value` (every key hashed into an
//! order-keeping map) had cost more than the rest of the translation.
//!
//! Anything not of the expected shape reads as absent, as look-ups on a `Value` did: a `content`
//! that is not an array, a block that is not an object, a `type` or a count that is not what it
//! should be. A key given twice keeps its last value. An unknown block reads as
//! [`ContentBlock::Other`] without its members (the translation has nothing to say of them).

use crate::api::anthropic::{ContentBlock, Usage};
use crate::exchange::parse_json;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
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
    pub content: Option<Vec<ContentBlock<'a>>>,
    pub stop_reason: Option<Cow<'a, str>>,
    /// `Some` whenever the answer has a `usage` member, whatever its value.
    pub usage: Option<Usage>,
}

/// The parts of a stream event the decoder reads (the members of every event type at once:
/// which one it is may come last).
#[derive(Debug, Default)]
pub struct Event<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub index: Option<u64>,
    /// `message_start`'s message. This and the other members one event in a hundred has are
    /// boxed: an event is moved about a dozen times as it is read, and unboxed they doubled
    /// what each move copies.
    pub message: Option<Box<Answer<'a>>>,
    /// `content_block_start`'s block.
    pub content_block: Option<Box<ContentBlock<'a>>>,
    /// `content_block_delta`'s or `message_delta`'s delta.
    pub delta: Option<Delta<'a>>,
    /// `message_delta`'s usage.
    pub usage: Option<Usage>,
    /// An `error` event's error.
    pub error: Option<Box<ErrorView<'a>>>,
}

/// A delta of either kind: a block's (`text_delta`, `input_json_delta`, `thinking_delta`,
/// `signature_delta`) or the message's.
#[derive(Debug, Default)]
pub struct Delta<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub text: Option<Cow<'a, str>>,
    pub partial_json: Option<Cow<'a, str>>,
    pub thinking: Option<Cow<'a, str>>,
    pub signature: Option<Cow<'a, str>>,
    pub stop_reason: Option<Cow<'a, str>>,
}

/// An error's `type` and `message`, each when it is a string.
#[derive(Debug, Default)]
pub struct ErrorView<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub message: Option<Cow<'a, str>>,
}

impl<'a> Answer<'a> {
    /// Reads an answer from its bytes (`Err` only when they are not JSON).
    pub fn from_slice(body: &'a [u8]) -> serde_json::Result<Answer<'a>> {
        parse_json::<Lenient<'a, Answer<'a>>>(body).map(|l| l.0)
    }

    /// Reads an answer already parsed.
    pub fn from_value(value: &'a Value) -> Answer<'a> {
        // A `Value` is JSON already: reading it cannot fail.
        Lenient::<'a, Answer<'a>>::deserialize(value).map(|l| l.0).unwrap_or_default()
    }
}

impl<'a> Event<'a> {
    /// Reads one event's `data` (`Err` only when it is not JSON): a text delta as Anthropic
    /// writes it by hand (`text_delta.rs`), any other through serde.
    pub fn read(data: &'a str) -> serde_json::Result<Event<'a>> {
        match super::text_delta::read(data) {
            Some(event) => Ok(event),
            None => Event::read_with_serde(data),
        }
    }

    /// [`Event::read`] without the hand-read text delta: what that one is held to.
    pub fn read_with_serde(data: &'a str) -> serde_json::Result<Event<'a>> {
        serde_json::from_str::<Lenient<'a, Event<'a>>>(data).map(|l| l.0)
    }
}

/// The `error` of an error body (`{"type": "error", "error": {...}}`), when the body is JSON.
pub fn error_of(body: &[u8]) -> Option<ErrorView<'_>> {
    parse_json::<Lenient<'_, ErrorBody<'_>>>(body).ok().and_then(|l| l.0.error)
}

/// A value read from a JSON object member by member, through a builder.
trait Builder<'de>: Default {
    /// What the members make.
    type Built;
    /// Reads the value of member `key` from `map`.
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
    fn build(self) -> Self::Built;
}

impl<'de> Builder<'de> for Answer<'de> {
    type Built = Self;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "id" => self.id = map.next_value::<Text<'de>>()?.0,
            "model" => self.model = map.next_value::<Text<'de>>()?.0,
            "stop_reason" => self.stop_reason = map.next_value::<Text<'de>>()?.0,
            "content" => self.content = map.next_value::<ArrayOf<'de, RawBlock<'de>>>()?.0,
            "usage" => self.usage = Some(map.next_value::<Lenient<'de, Usage>>()?.0),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
    fn build(self) -> Self {
        self
    }
}

/// A content block's members, before its `type` (which may come last) says what it is.
#[derive(Default)]
struct RawBlock<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    input: Option<Value>,
    thinking: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    data: Option<Cow<'a, str>>,
}

impl<'de> Builder<'de> for RawBlock<'de> {
    type Built = ContentBlock<'de>;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = map.next_value::<Text<'de>>()?.0,
            "text" => self.text = map.next_value::<Text<'de>>()?.0,
            "id" => self.id = map.next_value::<Text<'de>>()?.0,
            "name" => self.name = map.next_value::<Text<'de>>()?.0,
            "input" => self.input = Some(map.next_value()?),
            "thinking" => self.thinking = map.next_value::<Text<'de>>()?.0,
            "signature" => self.signature = map.next_value::<Text<'de>>()?.0,
            "data" => self.data = map.next_value::<Text<'de>>()?.0,
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
    fn build(self) -> ContentBlock<'de> {
        match self.kind.as_deref() {
            Some("text") => ContentBlock::text(self.text.unwrap_or_default()),
            Some("tool_use") => ContentBlock::ToolUse {
                id: self.id.unwrap_or_default(),
                name: self.name.unwrap_or_default(),
                // A missing input is an empty one; a null stays null.
                input: self.input.unwrap_or_else(|| Value::Object(Map::new())),
            },
            Some("thinking") => ContentBlock::Thinking {
                thinking: self.thinking.unwrap_or_default(),
                signature: self.signature.unwrap_or_default(),
            },
            Some("redacted_thinking") => ContentBlock::RedactedThinking { data: self.data.unwrap_or_default() },
            _ => ContentBlock::Other(Map::new()),
        }
    }
}

impl<'de> Builder<'de> for Usage {
    type Built = Self;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let count = match key {
            "input_tokens" => &mut self.input_tokens,
            "output_tokens" => &mut self.output_tokens,
            "cache_creation_input_tokens" => &mut self.cache_creation_input_tokens,
            "cache_read_input_tokens" => &mut self.cache_read_input_tokens,
            _ => return map.next_value::<IgnoredAny>().map(drop),
        };
        *count = map.next_value::<Count>()?.0;
        Ok(())
    }
    fn build(self) -> Self {
        self
    }
}

impl<'de> Builder<'de> for Event<'de> {
    type Built = Self;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = map.next_value::<Text<'de>>()?.0,
            "index" => self.index = map.next_value::<Count>()?.0,
            "message" => self.message = Some(Box::new(map.next_value::<Lenient<'de, Answer<'de>>>()?.0)),
            "content_block" => self.content_block = Some(Box::new(map.next_value::<Lenient<'de, RawBlock<'de>>>()?.0)),
            "delta" => self.delta = Some(map.next_value::<Lenient<'de, Delta<'de>>>()?.0),
            "usage" => self.usage = Some(map.next_value::<Lenient<'de, Usage>>()?.0),
            "error" => self.error = Some(Box::new(map.next_value::<Lenient<'de, ErrorView<'de>>>()?.0)),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
    fn build(self) -> Self {
        self
    }
}

impl<'de> Builder<'de> for Delta<'de> {
    type Built = Self;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = map.next_value::<Text<'de>>()?.0,
            "text" => self.text = map.next_value::<Text<'de>>()?.0,
            "partial_json" => self.partial_json = map.next_value::<Text<'de>>()?.0,
            "thinking" => self.thinking = map.next_value::<Text<'de>>()?.0,
            "signature" => self.signature = map.next_value::<Text<'de>>()?.0,
            "stop_reason" => self.stop_reason = map.next_value::<Text<'de>>()?.0,
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
    fn build(self) -> Self {
        self
    }
}

impl<'de> Builder<'de> for ErrorView<'de> {
    type Built = Self;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = map.next_value::<Text<'de>>()?.0,
            "message" => self.message = map.next_value::<Text<'de>>()?.0,
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
    fn build(self) -> Self {
        self
    }
}

/// An error body: only its `error` member is read.
#[derive(Default)]
struct ErrorBody<'a> {
    error: Option<ErrorView<'a>>,
}

impl<'de> Builder<'de> for ErrorBody<'de> {
    type Built = Self;
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "error" => self.error = Some(map.next_value::<Lenient<'de, ErrorView<'de>>>()?.0),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
    fn build(self) -> Self {
        self
    }
}

/// What `B` builds from an object; any other JSON value builds from no members.
struct Lenient<'de, B: Builder<'de>>(B::Built);

impl<'de, B: Builder<'de>> Deserialize<'de> for Lenient<'de, B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LenientVisitor<B>(PhantomData<B>);
        impl<'de, B: Builder<'de>> Visitor<'de> for LenientVisitor<B> {
            type Value = Lenient<'de, B>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut builder = B::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    builder.member(key.as_deref().unwrap_or_default(), &mut map)?;
                }
                Ok(Lenient(builder.build()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Lenient(B::default().build()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(B::default().build()))
            }
            non_strings_read_as!(Lenient(B::default().build()));
        }
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

/// `Some` of what `B` builds from each element of an array, or `None` for any other JSON value.
struct ArrayOf<'de, B: Builder<'de>>(Option<Vec<B::Built>>);

impl<'de, B: Builder<'de>> Deserialize<'de> for ArrayOf<'de, B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<B>(PhantomData<B>);
        impl<'de, B: Builder<'de>> Visitor<'de> for ArrayVisitor<B> {
            type Value = ArrayOf<'de, B>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(Lenient(item)) = seq.next_element::<Lenient<'de, B>>()? {
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

/// A non-negative integer, or `None` for any other JSON value (as `Value::as_u64` reads).
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
                skip_map(map).map(|()| Count(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                skip_seq(seq).map(|()| Count(None))
            }
        }
        d.deserialize_any(CountVisitor)
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
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": [1, {"r": null}]}},
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "x"}],
            "extra": {"nested": [true, false]}}"#;
        let a = Answer::from_slice(body).unwrap();
        assert_eq!(a.id.as_deref(), Some("msg_1"));
        assert_eq!(a.model, None);
        assert_eq!(a.usage, Some(Usage::default()), "present, though null");
        let blocks = a.content.unwrap();
        assert_eq!(blocks.len(), 6);
        assert_eq!(blocks[4], ContentBlock::Thinking { thinking: "hmm".into(), signature: "sig".into() });
        assert_eq!(blocks[5], ContentBlock::RedactedThinking { data: "x".into() });
        assert_eq!(blocks[0], ContentBlock::text("a\"b"));
        assert!(matches!(blocks[1], ContentBlock::Other(_)) && matches!(blocks[2], ContentBlock::Other(_)));
        let ContentBlock::ToolUse { input, .. } = &blocks[3] else { panic!("a tool_use block: {:?}", blocks[3]) };
        assert_eq!(input, &json!({"q": [1, {"r": null}]}));
        assert!(Answer::from_slice(br#"{"content": {"type": "text"}}"#).unwrap().content.is_none());
        assert!(Answer::from_slice(br#"[1, 2]"#).unwrap().content.is_none());
        assert!(Answer::from_slice(b"<html>").is_err());
    }

    #[test]
    fn counts_are_non_negative_integers() {
        let a = Answer::from_slice(
            br#"{"usage": {"input_tokens": 5, "output_tokens": -1, "cache_read_input_tokens": 2.5,
                "cache_creation_input_tokens": "7", "input_tokens": 6}}"#,
        )
        .unwrap();
        assert_eq!(a.usage, Some(Usage { input_tokens: Some(6), ..Usage::default() }));
    }

    #[test]
    fn reading_bytes_and_reading_a_value_agree() {
        let body = json!({"id": "m", "content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 3}});
        let bytes = serde_json::to_vec(&body).unwrap();
        let from_bytes = Answer::from_slice(&bytes).unwrap();
        let from_value = Answer::from_value(&body);
        assert_eq!(format!("{from_bytes:?}"), format!("{from_value:?}"));
    }

    #[test]
    fn events_and_error_bodies() {
        let e = Event::read(
            r#"{"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}"#,
        )
        .unwrap();
        let delta = e.delta.unwrap();
        assert_eq!((e.kind.as_deref(), e.index), (Some("content_block_delta"), Some(2)));
        assert_eq!((delta.kind.as_deref(), delta.partial_json.as_deref()), (Some("input_json_delta"), Some("{\"a\"")));
        let e = Event::read(r#"{"index": "2", "content_block": {"name": "f", "type": "tool_use"}}"#).unwrap();
        assert_eq!(e.index, None);
        assert!(matches!(e.content_block.as_deref(), Some(ContentBlock::ToolUse { name, .. }) if name == "f"));
        let e =
            Event::read(r#"{"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "EqQ"}}"#)
                .unwrap();
        assert_eq!(e.delta.and_then(|d| d.signature).as_deref(), Some("EqQ"));
        assert!(Event::read("{").is_err());
        let error = error_of(br#"{"type": "error", "error": {"type": "overloaded_error", "message": 5}}"#).unwrap();
        assert_eq!((error.kind.as_deref(), error.message), (Some("overloaded_error"), None));
        assert!(error_of(b"upstream connect error").is_none());
        assert!(error_of(br#"{"error": "x"}"#).unwrap().kind.is_none());
    }
}

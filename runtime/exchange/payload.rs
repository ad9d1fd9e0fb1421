//! A request's body once read and checked against its route's schema, shared by every attempt.

use super::multipart::MultipartBody;
use crate::json_edit::Layout;
use crate::tokenizer::{self, JsonCount};
use bytes::Bytes;
use serde_json::Value;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// A request body after it was read and checked against the route's schema.
#[derive(Debug)]
pub enum Payload {
    /// Shared by every attempt of a request: a retry sends the same body without copying it.
    Json(JsonBody),
    /// Leading text fields read; files still streaming from the client.
    Multipart(Box<MultipartBody>),
    Empty,
}

impl Payload {
    /// A JSON body built here rather than read from a client.
    pub fn json(value: Value) -> Payload {
        Payload::Json(JsonBody::new(value))
    }

    /// A copy for another attempt; `None` for a streamed multipart body, which is sent once.
    pub fn try_clone(&self) -> Option<Payload> {
        match self {
            Payload::Json(v) => Some(Payload::Json(v.clone())),
            Payload::Empty => Some(Payload::Empty),
            Payload::Multipart(_) => None,
        }
    }

    /// Whether the body's top-level `name` is `true`.
    pub fn flag(&self, name: &str) -> bool {
        self.field(name) == Some(&Value::Bool(true))
    }

    /// Whether the client asked a stream for its usage (`stream_options.include_usage`).
    pub fn wants_stream_usage(&self) -> bool {
        self.field("stream_options").and_then(|o| object_field(o, "include_usage")) == Some(&Value::Bool(true))
    }

    /// A top-level field's tokens as `tokenizer::count_value` estimates them, and its items
    /// when it is an array; `None` when there is no such field. A JSON body not read into a
    /// value is counted over its text, so a budget's estimate does not make it be read.
    pub fn field_tokens(&self, name: &str) -> Option<JsonCount> {
        if let Payload::Json(body) = self {
            if let Some(member) = body.unread_member(name) {
                return member.map(|text| Field::Text(text).tokens());
            }
        }
        self.field(name).map(|value| Field::Value(value).tokens())
    }

    /// Every top-level field once, in one pass: for a reader of many of them, cheaper than
    /// asking for each by name. A JSON body not read into a value gives its members' text.
    pub fn each_field(&self, mut visit: impl FnMut(&str, Field<'_>)) {
        match self {
            Payload::Json(body) => match body.unread_members() {
                Some(members) => members.for_each(|(name, text)| visit(name, Field::Text(text))),
                None => {
                    if let Value::Object(map) = &**body {
                        map.iter().for_each(|(name, value)| visit(name, Field::Value(value)));
                    }
                }
            },
            Payload::Multipart(form) => form.fields.iter().for_each(|(name, value)| visit(name, Field::Value(value))),
            Payload::Empty => {}
        }
    }

    /// A top-level field of the body (JSON) or form (multipart).
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Payload::Json(v) => v.field(name),
            Payload::Multipart(form) => form.fields.get(name),
            Payload::Empty => None,
        }
    }
}

/// A top-level field of a body: its value, or, while the body is not read into one, its JSON
/// text as the client wrote it (text the check admitted: see `schema_check::text`), taken as
/// UTF-8 only where its strings are read.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Value(&'a Value),
    Text(&'a [u8]),
}

impl Field<'_> {
    /// The field as a whole number, as `Value::as_u64` reads one.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Field::Value(value) => value.as_u64(),
            Field::Text(text) => crate::json_scan::whole_number(text),
        }
    }

    /// Its tokens as `tokenizer::count_value` estimates them, and its items when it is an array.
    pub fn tokens(self) -> JsonCount {
        match self {
            Field::Value(value) => {
                JsonCount { tokens: tokenizer::count_value(value), items: value.as_array().map(Vec::len) }
            }
            Field::Text(text) => std::str::from_utf8(text).map(tokenizer::count_json).unwrap_or_default(),
        }
    }
}

/// JSON bytes (a client's body, an upstream's answer) read into a `T`. Their UTF-8 is checked
/// once, a word at a time over ASCII, so that serde_json takes each string as it is instead of
/// checking them one call each; bytes that are not UTF-8 go to serde_json as bytes, whose error
/// says where.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A JSON body: its value, and the bytes the client sent (with where their members stand) for as
/// long as nothing changed the value and they can be edited safely. An upstream that takes the
/// body nearly as it came gets those bytes with its few edits spliced in (`json_edit`) instead
/// of the value written out again, which for an agent's long conversation costs more than
/// parsing it did. A body admitted by the text check (`schema_check::text`) is not read into a
/// value until something asks for the whole of it: a pass-through reads only the members it
/// needs. Cloning shares all of it; one pointer wide, as the payload moves through every
/// future of the request path.
#[derive(Debug, Clone)]
pub struct JsonBody(Arc<Read>);

#[derive(Debug, Clone)]
struct Read {
    value: OnceLock<Value>,
    sent: Option<(Bytes, Layout)>,
    /// The top-level members read one at a time (in the layout's order) while the whole value
    /// is not read; empty for a body read whole.
    members: Box<[OnceLock<Value>]>,
}

impl Read {
    /// The value of the client's bytes, read once.
    fn value(&self) -> &Value {
        self.value.get_or_init(|| admitted(self.sent.as_ref().map_or(&b"null"[..], |(bytes, _)| &bytes[..])))
    }

    /// The client's bytes and their layout while the value is not read (a body the text check
    /// admitted, until something asks for the whole of it).
    fn unread(&self) -> Option<(&[u8], &Layout)> {
        match (self.value.get(), &self.sent) {
            (None, Some((bytes, layout))) => Some((bytes, layout)),
            _ => None,
        }
    }
}

/// The value of text the text check admitted (a body, or one of its members). The check admits
/// no text serde_json would refuse (the `json_scan` fuzz target holds it to that); were it ever
/// wrong, the text reads as `null` and the error is logged.
fn admitted(text: &[u8]) -> Value {
    // The member most asked for is a plain string (the model): its text between the quotes is
    // the string itself when it has no escape (the check refused control bytes), so it is
    // taken as it is instead of through a deserializer.
    if let [b'"', inner @ .., b'"'] = text {
        if !inner.contains(&b'\\') {
            if let Ok(plain) = std::str::from_utf8(inner) {
                return Value::String(plain.to_owned());
            }
        }
    }
    parse_json(text).unwrap_or_else(|e| {
        tracing::error!("a request body the text check admitted did not read: {e}");
        Value::Null
    })
}

impl JsonBody {
    /// A value made here: there are no client bytes to keep.
    pub fn new(value: Value) -> JsonBody {
        JsonBody(Arc::new(Read { value: OnceLock::from(value), sent: None, members: Box::default() }))
    }

    /// The client's bytes read, as [`parse_json`] reads them; from
    /// [`json_edit::LAYOUT_FROM`](crate::json_edit::LAYOUT_FROM) bytes with their layout found
    /// on the way (`json_edit::read`), and then kept when they have one.
    pub fn parse(bytes: Bytes) -> serde_json::Result<JsonBody> {
        let (value, layout) = match std::str::from_utf8(&bytes) {
            Ok(text) if text.len() >= crate::json_edit::LAYOUT_FROM => crate::json_edit::read(text)?,
            Ok(text) => (serde_json::from_str(text)?, None),
            Err(_) => (serde_json::from_slice(&bytes)?, None),
        };
        let sent = layout.map(|layout| (bytes, layout));
        Ok(JsonBody(Arc::new(Read { value: OnceLock::from(value), sent, members: Box::default() })))
    }

    /// A client's bytes the text check admitted (`members` as it found them), read into a value
    /// only when something needs the whole of it.
    pub fn checked(bytes: Bytes, members: crate::schema_check::text::Members) -> JsonBody {
        let unread = members.members.iter().map(|_| OnceLock::new()).collect();
        let layout = Layout::of_members(members.open, members.members);
        JsonBody(Arc::new(Read { value: OnceLock::new(), sent: Some((bytes, layout)), members: unread }))
    }

    /// A top-level field of the value.
    pub fn field(&self, name: &str) -> Option<&Value> {
        let read = &*self.0;
        match read.unread() {
            Some((bytes, layout)) => {
                let (at, span) = layout.find(bytes, name)?;
                Some(read.members[at].get_or_init(|| admitted(&bytes[span])))
            }
            None => object_field(read.value(), name),
        }
    }

    /// While the body is not read into a value: its top-level member `name` as the client wrote
    /// it, or `Some(None)` when it has none. `None` once the value is read.
    fn unread_member(&self, name: &str) -> Option<Option<&[u8]>> {
        let (bytes, layout) = self.0.unread()?;
        Some(layout.find(bytes, name).map(|(_, span)| &bytes[span]))
    }

    /// While the body is not read into a value: its top-level members, each key with its value
    /// as the client wrote them. `None` once the value is read.
    fn unread_members(&self) -> Option<impl Iterator<Item = (&str, &[u8])>> {
        let (bytes, layout) = self.0.unread()?;
        Some(layout.entries(bytes).filter_map(|(key, value)| Some((std::str::from_utf8(key).ok()?, value))))
    }

    /// Whether the body has a top-level field with one of `names`, told by the keys alone.
    pub fn has_any_field(&self, names: &[&str]) -> bool {
        match self.0.unread() {
            Some((bytes, layout)) => layout.entries(bytes).any(|(key, _)| names.iter().any(|n| n.as_bytes() == key)),
            None => match self.0.value() {
                Value::Object(map) => map.keys().any(|k| names.contains(&k.as_str())),
                _ => false,
            },
        }
    }

    /// Whether the whole value was read (a body the text check admitted is read on demand).
    pub fn is_read(&self) -> bool {
        self.0.value.get().is_some()
    }

    /// The client's bytes and their layout, when they still say what the value does and can be
    /// edited safely.
    pub fn editable(&self) -> Option<(&[u8], &Layout)> {
        self.0.sent.as_ref().map(|(bytes, layout)| (&bytes[..], layout))
    }

    /// The value to change (copied first if an attempt shares it); the client's bytes no longer
    /// say the same, so they go.
    pub fn to_mut(&mut self) -> &mut Value {
        let read = Arc::make_mut(&mut self.0);
        read.value();
        read.sent = None;
        read.members = Box::default();
        read.value.get_mut().expect("the value was read just above")
    }
}

impl AsRef<Value> for JsonBody {
    fn as_ref(&self) -> &Value {
        self.0.value()
    }
}

impl Deref for JsonBody {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.0.value()
    }
}

/// A field of a JSON object. A request body has a handful of fields: comparing names beats
/// hashing one with the map's SipHash (`preserve_order` maps are keyed that way).
pub fn object_field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Object(map) = value else { return None };
    if map.len() <= 16 {
        map.iter().find_map(|(key, v)| (key == name).then_some(v))
    } else {
        map.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> serde_json::Result<JsonBody> {
        JsonBody::parse(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn an_admitted_member_reads_as_serde_json_reads_it() {
        let texts = ["\"gpt-4o\"", "\"\"", "\"a\\\"b\\u00e9\"", "\"é ✓\"", "12", "-1.5e3", "true", "null", "[1,\"a\"]"];
        for text in texts {
            assert_eq!(admitted(text.as_bytes()), serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn a_checked_body_is_read_by_member_until_its_whole_value_is_asked_for() {
        let text = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let schema: Value =
            serde_json::from_str(crate::catalogue::Operation::ChatCompletions.route().request_schema.unwrap()).unwrap();
        let plan = crate::schema_check::text::Plan::compile(&schema).unwrap();
        let members = plan.check(text).unwrap();
        let mut body = JsonBody::checked(Bytes::from_static(text.as_bytes()), members);
        assert_eq!(body.field("model"), Some(&Value::from("m")));
        assert_eq!(body.field("stream"), Some(&Value::Bool(true)));
        assert_eq!(body.field("absent"), None);
        assert!(body.has_any_field(&["x", "stream"]) && !body.has_any_field(&["fallbacks"]));
        assert!(!body.is_read(), "members were read one at a time");
        assert_eq!(body.editable().map(|(bytes, _)| bytes), Some(text.as_bytes()));
        let shared = body.clone();
        assert_eq!(*body, serde_json::from_str::<Value>(text).unwrap());
        assert!(body.is_read() && shared.is_read(), "the whole value is read once, for every clone");
        body.to_mut()["model"] = "n".into();
        assert!(body.editable().is_none());
        assert_eq!(body.field("model"), Some(&Value::from("n")));
        assert_eq!(shared.field("model"), Some(&Value::from("m")));
    }

    #[test]
    fn a_long_bodys_bytes_are_kept_with_their_layout_until_its_value_changes() {
        let pad = "p".repeat(crate::json_edit::LAYOUT_FROM);
        let text = format!(r#"{{"model": "m", "user": "{pad}"}}"#);
        let mut long = body(&text).unwrap();
        assert_eq!(long.field("model"), Some(&Value::from("m")));
        assert_eq!(long.editable().map(|(bytes, _)| bytes), Some(text.as_bytes()));
        // A clone shares them; a change to the value drops them from the changed copy only.
        let shared = long.clone();
        long.to_mut()["model"] = "n".into();
        assert!(long.editable().is_none());
        assert!(shared.editable().is_some());
        // Short bodies, and long ones that cannot be edited safely, keep only their value.
        assert!(body(r#"{"model": "m"}"#).unwrap().editable().is_none());
        let twice = format!(r#"{{"model": "m", "model": "n", "user": "{pad}"}}"#);
        let twice = body(&twice).unwrap();
        assert!(twice.editable().is_none());
        assert_eq!(twice.field("model"), Some(&Value::from("n")));
    }

    #[test]
    fn bytes_that_are_not_json_are_refused_where_they_go_wrong() {
        let pad = "p".repeat(crate::json_edit::LAYOUT_FROM);
        let error = body(&format!("{{\"user\": \"{pad}\",\n \"model\": }}")).unwrap_err();
        assert_eq!((error.line(), error.column()), (2, 11));
        let mut bytes = format!("{{\"user\": \"{pad}\"}}").into_bytes();
        bytes[12] = 0xff;
        let error = JsonBody::parse(bytes.into()).unwrap_err();
        assert_eq!((error.line(), error.column()), (1, 13));
    }
}

//! A request's body once read and checked against its route's schema, shared by every attempt.

use super::multipart::MultipartBody;
use serde_json::Value;
use std::sync::Arc;

/// A request body after it was read and checked against the route's schema.
#[derive(Debug)]
pub enum Payload {
    /// Shared by every attempt of a request: a retry sends the same body without copying it.
    Json(Arc<Value>),
    /// Leading text fields read; files still streaming from the client.
    Multipart(Box<MultipartBody>),
    Empty,
}

impl Payload {
    /// A copy for another attempt; `None` for a streamed multipart body, which is sent once.
    pub fn try_clone(&self) -> Option<Payload> {
        match self {
            Payload::Json(v) => Some(Payload::Json(Arc::clone(v))),
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
        self.field("stream_options").and_then(|o| small_object_field(o, "include_usage")) == Some(&Value::Bool(true))
    }

    /// A top-level field of the body (JSON) or form (multipart).
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Payload::Json(v) => small_object_field(v, name),
            Payload::Multipart(form) => form.fields.get(name),
            Payload::Empty => None,
        }
    }
}

/// A field of a JSON object. A request body has a handful of fields: comparing names beats
/// hashing one with the map's SipHash (`preserve_order` maps are keyed that way).
fn small_object_field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Object(map) = value else { return None };
    if map.len() <= 16 {
        map.iter().find_map(|(key, v)| (key == name).then_some(v))
    } else {
        map.get(name)
    }
}

//! hypha-rpc's binary framing: one WebSocket frame is `msgpack(main)` optionally followed by
//! `msgpack(extra)`, read as one message with `extra`'s keys over `main`'s; and conversions
//! between msgpack values and the JSON the rest of ferrolite speaks.

use rmpv::Value;
use serde_json::Value as Json;

/// A frame that is not a hypha-rpc message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a msgpack message: {0}")]
    Msgpack(String),
    #[error("a message must be a msgpack map")]
    NotAMap,
}

/// One message as received: the main map, the extra map, and the extra's raw bytes (relayed
/// verbatim to another client).
#[derive(Debug, Clone)]
pub struct Frame {
    pub main: Vec<(Value, Value)>,
    pub extra: Vec<(Value, Value)>,
    pub extra_raw: Vec<u8>,
}

/// Heartbeats of a call nobody set an interval for (hypha-rpc's default).
const DEFAULT_HEARTBEAT: f64 = 15.0;

impl Frame {
    /// How often the callee of this call sends `{session}.heartbeat` while it works: the
    /// caller's `t`, else its promise's `interval`, else hypha-rpc's default (kept sane).
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        let seconds = self
            .get("t")
            .and_then(Value::as_f64)
            .or_else(|| self.get("promise").and_then(|p| field(p, "interval")).and_then(Value::as_f64))
            .unwrap_or(DEFAULT_HEARTBEAT)
            .clamp(0.5, 3600.0);
        std::time::Duration::from_secs_f64(seconds)
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, CodecError> {
        let mut cursor = std::io::Cursor::new(bytes);
        let main = read_map(&mut cursor)?;
        let offset = usize::try_from(cursor.position()).unwrap_or(bytes.len()).min(bytes.len());
        let extra_raw = bytes[offset..].to_vec();
        let extra = if extra_raw.is_empty() { Vec::new() } else { read_map(&mut cursor)? };
        Ok(Frame { main, extra, extra_raw })
    }

    /// A field of the message, the extra's first.
    pub fn get(&self, key: &str) -> Option<&Value> {
        lookup(&self.extra, key).or_else(|| lookup(&self.main, key))
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Replaces (or adds) a field of the main map.
    pub fn set_main(&mut self, key: &str, value: Value) {
        match self.main.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some((_, v)) => *v = value,
            None => self.main.push((Value::from(key), value)),
        }
    }

    /// The main map re-packed, then the extra bytes as they came.
    pub fn encode_relay(&self) -> Vec<u8> {
        let mut out = encode(&Value::Map(self.main.clone()));
        out.extend_from_slice(&self.extra_raw);
        out
    }
}

fn read_map(cursor: &mut std::io::Cursor<&[u8]>) -> Result<Vec<(Value, Value)>, CodecError> {
    match rmpv::decode::read_value(cursor) {
        Ok(Value::Map(map)) => Ok(map),
        Ok(_) => Err(CodecError::NotAMap),
        Err(e) => Err(CodecError::Msgpack(e.to_string())),
    }
}

/// The value under a string key of a msgpack map.
pub fn lookup<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// A field of a msgpack map value.
pub fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Map(map) => lookup(map, key),
        _ => None,
    }
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// A message of a main map and an extra map, as the client packs them.
pub fn encode_message(main: Value, extra: Option<Value>) -> Vec<u8> {
    let mut out = encode(&main);
    if let Some(extra) = extra {
        out.extend_from_slice(&encode(&extra));
    }
    out
}

/// A msgpack map from string keys.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

pub fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(fields) => {
            Value::Map(fields.iter().map(|(k, v)| (Value::from(k.as_str()), from_json(v))).collect())
        }
    }
}

/// JSON for a msgpack value. Bytes become text when they are UTF-8 (a manifest sent as bytes)
/// and an array of numbers otherwise; map keys become strings.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(i)) => Json::from(i),
            _ => Json::Null,
        },
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Json::String(text.to_owned()),
            Err(_) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
        },
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Ext(..) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_segments_merge_with_extra_first_and_relay_verbatim() {
        let main = map([("type", Value::from("method")), ("to", Value::from("ws/a"))]);
        let extra =
            map([("args", Value::Array(vec![Value::Binary(vec![0, 159, 146, 150])])), ("to", Value::from("x"))]);
        let bytes = encode_message(main, Some(extra.clone()));
        let mut frame = Frame::decode(&bytes).unwrap();
        assert_eq!(frame.str("type"), Some("method"));
        assert_eq!(frame.str("to"), Some("x"));
        frame.set_main("from", Value::from("ws/b"));
        let relayed = Frame::decode(&frame.encode_relay()).unwrap();
        assert_eq!(lookup(&relayed.main, "from").and_then(Value::as_str), Some("ws/b"));
        assert_eq!(relayed.extra_raw, encode(&extra));
    }

    #[test]
    fn json_round_trips_through_msgpack() {
        let json = serde_json::json!({"a": [1, -2, 1.5, "x", null, true], "b": {"c": u64::MAX}});
        assert_eq!(to_json(&from_json(&json)), json);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Frame::decode(&[0xc1]).is_err());
        assert!(Frame::decode(&encode(&Value::from(3))).is_err());
        assert!(Frame::decode(&[]).is_err());
    }
}

//! One `POST /v1/responses` seen by the state: before routing, a `previous_response_id` this
//! store knows becomes the conversation's items in `input`; after, a 2xx answer the client
//! asked to store is recorded on its way out. A stream passes through untouched (unless the
//! continued id must be echoed) and is recorded when its last event (`response.completed`,
//! `.incomplete` or `.failed`) goes by, before that event reaches the client: a client that
//! reads the end of a stream and at once continues from it finds the response stored.

use super::{items, Record, ResponseStore, ResponsesError};
use crate::exchange::{parse_json, Payload};
use crate::streaming::sse;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a create request's answer needs to be recorded.
pub struct Recording {
    store: Arc<ResponseStore>,
    workspace: String,
    input: Vec<Value>,
    /// The response continued, when this store resolved it (echoed in the answer).
    previous: Option<String>,
}

/// Prepares a create request: resolves its `previous_response_id` and says whether (and how)
/// its answer is recorded. An id this store does not know is a [`ResponsesError::NotFound`],
/// unless `forward_unknown` (a deployment that may store responses upstream, an OpenAI one,
/// can be chosen): then the request goes on as sent and is not recorded here, so the whole
/// conversation stays in the upstream's store.
pub async fn prepare(
    store: &Arc<ResponseStore>,
    workspace: &str,
    payload: Payload,
    forward_unknown: bool,
) -> Result<(Payload, Option<Recording>), ResponsesError> {
    let Payload::Json(body) = &payload else { return Ok((payload, None)) };
    let wants_store = payload.field("store") != Some(&Value::Bool(false));
    let previous = payload.field("previous_response_id").and_then(Value::as_str).filter(|id| !id.is_empty());
    let recording = |previous: Option<String>| Recording {
        store: store.clone(),
        workspace: workspace.to_owned(),
        input: items::stored(payload.field("input")),
        previous,
    };
    let Some(previous) = previous else {
        let recording = wants_store.then(|| recording(None));
        return Ok((payload, recording));
    };
    let chain = match store.chain(workspace, previous).await {
        Ok(chain) => chain,
        Err(ResponsesError::NotFound(_)) if forward_unknown => return Ok((payload, None)),
        Err(e) => return Err(e),
    };
    let mut conversation = items::resent(&chain);
    match payload.field("input") {
        Some(Value::String(text)) => {
            conversation.push(serde_json::json!({"type": "message", "role": "user", "content": text}))
        }
        Some(Value::Array(own)) => conversation.extend(own.iter().cloned()),
        _ => {}
    }
    let mut continued: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    continued.insert("input".into(), Value::Array(conversation));
    continued.remove("previous_response_id");
    let recording = wants_store.then(|| recording(Some(previous.to_owned())));
    Ok((Payload::json(Value::Object(continued)), recording))
}

impl Recording {
    /// The answer, recorded (a 2xx JSON object or event stream; anything else goes by as is).
    /// `limit` bounds a JSON answer read whole.
    pub async fn finish(self, response: Response, limit: usize) -> Result<Response, ResponsesError> {
        if !response.status().is_success() {
            return Ok(response);
        }
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let (mut parts, mut body) = response.into_parts();
        if is_stream {
            return Ok(Response::from_parts(parts, self.stream(body)));
        }
        let bytes = crate::exchange::whole(&mut body, limit)
            .await
            .map_err(|e| ResponsesError::Answer(format!("reading the answer to record it: {e}")))?;
        if self.previous.is_none() {
            // The common case: the answer goes on as it came and is recorded as its own text.
            if let Ok(text) = std::str::from_utf8(&bytes) {
                self.record(text).await;
            }
            return Ok(Response::from_parts(parts, Body::from(bytes)));
        }
        let Ok(Value::Object(mut object)) = parse_json::<Value>(&bytes) else {
            return Ok(Response::from_parts(parts, Body::from(bytes)));
        };
        self.echo_previous(&mut object);
        let text = Value::Object(object).to_string();
        self.record(&text).await;
        parts.headers.remove(header::CONTENT_LENGTH);
        Ok(Response::from_parts(parts, Body::from(text)))
    }

    /// Sets `previous_response_id` on a response object to the id this store resolved.
    fn echo_previous(&self, response: &mut Map<String, Value>) {
        if let Some(previous) = &self.previous {
            response.insert("previous_response_id".into(), Value::String(previous.clone()));
        }
    }

    /// Records `response` (a response object's JSON text), written into the record as it is.
    async fn record(&self, response: &str) {
        let Some(id) = response_id(response) else { return };
        let record = Record::encode(response, &self.input, self.previous.as_deref());
        if let Err(e) = self.store.put(&self.workspace, &id, record).await {
            tracing::warn!(response = id, "cannot store a response: {e}");
        }
    }

    /// The stream, recorded at its last event.
    fn stream(self, body: Body) -> Body {
        struct State {
            inner: axum::body::BodyDataStream,
            decoder: sse::Decoder,
            recording: Recording,
            done: bool,
        }
        let state =
            State { inner: body.into_data_stream(), decoder: sse::Decoder::new(), recording: self, done: false };
        let frames = futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            let (bytes, events) = match s.inner.next().await {
                Some(Ok(bytes)) => {
                    let events = s.decoder.feed(&bytes);
                    (bytes, events)
                }
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), s)),
                None => {
                    s.done = true;
                    (Bytes::new(), s.decoder.finish().into_iter().collect())
                }
            };
            // Echoing the continued id means writing the events anew; otherwise the bytes go
            // on as they came.
            let rewrite = s.recording.previous.is_some();
            let mut out = Vec::new();
            for event in events {
                let seen = s.recording.observe(&event).await;
                if rewrite {
                    write_event(&mut out, &event, seen.as_ref());
                }
            }
            let bytes = if rewrite { Bytes::from(out) } else { bytes };
            Some((Ok(bytes), s))
        });
        Body::from_stream(frames.filter(|frame| futures::future::ready(!matches!(frame, Ok(b) if b.is_empty()))))
    }

    /// Looks at one event: a lifecycle event carries the response, which gets the continued id
    /// echoed and, on the last one, is recorded. Returns the event's new data when it was
    /// rewritten (a continuation's lifecycle events).
    async fn observe(&self, event: &sse::Event) -> Option<String> {
        let kind = event_type(event)?;
        let terminal = matches!(kind, "response.completed" | "response.incomplete" | "response.failed");
        if !terminal && self.previous.is_none() {
            return None;
        }
        if !matches!(kind, "response.created" | "response.in_progress" | "response.queued") && !terminal {
            return None;
        }
        if self.previous.is_none() {
            // Only the last event is read, and only to find its response's text.
            let response = top_level_raw(event.data.as_bytes(), b"response")?;
            self.record(std::str::from_utf8(response).ok()?).await;
            return None;
        }
        let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(&event.data) else { return None };
        match data.get_mut("response") {
            Some(Value::Object(response)) => self.echo_previous(response),
            _ => return None,
        };
        if terminal {
            if let Some(response) = data.get("response") {
                self.record(&response.to_string()).await;
            }
        }
        Some(Value::Object(data).to_string())
    }
}

/// The raw text of a JSON object's top-level member `key`, found without parsing the document.
fn top_level_raw<'d>(doc: &'d [u8], key: &[u8]) -> Option<&'d [u8]> {
    let mut found = None;
    crate::json_scan::members(doc, |name, range| {
        if found.is_none() && name == key {
            found = Some(range);
        }
    })
    .ok()?;
    found.map(|range| &doc[range])
}

/// A response object's `id`. Responses (OpenAI's and ours) write it first, as a plain
/// `resp_...` string: read there without scanning the rest; anywhere else, found by a scan.
fn response_id(response: &str) -> Option<String> {
    let plain = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if let Some(id) = response.strip_prefix("{\"id\":\"").and_then(|rest| rest.split('"').next()).filter(|id| plain(id))
    {
        return Some(id.to_owned());
    }
    parse_json(top_level_raw(response.as_bytes(), b"id")?).ok()
}

/// An event's type: its `event:` name, else the `type` its data starts with (every Responses
/// event has one), read without parsing the rest.
fn event_type(event: &sse::Event) -> Option<&str> {
    if let Some(name) = &event.event {
        return Some(name);
    }
    let rest = &event.data[event.data.find("\"type\"")? + 6..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// Writes `event` as SSE, with `data` in place of its own when given.
fn write_event(out: &mut Vec<u8>, event: &sse::Event, data: Option<&String>) {
    if let Some(name) = &event.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.unwrap_or(&event.data).split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_id_is_read_first_or_found() {
        assert_eq!(response_id(r#"{"id":"resp_1","object":"response"}"#).as_deref(), Some("resp_1"));
        assert_eq!(response_id(r#"{"object":"response", "id": "resp_2"}"#).as_deref(), Some("resp_2"));
        assert_eq!(response_id(r#"{"id":"a\"b","x":1}"#).as_deref(), Some("a\"b"), "an escaped id takes the scan");
        assert_eq!(response_id(r#"{"object":"response"}"#), None);
        assert_eq!(response_id("[1]"), None);
    }

    #[test]
    fn event_types_read_from_names_or_data() {
        let named = sse::Event { event: Some("response.completed".into()), data: "{}".into() };
        assert_eq!(event_type(&named), Some("response.completed"));
        let plain = sse::Event { event: None, data: r#"{"type": "response.output_text.delta","delta":"x"}"#.into() };
        assert_eq!(event_type(&plain), Some("response.output_text.delta"));
        assert_eq!(event_type(&sse::Event { event: None, data: "[DONE]".into() }), None);
    }
}

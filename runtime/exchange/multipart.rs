//! Multipart bodies that stream through.
//!
//! Only the text fields in front of the first file are read up front: enough to check the
//! form against the route's schema and to route by its `model` field (every OpenAI SDK sends
//! its text fields first). The rest, files included, is re-encoded to the upstream chunk by
//! chunk as it arrives, with the `model` field rewritten to the deployment's model, so an
//! upload is never held in memory whole.

use super::ApiError;
use axum::body::{Body, Bytes};
use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};

/// A text field read before the first file.
#[derive(Debug, Clone)]
struct TextPart {
    name: String,
    value: String,
    content_type: Option<String>,
}

/// A multipart request body: its leading text fields, and the unread rest.
pub struct MultipartBody {
    /// Fields read so far, as the schema sees them (a file field stands as `"<file NAME>"`).
    pub fields: Map<String, Value>,
    /// Whether the whole form has been read (no file field was met).
    pub complete: bool,
    prefix: Vec<TextPart>,
    /// The first file field, ready to stream, and the form it came from.
    rest: Option<(multer::Field<'static>, multer::Multipart<'static>)>,
    /// Set when streaming the rest failed on the client's side (too large, malformed).
    pub failure: Arc<OnceLock<ApiError>>,
}

impl std::fmt::Debug for MultipartBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartBody").field("fields", &self.fields).field("complete", &self.complete).finish()
    }
}

fn client_error(e: multer::Error, limit: usize) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::payload_too_large(limit)
        }
        other => ApiError::bad_request(format!("malformed multipart body: {other}")).with_code("invalid_multipart"),
    }
}

/// Largest text field read up front (file fields stream and are bounded by the body limit).
const MAX_TEXT_FIELD: usize = 1024 * 1024;

impl MultipartBody {
    /// Reads the text fields in front of the first file.
    pub async fn read(body: Body, boundary: String, limit: usize) -> Result<MultipartBody, ApiError> {
        let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
        let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
        let mut fields = Map::new();
        let mut prefix = Vec::new();
        loop {
            let Some(field) = form.next_field().await.map_err(|e| client_error(e, limit))? else {
                return Ok(MultipartBody { fields, complete: true, prefix, rest: None, failure: Arc::default() });
            };
            let name = field.name().unwrap_or_default().to_owned();
            if let Some(file) = field.file_name() {
                insert(&mut fields, name, Value::String(format!("<file {file}>")));
                return Ok(MultipartBody {
                    fields,
                    complete: false,
                    prefix,
                    rest: Some((field, form)),
                    failure: Arc::default(),
                });
            }
            let content_type = field.content_type().map(|m| m.to_string());
            let bytes = field.bytes().await.map_err(|e| client_error(e, limit))?;
            if bytes.len() > MAX_TEXT_FIELD {
                return Err(ApiError::payload_too_large(MAX_TEXT_FIELD).with_param(name));
            }
            let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::bad_request(format!("form field {name:?} is not UTF-8 text")).with_param(name.clone())
            })?;
            insert(&mut fields, name.clone(), Value::String(value.clone()));
            prefix.push(TextPart { name, value, content_type });
        }
    }

    /// The form re-encoded for an upstream, with `rewrite` = (field, value) replacing that
    /// field's text wherever it stands. Returns the Content-Type and the body stream.
    pub fn into_upstream(
        self: Box<Self>,
        rewrite: Option<(&'static str, String)>,
        limit: usize,
    ) -> (String, impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static) {
        let boundary = format!("ferrolite-{:016x}", rand::random::<u64>());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let (mut tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let failure = self.failure.clone();
        let MultipartBody { prefix, rest, .. } = *self;
        tokio::spawn(async move {
            let value_for = |name: &str, original: String| match &rewrite {
                Some((field, value)) if *field == name => value.clone(),
                _ => original,
            };
            for part in prefix {
                let head = part_head(&boundary, &part.name, None, part.content_type.as_deref());
                let body = value_for(&part.name, part.value);
                if tx.send(Ok(Bytes::from(format!("{head}{body}\r\n")))).await.is_err() {
                    return; // the upstream request was dropped
                }
            }
            if let Some((first, mut form)) = rest {
                let mut field = Some(first);
                while let Some(current) = field.take() {
                    // `current` is consumed here: multer hands out the next field only once it is gone.
                    if !send_field(current, &boundary, rewrite.as_ref(), &mut tx, &failure, limit).await {
                        return;
                    }
                    match form.next_field().await {
                        Ok(next) => field = next,
                        Err(e) => return fail(&mut tx, &failure, client_error(e, limit)).await,
                    }
                }
            }
            let _ = tx.send(Ok(Bytes::from(format!("--{boundary}--\r\n")))).await;
        });
        (content_type, rx)
    }
}

type Sender = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Streams one part to the upstream; false when streaming must stop.
async fn send_field(
    mut field: multer::Field<'static>,
    boundary: &str,
    rewrite: Option<&(&'static str, String)>,
    tx: &mut Sender,
    failure: &OnceLock<ApiError>,
    limit: usize,
) -> bool {
    let name = field.name().unwrap_or_default().to_owned();
    let content_type = field.content_type().map(|m| m.to_string());
    let head = part_head(boundary, &name, field.file_name(), content_type.as_deref());
    if tx.send(Ok(Bytes::from(head))).await.is_err() {
        return false;
    }
    match rewrite {
        Some((target, value)) if field.file_name().is_none() && *target == name => {
            if let Err(e) = field.bytes().await {
                fail(tx, failure, client_error(e, limit)).await;
                return false;
            }
            if tx.send(Ok(Bytes::from(value.clone()))).await.is_err() {
                return false;
            }
        }
        _ => loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return false;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    fail(tx, failure, client_error(e, limit)).await;
                    return false;
                }
            }
        },
    }
    tx.send(Ok(Bytes::from_static(b"\r\n"))).await.is_ok()
}

async fn fail(tx: &mut Sender, failure: &OnceLock<ApiError>, error: ApiError) {
    let message = error.message.clone();
    let _ = failure.set(error);
    let _ = tx.send(Err(std::io::Error::other(message))).await;
}

/// The header block of one part. Quotes in names become %22, as browsers encode them.
fn part_head(boundary: &str, name: &str, file_name: Option<&str>, content_type: Option<&str>) -> String {
    let quote = |s: &str| s.replace('"', "%22").replace(['\r', '\n'], " ");
    let mut head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", quote(name));
    if let Some(file) = file_name {
        head.push_str(&format!("; filename=\"{}\"", quote(file)));
    }
    head.push_str("\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Repeated field names (`image[]`) collect into an array.
fn insert(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
        None => {
            fields.insert(name, value);
        }
    }
}

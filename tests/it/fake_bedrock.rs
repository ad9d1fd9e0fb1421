//! A fake AWS Bedrock runtime on 127.0.0.1:0: `Converse` (JSON), `ConverseStream` (binary
//! `application/vnd.amazon.eventstream` frames with real CRCs) and `InvokeModel` for the Titan and
//! Cohere embedding models ([`invoke`]), behind the checks AWS makes.
//!
//! Every request must carry a SigV4 `Authorization` for service `bedrock`, scoped to the fake's
//! key id and region, dated within 15 minutes, and its signature is recomputed here from the
//! request as received (method, path, query, signed headers, body SHA-256) with the shared
//! secret: an HMAC chain written out in this file ([`verify_sigv4`]), independent of the
//! `aws-sigv4` signer ferrolite uses. Bodies are validated as Bedrock does (alternating roles,
//! no blank text, toolConfig present with tool blocks, tool results answering the previous
//! turn's tool uses).
//!
//! Answers are deterministic: text is `echo: <last user text>`; with tools and "weather" in the
//! last user text, a `get_weather`-style toolUse; after tool results, `The tool said: <results>`;
//! a forced tool gets an input sampled from its schema; "throttle me" streams one delta and then
//! a `throttlingException` frame. With `additionalModelRequestFields.thinking` on, a signed
//! `reasoningContent` block comes first (streamed as text deltas and a signature); reasoning
//! handed back must carry the fake's signature ([`reasoning_signature`]).

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use futures::StreamExt as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A running fake Bedrock. The server stops when this is dropped.
pub struct FakeBedrock {
    /// `http://127.0.0.1:PORT`: what a deployment's `api_base` is set to.
    pub base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The URL path exactly as received (still percent-encoded).
    pub path: String,
    /// Header names in lowercase; repeated headers joined with `,`.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status the fake answered.
    pub status: u16,
}

struct Shared {
    access_key_id: String,
    secret: String,
    region: String,
    log: Mutex<Vec<Recorded>>,
}

/// Starts a fake Bedrock that accepts requests signed with this key id and secret for `region`.
pub async fn start(access_key_id: &str, secret: &str, region: &str) -> FakeBedrock {
    let shared = Arc::new(Shared {
        access_key_id: access_key_id.to_owned(),
        secret: secret.to_owned(),
        region: region.to_owned(),
        log: Mutex::default(),
    });
    let app = Router::new().fallback(handle).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Bedrock binds a loopback port");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeBedrock { base_url: format!("http://{addr}"), shared, server }
}

impl FakeBedrock {
    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FakeBedrock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Errors in Bedrock's shape: {"message"} plus the x-amzn-ErrorType header

struct AwsError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

fn aws_error(status: u16, kind: &'static str, message: impl Into<String>) -> AwsError {
    AwsError { status: StatusCode::from_u16(status).unwrap(), kind, message: message.into() }
}

fn validation(message: impl Into<String>) -> AwsError {
    aws_error(400, "ValidationException", message)
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({"message": self.message}))).into_response();
        response.headers_mut().insert(
            "x-amzn-errortype",
            format!("{}:http://internal.amazon.com/coral/com.amazon.bedrock/", self.kind).parse().unwrap(),
        );
        response
    }
}

// ---------------------------------------------------------------------------------------------
// SigV4, verified the way AWS does it

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` (and `/` when `keep_slash`) as %XX.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SigV4 signature of a canonical request: string to sign, then the HMAC chain
/// `AWS4<secret>` -> date -> region -> service -> `aws4_request`.
pub fn signature(secret: &str, amz_date: &str, region: &str, service: &str, canonical_request: &str) -> String {
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    hex(&hmac(&key, string_to_sign.as_bytes()))
}

/// The canonical request of a received request. Like every AWS service but S3, the path is
/// URI-encoded once more than it was sent (so `%3A` becomes `%253A`).
pub fn canonical_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HashMap<String, String>,
    signed_headers: &[&str],
    body: &[u8],
) -> String {
    let mut params: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k, false), uri_encode(v, false))
        })
        .collect();
    params.sort();
    let query = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let header_lines: String = signed_headers
        .iter()
        .map(|name| {
            let value = headers.get(*name).map(String::as_str).unwrap_or("");
            format!("{name}:{}\n", value.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    format!(
        "{method}\n{}\n{query}\n{header_lines}\n{}\n{}",
        uri_encode(path, true),
        signed_headers.join(";"),
        sha256_hex(body)
    )
}

/// What the fake checks a request against.
pub struct Expected<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub now: SystemTime,
}

/// `YYYYMMDDTHHMMSSZ` as Unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from civil (proleptic Gregorian), as in Howard Hinnant's date algorithms.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Checks a request's SigV4 signature as AWS would. `headers` are lowercase names with their
/// values as received, `host` included.
fn verify(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HashMap<String, String>,
    body: &[u8],
    expected: &Expected<'_>,
) -> Result<(), AwsError> {
    let denied = |kind: &'static str, message: &str| aws_error(403, kind, message);
    let auth = headers
        .get("authorization")
        .ok_or_else(|| denied("MissingAuthenticationTokenException", "Missing Authentication Token"))?;
    let fields = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        denied("IncompleteSignatureException", "Authorization header requires the AWS4-HMAC-SHA256 algorithm.")
    })?;
    let mut parts: HashMap<&str, &str> = HashMap::new();
    for field in fields.split(',') {
        if let Some((k, v)) = field.trim().split_once('=') {
            parts.insert(k, v);
        }
    }
    let (Some(credential), Some(signed), Some(given)) =
        (parts.get("Credential"), parts.get("SignedHeaders"), parts.get("Signature"))
    else {
        return Err(denied(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(denied("IncompleteSignatureException", "Credential is not key/date/region/service/aws4_request."));
    };
    if key_id != expected.access_key_id {
        return Err(denied("UnrecognizedClientException", "The security token included in the request is invalid."));
    }
    if service != expected.service || terminator != "aws4_request" {
        return Err(denied(
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: '{}'.", expected.service),
        ));
    }
    if region != expected.region {
        return Err(denied("InvalidSignatureException", "Credential should be scoped to a valid region."));
    }
    let amz_date = headers.get("x-amz-date").ok_or_else(|| {
        denied(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    let when =
        parse_amz_date(amz_date).ok_or_else(|| denied("InvalidSignatureException", "X-Amz-Date is malformed."))?;
    let now = expected.now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - when).abs() > 15 * 60 {
        return Err(denied(
            "InvalidSignatureException",
            &format!("Signature expired: {amz_date} is now earlier or later than 15 minutes from the current time."),
        ));
    }
    if !amz_date.starts_with(date) {
        return Err(denied(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.",
        ));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    let mut sorted = signed_headers.clone();
    sorted.sort_unstable();
    if sorted != signed_headers || !signed_headers.contains(&"host") || !signed_headers.contains(&"x-amz-date") {
        return Err(denied(
            "InvalidSignatureException",
            "SignedHeaders must be sorted and include host and x-amz-date.",
        ));
    }
    if let Some(missing) = signed_headers.iter().find(|h| !headers.contains_key(**h)) {
        return Err(denied("InvalidSignatureException", &format!("Signed header {missing} is not in the request.")));
    }
    if let Some(claimed) = headers.get("x-amz-content-sha256") {
        if *claimed != sha256_hex(body) {
            return Err(aws_error(
                400,
                "ValidationException",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
    }
    let creq = canonical_request(method, path, query, headers, &signed_headers, body);
    let computed = signature(expected.secret, amz_date, region, service, &creq);
    if computed.len() != given.len() || computed.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0
    {
        return Err(denied(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

/// [`verify`] for tests that sign a request without sending it: `Err` is the fake's message.
pub fn verify_sigv4(
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    expected: &Expected<'_>,
) -> Result<(), String> {
    verify(method, path, None, headers, body, expected).map_err(|e| e.message)
}

// ---------------------------------------------------------------------------------------------
// Event-stream frames

/// One `application/vnd.amazon.eventstream` frame (prelude, prelude CRC, headers, payload, CRC).
pub fn frame(headers: &[(&'static str, &str)], payload: &[u8]) -> Vec<u8> {
    let headers = headers
        .iter()
        .map(|(name, value)| Header::new(*name, HeaderValue::String((*value).to_owned().into())))
        .collect();
    let message = Message::new_from_parts(headers, payload.to_vec());
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).expect("a frame encodes");
    out
}

/// An event frame as ConverseStream sends it.
pub fn event_frame(event: &str, payload: &Value) -> Vec<u8> {
    frame(
        &[(":event-type", event), (":content-type", "application/json"), (":message-type", "event")],
        payload.to_string().as_bytes(),
    )
}

/// An exception frame, e.g. `throttlingException`.
pub fn exception_frame(kind: &str, message: &str) -> Vec<u8> {
    frame(
        &[(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
        json!({"message": message}).to_string().as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// Requests

fn header_map(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v},{value}")).or_insert(value);
    }
    out
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = header_map(&headers);
    let response = answer(&shared, &method, &uri, &headers, &body).unwrap_or_else(IntoResponse::into_response);
    shared.log.lock().unwrap().push(Recorded {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        status: response.status().as_u16(),
    });
    response
}

fn answer(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response, AwsError> {
    let expected = Expected {
        access_key_id: &shared.access_key_id,
        secret: &shared.secret,
        region: &shared.region,
        service: "bedrock",
        now: SystemTime::now(),
    };
    verify(method.as_str(), uri.path(), uri.query(), headers, body, &expected)?;
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let stream = match (method, segments.as_slice()) {
        (&Method::POST, ["model", model, "invoke"]) if !model.is_empty() => return invoke(model, headers, body),
        (&Method::POST, ["model", model, "converse"]) if !model.is_empty() => false,
        (&Method::POST, ["model", model, "converse-stream"]) if !model.is_empty() => true,
        _ => {
            return Err(aws_error(
                404,
                "UnknownOperationException",
                format!("no operation at {} {}", method, uri.path()),
            ))
        }
    };
    let request: Value =
        serde_json::from_slice(body).map_err(|e| validation(format!("Malformed input request: {e}")))?;
    validate(&request)?;
    validate_thinking(&request)?;
    let mut reply = reply_to(&request);
    reply.reasoning = thinking_of(&request);
    if stream {
        Ok(stream_response(&reply))
    } else {
        Ok(axum::Json(converse_json(&reply)).into_response())
    }
}

const TOP_LEVEL: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
];

/// Bedrock's own checks of a Converse body.
fn validate(request: &Value) -> Result<(), AwsError> {
    let body = request.as_object().ok_or_else(|| validation("Malformed input request: expected an object"))?;
    if let Some(extra) = body.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(validation(format!("Malformed input request: extraneous key [{extra}] is not permitted, please reformat your input and try again.")));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| validation("Malformed input request: messages is required and must have at least 1 item"))?;
    let tools: Vec<&str> = request
        .pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    if let Some(config) = body.get("toolConfig") {
        let listed = config.get("tools").and_then(Value::as_array).map_or(0, Vec::len);
        if listed == 0 || listed != tools.len() {
            return Err(validation("toolConfig.tools must list at least one toolSpec, each with a name"));
        }
        for tool in config["tools"].as_array().into_iter().flatten() {
            if !tool.pointer("/toolSpec/inputSchema/json").is_some_and(Value::is_object) {
                return Err(validation("toolSpec.inputSchema.json must be a JSON schema object"));
            }
        }
        if let Some(choice) = config.get("toolChoice") {
            let ok = choice.get("auto").is_some()
                || choice.get("any").is_some()
                || choice.pointer("/tool/name").and_then(Value::as_str).is_some_and(|n| tools.contains(&n));
            if !ok {
                return Err(validation("toolChoice must be auto, any, or a tool of toolConfig.tools"));
            }
        }
    }
    if let Some(system) = body.get("system") {
        let ok = system.as_array().is_some_and(|s| {
            s.iter().all(|b| b.get("text").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty()))
        });
        if !ok {
            return Err(validation("system must be a list of non-blank text blocks"));
        }
    }
    if let Some(config) = body.get("inferenceConfig").and_then(Value::as_object) {
        if let Some(k) =
            config.keys().find(|k| !["maxTokens", "temperature", "topP", "stopSequences"].contains(&k.as_str()))
        {
            return Err(validation(format!("Malformed input request: extraneous key [{k}] is not permitted")));
        }
    }
    let mut previous_tool_uses: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let expected_role = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected_role {
            return Err(validation(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
            ));
        }
        let content = message.get("content").and_then(Value::as_array).filter(|c| !c.is_empty()).ok_or_else(|| {
            validation(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."))
        })?;
        let mut tool_uses = Vec::new();
        for (j, block) in content.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            let keys: Vec<&String> = block.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            match keys.as_slice() {
                [k] if k.as_str() == "text" => {
                    if block["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
                        return Err(validation(format!("The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again.")));
                    }
                }
                [k] if k.as_str() == "image" => {
                    let format = block.pointer("/image/format").and_then(Value::as_str).unwrap_or_default();
                    let bytes = block.pointer("/image/source/bytes").and_then(Value::as_str).unwrap_or_default();
                    if !["png", "jpeg", "gif", "webp"].contains(&format)
                        || base64::engine::general_purpose::STANDARD.decode(bytes).ok().is_none_or(|b| b.is_empty())
                    {
                        return Err(validation(format!(
                            "The image at {at} needs a format of png, jpeg, gif or webp and base64 source.bytes"
                        )));
                    }
                }
                [k] if k.as_str() == "reasoningContent" && role == "assistant" => {
                    let text = block.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str);
                    let signature = block.pointer("/reasoningContent/reasoningText/signature").and_then(Value::as_str);
                    if text.is_some() && signature != text.map(reasoning_signature).as_deref() {
                        return Err(validation(format!("The reasoningContent at {at} has an invalid signature")));
                    }
                }
                [k] if k.as_str() == "toolUse" || k.as_str() == "toolResult" => {
                    if tools.is_empty() {
                        return Err(validation(
                            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
                        ));
                    }
                    if k.as_str() == "toolUse" {
                        if role != "assistant" || !block.pointer("/toolUse/input").is_some_and(Value::is_object) {
                            return Err(validation(format!(
                                "The toolUse block at {at} must be in an assistant turn with an object input"
                            )));
                        }
                        tool_uses.push(
                            block.pointer("/toolUse/toolUseId").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        );
                    } else {
                        let id = block.pointer("/toolResult/toolUseId").and_then(Value::as_str).unwrap_or_default();
                        if role != "user" || !previous_tool_uses.iter().any(|u| u == id) {
                            return Err(validation(format!(
                                "The toolResult block at {at} does not answer a toolUse of the previous turn (toolUseId {id:?})"
                            )));
                        }
                    }
                }
                _ => {
                    return Err(validation(format!(
                        "The ContentBlock at {at} must have exactly one of text, image, toolUse, toolResult"
                    )))
                }
            }
        }
        previous_tool_uses = tool_uses;
    }
    Ok(())
}

/// Claude's checks of thinking on Bedrock: a budget of at least 1024 under maxTokens, no
/// temperature, and, answering a tool call, that call's turn starting with its reasoning.
fn validate_thinking(request: &Value) -> Result<(), AwsError> {
    if request.pointer("/additionalModelRequestFields/thinking/type").and_then(Value::as_str) != Some("enabled") {
        return Ok(());
    }
    let budget =
        request.pointer("/additionalModelRequestFields/thinking/budget_tokens").and_then(Value::as_u64).unwrap_or(0);
    let max = request.pointer("/inferenceConfig/maxTokens").and_then(Value::as_u64).unwrap_or(4096);
    if budget < 1024 || max <= budget {
        return Err(validation("thinking.budget_tokens must be at least 1024 and less than max_tokens"));
    }
    if request.pointer("/inferenceConfig/temperature").is_some_and(|t| t.as_f64() != Some(1.0)) {
        return Err(validation("temperature may only be set to 1 when thinking is enabled"));
    }
    let messages = request["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    if let [.., call, answer] = messages {
        let answers_tools =
            answer["content"].as_array().is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
        if answers_tools && call.pointer("/content/0/reasoningContent").is_none() {
            return Err(validation("Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block."));
        }
    }
    Ok(())
}

/// The fake's signature of a reasoning text.
pub fn reasoning_signature(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("bedrock-sig-{hash:016x}")
}

/// The reasoning the fake does when thinking is on.
fn thinking_of(request: &Value) -> Option<String> {
    let kind = request.pointer("/additionalModelRequestFields/thinking/type").and_then(Value::as_str);
    matches!(kind, Some("enabled") | Some("adaptive")).then(|| "Reasoning about the request.".to_owned())
}

/// What the fake answers: text and/or one tool use, why it stopped, and usage.
struct Reply {
    text: String,
    tool: Option<(String, String, Value)>,
    stop_reason: &'static str,
    input_tokens: u64,
    output_tokens: u64,
    throttle: bool,
    /// Reasoning said first, when thinking is on.
    reasoning: Option<String>,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// An input for a tool, from its JSON schema: each property a value of its type.
fn sample(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None => {
            let mut out = Map::new();
            for (name, prop) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
                out.insert(name.clone(), sample(prop));
            }
            Value::Object(out)
        }
        Some("string") => json!(schema.get("enum").and_then(|e| e.get(0)).and_then(Value::as_str).unwrap_or("fake")),
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([sample(schema.get("items").unwrap_or(&json!({"type": "string"})))]),
        Some(_) => Value::Null,
    }
}

/// The capitalised word after " in " (the city in "weather in Paris?"), else Paris.
fn city(text: &str) -> String {
    text.split(" in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
        .filter(|w| w.chars().next().is_some_and(char::is_uppercase))
        .unwrap_or_else(|| "Paris".to_owned())
}

fn reply_to(request: &Value) -> Reply {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let mut input_tokens: u64 = request
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|b| words(b["text"].as_str().unwrap_or("")))
        .sum();
    for m in &messages {
        for b in m["content"].as_array().into_iter().flatten() {
            input_tokens += words(b.get("text").and_then(Value::as_str).unwrap_or("")) + 1;
        }
    }
    let last = messages.last().cloned().unwrap_or_default();
    let blocks = last["content"].as_array().cloned().unwrap_or_default();
    let text: Vec<&str> = blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
    let text = text.join(" ");
    let results: Vec<String> = blocks
        .iter()
        .filter_map(|b| b.get("toolResult"))
        .flat_map(|r| r["content"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            c.get("text")
                .and_then(Value::as_str)
                .map_or_else(|| c.get("json").map(Value::to_string).unwrap_or_default(), str::to_owned)
        })
        .collect();
    let tools = request.pointer("/toolConfig/tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let forced = request.pointer("/toolConfig/toolChoice/tool/name").and_then(Value::as_str);
    let spec = |name: &str| tools.iter().map(|t| &t["toolSpec"]).find(|s| s["name"] == name).cloned();
    let tool = if let Some(name) = forced {
        spec(name).map(|s| (name.to_owned(), sample(&s["inputSchema"]["json"])))
    } else if results.is_empty() && !tools.is_empty() && text.to_lowercase().contains("weather") {
        let s = tools
            .iter()
            .map(|t| &t["toolSpec"])
            .find(|s| s["name"].as_str().is_some_and(|n| n.contains("weather")))
            .unwrap_or(&tools[0]["toolSpec"]);
        Some((s["name"].as_str().unwrap_or_default().to_owned(), json!({"location": city(&text)})))
    } else {
        None
    };
    let throttle = text.contains("throttle me");
    if let Some((name, input)) = tool {
        let output_tokens = words(&input.to_string()) + 1;
        let id = format!("tooluse_fake{:08}", input_tokens);
        return Reply {
            text: String::new(),
            tool: Some((id, name, input)),
            stop_reason: "tool_use",
            input_tokens,
            output_tokens,
            throttle,
            reasoning: None,
        };
    }
    let mut answer =
        if results.is_empty() { format!("echo: {text}") } else { format!("The tool said: {}", results.join("; ")) };
    let mut stop_reason = "end_turn";
    let stops =
        request.pointer("/inferenceConfig/stopSequences").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(cut) = stops.iter().filter_map(Value::as_str).filter_map(|s| answer.find(s)).min() {
        answer.truncate(cut);
        stop_reason = "stop_sequence";
    }
    if let Some(max) = request.pointer("/inferenceConfig/maxTokens").and_then(Value::as_u64) {
        let kept: Vec<&str> = answer.split(' ').collect();
        if kept.len() as u64 > max {
            answer = kept[..max as usize].join(" ");
            stop_reason = "max_tokens";
        }
    }
    let output_tokens = words(&answer);
    Reply { text: answer, tool: None, stop_reason, input_tokens, output_tokens, throttle, reasoning: None }
}

fn converse_json(reply: &Reply) -> Value {
    let mut content = Vec::new();
    if let Some(r) = &reply.reasoning {
        content.push(json!({"reasoningContent": {"reasoningText": {"text": r, "signature": reasoning_signature(r)}}}));
    }
    if !reply.text.is_empty() {
        content.push(json!({"text": reply.text}));
    }
    if let Some((id, name, input)) = &reply.tool {
        content.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": reply.stop_reason,
        "usage": {
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens
        },
        "metrics": {"latencyMs": 42}
    })
}

/// Splits text into stream deltas, one per word, each with its leading space.
fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 { word.to_owned() } else { format!(" {word}") });
    }
    out
}

/// The ConverseStream frames of a reply (Bedrock pads events with a `p` field; so does this).
fn stream_frames(reply: &Reply) -> Vec<Vec<u8>> {
    let mut frames = vec![event_frame("messageStart", &json!({"p": "abcd", "role": "assistant"}))];
    let mut index = 0;
    if let Some(r) = &reply.reasoning {
        for piece in pieces(r) {
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": piece}}, "p": "ab"}),
            ));
        }
        frames.push(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": reasoning_signature(r)}}}),
        ));
        frames.push(event_frame("contentBlockStop", &json!({"contentBlockIndex": index})));
        index += 1;
    }
    if !reply.text.is_empty() {
        for piece in pieces(&reply.text) {
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"text": piece}, "p": "abcdefgh"}),
            ));
            if reply.throttle {
                frames.push(exception_frame(
                    "throttlingException",
                    "Too many requests, please wait before trying again.",
                ));
                return frames;
            }
        }
        frames.push(event_frame("contentBlockStop", &json!({"contentBlockIndex": index, "p": "ab"})));
        index += 1;
    }
    if let Some((id, name, input)) = &reply.tool {
        frames.push(event_frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": name}}, "p": "abc"}),
        ));
        let input = input.to_string();
        let third = input.len().div_ceil(3);
        let chars: Vec<char> = input.chars().collect();
        for chunk in chars.chunks(third.max(1)) {
            let part: String = chunk.iter().collect();
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}, "p": "a"}),
            ));
        }
        frames.push(event_frame("contentBlockStop", &json!({"contentBlockIndex": index, "p": "abcde"})));
    }
    frames.push(event_frame("messageStop", &json!({"stopReason": reply.stop_reason, "p": "abcdef"})));
    frames.push(event_frame(
        "metadata",
        &json!({
            "usage": {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens, "totalTokens": reply.input_tokens + reply.output_tokens},
            "metrics": {"latencyMs": 42},
            "p": "abcdefghij"
        }),
    ));
    frames
}

/// The frames, each written and flushed on its own with a short pause between them.
fn stream_response(reply: &Reply) -> Response {
    let frames = stream_frames(reply);
    let body = futures::stream::iter(frames).then(|frame| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, std::convert::Infallible>(Bytes::from(frame))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "00000000-0000-4000-8000-fakebedrock00")
        .body(Body::from_stream(body))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// InvokeModel: Titan text embeddings and Cohere embed, with Bedrock's schema checks

/// Titan v1's vector size.
pub const TITAN_V1_DIMENSIONS: usize = 1536;
/// Titan v2's vector size when `dimensions` is not given (256 and 512 can be asked for).
pub const TITAN_V2_DIMENSIONS: usize = 1024;
/// Cohere embed v3's vector size.
pub const COHERE_DIMENSIONS: usize = 1024;
/// Most texts Cohere embed takes in one call on Bedrock.
pub const COHERE_MAX_TEXTS: usize = 96;

/// The fake's vector of a text: deterministic, different for each text, values in [-1, 1];
/// scaled to unit length when `normalize`.
pub fn embed_text(text: &str, dimensions: usize, normalize: bool) -> Vec<f32> {
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    if normalize {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// A path segment with its `%XX` escapes decoded (model ids arrive with `:` as `%3A`).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A schema violation, worded as Bedrock words InvokeModel's.
fn malformed(problem: impl std::fmt::Display) -> AwsError {
    validation(format!("Malformed input request: {problem}, please reformat your input and try again."))
}

/// Refuses keys a model's schema does not have.
fn only_keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), AwsError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(malformed(format!("#: extraneous key [{extra}] is not permitted"))),
        None => Ok(()),
    }
}

/// A string field, checked against an enum when one is given.
fn enum_field<'a>(body: &'a Map<String, Value>, key: &str, values: &[&str]) -> Result<Option<&'a str>, AwsError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if values.contains(&s.as_str()) => Ok(Some(s)),
        Some(Value::String(s)) => Err(malformed(format!("#/{key}: {s} is not a valid enum value"))),
        Some(other) => Err(malformed(format!("#/{key}: expected type: String, found: {}", json_type(other)))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

/// An InvokeModel answer: the JSON body and the token-count and latency headers Bedrock adds.
fn invoke_answer(body: Value, input_tokens: u64) -> Response {
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-amzn-bedrock-input-token-count", input_tokens.to_string().parse().unwrap());
    headers.insert("x-amzn-bedrock-invocation-latency", "42".parse().unwrap());
    response
}

/// `POST /model/{modelId}/invoke` for the embedding models the fake knows.
fn invoke(model: &str, headers: &HashMap<String, String>, body: &[u8]) -> Result<Response, AwsError> {
    let model = percent_decoded(model);
    if let Some(accept) = headers.get("accept").filter(|a| !a.contains("application/json") && !a.contains("*/*")) {
        return Err(validation(format!("The requested accept type {accept} is not supported.")));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("#: {e}")))?;
    let request = request
        .as_object()
        .ok_or_else(|| malformed(format!("#: expected type: JSONObject, found: {}", json_type(&request))))?;
    match model.as_str() {
        "amazon.titan-embed-text-v1" | "amazon.titan-embed-g1-text-02" => titan(request, false),
        "amazon.titan-embed-text-v2:0" => titan(request, true),
        "cohere.embed-english-v3" | "cohere.embed-multilingual-v3" => cohere(request),
        _ => Err(validation("The provided model identifier is invalid.")),
    }
}

/// Titan text embeddings: one `inputText`; v2 takes `dimensions` (256, 512, 1024) and
/// `normalize` (default true).
fn titan(body: &Map<String, Value>, v2: bool) -> Result<Response, AwsError> {
    let allowed: &[&str] =
        if v2 { &["inputText", "dimensions", "normalize", "embeddingTypes"] } else { &["inputText"] };
    only_keys(body, allowed)?;
    let text = match body.get("inputText") {
        None => return Err(malformed("#: required key [inputText] not found")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(malformed("#/inputText: expected minLength: 1, actual: 0"))
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(malformed(format!("#/inputText: expected type: String, found: {}", json_type(other))))
        }
    };
    let dimensions = match body.get("dimensions") {
        None => {
            if v2 {
                TITAN_V2_DIMENSIONS
            } else {
                TITAN_V1_DIMENSIONS
            }
        }
        Some(d) if [256, 512, 1024].contains(&d.as_u64().unwrap_or(0)) => d.as_u64().unwrap() as usize,
        Some(d) => return Err(malformed(format!("#/dimensions: {d} is not a valid enum value"))),
    };
    let normalize = match body.get("normalize") {
        None => v2,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(malformed(format!("#/normalize: expected type: Boolean, found: {}", json_type(other))))
        }
    };
    let vector = embed_text(text, dimensions, normalize);
    let tokens = words(text).max(1);
    let mut answer = json!({"embedding": vector, "inputTextTokenCount": tokens});
    if v2 {
        answer["embeddingsByType"] = json!({"float": vector});
    }
    Ok(invoke_answer(answer, tokens))
}

/// Cohere embed v3: `texts` (at most 96) and a required `input_type`.
fn cohere(body: &Map<String, Value>) -> Result<Response, AwsError> {
    only_keys(body, &["texts", "images", "input_type", "truncate", "embedding_types"])?;
    let texts = match body.get("texts") {
        None => return Err(malformed("#: required key [texts] not found")),
        Some(Value::Array(texts)) if texts.len() > COHERE_MAX_TEXTS => {
            return Err(malformed(format!("#/texts: expected maxItems: {COHERE_MAX_TEXTS}, actual: {}", texts.len())))
        }
        Some(Value::Array(texts)) => texts,
        Some(other) => {
            return Err(malformed(format!("#/texts: expected type: JSONArray, found: {}", json_type(other))))
        }
    };
    let texts: Vec<&str> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Value::String(s) if s.chars().count() > 2048 => {
                Err(malformed(format!("#/texts/{i}: expected maxLength: 2048, actual: {}", s.chars().count())))
            }
            Value::String(s) => Ok(s.as_str()),
            other => Err(malformed(format!("#/texts/{i}: expected type: String, found: {}", json_type(other)))),
        })
        .collect::<Result<_, _>>()?;
    if enum_field(body, "input_type", &["search_document", "search_query", "classification", "clustering"])?.is_none() {
        return Err(malformed("#: required key [input_type] not found"));
    }
    enum_field(body, "truncate", &["NONE", "START", "END"])?;
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embed_text(t, COHERE_DIMENSIONS, false)).collect();
    let tokens: u64 = texts.iter().map(|t| words(t)).sum();
    let id = format!("{:032x}", texts.iter().fold(0u128, |h, t| h.wrapping_mul(31).wrapping_add(t.len() as u128 + 1)));
    let answer = match body.get("embedding_types").and_then(Value::as_array) {
        Some(kinds) => {
            let by_type: Map<String, Value> =
                kinds.iter().filter_map(Value::as_str).map(|k| (k.to_owned(), json!(vectors))).collect();
            json!({"id": id, "embeddings": by_type, "texts": texts, "response_type": "embeddings_by_type"})
        }
        None => json!({"id": id, "embeddings": vectors, "texts": texts, "response_type": "embeddings_floats"}),
    };
    Ok(invoke_answer(answer, tokens))
}

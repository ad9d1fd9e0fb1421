//! litellm's `mock_response`: a deployment that answers with fixed text, in the exact wire
//! shapes of OpenAI (chat, completions, embeddings) and Anthropic (messages), streaming too.
//!
//! The builders here are pure (id and clock passed in) so snapshot tests pin the exact JSON
//! and SSE framing; [`serve`] wires them to a request.

use super::ProviderCall;
use crate::api::anthropic::{
    BlockDelta, Content, ContentBlock, MessageDelta, MessageResponse, MessagesRequest, Source, StreamEvent,
    Usage as AnthropicUsage,
};
use crate::api::openai::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatRequest, ChatUsage, Choice, ChunkChoice, CompletionChoice,
    CompletionRequest, Delta, Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, EmbeddingVector,
    TextCompletion,
};
use crate::catalogue::Translator;
use crate::exchange::{ApiError, Outcome, Payload, Usage};
use crate::streaming::sse;
use crate::tokenizer;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// What the mock needs to build one answer.
#[derive(Debug, Clone)]
pub struct MockAnswer<'a> {
    pub text: &'a str,
    /// The deployment's model, reported as the upstream would.
    pub model: &'a str,
    pub id: &'a str,
    pub created: u64,
}

/// Splits the mock text into stream deltas: one per word, each carrying its leading space.
pub fn deltas(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start && !text[start..i].trim().is_empty() {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn chat_usage_of(u: Usage) -> ChatUsage {
    ChatUsage::new(u.prompt_tokens, u.completion_tokens)
}

/// Usage of a chat request answered with `text`.
pub fn chat_usage(req: &ChatRequest, text: &str) -> Usage {
    let messages: Vec<(String, String)> = req.messages.iter().map(|m| (m.role.clone(), m.text())).collect();
    let n = u64::from(req.n.unwrap_or(1).max(1));
    Usage {
        prompt_tokens: tokenizer::count_chat(&messages),
        completion_tokens: tokenizer::count(text) * n,
        ..Usage::default()
    }
}

/// A `chat.completion` object.
pub fn chat_response(a: &MockAnswer<'_>, req: &ChatRequest) -> ChatCompletion {
    let choices = (0..req.n.unwrap_or(1).max(1))
        .map(|i| Choice {
            index: i,
            message: AssistantMessage::new(Some(a.text.to_owned()), None),
            logprobs: Some(None),
            finish_reason: Some("stop".into()),
            extra: Map::new(),
        })
        .collect();
    ChatCompletion {
        id: a.id.to_owned(),
        object: "chat.completion".into(),
        created: a.created,
        model: a.model.to_owned(),
        choices,
        system_fingerprint: Some(None),
        usage: Some(chat_usage_of(chat_usage(req, a.text))),
        extra: Map::new(),
    }
}

/// One `chat.completion.chunk` of choice `index` (no choice at all for the usage chunk).
fn chat_chunk(a: &MockAnswer<'_>, index: Option<u32>, delta: Delta, finish: Option<&str>) -> ChatChunk {
    let choice = |index| ChunkChoice {
        index,
        delta,
        logprobs: Some(None),
        finish_reason: finish.map(Into::into),
        extra: Map::new(),
    };
    ChatChunk {
        id: a.id.into(),
        object: "chat.completion.chunk".into(),
        created: a.created,
        model: a.model.into(),
        system_fingerprint: Some(None),
        choices: index.map(choice).into_iter().collect(),
        usage: None,
        extra: Map::new(),
    }
}

/// The chunks of a streamed chat completion: per choice a role chunk, one per word, and a
/// finish chunk; with usage asked for, every chunk says `usage: null` but a last usage-only one.
pub fn chat_chunks(a: &MockAnswer<'_>, req: &ChatRequest) -> Vec<ChatChunk> {
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let marked = |mut chunk: ChatChunk| {
        if include_usage {
            chunk.usage = Some(None);
        }
        chunk
    };
    let text = |piece: &str| Delta { content: Some(Some(piece.to_owned())), ..Delta::default() };
    let n = req.n.unwrap_or(1).max(1);
    let mut chunks = Vec::new();
    for i in 0..n {
        let first = Delta { role: Some("assistant".into()), ..text("") };
        chunks.push(marked(chat_chunk(a, Some(i), first, None)));
        for piece in deltas(a.text) {
            chunks.push(marked(chat_chunk(a, Some(i), text(piece), None)));
        }
        chunks.push(marked(chat_chunk(a, Some(i), Delta::default(), Some("stop"))));
    }
    if include_usage {
        let mut last = chat_chunk(a, None, Delta::default(), None);
        last.usage = Some(Some(chat_usage_of(chat_usage(req, a.text))));
        chunks.push(last);
    }
    chunks
}

/// The SSE frames of a streamed chat completion, `data: [DONE]` included.
pub fn chat_stream(a: &MockAnswer<'_>, req: &ChatRequest) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = chat_chunks(a, req).iter().map(sse::data).collect();
    frames.push(sse::done());
    frames
}

/// A mock deployment's chat answer to `req`: the whole answer, and its chunks when `req`
/// streams (what the Responses front turns into its own shapes).
pub fn chat_answer(d: &super::Deployment, req: &ChatRequest) -> (ChatCompletion, Option<Vec<ChatChunk>>) {
    let id = new_id("chatcmpl-");
    let text = d.mock_response.as_deref().unwrap_or_default();
    let a = MockAnswer { text, model: &d.upstream_model, id: &id, created: crate::clock::unix_now() };
    let chunks = (req.stream == Some(true)).then(|| chat_chunks(&a, req));
    (chat_response(&a, req), chunks)
}

fn prompt_texts(prompt: &Value) -> Vec<String> {
    match prompt {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Value::Null => vec![String::new()],
        other => vec![other.to_string()],
    }
}

/// Usage of a completions request answered with `text` (once per prompt and per `n`).
pub fn completion_usage(req: &CompletionRequest, text: &str) -> Usage {
    let prompts = prompt_texts(&req.prompt);
    let answers = prompts.len() as u64 * u64::from(req.n.unwrap_or(1).max(1));
    Usage {
        prompt_tokens: prompts.iter().map(|p| tokenizer::count(p)).sum(),
        completion_tokens: tokenizer::count(text) * answers,
        ..Usage::default()
    }
}

/// How many answers a completions request gets: one per prompt and per `n`.
fn completion_answers(req: &CompletionRequest) -> u32 {
    let prompts = u32::try_from(prompt_texts(&req.prompt).len()).unwrap_or(u32::MAX);
    prompts.saturating_mul(req.n.unwrap_or(1).max(1))
}

/// A `text_completion` with these choices.
fn text_completion(a: &MockAnswer<'_>, choices: Vec<CompletionChoice>) -> TextCompletion {
    TextCompletion {
        id: a.id.to_owned(),
        object: "text_completion".into(),
        created: a.created,
        model: a.model.to_owned(),
        choices,
        usage: None,
        extra: Map::new(),
    }
}

fn completion_choice(index: u32, text: &str, finish: Option<&str>) -> CompletionChoice {
    CompletionChoice {
        text: text.to_owned(),
        index,
        logprobs: Some(None),
        finish_reason: finish.map(Into::into),
        extra: Map::new(),
    }
}

/// A `text_completion` object.
pub fn completion_response(a: &MockAnswer<'_>, req: &CompletionRequest) -> TextCompletion {
    let choices = (0..completion_answers(req)).map(|i| completion_choice(i, a.text, Some("stop"))).collect();
    let mut answer = text_completion(a, choices);
    answer.usage = Some(Some(chat_usage_of(completion_usage(req, a.text))));
    answer
}

/// The SSE frames of a streamed completion.
pub fn completion_stream(a: &MockAnswer<'_>, req: &CompletionRequest) -> Vec<Bytes> {
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let frame = |choice: CompletionChoice| {
        let mut chunk = text_completion(a, vec![choice]);
        if include_usage {
            chunk.usage = Some(None);
        }
        sse::data(&chunk)
    };
    let mut frames = Vec::new();
    for i in 0..completion_answers(req) {
        for piece in deltas(a.text) {
            frames.push(frame(completion_choice(i, piece, None)));
        }
        frames.push(frame(completion_choice(i, "", Some("stop"))));
    }
    if include_usage {
        let mut last = text_completion(a, Vec::new());
        last.usage = Some(Some(chat_usage_of(completion_usage(req, a.text))));
        frames.push(sse::data(&last));
    }
    frames.push(sse::done());
    frames
}

/// Usage of an Anthropic Messages request answered with `text`.
pub fn messages_usage(req: &MessagesRequest<'_>, text: &str) -> Usage {
    let system = req.system.as_ref().map(content_tokens).unwrap_or(0);
    let turns: u64 = req.messages.iter().map(|m| 3 + content_tokens(&m.content)).sum();
    Usage { prompt_tokens: system + turns + 3, completion_tokens: tokenizer::count(text), ..Usage::default() }
}

/// The tokens of a turn's content, counted as `tokenizer::count_value` counts its JSON: every
/// string and number, block types included, so the figures stay those of the untyped mock.
fn content_tokens(content: &Content<'_>) -> u64 {
    match content {
        Content::Text(text) => tokenizer::count(text),
        Content::Blocks(blocks) => blocks.iter().map(block_tokens).sum(),
    }
}

fn block_tokens(block: &ContentBlock<'_>) -> u64 {
    let texts = |texts: &[&str]| texts.iter().map(|t| tokenizer::count(t)).sum::<u64>();
    let source = |kind: &str, s: &Source<'_>| {
        let optional = [s.media_type.as_deref(), s.data.as_deref(), s.url.as_deref()];
        texts(&[kind, &s.kind]) + optional.into_iter().flatten().map(tokenizer::count).sum::<u64>()
    };
    match block {
        ContentBlock::Text { text, cache_control } => {
            texts(&["text", text]) + cache_control.as_deref().map_or(0, tokenizer::count_value)
        }
        ContentBlock::Image { source: s } => source("image", s),
        ContentBlock::Document { source: s } => source("document", s),
        ContentBlock::ToolUse { id, name, input } => texts(&["tool_use", id, name]) + tokenizer::count_value(input),
        ContentBlock::ToolResult { tool_use_id, content } => {
            texts(&["tool_result", tool_use_id]) + content_tokens(content)
        }
        ContentBlock::Thinking { thinking, signature } => texts(&["thinking", thinking, signature]),
        ContentBlock::RedactedThinking { data } => texts(&["redacted_thinking", data]),
        ContentBlock::Other(members) => members.values().map(tokenizer::count_value).sum(),
    }
}

/// An assistant `message` with this content.
fn message<'a>(
    a: &MockAnswer<'a>,
    content: Vec<ContentBlock<'a>>,
    stop_reason: Option<&'static str>,
    usage: AnthropicUsage,
) -> MessageResponse<'a> {
    MessageResponse {
        id: Cow::Borrowed(a.id),
        kind: Cow::Borrowed("message"),
        role: Cow::Borrowed("assistant"),
        model: Cow::Borrowed(a.model),
        content,
        stop_reason: stop_reason.map(Cow::Borrowed),
        stop_sequence: None,
        usage,
    }
}

/// An Anthropic `message` object.
pub fn messages_response<'a>(a: &MockAnswer<'a>, req: &MessagesRequest<'_>) -> MessageResponse<'a> {
    let u = messages_usage(req, a.text);
    let usage = AnthropicUsage::new(u.prompt_tokens, u.completion_tokens);
    message(a, vec![ContentBlock::text(a.text)], Some("end_turn"), usage)
}

/// An event in Anthropic's SSE framing.
fn frame(event: &StreamEvent<'_>) -> Bytes {
    sse::named(event.name(), event)
}

/// The full Anthropic SSE sequence: message_start, ping, the text block, message_delta, message_stop.
pub fn messages_stream(a: &MockAnswer<'_>, req: &MessagesRequest<'_>) -> Vec<Bytes> {
    let u = messages_usage(req, a.text);
    // Anthropic reports one output token at the start.
    let start = message(a, Vec::new(), None, AnthropicUsage::new(u.prompt_tokens, 1));
    let mut frames = vec![
        frame(&StreamEvent::MessageStart { message: start }),
        frame(&StreamEvent::ContentBlockStart { index: 0, content_block: ContentBlock::text("") }),
        frame(&StreamEvent::Ping),
    ];
    for piece in deltas(a.text) {
        let delta = BlockDelta::TextDelta { text: Cow::Borrowed(piece) };
        frames.push(frame(&StreamEvent::ContentBlockDelta { index: 0, delta }));
    }
    frames.push(frame(&StreamEvent::ContentBlockStop { index: 0 }));
    let delta = MessageDelta { stop_reason: Some(Cow::Borrowed("end_turn")), stop_sequence: None };
    let usage = AnthropicUsage { output_tokens: Some(u.completion_tokens), ..AnthropicUsage::default() };
    frames.push(frame(&StreamEvent::MessageDelta { delta, usage }));
    frames.push(frame(&StreamEvent::MessageStop));
    frames
}

/// Default embedding size (text-embedding-3-small's).
const EMBEDDING_DIMENSIONS: usize = 1536;

/// A unit-length vector derived from the text alone: the same text always embeds the same.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a seeds a xorshift generator; cheap, stable across platforms and releases.
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut v: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// An embeddings `list` response, as floats or (when asked) base64 of little-endian f32.
pub fn embedding_response(model: &str, req: &EmbeddingRequest) -> Result<EmbeddingList, ApiError> {
    let dimensions = req.dimensions.unwrap_or(EMBEDDING_DIMENSIONS);
    if dimensions == 0 || dimensions > 8192 {
        return Err(ApiError::bad_request("dimensions must be between 1 and 8192").with_param("dimensions"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format {other:?} is not supported; use float or base64"
            ))
            .with_param("encoding_format"))
        }
    };
    let inputs = req.inputs();
    let data = inputs
        .iter()
        .zip(0..)
        .map(|(text, index)| {
            let v = embed(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                // As f64, the numbers written are those the untyped answer had.
                EmbeddingVector::Float(v.into_iter().map(f64::from).collect())
            };
            Embedding { object: "embedding".into(), index, embedding }
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| tokenizer::count(t)).sum();
    Ok(EmbeddingList {
        object: "list".into(),
        data,
        model: model.to_owned(),
        usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens },
        extra: Map::new(),
    })
}

fn parse<T: DeserializeOwned>(payload: Payload) -> Result<T, ApiError> {
    super::chat::parse_json(&payload)
}

fn stream_response(frames: Vec<Bytes>) -> Response {
    sse::response(futures::stream::iter(frames.into_iter().map(Ok)))
}

fn new_id(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}{:024x}", n & ((1u128 << 96) - 1))
}

/// Answers a request routed to a mock deployment.
pub fn serve(call: ProviderCall<'_>, translator: Translator) -> Result<Outcome, ApiError> {
    let d = call.deployment;
    let text = d.mock_response.as_deref().unwrap_or_default();
    let created = crate::clock::unix_now();
    let (response, usage) = match translator {
        Translator::MockChat => {
            let req: ChatRequest = parse(call.payload)?;
            let id = new_id("chatcmpl-");
            let a = MockAnswer { text, model: &d.upstream_model, id: &id, created };
            let usage = chat_usage(&req, text);
            let response = if req.stream == Some(true) {
                stream_response(chat_stream(&a, &req))
            } else {
                axum::Json(chat_response(&a, &req)).into_response()
            };
            (response, usage)
        }
        Translator::MockCompletion => {
            let req: CompletionRequest = parse(call.payload)?;
            let id = new_id("cmpl-");
            let a = MockAnswer { text, model: &d.upstream_model, id: &id, created };
            let usage = completion_usage(&req, text);
            let response = if req.stream == Some(true) {
                stream_response(completion_stream(&a, &req))
            } else {
                axum::Json(completion_response(&a, &req)).into_response()
            };
            (response, usage)
        }
        Translator::MockMessages => {
            let req: MessagesRequest = parse(call.payload)?;
            let id = new_id("msg_");
            let a = MockAnswer { text, model: &d.upstream_model, id: &id, created };
            let usage = messages_usage(&req, text);
            let response = if req.stream == Some(true) {
                stream_response(messages_stream(&a, &req))
            } else {
                axum::Json(messages_response(&a, &req)).into_response()
            };
            (response, usage)
        }
        Translator::MockEmbedding => {
            let req: EmbeddingRequest = parse(call.payload)?;
            let body = embedding_response(&d.upstream_model, &req)?;
            let prompt_tokens = body.usage.prompt_tokens;
            (axum::Json(body).into_response(), Usage { prompt_tokens, ..Usage::default() })
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "translator {other} is not a mock translator; mock deployments serve chat completions, completions, messages and embeddings"
            )))
        }
    };
    Ok(Outcome { response, deployment: None, usage: Some(usage) })
}

//! AWS Bedrock embeddings behind OpenAI's `POST /v1/embeddings`: `InvokeModel` (`POST
//! /model/{modelId}/invoke`), signed with SigV4 as Bedrock chat is, with the body the model's
//! family reads:
//!
//! - Titan text embeddings (`amazon.titan-embed-text-v1`, `amazon.titan-embed-text-v2:0`):
//!   `{"inputText"}`, one text a call, so a list of inputs is one call per item (a few at a
//!   time, the answers kept in the inputs' order); v2 also takes `dimensions` and `normalize`;
//!   usage is the sum of the answers' `inputTextTokenCount`.
//! - Cohere embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`): `{"texts",
//!   "input_type", "truncate"}` in one call, `input_type` the request's own else
//!   `search_document` (as on Cohere's own API); usage from the
//!   `x-amzn-bedrock-input-token-count` header.
//!
//! The answer is OpenAI's `list` (floats, or base64 when `encoding_format` asks), named after
//! the model the client asked for. Upstream errors map as Bedrock chat's do. Token-id inputs are
//! refused: Bedrock's models embed text.
//!
//! The bodies and answers are pure functions ([`titan_body`], [`cohere_body`], [`titan_answer`],
//! [`cohere_answer`], [`openai_list`]); [`serve`] wires them to the upstream.

use super::cohere::DEFAULT_INPUT_TYPE;
use super::translate::{embedding_value, retry_after, upstream_url, wants_base64, ChatProvider, UpstreamRequest};
use super::{bedrock, Deployment, ProviderCall};
use crate::api::openai::EmbeddingRequest;
use crate::exchange::{parse_json, usage, ApiError, Outcome};
use crate::observability::session_log::LogType;
use crate::transport::{AnswerHeaders, ReadError};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Titan calls in flight at once for one request's inputs.
const TITAN_CONCURRENCY: usize = 8;

/// The header Bedrock counts an InvokeModel request's input tokens in.
pub const INPUT_TOKEN_COUNT: &str = "x-amzn-bedrock-input-token-count";

/// The embedding models ferrolite translates for, by the body they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `amazon.titan-embed-text-v1` (and its `amazon.titan-embed-g1-text-02` alias): `inputText` only.
    TitanV1,
    /// `amazon.titan-embed-text-v2:0`: `inputText`, `dimensions`, `normalize`.
    TitanV2,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`.
    Cohere,
}

impl Family {
    /// The family of a Bedrock model id (a cross-region profile's `us.` prefix allowed).
    pub fn of(model: &str) -> Option<Family> {
        if model.contains("amazon.titan-embed-text-v2") {
            Some(Family::TitanV2)
        } else if model.contains("amazon.titan-embed-text-v1") || model.contains("amazon.titan-embed-g1-text") {
            Some(Family::TitanV1)
        } else if model.contains("cohere.embed-") {
            Some(Family::Cohere)
        } else {
            None
        }
    }

    /// Whether the model takes OpenAI's `dimensions`.
    fn takes_dimensions(self) -> bool {
        self == Family::TitanV2
    }
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    bedrock::invalid(param, message)
}

/// The request's inputs as text: a string, or a list of strings. Token ids are refused.
pub fn texts(req: &EmbeddingRequest) -> Result<Vec<&str>, ApiError> {
    let token_ids = || {
        bad(
            "input as token ids (lists of integers) is not supported for bedrock embedding models; send the text",
            "input",
        )
    };
    match &req.input {
        Value::String(text) => Ok(vec![text.as_str()]),
        Value::Array(items) if items.is_empty() => Err(bad("input must not be empty", "input")),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.as_str()),
                Value::Number(_) | Value::Array(_) => Err(token_ids()),
                _ => Err(bad("input must be a string or a list of strings", "input")),
            })
            .collect(),
        _ => Err(bad("input must be a string or a list of strings", "input")),
    }
}

/// A Titan `InvokeModel` body: one text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TitanRequest<'a> {
    #[serde(rename = "inputText")]
    pub input_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
}

/// A Cohere embed `InvokeModel` body: every text at once.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CohereRequest<'a> {
    pub texts: Vec<&'a str>,
    pub input_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<&'a str>,
}

/// An extra (non-OpenAI) parameter, `null` counted as absent.
fn extra<'a>(req: &'a EmbeddingRequest, name: &str) -> Option<&'a Value> {
    req.extra.get(name).filter(|v| !v.is_null())
}

/// The Titan body for `text` (`dimensions` already checked against the family by [`serve`]).
pub fn titan_body<'a>(req: &'a EmbeddingRequest, family: Family, text: &'a str) -> Result<TitanRequest<'a>, ApiError> {
    let normalize = match extra(req, "normalize") {
        None => None,
        Some(Value::Bool(b)) if family == Family::TitanV2 => Some(*b),
        Some(Value::Bool(_)) => return Err(bad("normalize is taken by amazon.titan-embed-text-v2 only", "normalize")),
        Some(_) => return Err(bad("normalize must be true or false", "normalize")),
    };
    let dimensions = req.dimensions.filter(|_| family.takes_dimensions());
    Ok(TitanRequest { input_text: text, dimensions, normalize })
}

/// The Cohere embed body for the request's texts.
pub fn cohere_body<'a>(req: &'a EmbeddingRequest, texts: Vec<&'a str>) -> Result<CohereRequest<'a>, ApiError> {
    let input_type = match extra(req, "input_type") {
        None => DEFAULT_INPUT_TYPE,
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad("input_type must be a string", "input_type")),
    };
    let truncate = match extra(req, "truncate") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(bad("truncate must be a string (NONE, START or END)", "truncate")),
    };
    Ok(CohereRequest { texts, input_type, truncate })
}

#[derive(Deserialize)]
struct TitanResponse {
    embedding: Option<Vec<f32>>,
    #[serde(rename = "embeddingsByType")]
    embeddings_by_type: Option<FloatsByType<Vec<f32>>>,
    #[serde(rename = "inputTextTokenCount")]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct FloatsByType<T> {
    float: Option<T>,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
}

/// `embeddings_floats` (a list of vectors) or `embeddings_by_type` (`{"float": [...]}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f32>>),
    ByType(FloatsByType<Vec<Vec<f32>>>),
}

/// A Titan answer: its vector and its input token count.
pub fn titan_answer(body: &[u8]) -> Result<(Vec<f32>, Option<u64>), ApiError> {
    let answer: TitanResponse = parse_json(body).map_err(|e| bedrock::unreadable("the embeddings answer", e))?;
    let vector = answer
        .embedding
        .or_else(|| answer.embeddings_by_type.and_then(|t| t.float))
        .ok_or_else(|| bedrock::bad_upstream("the embeddings answer has no embedding"))?;
    Ok((vector, answer.input_text_token_count))
}

/// A Cohere embed answer's vectors, one for each of `inputs` texts.
pub fn cohere_answer(body: &[u8], inputs: usize) -> Result<Vec<Vec<f32>>, ApiError> {
    let answer: CohereResponse = parse_json(body).map_err(|e| bedrock::unreadable("the embeddings answer", e))?;
    let vectors = match answer.embeddings {
        CohereEmbeddings::Floats(vectors) => vectors,
        CohereEmbeddings::ByType(by_type) => {
            by_type.float.ok_or_else(|| bedrock::bad_upstream("the embeddings answer has no float embeddings"))?
        }
    };
    if vectors.len() != inputs {
        return Err(bedrock::bad_upstream(format!("{} embeddings came back for {inputs} inputs", vectors.len())));
    }
    Ok(vectors)
}

/// OpenAI's embeddings `list`.
pub fn openai_list(model: &str, vectors: &[Vec<f32>], tokens: u64, base64: bool) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, values)| json!({"object": "embedding", "index": i, "embedding": embedding_value(values, base64)}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

/// The input tokens Bedrock counted in an answer's header.
fn header_tokens(headers: &HeaderMap) -> Option<u64> {
    headers.get(INPUT_TOKEN_COUNT)?.to_str().ok()?.trim().parse().ok()
}

/// The tokens of `texts` as estimated here, for an answer that does not count them.
fn estimated(texts: &[&str]) -> u64 {
    texts.iter().map(|t| crate::tokenizer::count(t)).sum()
}

/// `POST /v1/embeddings` on a Bedrock deployment.
pub async fn serve(call: ProviderCall<'_>) -> Result<Outcome, ApiError> {
    let mut req: EmbeddingRequest = super::chat::parse_json(&call.payload)?;
    let d = call.deployment;
    let family = Family::of(&d.upstream_model).ok_or_else(|| {
        bad(
            format!(
                "{} has no embeddings translation in ferrolite (amazon.titan-embed-text-v1, \
                 amazon.titan-embed-text-v2:0 and cohere.embed-* models have)",
                d.upstream_model
            ),
            "model",
        )
    })?;
    let base64 = wants_base64(&req)?;
    if req.dimensions.is_some() && !family.takes_dimensions() {
        if !call.settings.drop_params {
            return Err(ApiError::bad_request(format!(
                "bedrock: {} does not support the parameter dimensions; set `drop_params: true` in litellm_settings to drop unsupported parameters",
                d.upstream_model
            ))
            .with_param("dimensions")
            .with_code("unsupported_parameter"));
        }
        req.dimensions = None;
        if call.settings.debug || call.settings.detailed_debug {
            call.logs.push(LogType::Log, format!("drop_params: dropped dimensions for bedrock deployment {}", d.id));
        }
    }
    let texts = texts(&req)?;
    let template = call.provider_route.upstream.ok_or_else(|| {
        ApiError::internal(format!("the catalogue gives {} no upstream for {}", d.provider, call.route.path))
    })?;
    let url = upstream_url(d, template.path, call.params)?;
    let (vectors, tokens) = match family {
        Family::TitanV1 | Family::TitanV2 => {
            let bodies = texts.iter().map(|text| titan_body(&req, family, text)).collect::<Result<Vec<_>, _>>()?;
            let calls: Vec<_> =
                bodies.iter().zip(&texts).map(|(body, text)| titan_call(&call, url.clone(), body, text)).collect();
            let answers: Vec<(Vec<f32>, u64)> =
                futures::stream::iter(calls).buffered(TITAN_CONCURRENCY).try_collect().await?;
            let tokens = answers.iter().map(|(_, n)| n).sum();
            (answers.into_iter().map(|(v, _)| v).collect::<Vec<_>>(), tokens)
        }
        Family::Cohere => {
            let body = cohere_body(&req, texts.clone())?;
            let (headers, answer) = invoke(&call, url, &body).await?;
            let vectors = cohere_answer(&answer, texts.len())?;
            (vectors, header_tokens(&headers).unwrap_or_else(|| estimated(&texts)))
        }
    };
    let value = openai_list(&req.model, &vectors, tokens, base64);
    let usage = usage::from_json(&value);
    Ok(Outcome { response: axum::Json(value).into_response(), deployment: None, usage })
}

/// One Titan call: the text's vector and its input tokens (Titan's count, else Bedrock's
/// header, else an estimate).
async fn titan_call(
    call: &ProviderCall<'_>,
    url: String,
    body: &TitanRequest<'_>,
    text: &str,
) -> Result<(Vec<f32>, u64), ApiError> {
    let (headers, answer) = invoke(call, url, body).await?;
    let (vector, counted) = titan_answer(&answer)?;
    Ok((vector, counted.or_else(|| header_tokens(&headers)).unwrap_or_else(|| estimated(&[text]))))
}

/// One signed `InvokeModel` call: the answer's headers and body, or the upstream's error as
/// Bedrock chat maps it.
async fn invoke(call: &ProviderCall<'_>, url: String, body: &impl Serialize) -> Result<(HeaderMap, Vec<u8>), ApiError> {
    let d: &Deployment = call.deployment;
    let mut request = UpstreamRequest::post_json(url, body).header("accept", "application/json");
    // Titan's count comes in a header of the answer.
    request.answer_headers = AnswerHeaders::All;
    let mut response = super::chat::send(call.upstream, request, d, None).await?;
    let headers = std::mem::take(&mut response.headers);
    let status = response.status;
    if !status.is_success() {
        // At most 64 KiB of an error body, as the chat translations read.
        let body = response.head_of_body(64 * 1024).await;
        return Err(bedrock::PROVIDER.upstream_error(status, &body, d).with_retry_after(retry_after(&headers)));
    }
    let answer = response.bytes(call.answer_limit).await.map_err(|e| {
        let message = match e {
            ReadError::TooLarge => e.to_string(),
            ReadError::Broken(cause) => format!("reading the upstream answer: {cause}"),
        };
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    })?;
    Ok((headers, answer))
}

//! The one usage reader: the token counts of an answer or a stream event, in OpenAI's,
//! Anthropic's, Gemini's or the Responses API's vocabulary, from a parsed value or straight from
//! an answer's bytes (a scan that builds no values; both read the same places).
//!
//! Cached tokens are the prompt's tokens the provider read from its cache: OpenAI's
//! `prompt_tokens_details.cached_tokens`, the Responses API's `input_tokens_details.cached_tokens`,
//! Anthropic's `cache_read_input_tokens`, Gemini's `cachedContentTokenCount`.

use super::Usage;
use crate::json_scan::{self, ScanError};
use serde_json::Value;
use std::ops::Range;

/// Reads token usage from an answer or a stream event, whichever vocabulary it uses.
pub fn from_json(v: &Value) -> Option<Usage> {
    fn object(u: Option<&Value>) -> Option<&Value> {
        u.filter(|u| u.is_object())
    }
    let Some(usage) = object(v.get("usage"))
        .or_else(|| object(v.pointer("/message/usage")))
        .or_else(|| object(v.pointer("/response/usage")))
    else {
        return object(v.get("usageMetadata")).and_then(gemini_from_json);
    };
    let count = |keys: &[&str]| keys.iter().find_map(|k| usage.get(*k).and_then(Value::as_u64));
    let prompt = count(&["prompt_tokens", "input_tokens"]);
    let completion = count(&["completion_tokens", "output_tokens"]);
    let detail = |key: &str| usage.get(key).filter(|d| d.is_object()).and_then(|d| d.get("cached_tokens")?.as_u64());
    let cached = detail("prompt_tokens_details")
        .or_else(|| detail("input_tokens_details"))
        .or_else(|| usage.get("cache_read_input_tokens").and_then(Value::as_u64));
    counted(prompt, completion, cached)
}

/// Gemini's `usageMetadata`: thinking tokens count as completion tokens, as the Gemini
/// translation counts them.
fn gemini_from_json(meta: &Value) -> Option<Usage> {
    let count = |key: &str| meta.get(key).and_then(Value::as_u64);
    let completion = match (count("candidatesTokenCount"), count("thoughtsTokenCount")) {
        (None, None) => None,
        (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
    };
    counted(count("promptTokenCount"), completion, count("cachedContentTokenCount"))
}

/// Usage when the prompt or the completion is counted (a cached count alone is no usage).
fn counted(prompt: Option<u64>, completion: Option<u64>, cached: Option<u64>) -> Option<Usage> {
    (prompt.is_some() || completion.is_some()).then(|| Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
        cached_tokens: cached.unwrap_or(0),
    })
}

/// The token counts of a JSON answer, read without building it (the whole answer is still
/// checked to be JSON): the same places [`from_json`] looks, with keys as written.
pub fn from_answer(doc: &[u8]) -> Result<Option<Usage>, ScanError> {
    counts_at(doc, &Places::of(doc)?)
}

/// A stream event's usage, read as [`from_answer`] reads an answer, and whether the event is
/// nothing but that: the chunk OpenAI ends a stream with when asked for usage (`choices: []`
/// beside a `usage` object), which goes to the client only if it asked.
pub fn from_event(doc: &[u8]) -> Result<(Option<Usage>, bool), ScanError> {
    let places = Places::of(doc)?;
    // A scanned value: `[` then only spaces before its `]` is the empty array.
    let empty_array =
        |v: &[u8]| v.first() == Some(&b'[') && v[1..].iter().all(|&b| b == b']' || b.is_ascii_whitespace());
    let usage_only = places.choices.clone().is_some_and(|s| empty_array(&doc[s]))
        && places.usage.clone().is_some_and(|s| doc[s].first() == Some(&b'{'));
    Ok((counts_at(doc, &places)?, usage_only))
}

/// Where a document's top-level members that can hold usage are (the last of a repeated name,
/// as a parsed map keeps it).
#[derive(Default)]
struct Places {
    usage: Option<Range<usize>>,
    message: Option<Range<usize>>,
    response: Option<Range<usize>>,
    metadata: Option<Range<usize>>,
    choices: Option<Range<usize>>,
}

impl Places {
    fn of(doc: &[u8]) -> Result<Places, ScanError> {
        let mut places = Places::default();
        json_scan::members(doc, |key, span| match key {
            b"usage" => places.usage = Some(span),
            b"message" => places.message = Some(span),
            b"response" => places.response = Some(span),
            b"usageMetadata" => places.metadata = Some(span),
            b"choices" => places.choices = Some(span),
            _ => {}
        })?;
        Ok(places)
    }
}

/// The token counts at `places` of `doc`.
fn counts_at(doc: &[u8], places: &Places) -> Result<Option<Usage>, ScanError> {
    let object = |span: Option<Range<usize>>| span.map(|s| &doc[s]).filter(|v| v.first() == Some(&b'{'));
    let nested = |span: Option<Range<usize>>| {
        let outer = object(span)?;
        let mut inner = None;
        json_scan::members(outer, |key, span| {
            if key == b"usage" {
                inner = Some(span);
            }
        })
        .ok()?;
        inner.map(|s| &outer[s]).filter(|v| v.first() == Some(&b'{'))
    };
    let counts = object(places.usage.clone())
        .or_else(|| nested(places.message.clone()))
        .or_else(|| nested(places.response.clone()));
    let Some(counts) = counts else {
        return match object(places.metadata.clone()) {
            Some(meta) => gemini_from_answer(meta),
            None => Ok(None),
        };
    };
    let (mut prompt, mut input, mut completion, mut output) = (None, None, None, None);
    let (mut prompt_details, mut input_details, mut cache_read) = (None, None, None);
    json_scan::members(counts, |key, span| {
        let value = &counts[span.clone()];
        match key {
            b"prompt_tokens" => prompt = json_scan::whole_number(value),
            b"input_tokens" => input = json_scan::whole_number(value),
            b"completion_tokens" => completion = json_scan::whole_number(value),
            b"output_tokens" => output = json_scan::whole_number(value),
            b"cache_read_input_tokens" => cache_read = json_scan::whole_number(value),
            b"prompt_tokens_details" => prompt_details = Some(span),
            b"input_tokens_details" => input_details = Some(span),
            _ => {}
        }
    })?;
    let detail = |span: Option<Range<usize>>| -> Result<Option<u64>, ScanError> {
        let Some(details) = span.map(|s| &counts[s]).filter(|v| v.first() == Some(&b'{')) else { return Ok(None) };
        let mut cached = None;
        json_scan::members(details, |key, span| {
            if key == b"cached_tokens" {
                cached = json_scan::whole_number(&details[span]);
            }
        })?;
        Ok(cached)
    };
    let cached = match detail(prompt_details)? {
        Some(n) => Some(n),
        None => detail(input_details)?.or(cache_read),
    };
    Ok(counted(prompt.or(input), completion.or(output), cached))
}

/// [`gemini_from_json`] over an answer's bytes.
fn gemini_from_answer(meta: &[u8]) -> Result<Option<Usage>, ScanError> {
    let (mut prompt, mut candidates, mut thoughts, mut cached) = (None, None, None, None);
    json_scan::members(meta, |key, span| {
        let slot = match key {
            b"promptTokenCount" => &mut prompt,
            b"candidatesTokenCount" => &mut candidates,
            b"thoughtsTokenCount" => &mut thoughts,
            b"cachedContentTokenCount" => &mut cached,
            _ => return,
        };
        *slot = json_scan::whole_number(&meta[span]);
    })?;
    let completion = match (candidates, thoughts) {
        (None, None) => None,
        (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
    };
    Ok(counted(prompt, completion, cached))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_read_in_every_vocabulary() {
        let openai = json!({"usage": {"prompt_tokens": 9, "completion_tokens": 3}});
        let anthropic_start =
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}});
        let anthropic_delta = json!({"type": "message_delta", "usage": {"output_tokens": 7}});
        let responses =
            json!({"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 2}}});
        let counts = |prompt_tokens, completion_tokens, cached_tokens| {
            Some(Usage { prompt_tokens, completion_tokens, cached_tokens })
        };
        assert_eq!(from_json(&openai), counts(9, 3, 0));
        assert_eq!(from_json(&anthropic_start), counts(11, 1, 0));
        assert_eq!(from_json(&anthropic_delta), counts(0, 7, 0));
        assert_eq!(from_json(&responses), counts(5, 2, 0));
        assert_eq!(from_json(&json!({"usage": null})), None);
        // The prompt's cached tokens, in each vocabulary that reports them.
        let openai_cached = json!({"usage": {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}});
        let responses_cached = json!({"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 3}}}});
        let anthropic_cached = json!({"type": "message", "usage": {"input_tokens": 2, "output_tokens": 6, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 0}});
        let gemini = json!({"candidates": [], "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 2, "cachedContentTokenCount": 8, "totalTokenCount": 19}});
        assert_eq!(from_json(&openai_cached), counts(9, 3, 4));
        assert_eq!(from_json(&responses_cached), counts(5, 2, 3));
        assert_eq!(from_json(&anthropic_cached), counts(2, 6, 40));
        assert_eq!(from_json(&gemini), counts(12, 7, 8));
        // The answer-only reader agrees with the general one on each vocabulary.
        let cached = [&openai_cached, &responses_cached, &anthropic_cached, &gemini];
        let odd = [
            json!({"usage": {"prompt_tokens": 1, "prompt_tokens_details": null, "input_tokens_details": {"cached_tokens": 2}}}),
            json!({"usage": {"prompt_tokens": 1, "prompt_tokens_details": {}, "cache_read_input_tokens": 5}}),
            json!({"usage": {"cache_read_input_tokens": 5}}),
            json!({"usageMetadata": {"cachedContentTokenCount": 3}}),
            json!({"usageMetadata": {"thoughtsTokenCount": 3}, "usage": "x"}),
            json!({"usage": null}),
            json!({"message": "x"}),
            json!({"message": ["x", {"usage": 1}]}),
            json!({"usage": {"prompt_tokens": 1.5, "completion_tokens": 2, "details": {"a": [1]}}}),
            json!({"response": {"usage": {"input_tokens": "7"}}}),
        ];
        for v in [&openai, &anthropic_start, &anthropic_delta, &responses].into_iter().chain(cached).chain(&odd) {
            assert_eq!(from_answer(&serde_json::to_vec(v).unwrap()).unwrap(), from_json(v), "{v}");
        }
        assert!(from_answer(br#"{"usage": {"prompt_tokens": 1}"#).is_err());
    }
}

//! The one usage reader: the token counts of an answer or a stream event, in OpenAI's,
//! Anthropic's or the Responses API's vocabulary, from a parsed value or straight from an
//! answer's bytes (a scan that builds no values; both read the same places).

use super::Usage;
use crate::json_scan::{self, ScanError};
use serde_json::Value;
use std::ops::Range;

/// Reads token usage from an answer or a stream event, whichever vocabulary it uses.
pub fn from_json(v: &Value) -> Option<Usage> {
    let usage = v
        .get("usage")
        .filter(|u| u.is_object())
        .or_else(|| v.pointer("/message/usage").filter(|u| u.is_object()))
        .or_else(|| v.pointer("/response/usage").filter(|u| u.is_object()))?;
    let count = |keys: &[&str]| keys.iter().find_map(|k| usage.get(*k).and_then(Value::as_u64));
    let prompt = count(&["prompt_tokens", "input_tokens"]);
    let completion = count(&["completion_tokens", "output_tokens"]);
    (prompt.is_some() || completion.is_some())
        .then(|| Usage { prompt_tokens: prompt.unwrap_or(0), completion_tokens: completion.unwrap_or(0) })
}

/// The token counts of a JSON answer, read without building it (the whole answer is still
/// checked to be JSON): the same places [`from_json`] looks, with keys as written.
pub fn from_answer(doc: &[u8]) -> Result<Option<Usage>, ScanError> {
    let (mut usage, mut message, mut response) = (None, None, None);
    json_scan::members(doc, |key, span| match key {
        b"usage" => usage = Some(span),
        b"message" => message = Some(span),
        b"response" => response = Some(span),
        _ => {}
    })?;
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
    let Some(counts) = object(usage).or_else(|| nested(message)).or_else(|| nested(response)) else {
        return Ok(None);
    };
    let (mut prompt, mut input, mut completion, mut output) = (None, None, None, None);
    json_scan::members(counts, |key, span| {
        let slot = match key {
            b"prompt_tokens" => &mut prompt,
            b"input_tokens" => &mut input,
            b"completion_tokens" => &mut completion,
            b"output_tokens" => &mut output,
            _ => return,
        };
        *slot = json_scan::whole_number(&counts[span]);
    })?;
    let (prompt, completion) = (prompt.or(input), completion.or(output));
    Ok((prompt.is_some() || completion.is_some())
        .then(|| Usage { prompt_tokens: prompt.unwrap_or(0), completion_tokens: completion.unwrap_or(0) }))
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
        assert_eq!(from_json(&openai), Some(Usage { prompt_tokens: 9, completion_tokens: 3 }));
        assert_eq!(from_json(&anthropic_start), Some(Usage { prompt_tokens: 11, completion_tokens: 1 }));
        assert_eq!(from_json(&anthropic_delta), Some(Usage { prompt_tokens: 0, completion_tokens: 7 }));
        assert_eq!(from_json(&responses), Some(Usage { prompt_tokens: 5, completion_tokens: 2 }));
        assert_eq!(from_json(&json!({"usage": null})), None);
        // The answer-only reader agrees with the general one on each vocabulary.
        let odd = [
            json!({"usage": null}),
            json!({"message": "x"}),
            json!({"message": ["x", {"usage": 1}]}),
            json!({"usage": {"prompt_tokens": 1.5, "completion_tokens": 2, "details": {"a": [1]}}}),
            json!({"response": {"usage": {"input_tokens": "7"}}}),
        ];
        for v in [&openai, &anthropic_start, &anthropic_delta, &responses].into_iter().chain(&odd) {
            assert_eq!(from_answer(&serde_json::to_vec(v).unwrap()).unwrap(), from_json(v), "{v}");
        }
        assert!(from_answer(br#"{"usage": {"prompt_tokens": 1}"#).is_err());
    }
}

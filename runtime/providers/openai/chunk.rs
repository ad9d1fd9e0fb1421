//! A `chat.completion.chunk` of the shape an OpenAI-compatible server streams text in, read
//! without serde's visitors: through them a chunk cost some 6k instructions, most of it per
//! call on short strings. Read here: the members in any order, each once; `choices` whose
//! members are `index`, a `delta` of `role` and `content`, `logprobs: null` and
//! `finish_reason`; `usage: null`; and any other member, at any level, whose value is `null`
//! or a string (OpenAI's `service_tier`, `obfuscation`, `refusal`). Anything else (tool calls,
//! thinking, a usage, a number where a string goes, a repeated member) is left to serde
//! ([`read`] says `None`), which reads what this one reads the same way
//! (`fuzz_targets::openai_chunks` holds the two to that).

use crate::api::openai::{ChatChunk, ChunkChoice, Delta};
use crate::json_scan::Cursor;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// The `id` and `model` of the chunk read last: a stream repeats both in every chunk, so a
/// chunk that repeats them shares them rather than allocating its own.
#[derive(Default)]
pub struct Names {
    id: Option<Arc<str>>,
    model: Option<Arc<str>>,
}

impl Names {
    fn share(kept: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
        match kept {
            Some(shared) if **shared == *text => shared.clone(),
            _ => kept.insert(Arc::from(text)).clone(),
        }
    }
}

/// The chunk `data` holds, when it has that shape; `None` otherwise (which says nothing of
/// whether it is a chunk).
pub fn read(data: &str, names: &mut Names) -> Option<ChatChunk> {
    let mut at = Cursor::new(data);
    let (mut id, mut object, mut created, mut model) = (None, None, None, None);
    let (mut fingerprint, mut choices, mut usage) = (None, None, None);
    let mut extra = Map::new();
    at.object(|at, key| match key {
        "id" => once(&mut id, Names::share(&mut names.id, &at.string()?)),
        "object" => once(&mut object, object_name(at.string()?)),
        "created" => once(&mut created, at.count()?),
        "model" => once(&mut model, Names::share(&mut names.model, &at.string()?)),
        "system_fingerprint" => once(&mut fingerprint, at.nullable_string()?.map(Cow::into_owned)),
        "choices" => once(&mut choices, at.array(read_choice)?),
        "usage" => once(&mut usage, at.null()?),
        _ => other(&mut extra, key, at),
    })?;
    at.end()?;
    Some(ChatChunk {
        id: id?,
        object: object?,
        created: created?,
        model: model?,
        system_fingerprint: fingerprint,
        choices: choices?,
        usage: usage.map(|()| None),
        extra,
    })
}

/// `chat.completion.chunk`, every chunk's, without an allocation.
fn object_name(text: Cow<'_, str>) -> Cow<'static, str> {
    const CHUNK: &str = "chat.completion.chunk";
    if text == CHUNK {
        Cow::Borrowed(CHUNK)
    } else {
        Cow::Owned(text.into_owned())
    }
}

/// Sets a member read for the first time; `None` (serde's "duplicate field") the second.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// A member the type does not declare, kept in its `extra` when its value is `null` or a string.
fn other(extra: &mut Map<String, Value>, key: &str, at: &mut Cursor<'_>) -> Option<()> {
    let value = match at.nullable_string()? {
        Some(text) => Value::String(text.into_owned()),
        None => Value::Null,
    };
    // A repeated member is left to serde, whichever one it keeps.
    extra.insert(key.to_owned(), value).is_none().then_some(())
}

/// One of `choices`.
fn read_choice(at: &mut Cursor<'_>) -> Option<ChunkChoice> {
    let (mut index, mut delta, mut logprobs, mut finish_reason) = (None, None, None, None);
    let mut extra = Map::new();
    at.object(|at, key| match key {
        "index" => once(&mut index, u32::try_from(at.count()?).ok()?),
        "delta" => once(&mut delta, read_delta(at)?),
        "logprobs" => once(&mut logprobs, at.null()?),
        "finish_reason" => once(&mut finish_reason, at.nullable_string()?.map(Cow::into_owned)),
        _ => other(&mut extra, key, at),
    })?;
    Some(ChunkChoice {
        index: index?,
        delta: delta?,
        logprobs: logprobs.map(|()| None),
        finish_reason: finish_reason.flatten(),
        extra,
    })
}

/// A choice's `delta`.
fn read_delta(at: &mut Cursor<'_>) -> Option<Delta> {
    let (mut role, mut content) = (None, None);
    let mut extra = Map::new();
    at.object(|at, key| match key {
        "role" => once(&mut role, at.nullable_string()?.map(Cow::into_owned)),
        "content" => once(&mut content, at.nullable_string()?.map(Cow::into_owned)),
        // Declared members of other shapes: serde's.
        "tool_calls" | "reasoning_content" | "thinking_blocks" => None,
        _ => other(&mut extra, key, at),
    })?;
    Some(Delta { role: role.flatten(), content, extra, ..Delta::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_serde(data: &str) -> ChatChunk {
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn reads_the_chunks_servers_send_as_serde_does() {
        let mut names = Names::default();
        for data in [
            // OpenAI's, 2025 on: a service tier, a fingerprint, `usage: null` when asked, and an
            // obfuscation pad; the first delta with its role and a null refusal.
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Xy"}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Xy"}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
            // Text to unescape; spaced as Python writes JSON; a null fingerprint; no choice.
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a\nb \"q\" \u00e9 \ud83d\ude00"},"finish_reason":null}]}"#,
            r#"{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": null}]}"#,
            "\n{ \"id\" : \"c\",\t\"object\":\"x\",\"created\":0 ,\"model\":\"m\",\"system_fingerprint\":null,\"choices\":[ ] }\r\n",
            // Members in another order, and two choices.
            r#"{"choices":[{"delta":{"content":null,"role":null},"finish_reason":null,"index":1},{"index":2,"delta":{"content":"b"}}],"model":"m","created":7,"object":"chat.completion.chunk","id":"c"}"#,
        ] {
            let fast = read(data, &mut names).expect(data);
            assert_eq!(fast, by_serde(data), "{data}");
        }
    }

    #[test]
    fn a_stream_shares_its_id_and_model_across_chunks() {
        let mut names = Names::default();
        let mut chunk = |id: &str| {
            let data =
                format!(r#"{{"id":"{id}","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}}"#);
            read(&data, &mut names).unwrap()
        };
        let (first, second, other) = (chunk("a"), chunk("a"), chunk("b"));
        assert!(Arc::ptr_eq(&first.id, &second.id) && Arc::ptr_eq(&first.model, &other.model));
        assert!(!Arc::ptr_eq(&first.id, &other.id));
        assert_eq!((&*first.id, &*other.id), ("a", "b"));
    }

    #[test]
    fn leaves_every_other_shape_to_serde() {
        let mut names = Names::default();
        let head = r#""id":"c","object":"chat.completion.chunk","created":1,"model":"m""#;
        for body in [
            // Shapes this reader does not read.
            r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]},"finish_reason":null}]"#,
            r#""choices":[{"index":0,"delta":{"reasoning_content":"hm"},"finish_reason":null}]"#,
            r#""choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#,
            r#""choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]},"finish_reason":null}]"#,
            r#""choices":[],"x_groq":{"id":"req_1"}"#,
            r#""choices":[],"n":1"#,
            // Repeated members, escaped keys, numbers serde reads otherwise or refuses.
            r#""choices":[],"choices":[]"#,
            r#""choices":[],"extra":"a","extra":"b""#,
            r#""choices":[{"index":0,"index":0,"delta":{}}]"#,
            r#""ch\u006fices":[]"#,
            r#""choices":[{"index":4294967296,"delta":{}}]"#,
            r#""choices":[{"index":01,"delta":{}}]"#,
            r#""choices":[{"index":1.0,"delta":{}}]"#,
            r#""choices":[{"index":-1,"delta":{}}]"#,
            // What is not a chunk: a member missing, a control character, a lone surrogate,
            // text after the object.
            r#""choices":[{"delta":{}}]"#,
            "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\tb\"}}]",
            r#""choices":[{"index":0,"delta":{"content":"\ud83d"}}]"#,
        ] {
            let data = format!("{{{head},{body}}}");
            assert!(read(&data, &mut names).is_none(), "{data}");
        }
        for data in [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"choices":[]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]} x"#,
            r#"{"error":{"message":"overloaded"}}"#,
            "[DONE]",
            "",
        ] {
            assert!(read(data, &mut names).is_none(), "{data}");
        }
        // Cut anywhere, a chunk is no chunk (and reading it panics nowhere).
        let whole = r#"{"id":"c","object":"chat.completion.chunk","created":17,"model":"m","choices":[{"index":0,"delta":{"content":"a\"b"},"logprobs":null,"finish_reason":null}],"usage":null}"#;
        assert!(read(whole, &mut names).is_some());
        for end in 0..whole.len() {
            assert!(read(&whole[..end], &mut names).is_none(), "{}", &whole[..end]);
        }
    }
}

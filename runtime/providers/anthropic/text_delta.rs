//! The event a streamed answer is mostly made of, a `content_block_delta` carrying a
//! `text_delta`, read without serde when it has the shape Anthropic sends: its members in
//! Anthropic's order (`type`, `index`, `delta`; the delta's `type`, `text`), no others, and text
//! with nothing to unescape. Through serde's visitors that one event cost more than the rest of
//! translating its chunk. Any other event, or this one spelt otherwise, is left to
//! [`super::answer::Event::read`]'s serde reader, which reads what this one reads the same way
//! (`fuzz_targets::anthropic_events` holds the two to that).

use super::answer::{Delta, Event};
use crate::json_scan::Cursor;
use std::borrow::Cow;

/// The tokens before the index, and after it up to the text, each with its compact spelling.
const HEAD: Tokens = Tokens {
    compact: r#"{"type":"content_block_delta","index":"#,
    each: &["{", r#""type""#, ":", r#""content_block_delta""#, ",", r#""index""#, ":"],
};
const TO_TEXT: Tokens = Tokens {
    compact: r#","delta":{"type":"text_delta","text":"#,
    each: &[",", r#""delta""#, ":", "{", r#""type""#, ":", r#""text_delta""#, ",", r#""text""#, ":"],
};

/// Tokens as Anthropic writes them (`compact`, no space between) and one by one.
struct Tokens {
    compact: &'static str,
    each: &'static [&'static str],
}

/// The event `data` holds, when it is a text delta of that shape; `None` otherwise (which says
/// nothing of whether it is one).
pub fn read(data: &str) -> Option<Event<'_>> {
    let mut at = Cursor::new(data);
    tokens(&mut at, &HEAD)?;
    let index = at.count()?;
    tokens(&mut at, &TO_TEXT)?;
    let text = at.plain_string()?;
    at.token(b'}')?;
    at.token(b'}')?;
    at.end()?;
    Some(Event {
        kind: Some(Cow::Borrowed("content_block_delta")),
        index: Some(index),
        delta: Some(Delta {
            kind: Some(Cow::Borrowed("text_delta")),
            text: Some(Cow::Borrowed(text)),
            ..Delta::default()
        }),
        ..Event::default()
    })
}

/// `tokens` in their compact spelling, or else one by one with any JSON whitespace before each.
fn tokens(at: &mut Cursor<'_>, tokens: &Tokens) -> Option<()> {
    at.exactly(tokens.compact).or_else(|| tokens.each.iter().try_for_each(|token| at.literal(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the serde reader makes of `data`, as text, to compare with.
    fn by_serde(data: &str) -> String {
        format!("{:?}", Event::read_with_serde(data).unwrap())
    }

    #[test]
    fn the_compact_spellings_are_the_tokens() {
        for tokens in [HEAD, TO_TEXT] {
            assert_eq!(tokens.compact, tokens.each.concat());
        }
    }

    #[test]
    fn reads_anthropics_text_deltas_as_serde_does() {
        for data in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bon"}}"#,
            r#"{"type": "content_block_delta", "index": 12, "delta": {"type": "text_delta", "text": " jour é"}}"#,
            "\n{ \"type\" :\t\"content_block_delta\",\"index\":3 ,\"delta\":{\"type\":\"text_delta\",\"text\":\"\"} }\r\n",
        ] {
            let fast = read(data).expect(data);
            assert_eq!(format!("{fast:?}"), by_serde(data), "{data}");
        }
    }

    #[test]
    fn leaves_every_other_spelling_to_serde() {
        for data in [
            // Text to unescape, a control character, another member, another order.
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\nb"}}"#,
            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\tb\"}}",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":1}}"#,
            r#"{"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#,
            // Numbers serde reads otherwise or refuses.
            r#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":1.0,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":1e2,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":99999999999999999999,"delta":{"type":"text_delta","text":"a"}}"#,
            // Other deltas and events, and what is not a whole event.
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
            r#"{"type":"message_stop"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}"#,
        ] {
            assert!(read(data).is_none(), "{data}");
        }
    }
}

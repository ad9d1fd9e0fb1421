//! Header names as a head read off the wire spells them. `HeaderName::from_bytes` copies every
//! name outside HTTP's standard set into an allocation of its own; the ones clients send on every
//! request (an SDK's `x-stainless-*`, Anthropic's version) and providers on every answer (their
//! request ids and rate limits) are made once, when compiled, and shared.

use axum::http::header::{HeaderName, InvalidHeaderName};
use std::sync::LazyLock;

/// `name` as a header name: a shared one when it is a known name spelled in lower case (as
/// HTTP/2 requires and SDKs send it), else `HeaderName::from_bytes`'s.
#[inline]
pub fn read(name: &str) -> Result<HeaderName, InvalidHeaderName> {
    let bytes = name.as_bytes();
    // A name's slot is found from its key (its length and a few of its bytes); a name whose key
    // no known name has costs no comparison of text.
    let key = key(bytes);
    let slot = &TABLE[slot(key)];
    match slot.iter().find(|k| k.key == key && k.name.as_str().as_bytes() == bytes) {
        Some(known) => Ok(known.name.clone()),
        None => HeaderName::from_bytes(bytes),
    }
}

struct Known {
    key: u64,
    name: HeaderName,
}

/// Slots of the table: four times the known names, so that few share one.
const SLOTS: usize = 256;

/// A name's length and text folded into a number: its first, middle and last eight bytes (a
/// shorter name's whole text). Names that differ only elsewhere may share a key; the text
/// compared after it tells them apart.
#[inline]
fn key(name: &[u8]) -> u64 {
    let eight = |at: usize| name.get(at..at + 8).and_then(|b| b.first_chunk::<8>()).map(|b| u64::from_le_bytes(*b));
    let len = name.len();
    let text = match (eight(0), eight(len.saturating_sub(8)), eight((len / 2).saturating_sub(4))) {
        (Some(first), Some(last), Some(middle)) => first ^ last.rotate_left(29) ^ middle.rotate_left(43),
        _ => name.iter().fold(0, |key, &b| key << 8 | u64::from(b)),
    };
    text ^ len as u64
}

#[inline]
fn slot(key: u64) -> usize {
    // Fibonacci hashing: the product's top byte.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

static TABLE: LazyLock<Vec<Vec<Known>>> = LazyLock::new(|| {
    let mut table: Vec<Vec<Known>> = (0..SLOTS).map(|_| Vec::new()).collect();
    for name in KNOWN.iter().cloned() {
        let key = key(name.as_str().as_bytes());
        table[slot(key)].push(Known { key, name });
    }
    table
});

/// Checked when compiled: `from_static` refuses an invalid or upper-case name there. A clone
/// shares the name's text.
static KNOWN: [HeaderName; 61] = [
    // The OpenAI and Anthropic SDKs (Stainless-made: Python, Node, Go, Java, ...).
    HeaderName::from_static("x-stainless-lang"),
    HeaderName::from_static("x-stainless-package-version"),
    HeaderName::from_static("x-stainless-os"),
    HeaderName::from_static("x-stainless-arch"),
    HeaderName::from_static("x-stainless-runtime"),
    HeaderName::from_static("x-stainless-runtime-version"),
    HeaderName::from_static("x-stainless-async"),
    HeaderName::from_static("x-stainless-retry-count"),
    HeaderName::from_static("x-stainless-read-timeout"),
    HeaderName::from_static("x-stainless-timeout"),
    HeaderName::from_static("x-stainless-helper-method"),
    HeaderName::from_static("x-stainless-poll-helper"),
    // Clients of Anthropic's and OpenAI's APIs, and agents (Codex).
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
    HeaderName::from_static("anthropic-dangerous-direct-browser-access"),
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    HeaderName::from_static("originator"),
    HeaderName::from_static("session_id"),
    HeaderName::from_static("x-goog-api-key"),
    // Proxies, tracing and browsers.
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("sec-fetch-site"),
    HeaderName::from_static("sec-fetch-mode"),
    HeaderName::from_static("sec-fetch-dest"),
    HeaderName::from_static("sec-ch-ua"),
    HeaderName::from_static("sec-ch-ua-mobile"),
    HeaderName::from_static("sec-ch-ua-platform"),
    HeaderName::from_static("priority"),
    // Answers: OpenAI's, Anthropic's and their CDN's.
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
    HeaderName::from_static("request-id"),
    HeaderName::from_static("anthropic-organization-id"),
    HeaderName::from_static("anthropic-ratelimit-requests-limit"),
    HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
    HeaderName::from_static("anthropic-ratelimit-requests-reset"),
    HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
    HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
    HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
    HeaderName::from_static("cf-cache-status"),
    HeaderName::from_static("cf-ray"),
    HeaderName::from_static("x-envoy-upstream-service-time"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_name_is_the_name_from_bytes_makes_and_any_other_is_read_as_before() {
        for text in ["x-stainless-lang", "anthropic-version", "cf-ray", "x-ratelimit-reset-tokens"] {
            let shared = read(text).unwrap();
            assert_eq!(shared, HeaderName::from_bytes(text.as_bytes()).unwrap());
            assert_eq!(shared.as_str(), text);
        }
        // Spelled otherwise, or not known: from_bytes reads it (lower-cased), and refuses what it refuses.
        assert_eq!(read("X-Stainless-Lang").unwrap().as_str(), "x-stainless-lang");
        assert_eq!(read("Content-Type").unwrap(), axum::http::header::CONTENT_TYPE);
        assert_eq!(read("x-my-own").unwrap().as_str(), "x-my-own");
        assert!(read("bad name").is_err());
        assert!(read("").is_err());
    }

    #[test]
    fn every_known_name_is_listed_once_and_found() {
        for known in &KNOWN {
            let read = read(known.as_str()).unwrap();
            // The compiled name itself, not a copy of its text.
            assert_eq!(read.as_str().as_ptr(), known.as_str().as_ptr(), "{known}");
            assert_eq!(KNOWN.iter().filter(|n| *n == known).count(), 1, "{known} is listed twice");
        }
    }

    #[test]
    fn known_names_have_keys_of_their_own() {
        // Names sharing a slot are told apart by their keys, without comparing text.
        let mut keys: Vec<u64> = KNOWN.iter().map(|n| key(n.as_str().as_bytes())).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), KNOWN.len(), "two known names share a key");
    }

    #[test]
    fn a_shared_name_finds_its_value_in_a_map_among_names_read_from_bytes() {
        let mut map = axum::http::HeaderMap::new();
        map.insert(read("x-stainless-os").unwrap(), axum::http::HeaderValue::from_static("Linux"));
        map.insert(HeaderName::from_bytes(b"x-other").unwrap(), axum::http::HeaderValue::from_static("1"));
        assert_eq!(map[HeaderName::from_bytes(b"x-stainless-os").unwrap()], "Linux");
        assert_eq!(map[read("x-other").unwrap()], "1");
    }
}

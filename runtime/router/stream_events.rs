//! A streamed (SSE) answer cut into whole events on its way to the client: each event leaves
//! as soon as its blank line arrives, the usage it reports is noted (in any vocabulary
//! `exchange::usage` reads), and OpenAI's usage-only last chunk is dropped unless the client
//! asked for it. Only an event that names `"usage` is read, and then by a scan that builds no
//! values: with `stream_options.include_usage` OpenAI puts `"usage": null` in every chunk.

use crate::exchange::{usage, Usage};
use axum::body::Bytes;
use memchr::memmem::Finder;
use std::sync::LazyLock;

/// `"usage`: OpenAI's and Anthropic's `"usage"` and Gemini's `"usageMetadata"`. Built once: a
/// search built per event cost more than the search.
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage"));

/// The events of one stream, and what they reported.
pub struct Events {
    /// Bytes of an event not complete yet.
    partial: Vec<u8>,
    /// The largest counts any event reported.
    pub usage: Usage,
    /// Whether any event reported usage.
    pub seen_usage: bool,
    client_wants_usage: bool,
}

impl Events {
    pub fn new(client_wants_usage: bool) -> Events {
        Events { partial: Vec::new(), usage: Usage::default(), seen_usage: false, client_wants_usage }
    }

    /// The complete events of what came so far, with `piece` last, minus a dropped usage
    /// chunk; empty when no event is complete yet. The usual piece (whole events, none
    /// dropped) goes on as it came, without a copy.
    pub fn take(&mut self, piece: Bytes) -> Bytes {
        if !self.partial.is_empty() {
            self.partial.extend_from_slice(&piece);
            return self.drained(Vec::with_capacity(self.partial.len()));
        }
        let mut at = 0;
        while let Some(len) = event_end(&piece[at..]) {
            if !self.keeps(&piece[at..at + len]) {
                // Copied from here on, without the dropped event.
                let mut out = Vec::with_capacity(piece.len());
                out.extend_from_slice(&piece[..at]);
                self.partial.extend_from_slice(&piece[at + len..]);
                return self.drained(out);
            }
            at += len;
        }
        self.partial.extend_from_slice(&piece[at..]);
        piece.slice(..at)
    }

    /// What is left of an event not completed, for the stream's last bytes.
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }

    /// `out`, then the complete events held in `partial` that are kept; what is left of an
    /// event stays.
    fn drained(&mut self, mut out: Vec<u8>) -> Bytes {
        // Taken out while its events are read, so that each is borrowed, not copied.
        let mut partial = std::mem::take(&mut self.partial);
        let mut at = 0;
        while let Some(len) = event_end(&partial[at..]) {
            let event = &partial[at..at + len];
            if self.keeps(event) {
                out.extend_from_slice(event);
            }
            at += len;
        }
        partial.drain(..at);
        self.partial = partial;
        Bytes::from(out)
    }

    /// Notes the usage `event`'s data lines report (each count the largest seen, as Anthropic
    /// reports the prompt at the start and the completion at the end); whether the event goes
    /// on.
    fn keeps(&mut self, event: &[u8]) -> bool {
        if USAGE.find_iter(event).all(|at| null_member(&event[at + USAGE.needle().len()..])) {
            return true;
        }
        let mut keep = true;
        for line in event.split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else { continue };
            // Not JSON: passed on as it is, as a client would see it from the upstream.
            let Ok((found, usage_only)) = usage::from_event(data.trim_ascii()) else { continue };
            if let Some(u) = found {
                let counts = &mut self.usage;
                counts.prompt_tokens = counts.prompt_tokens.max(u.prompt_tokens);
                counts.completion_tokens = counts.completion_tokens.max(u.completion_tokens);
                counts.cached_tokens = counts.cached_tokens.max(u.cached_tokens);
                self.seen_usage = true;
            }
            if usage_only && !self.client_wants_usage {
                keep = false;
            }
        }
        keep
    }
}

/// Whether `rest`, what follows a `"usage` in an event, makes a `"usage": null` member. An
/// event whose every `"usage` does reports no usage (a usage object, Anthropic's nested one and
/// Gemini's `usageMetadata` each have a `"usage` that does not), so it need not be scanned:
/// OpenAI sends one such member in every chunk of a stream that asked for usage. Inside a JSON
/// string a quote is escaped, so text cannot pass for the member.
fn null_member(rest: &[u8]) -> bool {
    let member = rest.strip_prefix(b"\"").map(<[u8]>::trim_ascii_start);
    let value = member.and_then(|m| m.strip_prefix(b":")).map(<[u8]>::trim_ascii_start);
    value.is_some_and(|v| v.starts_with(b"null"))
}

/// The length of the first complete SSE event (through its blank line), if there is one.
fn event_end(bytes: &[u8]) -> Option<usize> {
    for i in memchr::memchr_iter(b'\n', bytes) {
        match bytes.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if bytes.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line() {
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\n\r\ndata: b"), Some(10));
        assert_eq!(event_end(b"data: a\n"), None);
        assert_eq!(event_end(b"data: a\n\r"), None);
        assert_eq!(event_end(b"\n\n"), Some(2));
    }

    const CHUNK: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE_CHUNK: &[u8] =
        b"data: {\"choices\":[ ],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n";

    #[test]
    fn whole_events_go_on_as_they_came() {
        let mut events = Events::new(false);
        let piece = Bytes::from([CHUNK, CHUNK].concat());
        let out = events.take(piece.clone());
        assert_eq!(out, piece);
        // The same memory: nothing was copied.
        assert_eq!(out.as_ptr(), piece.as_ptr());
        assert!(!events.seen_usage);
    }

    #[test]
    fn events_split_across_pieces_leave_once_complete() {
        let mut events = Events::new(true);
        let stream = [CHUNK, USAGE_CHUNK, b"data: [DONE]\n\n"].concat();
        let mut out = Vec::new();
        // Every way of cutting the stream in three gives the same events and usage.
        for a in 0..stream.len() {
            for b in a..stream.len() {
                events = Events::new(true);
                out.clear();
                for piece in [&stream[..a], &stream[a..b], &stream[b..]] {
                    out.extend_from_slice(&events.take(Bytes::copy_from_slice(piece)));
                }
                assert_eq!(out, stream, "cut at {a} and {b}");
                assert!(events.rest().is_empty());
            }
        }
        assert_eq!(events.usage, Usage { prompt_tokens: 9, completion_tokens: 3, cached_tokens: 2 });
        assert!(events.seen_usage);
    }

    #[test]
    fn the_usage_chunk_is_dropped_unless_asked_for() {
        let stream = [CHUNK, USAGE_CHUNK, CHUNK, b"data: [DONE]\n\n"].concat();
        for cut in 0..stream.len() {
            let mut events = Events::new(false);
            let mut out = events.take(Bytes::copy_from_slice(&stream[..cut])).to_vec();
            out.extend_from_slice(&events.take(Bytes::copy_from_slice(&stream[cut..])));
            assert_eq!(out, [CHUNK, CHUNK, b"data: [DONE]\n\n"].concat(), "cut at {cut}");
            assert_eq!(events.usage.completion_tokens, 3);
        }
        // A chunk with content and usage both stays; so does one whose choices are not empty.
        let both = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n";
        let mut events = Events::new(false);
        assert_eq!(&events.take(Bytes::from_static(both))[..], both);
        assert!(events.seen_usage);
    }

    #[test]
    fn null_usage_members_are_not_scanned_but_counts_are() {
        assert!(null_member(b"\":null}"));
        assert!(null_member(b"\" :\n null}"));
        assert!(!null_member(b"\":{\"prompt_tokens\":1}}"));
        assert!(!null_member(b"Metadata\":null}"));
        assert!(!null_member(b"\\\": null\"}"));
        // A chunk whose text quotes a usage member: escaped, so the event is read, and reports none.
        let quoted = b"data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\": {}\"}}],\"usage\":null}\n\n";
        let mut events = Events::new(false);
        assert_eq!(&events.take(Bytes::from_static(quoted))[..], quoted);
        assert!(!events.seen_usage);
        // A null member beside a counted one (nested, as Anthropic's start event has it): counted.
        let nested = b"data: {\"usage\":null,\"message\":{\"usage\":{\"input_tokens\":4}}}\n\n";
        assert_eq!(&events.take(Bytes::from_static(nested))[..], nested);
        assert_eq!(events.usage.prompt_tokens, 4);
    }

    #[test]
    fn anthropic_counts_are_the_largest_seen_and_bad_data_passes() {
        let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n";
        let delta = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n";
        let broken = b"data: {\"usage\": \n\n";
        let mut events = Events::new(false);
        let stream = [&start[..], delta, broken].concat();
        assert_eq!(events.take(Bytes::from(stream.clone())), stream);
        assert_eq!(events.usage, Usage { prompt_tokens: 11, completion_tokens: 7, cached_tokens: 0 });
        // An event not finished when the stream ends is what is left.
        assert_eq!(events.take(Bytes::from_static(b"data: {\"a\"")), Bytes::new());
        assert_eq!(events.rest(), b"data: {\"a\"");
    }
}

//! A cursor over JSON text for the hand readers of the events a stream is mostly made of
//! (`providers::anthropic::text_delta`, `providers::openai::chunk`): each reads one shape and
//! says `None` at anything else, leaving it to serde. What a cursor reads, it reads as
//! serde_json does; what serde_json reads otherwise or refuses, it refuses.

use std::borrow::Cow;

/// What is left of `text`: `text[at..]`.
pub struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    /// `text` exactly where the cursor is, no whitespace before it.
    pub fn exactly(&mut self, text: &str) -> Option<()> {
        self.text[self.at..].starts_with(text).then(|| self.at += text.len())
    }

    /// JSON's whitespace, then `text`.
    pub fn literal(&mut self, text: &str) -> Option<()> {
        self.skip_space();
        self.exactly(text)
    }

    /// JSON's whitespace, then `byte`.
    pub fn token(&mut self, byte: u8) -> Option<()> {
        self.next_is(byte).then_some(())
    }

    /// Whether `byte` comes next after whitespace; when it does, it is passed.
    pub fn next_is(&mut self, byte: u8) -> bool {
        self.skip_space();
        let found = self.text.as_bytes().get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    pub fn null(&mut self) -> Option<()> {
        self.literal("null")
    }

    /// An object, calling `member` with each key (written without escapes) to read its value.
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.token(b'{')?;
        if self.next_is(b'}') {
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.token(b':')?;
            member(self, key)?;
            if self.next_is(b'}') {
                return Some(());
            }
            self.token(b',')?;
        }
    }

    /// An array of what `item` reads.
    pub fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.token(b'[')?;
        let mut items = Vec::with_capacity(1);
        if self.next_is(b']') {
            return Some(items);
        }
        loop {
            items.push(item(self)?);
            if self.next_is(b']') {
                return Some(items);
            }
            self.token(b',')?;
        }
    }

    /// `null` (`None`) or a string.
    pub fn nullable_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.null() {
            Some(()) => Some(None),
            None => self.string().map(Some),
        }
    }

    /// A string: borrowed when it has nothing to unescape, else unescaped by serde_json (which
    /// refuses what it refuses anywhere, a lone surrogate's escape included).
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        self.token(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut end = super::plain_run(bytes, start)?;
        if bytes[end] == b'"' {
            self.at = end + 1;
            return Some(Cow::Borrowed(&self.text[start..end]));
        }
        while bytes[end] == b'\\' {
            // The escaped byte is passed whatever it is: serde_json judges the escape.
            end = super::plain_run(bytes, end + 2)?;
        }
        if bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        serde_json::from_str(&self.text[start - 1..=end]).ok().map(Cow::Owned)
    }

    /// A string with nothing to unescape, as the text between its quotes.
    pub fn plain_string(&mut self) -> Option<&'a str> {
        self.token(b'"')?;
        let end = super::plain_run(self.text.as_bytes(), self.at)?;
        if self.text.as_bytes()[end] != b'"' {
            return None;
        }
        let text = &self.text[self.at..end];
        self.at = end + 1;
        Some(text)
    }

    /// A JSON integer that fits a `u64`: no sign, fraction, exponent or leading zero. What
    /// serde reads otherwise (or refuses) is left to it, a number too large included.
    pub fn count(&mut self) -> Option<u64> {
        self.skip_space();
        let bytes = self.text.as_bytes();
        let (start, mut at, mut n) = (self.at, self.at, 0u64);
        while let Some(digit) = bytes.get(at).and_then(|b| b.checked_sub(b'0')).filter(|d| *d < 10) {
            n = n.checked_mul(10)?.checked_add(u64::from(digit))?;
            at += 1;
        }
        let leading_zero = at - start > 1 && bytes[start] == b'0';
        if at == start || leading_zero || matches!(bytes.get(at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = at;
        Some(n)
    }

    /// Nothing but whitespace left.
    pub fn end(&mut self) -> Option<()> {
        self.skip_space();
        (self.at == self.text.len()).then_some(())
    }

    fn skip_space(&mut self) {
        self.at = super::space_end(self.text.as_bytes(), self.at);
    }
}

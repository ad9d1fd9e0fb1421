//! A validating scan of JSON text that finds an object's members without building any values:
//! how the request path reads a few fields (an answer's `usage`) out of a document it otherwise
//! passes on as it came. It accepts exactly what serde_json accepts (the fuzz target
//! `json_scan` checks the two agree), at a fraction of the cost of deserializing into a
//! `serde_json::Value` or skipping with `IgnoredAny`.

mod cursor;

pub use cursor::Cursor;
use smallvec::SmallVec;
use std::ops::Range;

/// Why the text is not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}")]
pub struct ScanError {
    pub reason: &'static str,
    pub offset: usize,
}

/// Checks that `doc` is exactly one JSON value and, when it is an object, calls `member` with
/// each member's key (the raw text between its quotes, escapes as written) and the byte range
/// of its value. Like serde_json skipping a value, it leaves the bytes inside strings to
/// whoever reads them: it does not decode them, so it does not check their UTF-8 either.
pub fn members(doc: &[u8], mut member: impl FnMut(&[u8], Range<usize>)) -> Result<(), ScanError> {
    let mut scan = Scanner::new(doc);
    scan.skip_space();
    if scan.peek() == Some(b'{') {
        scan.pos += 1;
        scan.skip_space();
        if scan.peek() == Some(b'}') {
            scan.pos += 1;
        } else {
            loop {
                let key = scan.key()?;
                let start = scan.pos;
                scan.value()?;
                member(&doc[key], start..scan.pos);
                scan.skip_space();
                match scan.peek() {
                    Some(b',') => {
                        scan.pos += 1;
                        scan.skip_space();
                    }
                    Some(b'}') => {
                        scan.pos += 1;
                        break;
                    }
                    Some(_) => return Err(scan.error("expected `,` or `}`")),
                    None => return Err(scan.error("EOF while parsing an object")),
                }
            }
        }
    } else {
        scan.value()?;
    }
    scan.skip_space();
    match scan.peek() {
        None => Ok(()),
        Some(_) => Err(scan.error("trailing characters")),
    }
}

/// A whole-number member value (`9`, not `9.0`, `"9"` or `-1`), as `Value::as_u64` reads one.
pub fn whole_number(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// A guess at a string member's value without walking the text: the first `"key": "value"`
/// found anywhere in a document, its value without escapes. Not a read: the match may sit in a
/// nested object, and the text may not even be JSON. It serves only decisions whose every
/// outcome is correct, where a good guess makes the common case cheaper (whether a request's
/// model group forwards its body as sent). The key's search is built once: building it costs
/// more than searching a short body.
pub struct StringMemberGuess {
    quoted_key: memchr::memmem::Finder<'static>,
}

impl StringMemberGuess {
    pub fn new(key: &str) -> StringMemberGuess {
        let quoted = format!("\"{key}\"");
        StringMemberGuess { quoted_key: memchr::memmem::Finder::new(quoted.as_bytes()).into_owned() }
    }

    pub fn guess<'a>(&self, doc: &'a [u8]) -> Option<&'a str> {
        let key_len = self.quoted_key.needle().len();
        self.quoted_key.find_iter(doc).find_map(|at| {
            let after = doc.get(at + key_len..)?;
            let after = after.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start().strip_prefix(b"\"")?;
            let end = memchr::memchr2(b'"', b'\\', after)?;
            (after[end] == b'"').then(|| std::str::from_utf8(&after[..end]).ok()).flatten()
        })
    }
}

/// The index of the first byte of `doc` at or after `at` that is not JSON whitespace (space,
/// tab, line feed, carriage return: not the form feed `trim_ascii_start` also takes).
#[inline]
pub fn space_end(doc: &[u8], mut at: usize) -> usize {
    while matches!(doc.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The index of the first `"`, `\` or control character of `doc` at or after `from`: where a
/// string's plain text stops. Sixteen bytes at a time with SSE2 (part of every x86-64), the
/// rest eight at a time: string text is most of a body's and an answer's bytes.
#[inline]
pub fn plain_run(doc: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let from = match plain_run_sse2(doc, from) {
        Ok(found) => return Some(found),
        Err(rest) => rest,
    };
    plain_run_swar(doc, from)
}

/// [`plain_run`] over the whole 16-byte blocks from `from`: `Ok` with the index found, or `Err`
/// with where the blocks end.
#[cfg(target_arch = "x86_64")]
#[inline]
fn plain_run_sse2(doc: &[u8], from: usize) -> Result<usize, usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut at = from;
    while let Some(block) = doc.get(at..at + 16) {
        // SAFETY: SSE2 is in the x86-64 baseline (the intrinsics need only that), and the
        // unaligned load reads exactly the 16 bytes of `block`, a slice of `doc`.
        let found = unsafe {
            let bytes = _mm_loadu_si128(block.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
            // A control byte is one at most 0x1f, unsigned: max(byte, 0x1f) is 0x1f.
            let low = _mm_set1_epi8(0x1f);
            let control = _mm_cmpeq_epi8(_mm_max_epu8(bytes, low), low);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
        };
        if found != 0 {
            return Ok(at + found.trailing_zeros() as usize);
        }
        at += 16;
    }
    Err(at)
}

/// [`plain_run`] eight bytes at a time, in a word's arithmetic.
#[inline]
fn plain_run_swar(doc: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Each test sets a byte's high bit where that byte matches; a borrow can set bits above a
    // match as well, but never below one, so the lowest bit set is the first match.
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut at = from;
    while let Some(chunk) = doc.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let found = (quote | backslash | control) & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = doc.get(at..)?;
    rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|p| at + p)
}

/// The containers open around the scan, innermost last (`true`: an object). The first 128
/// levels live in a word; deeper ones (rare, hostile) spill to the heap.
#[derive(Default)]
struct Nesting {
    bits: u128,
    depth: usize,
    deeper: Vec<bool>,
    /// The innermost container's kind, kept at hand: it is asked after every value.
    last: Option<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.bits = (self.bits & !(1 << self.depth)) | (u128::from(object) << self.depth);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
        self.last = Some(object);
    }

    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth >= 128 {
            self.deeper.pop();
        }
        self.last = match self.depth {
            0 => None,
            d if d <= 128 => Some((self.bits >> (d - 1)) & 1 == 1),
            _ => self.deeper.last().copied(),
        };
    }

    fn last(&self) -> Option<bool> {
        self.last
    }
}

/// A walk over JSON text. Plain, it checks the text is JSON (as serde_json skipping a value
/// does). [`Scanner::doubting`] it also notes whether reading the text into a `Value` could
/// still fail or mean something else than the bytes say: see [`Doubts`].
pub(crate) struct Scanner<'a> {
    doc: &'a [u8],
    pub(crate) pos: usize,
    doubts: Option<Doubts>,
}

/// What a scan that accepted a text found that serde_json's reading of a `Value` could refuse
/// or read otherwise: an escaped surrogate (refused when unpaired), a number with an exponent
/// or hundreds of digits (refused when out of range), nesting near its recursion limit, a key
/// an object repeats (the value keeps the last, another reader may take the first) or spells
/// with an escape (so repeats cannot be told by the bytes), and serde_json's raw-value key.
/// Open objects' keys are kept to find repeats, up to [`Doubts::MOST_KEYS`] per object.
#[derive(Default)]
struct Doubts {
    found: bool,
    /// Whether the string scanned last had an escape: a key's is asked without searching it.
    escaped: bool,
    depth: usize,
    /// Inline for a request's usual few keys: a body checked this way costs no allocation.
    keys: SmallVec<[Range<usize>; 16]>,
    /// Where each open object's keys start in `keys`.
    objects: SmallVec<[usize; 8]>,
}

impl Doubts {
    /// Nesting from which a text is doubted (serde_json refuses past 127 levels).
    const MOST_NESTED: usize = 100;
    /// Keys per object compared for repeats; an object with more is doubted instead.
    const MOST_KEYS: usize = 64;
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(doc: &'a [u8]) -> Scanner<'a> {
        Scanner { doc, pos: 0, doubts: None }
    }

    /// A scanner that notes [`Doubts`].
    pub(crate) fn doubting(doc: &'a [u8]) -> Scanner<'a> {
        Scanner { doc, pos: 0, doubts: Some(Doubts::default()) }
    }

    /// Whether the text scanned so far holds something a `Value` reading could refuse or read
    /// otherwise (always `false` for a plain scanner).
    pub(crate) fn doubtful(&self) -> bool {
        self.doubts.as_ref().is_some_and(|d| d.found)
    }

    fn doubt(&mut self) {
        if let Some(d) = &mut self.doubts {
            d.found = true;
        }
    }

    pub(crate) fn text(&self, span: Range<usize>) -> &'a [u8] {
        &self.doc[span]
    }

    /// An object or array was entered.
    pub(crate) fn enter(&mut self, object: bool) {
        if let Some(d) = &mut self.doubts {
            d.depth += 1;
            d.found |= d.depth >= Doubts::MOST_NESTED;
            if object {
                d.objects.push(d.keys.len());
            }
        }
    }

    /// An object or array was left.
    pub(crate) fn leave(&mut self, object: bool) {
        if let Some(d) = &mut self.doubts {
            d.depth = d.depth.saturating_sub(1);
            if object {
                let start = d.objects.pop().unwrap_or(0);
                d.keys.truncate(start);
            }
        }
    }

    /// A key of the innermost open object, the text between its quotes. Kept out of line: the
    /// plain scan (an answer's usage) never comes here.
    #[inline(never)]
    fn note_key(&mut self, key: Range<usize>) {
        let doc = self.doc;
        let Some(d) = &mut self.doubts else { return };
        let start = d.objects.last().copied().unwrap_or(0);
        let text = &doc[key.clone()];
        let repeated = d.keys[start..].iter().any(|k| &doc[k.clone()] == text);
        let raw_value = text == b"$serde_json::private::RawValue";
        if repeated || raw_value || d.escaped || d.keys.len() - start >= Doubts::MOST_KEYS {
            d.found = true;
        }
        d.keys.push(key);
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    fn error(&self, reason: &'static str) -> ScanError {
        ScanError { reason, offset: self.pos }
    }

    pub(crate) fn skip_space(&mut self) {
        self.pos = space_end(self.doc, self.pos);
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    /// A member's key and its colon, with the space around them. Always inlined, as the string
    /// it begins with: keys are half the strings of a document.
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<Range<usize>, ScanError> {
        match self.peek() {
            Some(b'"') => {}
            Some(_) => return Err(self.error("key must be a string")),
            None => return Err(self.error("EOF while parsing an object")),
        }
        if let Some(d) = &mut self.doubts {
            d.escaped = false;
        }
        let key = self.string()?;
        if self.doubts.is_some() {
            self.note_key(key.clone());
        }
        self.skip_space();
        self.expect(b':', "expected `:`")?;
        self.skip_space();
        Ok(key)
    }

    /// One value at `pos`, nested as deep as it goes. Most values are a string or a number,
    /// taken here in place; the rest go to [`Scanner::nested`], which first sets up the stack
    /// of open containers only they need.
    #[inline(always)]
    pub(crate) fn value(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => self.nested(),
        }
    }

    /// [`Scanner::value`] for any value. The walk keeps its own stack of open containers rather
    /// than recursing, so no depth of nesting can exhaust the thread's stack (serde_json's
    /// skipping of a value has no depth limit either).
    fn nested(&mut self) -> Result<(), ScanError> {
        let mut open = Nesting::default();
        loop {
            // A value is due.
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_space();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        open.push(true);
                        self.enter(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_space();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        open.push(false);
                        self.enter(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(_) => return Err(self.error("expected value")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            // A value ended: close what it ends, up to the next value due.
            loop {
                let Some(in_object) = open.last() else { return Ok(()) };
                self.skip_space();
                match (self.peek(), in_object) {
                    (Some(b','), true) => {
                        self.pos += 1;
                        self.skip_space();
                        self.key()?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.pos += 1;
                        self.skip_space();
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        open.pop();
                        self.leave(in_object);
                    }
                    (Some(_), true) => return Err(self.error("expected `,` or `}`")),
                    (Some(_), false) => return Err(self.error("expected `,` or `]`")),
                    (None, true) => return Err(self.error("EOF while parsing an object")),
                    (None, false) => return Err(self.error("EOF while parsing a list")),
                }
            }
        }
    }

    /// A string at `pos`; the range of its text between the quotes. The usual string, plain
    /// text up to its closing quote, is found here; escapes and errors are left to
    /// [`Scanner::string_rest`], so this part stays small enough to inline, and is: a call's
    /// entry and exit were a third of a short string's cost.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<Range<usize>, ScanError> {
        let start = self.pos + 1;
        match plain_run(self.doc, start) {
            Some(end) if self.doc[end] == b'"' => {
                self.pos = end + 1;
                Ok(start..end)
            }
            stop => self.string_rest(start, stop),
        }
    }

    /// The rest of the string begun at `start` from `stop`, the first byte that is not plain text.
    #[inline(never)]
    fn string_rest(&mut self, start: usize, mut stop: Option<usize>) -> Result<Range<usize>, ScanError> {
        loop {
            let Some(at) = stop else {
                self.pos = self.doc.len();
                return Err(self.error("EOF while parsing a string"));
            };
            self.pos = at;
            match self.doc[at] {
                b'"' => {
                    self.pos += 1;
                    return Ok(start..at);
                }
                b'\\' => {
                    if let Some(d) = &mut self.doubts {
                        d.escaped = true;
                    }
                    self.escape()?
                }
                _ => return Err(self.error("control character in a string")),
            }
            stop = plain_run(self.doc, self.pos);
        }
    }

    fn escape(&mut self) -> Result<(), ScanError> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                // Four hex digits. A plain scan, like serde_json skipping a value, does not pair
                // surrogates up (nothing here decodes the text); a doubting one notes those a
                // `Value` reading would refuse.
                self.pos += 1;
                let code = self.hex4()?;
                if (0xd800..=0xdfff).contains(&code) && self.doubts.is_some() {
                    // A pair (high, then low) is one character; anything else serde_json refuses.
                    let mark = self.pos;
                    let low = match code < 0xdc00 && self.doc[self.pos..].starts_with(b"\\u") {
                        true => {
                            self.pos += 2;
                            self.hex4().ok()
                        }
                        false => None,
                    };
                    if !low.is_some_and(|low| (0xdc00..=0xdfff).contains(&low)) {
                        self.pos = mark;
                        self.doubt();
                    }
                }
                Ok(())
            }
            Some(_) => Err(self.error("invalid escape")),
            None => Err(self.error("EOF while parsing a string")),
        }
    }

    fn hex4(&mut self) -> Result<u32, ScanError> {
        let digits = self.doc.get(self.pos..self.pos + 4).ok_or_else(|| self.error("EOF while parsing a string"))?;
        let mut code = 0;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or_else(|| self.error("invalid escape"))?;
            code = code * 16 + v;
        }
        self.pos += 4;
        Ok(code)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number at `pos`; its text. Inlined as strings are: most numbers are a digit or two.
    #[inline(always)]
    pub(crate) fn number(&mut self) -> Result<Range<usize>, ScanError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            self.doubt();
        }
        if self.doubts.is_some() && self.pos - start > 300 {
            self.doubt();
        }
        Ok(start..self.pos)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        if self.doc[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(text: &str) -> bool {
        members(text.as_bytes(), |_, _| {}).is_ok()
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn members_of_the_outer_object_are_found_with_their_value_spans() {
        let doc = br#" {"id":"x","usage" : {"prompt_tokens":9} ,"a\"b":[1,{"usage":2}],"n":-1.5e3} "#;
        let mut seen = Vec::new();
        members(doc, |key, span| seen.push((String::from_utf8_lossy(key).into_owned(), doc[span].to_vec()))).unwrap();
        let seen: Vec<(String, String)> = seen.into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect();
        assert_eq!(
            seen,
            [
                ("id".into(), "\"x\"".into()),
                ("usage".into(), "{\"prompt_tokens\":9}".into()),
                ("a\\\"b".into(), "[1,{\"usage\":2}]".into()),
                ("n".into(), "-1.5e3".into()),
            ]
        );
    }

    #[test]
    fn a_string_member_is_guessed_from_its_first_key_value_shape() {
        let model = StringMemberGuess::new("model");
        let guess = |doc: &'static str| model.guess(doc.as_bytes());
        assert_eq!(guess(r#"{"messages":[],"model" :	"gpt-4o"}"#), Some("gpt-4o"));
        // A value "model" (Gemini's role) is no key: the search goes on to the next one.
        assert_eq!(guess(r#"{"contents":[{"role":"model"}],"model":"m"}"#), Some("m"));
        // Escaped quotes in a message's text are not a key.
        assert_eq!(guess(r#"{"messages":[{"content":"say \"model\": \"x\""}],"model":"y"}"#), Some("y"));
        // A value with an escape, or no string at all, is no guess.
        assert_eq!(guess(r#"{"model":"a\u0062"}"#), None);
        assert_eq!(guess(r#"{"model":7}"#), None);
        assert_eq!(guess(r#"{"model":"unterminated"#), None);
        assert_eq!(guess(r#"{"models":"x"}"#), None);
        // Only a guess: a nested member is taken as readily as the outer one.
        assert_eq!(guess(r#"{"metadata":{"model":"inner"},"model":"outer"}"#), Some("inner"));
    }

    #[test]
    fn it_accepts_and_refuses_what_serde_json_does() {
        let cases = [
            "{}",
            "[]",
            "0",
            "-0",
            "1.5",
            "1e10",
            "1E+2",
            "-1.25e-3",
            "\"a\\u00e9\\ud83d\\ude00\"",
            "true",
            "null",
            " {\"a\" : [ 1 , 2 ] } ",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "{\"a\":}",
            "{\"a\" 1}",
            "{a:1}",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"tab\there\"",
            "tru",
            "nul",
            "{} {}",
            "[",
            "{",
            "\"",
            "",
            "  ",
            "\u{feff}{}",
            "{\"a\":1}x",
            "[[[]]]",
            "\"é\"",
        ];
        for case in cases {
            assert_eq!(valid(case), serde_accepts(case), "{case:?}");
        }
        assert!(!valid("\u{0}"));
        // Any depth, with objects and arrays interleaved past the first 128 levels.
        for n in [1, 127, 128, 129, 300, 100_000] {
            let deep = format!("{}1{}", "{\"a\":[".repeat(n), "]}".repeat(n));
            assert!(valid(&deep) && serde_accepts(&deep), "depth {n}");
            let broken = format!("{}1{}", "{\"a\":[".repeat(n), "}]".repeat(n));
            assert!(!valid(&broken) && !serde_accepts(&broken), "depth {n}");
        }
        assert!(members(b"{\"a\":\xff}", |_, _| {}).is_err());
        assert!(members(b"{\"a\":\"\xff\"}", |_, _| {}).is_ok());
    }

    #[test]
    fn plain_runs_stop_at_the_first_quote_backslash_or_control_byte() {
        let mut text = vec![b'a'; 40];
        assert_eq!(plain_run(&text, 0), None);
        for (at, stop) in [(0, b'"'), (7, b'\\'), (8, 0x1f), (13, b'"'), (39, b'\n')] {
            let mut t = text.clone();
            t[at] = stop;
            // A later match never hides an earlier one, nor non-ASCII bytes count.
            t[at.saturating_sub(1)] = if at > 0 { 0xc3 } else { t[0] };
            assert_eq!(plain_run(&t, 0), Some(at), "{at}");
            // From any point before it, in the eight-byte steps or the tail.
            for from in 0..=at {
                assert_eq!(plain_run(&t, from), Some(at), "{at} from {from}");
            }
        }
        text[20] = b'"';
        text[21] = 0;
        assert_eq!(plain_run(&text, 0), Some(20));
        assert_eq!(plain_run(&text, 21), Some(21));
        assert_eq!(plain_run(&text, 40), None);
        assert_eq!(plain_run(&text, 41), None);
    }

    #[test]
    fn plain_runs_agree_with_a_byte_by_byte_search_at_every_length_and_start() {
        let stops = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        let naive = |doc: &[u8], from: usize| doc.get(from..)?.iter().position(|&b| stops(b)).map(|p| from + p);
        // Bytes either side of each class's edges: 0x1f / 0x20, 0x7f / 0x80, 0xff, '"' and '\\'.
        let bytes = [b'a', 0x1f, 0x20, 0x7f, 0x80, 0xff, b'"', b'\\', 0, b'!', b'#', b'[', b']'];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..80 {
            for _ in 0..40 {
                let doc: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        // Mostly plain text, so that runs are long enough to cross blocks.
                        let pick = (seed >> 33) as usize % (bytes.len() * 8);
                        bytes.get(pick).copied().unwrap_or(b'a' + (pick % 26) as u8)
                    })
                    .collect();
                for from in 0..=len + 1 {
                    assert_eq!(plain_run(&doc, from), naive(&doc, from), "{doc:?} from {from}");
                }
            }
        }
    }

    #[test]
    fn whole_numbers_are_what_as_u64_reads() {
        assert_eq!(whole_number(b"19"), Some(19));
        for not in [&b"1.0"[..], b"-1", b"\"7\"", b"1e2", b"", b"99999999999999999999999"] {
            assert_eq!(whole_number(not), None, "{}", String::from_utf8_lossy(not));
        }
    }
}

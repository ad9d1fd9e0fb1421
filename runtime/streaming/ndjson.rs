//! Newline-delimited JSON in from providers (Ollama streams one JSON object a line): bytes as
//! they arrive, lines as they complete.

/// The longest line kept while waiting for its end: a stream line is one small JSON object, so
/// an upstream that never ends one cannot make the buffer grow without bound.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// A line longer than [`MAX_LINE`] arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stream line is longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Incremental NDJSON splitter: feed bytes, take complete non-blank lines (`\n` or `\r\n`
/// ended), however the reads cut them.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Consumes bytes; returns the lines they complete, without their line ends.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, LineTooLong> {
        self.buffer.extend_from_slice(bytes);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buffer[start..].iter().position(|b| *b == b'\n') {
            push_line(&self.buffer[start..start + end], &mut lines);
            start += end + 1;
        }
        self.buffer.drain(..start);
        if self.buffer.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(lines)
    }

    /// The stream ended: a last line without its line end, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buffer);
        let mut lines = Vec::new();
        push_line(&rest, &mut lines);
        lines.pop()
    }
}

fn push_line(line: &[u8], lines: &mut Vec<Vec<u8>>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(u8::is_ascii_whitespace) {
        lines.push(line.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_whole_however_the_reads_cut_them() {
        let text = b"{\"a\":1}\n\r\n{\"b\":2}\r\n{\"c\":3}";
        for cut in 0..text.len() {
            let mut d = Decoder::new();
            let mut lines = d.feed(&text[..cut]).unwrap();
            lines.extend(d.feed(&text[cut..]).unwrap());
            lines.extend(d.finish());
            assert_eq!(lines, [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec(), b"{\"c\":3}".to_vec()], "cut at {cut}");
        }
    }

    #[test]
    fn a_line_that_never_ends_is_refused() {
        let mut d = Decoder::new();
        assert!(d.feed(&vec![b'x'; MAX_LINE]).is_ok());
        assert_eq!(d.feed(b"x"), Err(LineTooLong));
    }
}

//! A session's log: a bounded ring of lines, read back by `get_logs`.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines kept per session; older ones are dropped first.
const CAPACITY: usize = 10_000;

/// Whether a line reports normal work or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    Log,
    Error,
}

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogItem {
    #[serde(rename = "type")]
    pub kind: LogType,
    pub content: String,
}

/// A session's recent log lines. `total` counts every line ever written, so offsets stay
/// meaningful after old lines are dropped.
#[derive(Debug, Default)]
pub struct LogBuffer {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogItem>,
    dropped: usize,
}

impl LogBuffer {
    pub fn push(&self, kind: LogType, content: String) {
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ring.lines.len() == CAPACITY {
            ring.lines.pop_front();
            ring.dropped += 1;
        }
        ring.lines.push_back(LogItem { kind, content });
    }

    /// Lines `offset..offset+limit` (of the given type, if any) and the total count.
    pub fn read(&self, kind: Option<LogType>, offset: usize, limit: Option<usize>) -> (Vec<LogItem>, usize) {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let matching: Vec<&LogItem> = ring.lines.iter().filter(|l| kind.is_none_or(|k| l.kind == k)).collect();
        let total = matching.len();
        let items = matching.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).cloned().collect();
        (items, total)
    }
}

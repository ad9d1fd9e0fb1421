//! A session's log: a bounded ring of lines, read back by `get_logs`.

use crate::catalogue::Route;
use crate::exchange::Usage;
use crate::observability::request_id::RequestId;
use axum::http::HeaderValue;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Lines kept per session; older ones are dropped first.
const CAPACITY: usize = 10_000;

/// Whether a line reports normal work or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    Log,
    Error,
}

/// One log line, as `get_logs` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct LogItem {
    #[serde(rename = "type")]
    pub kind: LogType,
    pub content: String,
}

/// A line as kept: text, or a request's or a stream's facts written out only when read (every
/// request makes one; few are ever read).
#[derive(Debug)]
enum Content {
    Text(String),
    Request(Box<RequestLine>),
    StreamEnd(Box<StreamEndLine>),
}

#[derive(Debug)]
struct Entry {
    kind: LogType,
    content: Content,
}

impl Entry {
    fn item(&self) -> LogItem {
        let content = match &self.content {
            Content::Text(text) => text.clone(),
            Content::Request(line) => line.to_string(),
            Content::StreamEnd(line) => line.to_string(),
        };
        LogItem { kind: self.kind, content }
    }
}

/// A served request's line: `time id METHOD path model= deployment= status= latency_ms=
/// tokens=prompt/completion [cost=$ | error="..."]`.
#[derive(Debug)]
pub struct RequestLine {
    /// Unix seconds when it was served.
    pub at: u64,
    pub request_id: RequestId,
    pub route: &'static Route,
    /// The model group asked for (shared with its metric labels when the app has it).
    pub model: Option<crate::observability::metrics::LabelText>,
    /// The deployment's id, shared with its metric labels.
    pub deployment: Option<crate::observability::metrics::LabelText>,
    pub status: u16,
    pub elapsed: Duration,
    pub usage: Option<Usage>,
    pub outcome: LineOutcome,
}

/// How a request's line ends.
#[derive(Debug)]
pub enum LineOutcome {
    /// Served; with its cost in USD, as the `x-ferrolite-cost` header gave it, when priced.
    Served(Option<HeaderValue>),
    Failed(String),
}

impl fmt::Display for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut latency = String::with_capacity(12);
        crate::decimal::push(&mut latency, self.elapsed.as_secs_f64() * 1000.0, 1);
        write!(
            f,
            "{} {} {} {} model={} deployment={} status={} latency_ms={latency}",
            self.at,
            self.request_id,
            self.route.method.as_http(),
            self.route.path,
            self.model.as_deref().unwrap_or("-"),
            self.deployment.as_deref().unwrap_or("-"),
            self.status,
        )?;
        match self.usage {
            Some(u) => write!(f, " tokens={}/{}", u.prompt_tokens, u.completion_tokens)?,
            None => f.write_str(" tokens=-")?,
        }
        match &self.outcome {
            LineOutcome::Served(Some(cost)) => write!(f, " cost=${}", cost.to_str().unwrap_or("?")),
            LineOutcome::Served(None) => Ok(()),
            LineOutcome::Failed(message) => write!(f, " error={message:?}"),
        }
    }
}

/// How a streamed answer ended: `id stream ended: tokens=prompt/completion cost=$`, the cost
/// with six decimals, and a note when the upstream reported no usage.
#[derive(Debug)]
pub struct StreamEndLine {
    pub request_id: RequestId,
    /// Whether the client left before the end.
    pub client_left: bool,
    pub usage: Usage,
    /// Whether the upstream reported the usage.
    pub reported: bool,
    /// US dollars, as booked.
    pub cost: f64,
}

impl fmt::Display for StreamEndLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.client_left { "stream left by the client" } else { "stream ended" };
        write!(
            f,
            "{} {how}: tokens={}/{}{} cost=${:.6}",
            self.request_id,
            self.usage.prompt_tokens,
            self.usage.completion_tokens,
            if self.reported { "" } else { " (the upstream reported no usage)" },
            self.cost
        )
    }
}

/// A session's recent log lines. `total` counts every line ever written, so offsets stay
/// meaningful after old lines are dropped.
#[derive(Debug, Default)]
pub struct LogBuffer {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<Entry>,
    dropped: usize,
}

impl LogBuffer {
    pub fn push(&self, kind: LogType, content: String) {
        self.push_entry(Entry { kind, content: Content::Text(content) });
    }

    /// A served request's line: an error line when it failed or its status is 4xx/5xx.
    pub fn push_request(&self, line: RequestLine) {
        let failed = matches!(line.outcome, LineOutcome::Failed(_)) || line.status >= 400;
        let kind = if failed { LogType::Error } else { LogType::Log };
        self.push_entry(Entry { kind, content: Content::Request(Box::new(line)) });
    }

    /// A streamed answer's end.
    pub fn push_stream_end(&self, line: StreamEndLine) {
        self.push_entry(Entry { kind: LogType::Log, content: Content::StreamEnd(Box::new(line)) });
    }

    fn push_entry(&self, entry: Entry) {
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ring.lines.len() == CAPACITY {
            ring.lines.pop_front();
            ring.dropped += 1;
        }
        ring.lines.push_back(entry);
    }

    /// Lines `offset..offset+limit` (of the given type, if any) and the total count.
    pub fn read(&self, kind: Option<LogType>, offset: usize, limit: Option<usize>) -> (Vec<LogItem>, usize) {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let matching = || ring.lines.iter().filter(|l| kind.is_none_or(|k| l.kind == k));
        let total = matching().count();
        let items = matching().skip(offset).take(limit.unwrap_or(usize::MAX)).map(Entry::item).collect();
        (items, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Operation, ROUTES};

    fn line(status: u16, outcome: LineOutcome) -> RequestLine {
        RequestLine {
            at: 1_796_000_000,
            request_id: RequestId::from_headers(&{
                let mut h = axum::http::HeaderMap::new();
                h.insert("x-request-id", HeaderValue::from_static("req_1"));
                h
            }),
            route: ROUTES.iter().find(|r| r.op == Operation::ChatCompletions).expect("chat route"),
            model: Some(crate::observability::metrics::LabelText::const_str("gpt")),
            deployment: Some(crate::observability::metrics::LabelText::const_str("gpt/0")),
            status,
            elapsed: Duration::from_micros(1_234),
            usage: Some(Usage { prompt_tokens: 9, completion_tokens: 10, cached_tokens: 0 }),
            outcome,
        }
    }

    #[test]
    fn a_request_line_is_written_out_when_read() {
        let logs = LogBuffer::default();
        logs.push(LogType::Log, "started".into());
        logs.push_request(line(200, LineOutcome::Served(Some(HeaderValue::from_static("0.00012250")))));
        let mut failed = line(502, LineOutcome::Failed("cannot reach \"x\"".into()));
        failed.usage = None;
        logs.push_request(failed);
        let (items, total) = logs.read(None, 0, None);
        assert_eq!(total, 3);
        let path = ROUTES.iter().find(|r| r.op == Operation::ChatCompletions).unwrap().path;
        assert_eq!(
            items[1].content,
            format!("1796000000 req_1 POST {path} model=gpt deployment=gpt/0 status=200 latency_ms=1.2 tokens=9/10 cost=$0.00012250")
        );
        assert_eq!(items[1].kind, LogType::Log);
        assert_eq!(
            items[2].content,
            format!("1796000000 req_1 POST {path} model=gpt deployment=gpt/0 status=502 latency_ms=1.2 tokens=- error=\"cannot reach \\\"x\\\"\"")
        );
        let (errors, total) = logs.read(Some(LogType::Error), 0, None);
        assert_eq!((errors.len(), total), (1, 1));
    }

    #[test]
    fn a_stream_end_is_written_out_when_read() {
        let logs = LogBuffer::default();
        let request_id = line(200, LineOutcome::Served(None)).request_id;
        let usage = Usage { prompt_tokens: 9, completion_tokens: 3, cached_tokens: 0 };
        logs.push_stream_end(StreamEndLine {
            request_id: request_id.clone(),
            client_left: false,
            usage,
            reported: true,
            cost: 1.5e-4,
        });
        let nothing = Usage::default();
        logs.push_stream_end(StreamEndLine {
            request_id,
            client_left: true,
            usage: nothing,
            reported: false,
            cost: 0.0,
        });
        let (items, _) = logs.read(None, 0, None);
        assert_eq!(items[0].content, "req_1 stream ended: tokens=9/3 cost=$0.000150");
        assert_eq!(
            items[1].content,
            "req_1 stream left by the client: tokens=0/0 (the upstream reported no usage) cost=$0.000000"
        );
        assert!(items.iter().all(|item| item.kind == LogType::Log));
    }
}

//! The stream capacity lane (issue 22), defined as the public OTB gateway benchmark does: every
//! stream is 64 chunks of 16 bytes of text that the upstream sends 20 ms apart, and a stream
//! **fails** when its status is not 200, a chunk is missing, the text is not the one sent, or two
//! consecutive chunks arrive more than 200 ms apart at the client. A target's capacity is the most
//! concurrent streams it carried with no stream failing.
//!
//! The lane starts what it measures itself, one target at a time: a fake upstream of its own
//! (`--chunks 64 --gap-ms 20 --chunk-bytes 16`), then the fake alone (the harness's own limit),
//! nginx (a plain `proxy_pass`), ferrolite passing OpenAI through, ferrolite translating (OpenAI
//! in, Anthropic out), and litellm and Portkey's gateway (passing OpenAI through) when the run
//! measures them. For each it ramps the streams (250,
//! 500, 1000, 2000, 4000 by default; below 250 by halves when 250 already fails) and stops at the
//! first level with a failure. The streams of a level are opened evenly over one second.
//!
//! The client is lean so that it is not what gives way on two shared cores: one task per stream
//! on a multi-thread runtime, a plain TCP connection, the request written once from shared bytes,
//! and the answer's chunked framing and SSE lines parsed in place in one reused buffer (the text of
//! each event is found by a byte scan, not a JSON parse).

use crate::gateway::{
    chunk_text, deployment, manifest, portkey_route, start_ferrolite, start_ferrolite_with_env, start_portkey,
    Ferrolite, Launch, PortkeyLaunch, UPSTREAM_KEY,
};
use crate::https_lane::{make_certificates, Certificates};
use crate::procs::{
    clock_ticks_per_sec, free_port, group_cpu_ticks, group_pids, group_rss_kb, proc_stat, vm_rss_kb, wait_listening,
    wait_ready, Proc,
};
use crate::report::{cmd_output, cores, cpu_model, loadavg, ms, percentile, write_results, Checkout, Report};
use crate::Res;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Content chunks in one stream.
pub const CHUNKS: usize = 64;
/// Bytes of text in each chunk.
pub const CHUNK_BYTES: usize = 16;
/// The upstream's pause between two chunks, in milliseconds.
pub const GAP_MS: u64 = 20;
/// A stream fails when two consecutive chunks arrive further apart than this, in milliseconds.
pub const MAX_GAP_MS: u64 = 200;
/// The first level of the ramp; each next one doubles, up to `--stream-capacity-max`.
pub const FIRST_LEVEL: usize = 250;
/// The lowest level tried when the first one already fails.
pub const LOWEST_LEVEL: usize = 1;
/// Levels tried between the last level that passed and the first that failed, each halving
/// the interval; rounded down to a multiple of `REFINE_ROUND`.
const REFINE_STEPS: usize = 2;
const REFINE_ROUND: usize = 50;
/// Issue 22's target for ferrolite: resident memory per open stream.
pub const TARGET_KB_PER_STREAM: f64 = 10.0;
/// The streams of one level are opened evenly over this long.
const SPREAD: Duration = Duration::from_secs(1);
/// The RSS of the target is sampled this often while a level runs.
const RSS_EVERY: Duration = Duration::from_millis(20);
/// Chunks received are counted in slots of this many milliseconds (for the best one-second rate).
const SLOT_MS: u64 = 100;
const LITELLM_KEY: &str = "sk-bench-master";
/// ferrolite's arguments in the lane: its `/metrics` open, read around each level.
const FERROLITE_ARGS: &[&str] = &["--metrics-public"];
/// The chat route of the lane's ferrolite app (`streams`).
const STREAMS_CHAT: &str = "/default/apps/streams/v1/chat/completions";
const STREAM_BODY: &str =
    r#"{"model":"MODEL","messages":[{"role":"user","content":"Hello!"}],"max_tokens":256,"stream":true}"#;

/// The driver's options of this lane.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Do not measure the stream capacity lane.
    #[arg(long)]
    pub skip_stream_capacity: bool,
    /// Measure only the stream capacity lane, and write it to stream-capacity.md / .json in
    /// --out-dir (latest.md is left alone).
    #[arg(long, conflicts_with = "skip_stream_capacity")]
    pub only_stream_capacity: bool,
    /// The most concurrent streams the lane's ramp tries (250, 500, 1000, ... up to this).
    #[arg(long, default_value_t = 4000)]
    pub stream_capacity_max: usize,
    /// Measure only the lane's rows from an HTTPS upstream (nginx, ferrolite, ferrolite over HTTP/2).
    #[arg(long)]
    pub stream_capacity_https_only: bool,
}

/// What the lane needs from the driver.
pub struct Env<'a> {
    pub launch: Launch<'a>,
    /// The nginx binary.
    pub nginx: &'a str,
    /// The litellm binary, when the run measures litellm.
    pub litellm: Option<PathBuf>,
    /// How to run Portkey's gateway, when the run measures it.
    pub portkey: Option<PortkeyLaunch<'a>>,
    pub quick: bool,
    /// Where `--only-stream-capacity` writes its results.
    pub out_dir: &'a Path,
}

/// One level of the ramp.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Level {
    pub streams: usize,
    pub failed: usize,
    /// Failed streams by their first reason: `error` (connect, read, cut short), `timeout`,
    /// `status`, `missing` (fewer or more chunks than sent), `text`, `gap`.
    pub failures: BTreeMap<&'static str, usize>,
    /// The first failure seen, in words.
    pub first_failure: Option<String>,
    /// The most streams open at one time.
    pub peak_open: usize,
    /// The most streams at one time between their first chunk and their end: what the target
    /// carried at once, whether or not it let streams wait before their first chunk.
    pub peak_streaming: usize,
    /// Requests ferrolite held while a lane was behind its streams (its
    /// `ferrolite_overload_held_total` over the level); None for other targets.
    pub held: Option<u64>,
    /// Text chunks the client received, all streams.
    pub chunks: u64,
    /// The most chunks received in one second (ten consecutive 100 ms slots).
    pub chunks_per_sec: f64,
    /// From the first stream opened to the last one ended.
    pub secs: f64,
    pub gap_p50_ms: f64,
    pub gap_p99_ms: f64,
    pub gap_max_ms: f64,
    /// Request sent to first text chunk.
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    /// The target's process group, just before the level.
    pub idle_rss_kb: u64,
    /// The highest of samples every 20 ms while the level ran.
    pub peak_rss_kb: u64,
    /// (peak - idle) / streams.
    pub rss_per_stream_kb: f64,
    /// The target's process group after the warm-up, before the ramp's first level.
    pub start_rss_kb: u64,
    /// (peak - start) / streams: the same for a target that keeps the memory a level took
    /// (nginx: a larger level then grows only by what the smaller one did not take, and the
    /// figure above shrinks with the ramp) and one that gives it back between levels.
    pub rss_per_stream_from_start_kb: f64,
    /// CPU of the target's process group over the level.
    pub cpu_secs: f64,
    /// CPU of the client (this process) over the level.
    pub client_cpu_secs: f64,
}

impl Level {
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
}

/// One target's ramp.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Capacity {
    pub target: String,
    /// The most concurrent streams with no failure (None: not even the lowest level).
    pub max_streams: Option<usize>,
    /// Every level passed, so the capacity is at least the cap.
    pub reached_cap: bool,
    pub levels: Vec<Level>,
    /// Why the target could not be measured.
    pub error: Option<String>,
}

impl Capacity {
    /// The level of `max_streams`.
    pub fn at_max(&self) -> Option<&Level> {
        self.max_streams.and_then(|n| self.levels.iter().find(|l| l.streams == n && l.passed()))
    }

    /// A target that could not be measured, and why.
    pub fn failed(target: &str, error: String) -> Capacity {
        Capacity { target: target.into(), error: Some(error), ..Capacity::default() }
    }

    /// The most streams carried at once (first chunk to end) in a level with no failure.
    pub fn most_streaming(&self) -> Option<usize> {
        self.levels.iter().filter(|l| l.passed()).map(|l| l.peak_streaming).max()
    }

    /// The smallest level that failed.
    pub fn first_failed(&self) -> Option<&Level> {
        self.levels.iter().filter(|l| !l.passed()).min_by_key(|l| l.streams)
    }

    /// The largest level that passed before any larger level ran: its memory figures are its
    /// own (a level run after a larger one finds the target holding what that one took).
    pub fn memory_level(&self) -> Option<&Level> {
        let mut largest = 0;
        let mut found = None;
        for l in &self.levels {
            if l.streams > largest {
                largest = l.streams;
                if l.passed() {
                    found = Some(l);
                }
            }
        }
        found
    }
}

/// The levels of the ramp up to `max`: 250, 500, 1000, ... and `max` itself last.
pub fn ramp(max: usize) -> Vec<usize> {
    let mut levels = Vec::new();
    let mut level = FIRST_LEVEL;
    while level < max {
        levels.push(level);
        level *= 2;
    }
    levels.push(max.max(1));
    levels
}

/// The text the lane's fake sends as chunk `i` (`t{i} ` padded with dots to 16 bytes).
pub fn chunk_text_padded(i: usize) -> String {
    let mut word = chunk_text(i);
    while word.len() < CHUNK_BYTES {
        word.push('.');
    }
    word
}

// ---------------------------------------------------------------------------------------------
// The client

/// One target's request, as bytes written on every stream's connection.
struct Request {
    addr: SocketAddr,
    bytes: Vec<u8>,
}

impl Request {
    fn new(port: u16, path: &str, model: &str, auth: Option<&str>, headers: &[(String, String)]) -> Request {
        let body = STREAM_BODY.replace("MODEL", model);
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Accept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(token) = auth {
            let _ = write!(head, "Authorization: Bearer {token}\r\n");
        }
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head += "\r\n";
        head += &body;
        Request { addr: SocketAddr::from(([127, 0, 0, 1], port)), bytes: head.into_bytes() }
    }
}

/// What every stream of a level shares.
struct Shared {
    request: Request,
    /// The whole text a stream must deliver.
    expected: Vec<u8>,
    start: Instant,
    /// Chunks received per `SLOT_MS` since `start`.
    slots: Vec<AtomicU32>,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    streaming: AtomicUsize,
    peak_streaming: AtomicUsize,
}

impl Shared {
    fn count_chunk(&self, at: Instant) {
        let slot = (at.saturating_duration_since(self.start).as_millis() as u64 / SLOT_MS) as usize;
        if let Some(s) = self.slots.get(slot.min(self.slots.len().saturating_sub(1))) {
            s.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one stream saw.
struct Outcome {
    status: u16,
    chunks: usize,
    text_ok: bool,
    /// Microseconds from the request to the first text chunk.
    ttft_us: Option<u32>,
    /// Microseconds between consecutive text chunks.
    gaps_us: Vec<u32>,
    error: Option<&'static str>,
}

impl Outcome {
    /// The reason the stream failed, or None.
    fn failure(&self, expected_chunks: usize) -> Option<&'static str> {
        if let Some(e) = self.error {
            return Some(if e == "timeout" { "timeout" } else { "error" });
        }
        if self.status != 200 {
            Some("status")
        } else if self.chunks != expected_chunks {
            Some("missing")
        } else if !self.text_ok {
            Some("text")
        } else if self.gaps_us.iter().any(|g| u64::from(*g) > MAX_GAP_MS * 1000) {
            Some("gap")
        } else {
            None
        }
    }

    fn describe(&self, expected_chunks: usize) -> String {
        match self.failure(expected_chunks) {
            Some("error") | Some("timeout") => {
                format!("{} after {} chunks", self.error.unwrap_or("error"), self.chunks)
            }
            Some("status") => format!("status {}", self.status),
            Some("missing") => format!("{} of {expected_chunks} chunks", self.chunks),
            Some("text") => "text not the one sent".into(),
            Some("gap") => {
                let max = self.gaps_us.iter().max().copied().unwrap_or(0);
                format!("a gap of {}", ms(f64::from(max) / 1000.0))
            }
            _ => "none".into(),
        }
    }
}

/// The text of an OpenAI chunk's `"content":"..."` (raw, escapes left as they are), or None.
fn content_of(json: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"content\":";
    let mut from = 0;
    let at = loop {
        let quote = from + json[from..].iter().position(|b| *b == b'"')?;
        if json[quote..].starts_with(KEY) {
            break quote + KEY.len();
        }
        from = quote + 1;
    };
    let mut rest = &json[at..];
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let rest = rest.strip_prefix(b"\"")?;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'"' => return Some(&rest[..i]),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// SSE lines of one stream, fed as the body's bytes arrive.
struct Sse<'a> {
    shared: &'a Shared,
    started: Instant,
    /// A line not ended yet (most lines end within one read and are never copied here).
    partial: Vec<u8>,
    /// How much of the expected text has arrived.
    pos: usize,
    last: Option<Instant>,
}

/// A stream that had its first chunk stops counting as streaming when it ends, however it ends
/// (a timeout drops it).
impl Drop for Sse<'_> {
    fn drop(&mut self) {
        if self.last.is_some() {
            self.shared.streaming.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Sse<'_> {
    fn feed(&mut self, mut data: &[u8], now: Instant, out: &mut Outcome) {
        while let Some(end) = data.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.line(&data[..end], now, out);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&data[..end]);
                self.line(&line, now, out);
                line.clear();
                self.partial = line;
            }
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8], now: Instant, out: &mut Outcome) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let Some(text) = content_of(data) else { return };
        if text.is_empty() {
            return;
        }
        out.chunks += 1;
        match self.last {
            Some(last) => {
                out.gaps_us.push(now.saturating_duration_since(last).as_micros().min(u32::MAX as u128) as u32)
            }
            None => {
                out.ttft_us =
                    Some(now.saturating_duration_since(self.started).as_micros().min(u32::MAX as u128) as u32);
                let streaming = self.shared.streaming.fetch_add(1, Ordering::Relaxed) + 1;
                self.shared.peak_streaming.fetch_max(streaming, Ordering::Relaxed);
            }
        }
        self.last = Some(now);
        let expected = &self.shared.expected;
        if out.text_ok && expected.get(self.pos..self.pos + text.len()) == Some(text) {
            self.pos += text.len();
        } else {
            out.text_ok = false;
        }
        self.shared.count_chunk(now);
    }
}

/// The framing of an answer's body.
enum Framing {
    /// `Transfer-Encoding: chunked`: the bytes left in the current chunk, or None between chunks.
    Chunked(Option<usize>),
    Length(usize),
    /// Until the connection closes.
    Close,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status and the framing of an answer's head.
fn parse_head(head: &[u8]) -> (u16, Framing) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut framing = Framing::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            framing = Framing::Chunked(None);
        } else if name.eq_ignore_ascii_case("content-length") && !matches!(framing, Framing::Chunked(_)) {
            framing = Framing::Length(value.parse().unwrap_or(0));
        }
    }
    (status, framing)
}

/// One stream: connect, send the request, read the answer to its end.
async fn drive(shared: &Shared, out: &mut Outcome) -> Result<(), &'static str> {
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(shared.request.addr).await.map_err(|_| "connect failed")?;
    let _ = socket.set_nodelay(true);
    let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.peak_open.fetch_max(open, Ordering::Relaxed);
    let result = read_answer(shared, &mut socket, started, out).await;
    shared.open.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn read_answer(
    shared: &Shared,
    socket: &mut tokio::net::TcpStream,
    started: Instant,
    out: &mut Outcome,
) -> Result<(), &'static str> {
    socket.write_all(&shared.request.bytes).await.map_err(|_| "write failed")?;
    let mut buf = vec![0u8; 4096];
    let (mut start, mut end) = (0usize, 0usize);
    let mut framing: Option<Framing> = None;
    let mut sse = Sse { shared, started, partial: Vec::new(), pos: 0, last: None };
    loop {
        if start == end {
            (start, end) = (0, 0);
        } else if end == buf.len() {
            if start > 0 {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = socket.read(&mut buf[end..]).await.map_err(|_| "read failed")?;
        if n == 0 {
            return match framing {
                Some(Framing::Close) => Ok(()),
                _ => Err("closed early"),
            };
        }
        end += n;
        let now = Instant::now();
        if framing.is_none() {
            let Some(at) = find(&buf[start..end], b"\r\n\r\n") else { continue };
            let (status, f) = parse_head(&buf[start..start + at]);
            out.status = status;
            if status != 200 {
                return Ok(());
            }
            framing = Some(f);
            start += at + 4;
        }
        match framing.as_mut() {
            Some(Framing::Close) => {
                sse.feed(&buf[start..end], now, out);
                start = end;
            }
            Some(Framing::Length(left)) => {
                let take = (*left).min(end - start);
                sse.feed(&buf[start..start + take], now, out);
                start += take;
                *left -= take;
                if *left == 0 {
                    break;
                }
            }
            Some(Framing::Chunked(state)) => loop {
                match state {
                    None => {
                        // "SIZE[;ext]\r\n", after the previous chunk's "\r\n".
                        let avail = &buf[start..end];
                        let skip = if avail.starts_with(b"\r\n") { 2 } else { 0 };
                        let Some(line_end) = find(&avail[skip..], b"\r\n") else { break };
                        let line = &avail[skip..skip + line_end];
                        let hex = line.split(|b| *b == b';').next().unwrap_or(b"");
                        let size = std::str::from_utf8(hex)
                            .ok()
                            .and_then(|h| usize::from_str_radix(h.trim(), 16).ok())
                            .ok_or("bad chunk size")?;
                        start += skip + line_end + 2;
                        if size == 0 {
                            return finish(&sse, out);
                        }
                        *state = Some(size);
                    }
                    Some(left) => {
                        if start == end {
                            break;
                        }
                        let take = (*left).min(end - start);
                        sse.feed(&buf[start..start + take], now, out);
                        start += take;
                        *left -= take;
                        if *left == 0 {
                            *state = None;
                        }
                    }
                }
            },
            None => {}
        }
    }
    finish(&sse, out)
}

fn finish(sse: &Sse, out: &mut Outcome) -> Result<(), &'static str> {
    out.text_ok = out.text_ok && sse.pos == sse.shared.expected.len();
    Ok(())
}

async fn one_stream(shared: Arc<Shared>, deadline: Duration) -> Outcome {
    let mut out = Outcome {
        status: 0,
        chunks: 0,
        text_ok: true,
        ttft_us: None,
        gaps_us: Vec::with_capacity(CHUNKS),
        error: None,
    };
    match tokio::time::timeout(deadline, drive(&shared, &mut out)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.error = Some(e),
        Err(_) => out.error = Some("timeout"),
    }
    out
}

/// utime + stime of this process (the client), in clock ticks.
fn own_cpu_ticks() -> u64 {
    proc_stat(std::process::id())
        .map(|f| [11, 12].iter().filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok())).sum())
        .unwrap_or(0)
}

/// Samples the RSS of a process group (its members as they are now) until stopped; the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssWatch {
    fn start(leader: u32) -> RssWatch {
        let pids = group_pids(leader);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                peak = peak.max(pids.iter().map(|p| vm_rss_kb(*p)).sum::<u64>());
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(RSS_EVERY);
            }
        });
        RssWatch { stop, handle }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// One target as the lane drives it.
struct Target {
    name: String,
    leader: u32,
    port: u16,
    path: String,
    model: &'static str,
    auth: Option<String>,
    /// More headers on every request (Portkey's route).
    headers: Vec<(String, String)>,
    /// ferrolite's: its `/metrics` is open (`--metrics-public`), read before and after a level.
    metrics: bool,
}

impl Target {
    fn new(name: &str, leader: u32, port: u16, path: &str, model: &'static str, auth: Option<&str>) -> Target {
        Target {
            name: name.to_owned(),
            leader,
            port,
            path: path.to_owned(),
            model,
            auth: auth.map(str::to_owned),
            headers: Vec::new(),
            metrics: false,
        }
    }

    /// ferrolite started with [`FERROLITE_ARGS`], serving `path` as `model` with its token.
    fn ferrolite(name: &str, gw: &Ferrolite, path: &str, model: &'static str) -> Target {
        Target { metrics: true, ..Target::new(name, gw.proc.pid(), gw.port, path, model, Some(gw.token.as_str())) }
    }

    /// The target's count of requests held so far, if it is ferrolite and answers.
    fn held(&self) -> Option<u64> {
        if !self.metrics {
            return None;
        }
        let text = match crate::procs::get_text(self.port, "/metrics", None)? {
            (200, text) => text,
            _ => return None,
        };
        let line = text.lines().find_map(|l| l.strip_prefix("ferrolite_overload_held_total "));
        // Absent until the first request is held.
        Some(line.and_then(|v| v.trim().parse::<f64>().ok()).map_or(0, |v| v as u64))
    }
}

struct Runner {
    rt: tokio::runtime::Runtime,
    ticks: f64,
    settle: Duration,
    /// Each stream's own time limit.
    deadline: Duration,
}

impl Runner {
    /// `streams` streams opened evenly over `spread`, all to their end.
    fn level(&self, target: &Target, streams: usize, spread: Duration) -> Level {
        let idle_rss_kb = group_rss_kb(target.leader);
        let held_before = target.held();
        let cpu_before = group_cpu_ticks(target.leader);
        let client_before = own_cpu_ticks();
        let watch = RssWatch::start(target.leader);
        let slots = ((spread + self.deadline).as_millis() as u64 / SLOT_MS + 2) as usize;
        let expected: String = (0..CHUNKS).map(chunk_text_padded).collect();
        let shared = Arc::new(Shared {
            request: Request::new(target.port, &target.path, target.model, target.auth.as_deref(), &target.headers),
            expected: expected.into_bytes(),
            start: Instant::now(),
            slots: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            peak_streaming: AtomicUsize::new(0),
        });
        let deadline = self.deadline;
        let outcomes: Vec<Outcome> = self.rt.block_on(async {
            let mut handles = Vec::with_capacity(streams);
            for k in 0..streams {
                let at = shared.start + spread.mul_f64(k as f64 / streams as f64);
                tokio::time::sleep_until(at.into()).await;
                handles.push(tokio::spawn(one_stream(shared.clone(), deadline)));
            }
            let mut outcomes = Vec::with_capacity(streams);
            for h in handles {
                outcomes.push(h.await.unwrap_or_else(|_| Outcome {
                    status: 0,
                    chunks: 0,
                    text_ok: false,
                    ttft_us: None,
                    gaps_us: Vec::new(),
                    error: Some("client task failed"),
                }));
            }
            outcomes
        });
        let secs = shared.start.elapsed().as_secs_f64();
        let peak_rss_kb = watch.peak();
        let cpu_secs = group_cpu_ticks(target.leader).saturating_sub(cpu_before) as f64 / self.ticks;
        let client_cpu_secs = own_cpu_ticks().saturating_sub(client_before) as f64 / self.ticks;
        let mut level =
            Level { streams, idle_rss_kb, peak_rss_kb, secs, cpu_secs, client_cpu_secs, ..Level::default() };
        let mut gaps = Vec::with_capacity(streams * CHUNKS);
        let mut ttfts = Vec::with_capacity(streams);
        for o in &outcomes {
            level.chunks += o.chunks as u64;
            gaps.extend(o.gaps_us.iter().map(|g| f64::from(*g) / 1000.0));
            ttfts.extend(o.ttft_us.map(|t| f64::from(t) / 1000.0));
            if let Some(reason) = o.failure(CHUNKS) {
                level.failed += 1;
                *level.failures.entry(reason).or_default() += 1;
                if level.first_failure.is_none() {
                    level.first_failure = Some(o.describe(CHUNKS));
                }
            }
        }
        let per_slot: Vec<u64> = shared.slots.iter().map(|s| u64::from(s.load(Ordering::Relaxed))).collect();
        let window = (1000 / SLOT_MS) as usize;
        level.chunks_per_sec =
            per_slot.windows(window.min(per_slot.len())).map(|w| w.iter().sum::<u64>()).max().unwrap_or(0) as f64;
        level.peak_open = shared.peak_open.load(Ordering::Relaxed);
        level.peak_streaming = shared.peak_streaming.load(Ordering::Relaxed);
        level.held = held_before.zip(target.held()).map(|(before, after)| after.saturating_sub(before));
        level.gap_p50_ms = percentile(&gaps, 50.0);
        level.gap_p99_ms = percentile(&gaps, 99.0);
        level.gap_max_ms = gaps.iter().copied().fold(f64::NAN, f64::max);
        level.ttft_p50_ms = percentile(&ttfts, 50.0);
        level.ttft_p99_ms = percentile(&ttfts, 99.0);
        level.rss_per_stream_kb = peak_rss_kb.saturating_sub(idle_rss_kb) as f64 / streams.max(1) as f64;
        level
    }

    /// After a failed level, waits (a minute at most) until a single stream passes again, so that
    /// the next, lower level is not measured against the backlog of the one before: a target
    /// that queues streams it cannot serve (litellm) is still sending the last level's streams.
    fn recover(&self, target: &Target) {
        let until = Instant::now() + Duration::from_secs(60);
        std::thread::sleep(self.settle);
        while Instant::now() < until {
            if self.level(target, 1, Duration::ZERO).passed() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        step(&format!("{}: still failing a single stream after a minute", target.name));
    }

    /// The ramp up to `max`, stopping at the first level with a failure: refined between it and
    /// the level before, or, when the first level fails, going down by halves.
    fn ramp(&self, target: &Target, max: usize) -> Capacity {
        let mut cap = Capacity { target: target.name.clone(), ..Capacity::default() };
        // A few streams first, not counted: connections, pools and code paths warm.
        let warm = self.level(target, 8, Duration::from_millis(100));
        if !warm.passed() {
            step(&format!(
                "{}: {} of 8 warm-up streams failed ({})",
                target.name,
                warm.failed,
                warm.first_failure.as_deref().unwrap_or("")
            ));
        }
        let start_rss_kb = group_rss_kb(target.leader);
        // One level measured and kept; whether it passed.
        let measure = |n: usize, levels: &mut Vec<Level>| {
            step(&format!("stream capacity: {}: {n} streams", target.name));
            let mut level = self.level(target, n, SPREAD);
            level.start_rss_kb = start_rss_kb;
            level.rss_per_stream_from_start_kb =
                level.peak_rss_kb.saturating_sub(start_rss_kb) as f64 / level.streams.max(1) as f64;
            let passed = level.passed();
            say_level(&level);
            levels.push(level);
            passed
        };
        let levels = ramp(max);
        for (i, &n) in levels.iter().enumerate() {
            std::thread::sleep(self.settle);
            if measure(n, &mut cap.levels) {
                cap.max_streams = Some(n);
                cap.reached_cap = i + 1 == levels.len();
                continue;
            }
            if let Some(passed) = cap.max_streams {
                // Between the last level that passed and this one, halved twice: the capacity to
                // a quarter of the step rather than to a doubling.
                let (mut low, mut high) = (passed, n);
                for _ in 0..REFINE_STEPS {
                    let mid = (low + high) / 2 / REFINE_ROUND * REFINE_ROUND;
                    if mid <= low || mid >= high {
                        break;
                    }
                    self.recover(target);
                    if measure(mid, &mut cap.levels) {
                        cap.max_streams = Some(mid);
                        low = mid;
                    } else {
                        high = mid;
                    }
                }
            }
            if i == 0 {
                let mut lower = n / 2;
                while lower >= LOWEST_LEVEL {
                    self.recover(target);
                    if measure(lower, &mut cap.levels) {
                        cap.max_streams = Some(lower);
                        break;
                    }
                    lower /= 2;
                }
            }
            break;
        }
        cap
    }
}

fn step(what: &str) {
    eprintln!("bench: {what}");
}

fn say_level(l: &Level) {
    eprintln!(
        "bench:   {} failed, peak open {}, {:.0} chunks/s, gap p99 {} max {}, RSS {:.1} KB/stream, CPU {:.2} s \
         (client {:.2} s){}",
        l.failed,
        l.peak_open,
        l.chunks_per_sec,
        ms(l.gap_p99_ms),
        ms(l.gap_max_ms),
        l.rss_per_stream_kb,
        l.cpu_secs,
        l.client_cpu_secs,
        l.first_failure.as_ref().map(|f| format!(" (first failure: {f})")).unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------------------------
// The targets

/// The lane's fake upstream; with `tls`, behind TLS with that certificate, offering the ALPN
/// protocols `alpn` names ("http/1.1", or "h2,http/1.1").
fn start_fake(env: &Env, tls: Option<(&Certificates, &str)>) -> Res<(Proc, u16)> {
    let port = free_port()?;
    let tag = match tls {
        None => "streams-fake".to_owned(),
        Some((_, alpn)) => format!("streams-fake-tls-{}", alpn.split(',').next().unwrap_or("tls").replace('/', "")),
    };
    let log = std::fs::File::create(env.launch.scratch.join(format!("{tag}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(env.launch.bin_dir.join("fake-upstream"));
    cmd.args(["--port", &port.to_string(), "--workers", &cores().to_string()])
        .args(["--chunks", &CHUNKS.to_string(), "--gap-ms", &GAP_MS.to_string()])
        .args(["--chunk-bytes", &CHUNK_BYTES.to_string()])
        .stdout(Stdio::null())
        .stderr(log);
    if let Some((certs, alpn)) = tls {
        cmd.arg("--tls-cert").arg(&certs.cert).arg("--tls-key").arg(&certs.key).args(["--tls-alpn", alpn]);
    }
    let mut fake = Proc::spawn(&format!("fake-upstream ({tag})"), &mut cmd, env.launch.pidfile)?;
    let since = fake.started;
    match tls {
        None => wait_ready(&mut fake, port, "/health", None, since, Duration::from_secs(20))?,
        // It speaks TLS only; ferrolite's own start checks nothing of it, the ramp's first
        // stream does.
        Some(_) => wait_listening(&mut fake, port, since, Duration::from_secs(20))?,
    };
    Ok((fake, port))
}

/// nginx in front of the fake on `fake_port` (behind TLS with `tls`), started for its ramp.
fn ramp_nginx(
    env: &Env,
    runner: &Runner,
    name: &str,
    fake_port: u16,
    max: usize,
    tls: Option<&Certificates>,
) -> Capacity {
    step(&format!("stream capacity: starting {name}"));
    match start_nginx(env, fake_port, max, tls) {
        Ok((mut nginx, port)) => {
            let capacity = runner.ramp(&Target::new(name, nginx.pid(), port, "/v1/chat/completions", "gpt", None), max);
            nginx.stop();
            capacity
        }
        Err(e) => Capacity::failed(name, e),
    }
}

/// The lane's ferrolite (`started` with [`FERROLITE_ARGS`]) ramped on `model` of its `streams`
/// app, then stopped.
fn ramp_ferrolite(runner: &Runner, name: &str, started: Res<Ferrolite>, model: &'static str, max: usize) -> Capacity {
    match started {
        Ok(mut gw) => {
            let capacity = runner.ramp(&Target::ferrolite(name, &gw, STREAMS_CHAT, model), max);
            gw.proc.stop();
            capacity
        }
        Err(e) => Capacity::failed(name, e),
    }
}

/// nginx and ferrolite passing streams through from the fake behind TLS (a CA made for the run,
/// trusted through `SSL_CERT_FILE` by ferrolite and `proxy_ssl_trusted_certificate` by nginx):
/// what a stream costs when the upstream is HTTPS, as real ones are (ferrolite learns that the
/// fake offers only HTTP/1.1 and carries its streams on the lanes' connections). Then ferrolite
/// again from a fake that offers HTTP/2, which its streams take by default.
fn ramp_over_tls(env: &Env, runner: &Runner, max: usize) -> Res<Vec<Capacity>> {
    let dir = env.launch.scratch.join("streams-tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let certs = make_certificates(&dir)?;
    let (mut fake, fake_port) = start_fake(env, Some((&certs, "http/1.1")))?;
    let mut rows = Vec::new();

    rows.push(ramp_nginx(env, runner, "nginx (HTTPS upstream)", fake_port, max, Some(&certs)));
    let upstream = TlsUpstream { dir: &dir, certs: &certs, port: fake_port };
    let name = ("streams-tls", "ferrolite (gpt, pass-through, HTTPS upstream)");
    rows.push(ramp_ferrolite_over_tls(env, runner, name, &upstream, max));
    fake.stop();

    // The same streams from a fake that offers HTTP/2, which streams take by default: many
    // streams on each connection (at most --upstream-http2-streams, 100), so a burst opens tens
    // of TLS connections rather than thousands.
    step("stream capacity: starting the fake behind TLS, offering HTTP/2");
    let (mut fake, fake_port) = start_fake(env, Some((&certs, "h2,http/1.1")))?;
    let upstream = TlsUpstream { dir: &dir, certs: &certs, port: fake_port };
    let name = ("streams-tls-h2", "ferrolite (gpt, pass-through, HTTPS upstream over HTTP/2)");
    rows.push(ramp_ferrolite_over_tls(env, runner, name, &upstream, max));
    fake.stop();
    Ok(rows)
}

/// A fake behind TLS on `port`, with the run's certificates kept in `dir`.
struct TlsUpstream<'a> {
    dir: &'a Path,
    certs: &'a Certificates,
    port: u16,
}

/// The lane's ferrolite passing streams through from `upstream` (trusting its CA through
/// `SSL_CERT_FILE`), started as the lane's others are, ramped, stopped.
fn ramp_ferrolite_over_tls(
    env: &Env,
    runner: &Runner,
    (tag, name): (&str, &str),
    upstream: &TlsUpstream<'_>,
    max: usize,
) -> Capacity {
    step(&format!("stream capacity: starting {name}"));
    let TlsUpstream { dir, certs, port } = upstream;
    let gpt = json!({"model_name": "gpt", "litellm_params": {
        "model": "openai/gpt-4o", "api_base": format!("https://127.0.0.1:{port}/v1"), "api_key": UPSTREAM_KEY}});
    let app = dir.join(format!("{tag}-app.json"));
    let written = std::fs::write(&app, manifest("streams", vec![gpt]).to_string()).map_err(|e| e.to_string());
    let trust = [("SSL_CERT_FILE", Some(certs.ca.as_os_str())), ("SSL_CERT_DIR", None)];
    let started =
        written.and_then(|()| start_ferrolite_with_env(&env.launch, tag, &[app], "streams", FERROLITE_ARGS, &trust));
    ramp_ferrolite(runner, name, started, "gpt", max)
}

/// nginx as the driver's (one worker per core, `proxy_pass` to an upstream with `keepalive 64`),
/// with room for two connections per stream in one worker; with `tls`, to the fake behind TLS
/// as the HTTPS lane's nginx calls it.
fn start_nginx(env: &Env, fake: u16, max: usize, tls: Option<&Certificates>) -> Res<(Proc, u16)> {
    let dir = env.launch.scratch.join(if tls.is_some() { "streams-nginx-tls" } else { "streams-nginx" });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let connections = (2 * max + 256).max(4096);
    let conf = match tls {
        None => crate::gateway::nginx_conf(&dir, port, fake, None, connections, "http", ""),
        Some(certs) => crate::https_lane::nginx_conf(&dir, port, fake, &certs.ca, connections),
    };
    let (nginx, _) =
        crate::gateway::start_nginx("nginx (stream capacity)", env.nginx, &dir, &conf, port, env.launch.pidfile)?;
    Ok((nginx, port))
}

fn litellm_for_streams(env: &Env, bin: &Path, fake: u16) -> Res<(Proc, u16)> {
    let port = free_port()?;
    let model = json!({"model_name": "gpt", "litellm_params": {
        "model": "openai/gpt-4o", "api_base": format!("http://127.0.0.1:{fake}/v1"), "api_key": UPSTREAM_KEY}});
    let config = env.launch.scratch.join("streams-litellm.yaml");
    std::fs::write(&config, format!("model_list:\n  - {model}\ngeneral_settings:\n  master_key: {LITELLM_KEY}\n"))
        .map_err(|e| e.to_string())?;
    let log = env.launch.scratch.join("streams-litellm.log");
    let (proc, _) =
        crate::gateway::start_litellm("litellm (stream capacity)", bin, &config, port, &log, env.launch.pidfile)?;
    Ok((proc, port))
}

/// Runs the lane: every target's ramp.
pub fn measure(env: &Env, opts: &Options) -> Res<Vec<Capacity>> {
    let max = opts.stream_capacity_max.max(1);
    let runner = Runner {
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores())
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?,
        ticks: clock_ticks_per_sec(),
        settle: Duration::from_millis(if env.quick { 500 } else { 1500 }),
        deadline: Duration::from_millis(CHUNKS as u64 * GAP_MS) + Duration::from_secs(if env.quick { 5 } else { 10 }),
    };
    if opts.stream_capacity_https_only {
        step("stream capacity: starting the fake behind TLS");
        return ramp_over_tls(env, &runner, max);
    }
    step("stream capacity: starting its fake upstream (64 chunks of 16 bytes, 20 ms apart)");
    let (mut fake, fake_port) = start_fake(env, None)?;
    let mut results = Vec::new();
    let chat = "/v1/chat/completions";

    // The fake alone: what the client and the fake sustain on this machine without a hop.
    let direct = Target::new("direct (the fake, no hop)", fake.pid(), fake_port, chat, "gpt", Some(UPSTREAM_KEY));
    results.push(runner.ramp(&direct, max));

    results.push(ramp_nginx(env, &runner, "nginx", fake_port, max, None));

    let claude = json!({"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-3-5-sonnet-20241022", "api_base": format!("http://127.0.0.1:{fake_port}"),
        "api_key": UPSTREAM_KEY}});
    let app = env.launch.scratch.join("streams-app.json");
    std::fs::write(&app, manifest("streams", vec![deployment("gpt", fake_port), claude]).to_string())
        .map_err(|e| e.to_string())?;
    // A fresh instance per path, so each one's idle RSS is its own.
    for (tag, name, model) in [
        ("streams-gpt", "ferrolite (gpt, pass-through)", "gpt"),
        ("streams-claude", "ferrolite (claude, OpenAI -> Anthropic)", "claude"),
    ] {
        step(&format!("stream capacity: starting {name}"));
        let started = start_ferrolite(&env.launch, tag, std::slice::from_ref(&app), "streams", FERROLITE_ARGS);
        results.push(ramp_ferrolite(&runner, name, started, model, max));
    }

    step("stream capacity: starting the fake behind TLS");
    match ramp_over_tls(env, &runner, max) {
        Ok(rows) => results.extend(rows),
        Err(e) => results.push(Capacity::failed("HTTPS upstream", e)),
    }

    if let Some(bin) = &env.litellm {
        step("stream capacity: starting litellm");
        match litellm_for_streams(env, bin, fake_port) {
            Ok((mut proc, port)) => {
                results
                    .push(runner.ramp(&Target::new("litellm", proc.pid(), port, chat, "gpt", Some(LITELLM_KEY)), max));
                proc.stop();
            }
            Err(e) => results.push(Capacity::failed("litellm", e)),
        }
    }

    if let Some(launch) = env.portkey {
        step("stream capacity: starting Portkey's gateway");
        let started = free_port().and_then(|port| {
            let log = env.launch.scratch.join("streams-portkey.log");
            start_portkey("portkey (stream capacity)", launch, port, &log, env.launch.pidfile).map(|(p, _)| (p, port))
        });
        match started {
            Ok((mut proc, port)) => {
                let mut t = Target::new("portkey", proc.pid(), port, chat, "gpt", Some(UPSTREAM_KEY));
                t.headers = portkey_route("openai", fake_port);
                results.push(runner.ramp(&t, max));
                proc.stop();
            }
            Err(e) => results.push(Capacity::failed("portkey", e)),
        }
    }
    fake.stop();
    Ok(results)
}

// ---------------------------------------------------------------------------------------------
// The report

/// Adds the lane's tables and its JSON (`stream_capacity`) to `report`.
pub fn write_into(report: &mut Report, results: &[Capacity], opts: &Options, quick: bool) {
    let max = opts.stream_capacity_max;
    let kb = |v: f64| if v.is_finite() { format!("{v:.1} KB") } else { "–".into() };
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|c| {
            let at = c.at_max();
            let failed = match (c.first_failed(), &c.error) {
                (_, Some(e)) => format!("not measured: {e}"),
                (Some(l), None) => format!(
                    "{}: {} failed ({}; first: {})",
                    l.streams,
                    l.failed,
                    l.failures.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
                    l.first_failure.as_deref().unwrap_or("")
                ),
                (None, None) => format!("none up to {max} (the cap)"),
            };
            let max_streams = match c.max_streams {
                Some(n) if c.reached_cap => format!(">= {n}"),
                Some(n) => format!("{n}"),
                None if c.error.is_some() => "–".into(),
                None => format!("< {}", c.levels.last().map(|l| l.streams).unwrap_or(LOWEST_LEVEL)),
            };
            // Memory per stream from the largest level that passed on the way up: a level run
            // after a larger one (going down, or refining) finds the target holding what that one
            // took, so what it grows by says nothing per stream.
            let rss_at = c.memory_level();
            let at_level = |l: &Level| match at {
                Some(a) if a.streams != l.streams => format!(" (at {})", l.streams),
                _ => String::new(),
            };
            vec![
                c.target.clone(),
                max_streams,
                at.map(|l| l.peak_open.to_string()).unwrap_or_else(|| "–".into()),
                c.most_streaming().map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
                at.map(|l| format!("{:.0}", l.chunks_per_sec)).unwrap_or_else(|| "–".into()),
                match rss_at {
                    Some(l) => format!("{}{}", kb(l.rss_per_stream_kb), at_level(l)),
                    None if at.is_some() => "– (after a larger level)".into(),
                    None => "–".into(),
                },
                rss_at.map(|l| kb(l.rss_per_stream_from_start_kb)).unwrap_or_else(|| "–".into()),
                rss_at
                    .map(|l| match (l.rss_per_stream_kb <= TARGET_KB_PER_STREAM, c.target.starts_with("ferrolite")) {
                        (true, _) => "yes".to_string(),
                        // The target is ferrolite's; the others' figures are for comparison.
                        (false, true) => "**no**".to_string(),
                        (false, false) => "no".to_string(),
                    })
                    .unwrap_or_else(|| "–".into()),
                at.map(|l| ms(l.gap_p99_ms)).unwrap_or_else(|| "–".into()),
                at.map(|l| ms(l.ttft_p99_ms)).unwrap_or_else(|| "–".into()),
                failed,
            ]
        })
        .collect();
    report.table(
        "Stream capacity (issue 22)",
        &format!(
            "As the OTB gateway benchmark defines it: each stream is {CHUNKS} chunks of {CHUNK_BYTES} bytes of text \
             that a fake upstream of the lane's own sends {GAP_MS} ms apart; a stream fails when its status is not \
             200, a chunk is missing, the text differs, or two consecutive chunks reach the client more than \
             {MAX_GAP_MS} ms apart. Ramp: {} concurrent streams (below {FIRST_LEVEL} by halves when {FIRST_LEVEL} \
             already fails), each level's streams opened evenly over 1 s, stopping at the first level with a \
             failure; then {REFINE_STEPS} levels halving the step between it and the last level that passed \
             (rounded down to {REFINE_ROUND}), each after the target serves a single stream again. Max streams = \
             the highest level with none; at that level: peak open = the most streams the client had open at \
             one time (below the level when the target answers later than the client opens streams); most \
             streaming at once = over every level with no failure, the most streams between their first chunk \
             and their end at one time (what a target carried at once, whether or not it made new streams wait \
             for their first chunk: compare targets on it); chunks/s = \
             the most text chunks the client received in one second; RSS / stream = (the target's process-group RSS, highest of samples \
             every 20 ms while the level ran, minus its RSS just before the level) / streams, against issue 22's \
             target for ferrolite of <= {TARGET_KB_PER_STREAM:.0} KB, at the largest level that passed on the way \
             up (a level run after a larger one finds the target holding what that one took); from start = (that peak minus the target's \
             RSS after the warm-up, before the first level) / streams, the same whether a target keeps the memory \
             a smaller level took (nginx) or gives it back between levels (ferrolite); gap p99 over every stream's gaps. The direct \
             row is the fake alone (what the client and the fake carry here, no hop). Each target is started for \
             the lane (ferrolite fresh per path; nginx as the driver's, with `worker_connections` raised) and \
             stopped after it; the client, the fake ({} worker threads) and the target share this machine's {} \
             cores. The HTTPS rows are nginx and ferrolite passing through from a second fake, the same streams \
             behind TLS (HTTP/1.1; a CA made for the run, which ferrolite trusts through `SSL_CERT_FILE`, nginx \
             through `proxy_ssl_trusted_certificate`); the HTTP/2 row is ferrolite, started as the others, from a \
             third fake that offers HTTP/2 by ALPN (hyper's server: at most 200 streams per connection), which \
             ferrolite's streams take by default, at most 100 per connection (nginx speaks HTTP/1.1 to upstreams).",
            ramp(max).iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            cores(),
            cores(),
        ),
        &[
            "target",
            "max streams, no failure",
            "peak open",
            "most streaming at once, no failure",
            "chunks/s",
            "RSS / stream",
            "from start",
            "<= 10 KB",
            "gap p99",
            "TTFT p99",
            "first failing level",
        ],
        &rows,
    );
    let mut rows = Vec::new();
    for c in results {
        for l in &c.levels {
            rows.push(vec![
                c.target.clone(),
                l.streams.to_string(),
                if l.passed() { "0".into() } else { format!("**{}**", l.failed) },
                l.peak_open.to_string(),
                l.peak_streaming.to_string(),
                l.held.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
                format!("{:.0}", l.chunks_per_sec),
                kb(l.rss_per_stream_kb),
                kb(l.rss_per_stream_from_start_kb),
                format!("{:.1} MB / {:.1} MB", l.idle_rss_kb as f64 / 1024.0, l.peak_rss_kb as f64 / 1024.0),
                ms(l.gap_p50_ms),
                ms(l.gap_p99_ms),
                ms(l.gap_max_ms),
                ms(l.ttft_p99_ms),
                format!("{:.2} / {:.2}", l.cpu_secs, l.client_cpu_secs),
            ]);
        }
    }
    report.table(
        "Stream capacity, every level",
        "Peak open = the most streams the client had open at one time, streaming at once = the most between their \
         first chunk and their end, held = requests ferrolite held while a lane was behind its streams (its \
         `ferrolite_overload_held_total` over the level; `--overload-hold`) (the streams of a level are opened over 1 s \
         and each lasts about 1.3 s). RSS idle / peak of the target's process group; CPU = the target's seconds \
         over the level, and the client's (the driver's own process) beside it.",
        &[
            "target",
            "streams",
            "failed",
            "peak open",
            "streaming at once",
            "held",
            "chunks/s",
            "RSS / stream",
            "from start",
            "RSS idle / peak",
            "gap p50",
            "gap p99",
            "gap max",
            "TTFT p99",
            "CPU s target / client",
        ],
        &rows,
    );
    report.put(
        "stream_capacity",
        json!({
            "settings": {"chunks": CHUNKS, "chunk_bytes": CHUNK_BYTES, "gap_ms": GAP_MS, "max_gap_ms": MAX_GAP_MS,
                "levels": ramp(max), "spread_secs": SPREAD.as_secs_f64(), "quick": quick,
                "target_kb_per_stream": TARGET_KB_PER_STREAM},
            "targets": results,
        }),
    );
}

/// The driver's hook: runs the lane unless skipped and adds it to `report`; with
/// `--only-stream-capacity` it also writes stream-capacity.md / .json and answers true (the
/// driver then stops).
pub fn driver_lane(env: &Env, opts: &Options, report: &mut Report) -> Res<bool> {
    if opts.skip_stream_capacity {
        return Ok(false);
    }
    let load_before = loadavg();
    let results = measure(env, opts)?;
    if !opts.only_stream_capacity {
        write_into(report, &results, opts, env.quick);
        return Ok(false);
    }
    let mut alone = Report::default();
    write_into(&mut alone, &results, opts, env.quick);
    let checkout = Checkout::current();
    let date = cmd_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut md = String::from("# ferrolite stream capacity\n\n");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(md, "- machine: {} cores, {}", cores(), cpu_model());
    let _ = writeln!(md, "- load average before: {load_before}; after: {}", loadavg());
    let _ = writeln!(md, "- commit {checkout}");
    let _ = writeln!(md, "- mode: {}", if env.quick { "quick" } else { "full" });
    md += &alone.md;
    let mut out = serde_json::Map::new();
    out.insert("date".into(), json!(date));
    out.insert("machine".into(), json!({"cores": cores(), "cpu_model": cpu_model()}));
    out.insert("versions".into(), json!({"commit": checkout.commit, "dirty": checkout.dirty}));
    out.extend(alone.json);
    let (md_path, json_path) = write_results(env.out_dir, "stream-capacity", &md, &Value::Object(out))?;
    step(&format!("wrote {md_path} and {json_path}"));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(streams: usize, failed: usize, peak_streaming: usize) -> Level {
        Level { streams, failed, peak_streaming, ..Level::default() }
    }

    /// The ramp went 2,000 (passed), 4,000 (failed), then refined: 3,000 (passed), 3,500 (failed).
    #[test]
    fn a_refined_ramp_reports_its_own_levels() {
        let cap = Capacity {
            target: "t".into(),
            max_streams: Some(3000),
            levels: vec![level(2000, 0, 1990), level(4000, 12, 3900), level(3000, 0, 2600), level(3500, 3, 3400)],
            ..Capacity::default()
        };
        assert_eq!(cap.at_max().map(|l| l.streams), Some(3000));
        assert_eq!(cap.first_failed().map(|l| l.streams), Some(3500), "the smallest failing level");
        // Memory from the largest level passed on the way up: 3,000 ran after 4,000.
        assert_eq!(cap.memory_level().map(|l| l.streams), Some(2000));
        // The most carried at once counts only levels with no failure.
        assert_eq!(cap.most_streaming(), Some(2600));
    }

    #[test]
    fn the_ramp_doubles_up_to_its_cap() {
        assert_eq!(ramp(4000), vec![250, 500, 1000, 2000, 4000]);
        assert_eq!(ramp(3000), vec![250, 500, 1000, 2000, 3000]);
    }
}

//! The soak of issue 7: minutes of mixed traffic at a fixed rate through one ferrolite, checking
//! every answer, while its memory, open file descriptors and per-class latency are sampled.
//!
//! It starts a fast fake upstream, a slow one, and `ferrolite serve` (release) with one app whose
//! model groups cover fast and slow upstreams (JSON and streams), an upstream that refuses
//! connections, a group that fails over from it, and a `mock_response` model; client errors
//! (unknown model, malformed body) are mixed in. Requests go out open loop at `--rate` per second
//! for `--minutes`; every outcome is checked against what its class must answer, and anything else
//! (or no answer) counts as dropped. The verdicts: memory flat, no file-descriptor growth, p99
//! stable, nothing dropped; `benches/results/soak.md` and `soak.json` get the figures, and the exit
//! code is non-zero when a verdict fails.
//!
//! It builds nothing (`benches/soak.sh` builds, then runs this). Every process it starts runs in a
//! process group of its own and is stopped when the soak ends, fails or is interrupted. All traffic
//! goes to 127.0.0.1.

use clap::Parser;
use ferrolite_bench::gateway::{
    chunk_text, deployment, event_content, manifest, start_ferrolite, Launch, UPSTREAM_KEY,
};
use ferrolite_bench::procs::{
    free_port, install_signal_handler, stop_all, tcp_sockets, thread_count, vm_rss_kb, wait_ready, Proc, TcpSocket,
    TCP_CLOSE_WAIT, TCP_ESTABLISHED,
};
use ferrolite_bench::report::{
    cmd_output, cores, cpu_model, loadavg, mb, ms, percentile, verdict, write_results, Checkout, Report,
};
use ferrolite_bench::Res;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Soak ferrolite with mixed traffic at a fixed rate and check that nothing degrades.
#[derive(Debug, Parser, Clone)]
#[command(name = "soak")]
struct Args {
    /// Length of the traffic, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Requests per second, sent open loop (on schedule, whether or not earlier ones answered).
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds between two samples of memory, file descriptors and latency.
    #[arg(long, default_value_t = 15)]
    sample_secs: u64,
    /// Warm-up: memory and descriptors are compared with the first sample at or after it (capped
    /// at a quarter of the run).
    #[arg(long, default_value_t = 60)]
    warmup_secs: u64,
    /// Memory is flat when the resident memory at the end is at most this fraction above the
    /// warm-up's.
    #[arg(long, default_value_t = 0.10)]
    rss_tolerance: f64,
    /// Descriptors do not grow when the count at the end is at most the warm-up's plus this (or
    /// no more than the run already reached before its last quarter: pooled connections follow
    /// the concurrency's peaks) ...
    #[arg(long, default_value_t = 16)]
    fd_slack: usize,
    /// ... and the descriptors that are not established connections (files, pipes, listeners,
    /// half-closed sockets) are at most the warm-up's plus this.
    #[arg(long, default_value_t = 4)]
    fd_other_slack: usize,
    /// p99 is stable when, per class, the last minute's p99 is at most this factor of the first
    /// minute's after the warm-up ...
    #[arg(long, default_value_t = 1.5)]
    p99_factor: f64,
    /// ... or at most this many milliseconds above it, plus what the control's p99 (the fast
    /// upstream called directly) rose between the same windows: scheduling noise on a shared
    /// machine dwarfs a factor of a millisecond-scale p99.
    #[arg(long, default_value_t = 5.0)]
    p99_slack_ms: f64,
    /// Fixed latency of the slow upstream, in milliseconds.
    #[arg(long, default_value_t = 150)]
    slow_latency_ms: u64,
    /// Chunks of the slow upstream's streams.
    #[arg(long, default_value_t = 50)]
    slow_chunks: usize,
    /// Pause between two chunks of the slow upstream's streams, in milliseconds.
    #[arg(long, default_value_t = 5)]
    slow_gap_ms: u64,
    /// Chunks of the fast upstream's streams (sent 1 ms apart, no latency before the first).
    #[arg(long, default_value_t = 20)]
    fast_chunks: usize,
    /// Where `ferrolite` and `fake-upstream` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[command(flatten)]
    harness: ferrolite_bench::Harness,
}

// ---------------------------------------------------------------------------------------------
// The traffic mix

/// What a class of request must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 200, a JSON completion whose content contains this text.
    Json(&'static str),
    /// 200, an SSE stream with every chunk of the upstream's, in order, then `data: [DONE]`.
    Stream,
    /// One of these (status, error code) pairs, with an OpenAI-style error body, within
    /// `ERROR_DEADLINE` ("" accepts any code).
    Error(&'static [(u16, &'static str)]),
}

/// A kind of request in the mix.
struct Class {
    name: &'static str,
    what: &'static str,
    /// Requests of this class in every 100.
    weight: u32,
    model: &'static str,
    stream: bool,
    /// A body that is not JSON.
    malformed: bool,
    /// Sent to the fast upstream itself, not through ferrolite: the control that shows what the
    /// machine's own noise does to latency.
    direct: bool,
    expect: Expect,
}

const FAKE_ANSWER: &str = "This is a fake answer from the benchmark upstream.";
const MOCK_TEXT: &str = "This is the soak's mock answer";
/// An error must come back at least this fast to count as clear and quick.
const ERROR_DEADLINE: Duration = Duration::from_secs(5);
/// A request with no complete answer after this long counts as dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const CLASSES: &[Class] = &[
    Class {
        name: "fast_json",
        what: "fast upstream, chat JSON",
        weight: 26,
        model: "fast",
        stream: false,
        malformed: false,
        direct: false,
        expect: Expect::Json(FAKE_ANSWER),
    },
    Class {
        name: "fast_stream",
        what: "fast upstream, stream",
        weight: 14,
        model: "fast",
        stream: true,
        malformed: false,
        direct: false,
        expect: Expect::Stream,
    },
    Class {
        name: "slow_json",
        what: "slow upstream, chat JSON",
        weight: 12,
        model: "slow",
        stream: false,
        malformed: false,
        direct: false,
        expect: Expect::Json(FAKE_ANSWER),
    },
    Class {
        name: "slow_stream",
        what: "slow upstream, stream",
        weight: 10,
        model: "slow",
        stream: true,
        malformed: false,
        direct: false,
        expect: Expect::Stream,
    },
    Class {
        name: "refused",
        what: "upstream refuses connections: 502, or 429 while it cools down",
        weight: 6,
        model: "refused",
        stream: false,
        malformed: false,
        direct: false,
        expect: Expect::Error(&[(502, "upstream_unreachable"), (429, "cooldown")]),
    },
    Class {
        name: "failover",
        what: "group of a refusing and a fast deployment: 200 by retry or cooldown",
        weight: 6,
        model: "failover",
        stream: false,
        malformed: false,
        direct: false,
        expect: Expect::Json(FAKE_ANSWER),
    },
    Class {
        name: "mock",
        what: "mock_response model",
        weight: 10,
        model: "mock",
        stream: false,
        malformed: false,
        direct: false,
        expect: Expect::Json(MOCK_TEXT),
    },
    Class {
        name: "unknown_model",
        what: "a model the app does not serve: 404",
        weight: 6,
        model: "no-such-model",
        stream: false,
        malformed: false,
        direct: false,
        expect: Expect::Error(&[(404, "model_not_found")]),
    },
    Class {
        name: "malformed",
        what: "truncated JSON body: 400",
        weight: 6,
        model: "fast",
        stream: false,
        malformed: true,
        direct: false,
        expect: Expect::Error(&[(400, "")]),
    },
    Class {
        name: "direct_json",
        what: "control: chat JSON to the fast upstream directly, not through ferrolite",
        weight: 4,
        model: "gpt-4o",
        stream: false,
        malformed: false,
        direct: true,
        expect: Expect::Json(FAKE_ANSWER),
    },
];

/// The litellm settings of the soak's app.
fn litellm_settings() -> Value {
    json!({"num_retries": 1, "timeout": 30, "stream_timeout": 10, "allowed_fails": 3, "cooldown_time": 5})
}

/// The order of classes for one cycle of 100 requests: each class `weight` times, shuffled.
fn cycle(seed: &mut u64) -> Vec<usize> {
    let mut order: Vec<usize> =
        CLASSES.iter().enumerate().flat_map(|(i, c)| std::iter::repeat_n(i, c.weight as usize)).collect();
    for i in (1..order.len()).rev() {
        // xorshift64: the same mix on every run.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        order.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
    order
}

fn request_body(class: &Class) -> String {
    if class.malformed {
        return format!(r#"{{"model":"{}","messages":[{{"role":"user","content":"Hel"#, class.model);
    }
    let mut body = json!({"model": class.model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16});
    if class.stream {
        body["stream"] = json!(true);
    }
    body.to_string()
}

// ---------------------------------------------------------------------------------------------
// One request and its check

/// How one request ended: a short label (status and code) and, if it is not what its class
/// must get, why.
struct Outcome {
    label: String,
    unexpected: Option<String>,
}

fn unexpected(label: String, why: String) -> Outcome {
    Outcome { label, unexpected: Some(why) }
}

async fn send(client: &reqwest::Client, url: &str, token: &str, class: &Class, body: String, chunks: usize) -> Outcome {
    use futures::StreamExt;
    let sent = Instant::now();
    let response =
        match client.post(url).bearer_auth(token).header("content-type", "application/json").body(body).send().await {
            Ok(r) => r,
            Err(e) => return unexpected("no answer".into(), format!("no answer: {e}")),
        };
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    match class.expect {
        Expect::Stream if status == 200 => {
            if !content_type.starts_with("text/event-stream") {
                return unexpected("200".into(), format!("a stream answered with content-type {content_type:?}"));
            }
            let mut body = response.bytes_stream();
            let mut pending: Vec<u8> = Vec::new();
            let mut text = String::new();
            let mut done = false;
            while let Some(piece) = body.next().await {
                let piece = match piece {
                    Ok(p) => p,
                    Err(e) => return unexpected("200 cut".into(), format!("the stream broke after {text:?}: {e}")),
                };
                pending.extend_from_slice(&piece);
                while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                    let event: Vec<u8> = pending.drain(..end + 2).collect();
                    for line in String::from_utf8_lossy(&event).lines() {
                        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
                        if done {
                            return unexpected("200".into(), format!("data after [DONE]: {data}"));
                        }
                        if data == "[DONE]" {
                            done = true;
                        } else if data.contains("\"error\"") {
                            return unexpected(
                                "200 error event".into(),
                                format!("an error event in the stream: {data}"),
                            );
                        } else if let Some(content) = event_content(data) {
                            text += &content;
                        }
                    }
                }
            }
            let expected: String = (0..chunks).map(chunk_text).collect();
            if !done {
                return unexpected("200 no [DONE]".into(), format!("the stream ended without [DONE] after {text:?}"));
            }
            if text != expected {
                return unexpected("200 chunks".into(), format!("the stream's text is {text:?}, not {expected:?}"));
            }
            Outcome { label: "200".into(), unexpected: None }
        }
        Expect::Json(needle) if status == 200 => match response.text().await {
            Err(e) => unexpected("200 cut".into(), format!("the body broke: {e}")),
            Ok(text) => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let content = v.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default();
                if content.contains(needle) {
                    Outcome { label: "200".into(), unexpected: None }
                } else {
                    unexpected("200".into(), format!("the answer lacks {needle:?}: {text}"))
                }
            }
        },
        Expect::Error(allowed) => {
            let text = response.text().await.unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = v.pointer("/error/code").and_then(Value::as_str).unwrap_or_default().to_owned();
            let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or_default();
            let label = if code.is_empty() { status.to_string() } else { format!("{status} {code}") };
            if !allowed.iter().any(|(s, c)| *s == status && (c.is_empty() || *c == code)) {
                return unexpected(label, format!("{status}: {text}"));
            }
            if message.is_empty() {
                return unexpected(label, format!("{status} without an OpenAI-style error: {text}"));
            }
            if sent.elapsed() > ERROR_DEADLINE {
                return unexpected(label, format!("the error took {:.1} s", sent.elapsed().as_secs_f64()));
            }
            Outcome { label, unexpected: None }
        }
        _ => {
            let text = response.text().await.unwrap_or_default();
            let short: String = text.chars().take(300).collect();
            unexpected(status.to_string(), format!("{status}: {short}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the soak records

/// Everything answered so far, and the latencies of the window being sampled.
#[derive(Default)]
struct Tally {
    /// Per class: the latencies (ms, counted from when each request was due) of the open window.
    window: Vec<Vec<f64>>,
    /// Per class: every latency of the run.
    all: Vec<Vec<f64>>,
    /// Per class: outcome label -> count.
    outcomes: Vec<BTreeMap<String, u64>>,
    unexpected: Vec<u64>,
    /// The first few unexpected outcomes, for the report.
    examples: Vec<String>,
}

struct Shared {
    tally: Mutex<Tally>,
    sent: AtomicU64,
    answered: AtomicU64,
    in_flight: AtomicI64,
    /// Most a request went out after it was due, in microseconds (the driver falling behind).
    max_lag_us: AtomicU64,
}

impl Shared {
    fn record(&self, class: usize, latency_ms: f64, outcome: Outcome) {
        let Ok(mut t) = self.tally.lock() else { return };
        t.window[class].push(latency_ms);
        t.all[class].push(latency_ms);
        *t.outcomes[class].entry(outcome.label).or_default() += 1;
        if let Some(why) = outcome.unexpected {
            t.unexpected[class] += 1;
            if t.examples.len() < 20 {
                t.examples.push(format!("{}: {why}", CLASSES[class].name));
            }
        }
    }

    fn unexpected_total(&self) -> u64 {
        self.tally.lock().map(|t| t.unexpected.iter().sum()).unwrap_or(0)
    }
}

/// One sample: ferrolite's process and the window of answers since the previous sample.
#[derive(Debug, Clone)]
struct Sample {
    t_secs: f64,
    rss_kb: u64,
    fds: usize,
    /// Of the descriptors: established connections from clients, established connections to the
    /// upstreams, sockets in close-wait (the peer hung up, ferrolite has not closed), and the rest.
    fds_clients: usize,
    fds_upstreams: usize,
    fds_close_wait: usize,
    fds_other: usize,
    threads: u64,
    in_flight: i64,
    sent: u64,
    answered: u64,
    unexpected: u64,
    /// Per class: the window's latencies.
    window: Vec<Vec<f64>>,
}

impl Sample {
    fn json(&self) -> Value {
        let classes: serde_json::Map<String, Value> = CLASSES
            .iter()
            .zip(&self.window)
            .map(|(c, w)| {
                (
                    c.name.to_owned(),
                    json!({"n": w.len(), "p50_ms": round3(percentile(w, 50.0)), "p99_ms": round3(percentile(w, 99.0))}),
                )
            })
            .collect();
        json!({"t_secs": round3(self.t_secs), "rss_kb": self.rss_kb, "fds": self.fds,
            "fds_clients": self.fds_clients, "fds_upstreams": self.fds_upstreams,
            "fds_close_wait": self.fds_close_wait, "fds_other": self.fds_other, "threads": self.threads,
            "in_flight": self.in_flight, "sent": self.sent, "answered": self.answered,
            "unexpected": self.unexpected, "classes": classes})
    }
}

fn round3(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// What is sampled: ferrolite's process and port, and the upstreams' ports.
struct Watched {
    pid: u32,
    port: u16,
    upstream_ports: Vec<u16>,
}

fn take_sample(shared: &Shared, w: &Watched, started: Instant) -> Sample {
    let window = match shared.tally.lock() {
        Ok(mut t) => t.window.iter_mut().map(std::mem::take).collect(),
        Err(_) => vec![Vec::new(); CLASSES.len()],
    };
    let (sockets, not_sockets) = tcp_sockets(w.pid);
    let established = |s: &&TcpSocket| s.state == TCP_ESTABLISHED;
    let fds_clients = sockets.iter().filter(established).filter(|s| s.local_port == w.port).count();
    let fds_upstreams =
        sockets.iter().filter(established).filter(|s| w.upstream_ports.contains(&s.remote_port)).count();
    let fds_close_wait = sockets.iter().filter(|s| s.state == TCP_CLOSE_WAIT).count();
    Sample {
        t_secs: started.elapsed().as_secs_f64(),
        rss_kb: vm_rss_kb(w.pid),
        fds: sockets.len() + not_sockets,
        fds_clients,
        fds_upstreams,
        fds_close_wait,
        fds_other: (sockets.len() + not_sockets).saturating_sub(fds_clients + fds_upstreams),
        threads: thread_count(w.pid).unwrap_or(0),
        in_flight: shared.in_flight.load(Ordering::Relaxed),
        sent: shared.sent.load(Ordering::Relaxed),
        answered: shared.answered.load(Ordering::Relaxed),
        unexpected: shared.unexpected_total(),
        window,
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handler("soak");
    let result = run(args);
    stop_all();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("soak: a verdict failed (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn step(what: &str) {
    eprintln!("soak: {what}");
}

/// Starts a fake upstream; ready when its /health answers.
fn start_fake(args: &Args, tmp: &Path, name: &str, latency_ms: u64, chunks: usize, gap_ms: u64) -> Res<(Proc, u16)> {
    let port = free_port()?;
    let log = std::fs::File::create(tmp.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let mut proc = Proc::spawn(
        name,
        Command::new(args.bin_dir.join("fake-upstream"))
            .args(["--port", &port.to_string(), "--workers", "1"])
            .args(["--latency-ms", &latency_ms.to_string(), "--chunks", &chunks.to_string()])
            .args(["--gap-ms", &gap_ms.to_string()])
            .stdout(Stdio::null())
            .stderr(log),
        args.harness.pidfile.as_deref(),
    )?;
    let since = proc.started;
    wait_ready(&mut proc, port, "/health", None, since, Duration::from_secs(20))?;
    Ok((proc, port))
}

/// Runs the soak; Ok(false) when a verdict failed.
fn run(args: Args) -> Res<bool> {
    if args.rate == 0 || args.minutes <= 0.0 || args.sample_secs == 0 {
        return Err("--rate, --minutes and --sample-secs must be positive".into());
    }
    for bin in ["ferrolite", "fake-upstream"] {
        if !args.bin_dir.join(bin).exists() {
            return Err(format!(
                "{} is missing: build first (cargo build --release -p ferrolite -p ferrolite-bench)",
                args.bin_dir.join(bin).display()
            ));
        }
    }
    let tmp = std::env::temp_dir().join(format!("ferrolite-soak-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let result = soak(&args, &tmp);
    if matches!(result, Ok(true)) && !args.harness.keep_tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        eprintln!("soak: configs and logs are in {}", tmp.display());
    }
    result
}

fn soak(args: &Args, tmp: &Path) -> Res<bool> {
    let load_before = loadavg();
    step("starting the fast and the slow fake upstreams");
    let (fast, fast_port) = start_fake(args, tmp, "fake-fast", 0, args.fast_chunks, 1)?;
    let (slow, slow_port) =
        start_fake(args, tmp, "fake-slow", args.slow_latency_ms, args.slow_chunks, args.slow_gap_ms)?;
    // A port nothing listens on: every connection to it is refused.
    let refused_port = free_port()?;

    step("starting ferrolite");
    let models = vec![
        deployment("fast", fast_port),
        deployment("slow", slow_port),
        deployment("refused", refused_port),
        deployment("failover", refused_port),
        deployment("failover", fast_port),
        json!({"model_name": "mock", "litellm_params": {"model": "openai/gpt-4o", "mock_response": MOCK_TEXT}}),
    ];
    let mut app = manifest("soak", models);
    app["config"]["litellm_settings"] = litellm_settings();
    let app_path = tmp.join("soak-app.json");
    std::fs::write(&app_path, app.to_string()).map_err(|e| e.to_string())?;
    let launch = Launch { bin_dir: &args.bin_dir, scratch: tmp, pidfile: args.harness.pidfile.as_deref() };
    let mut gw = start_ferrolite(&launch, "soak", &[app_path], "soak", &["--allow-private-upstreams"])?;
    let watched = Watched { pid: gw.proc.pid(), port: gw.port, upstream_ports: vec![fast_port, slow_port] };
    let url = format!("http://127.0.0.1:{}/default/apps/soak/v1/chat/completions", gw.port);
    let direct_url = format!("http://127.0.0.1:{fast_port}/v1/chat/completions");
    // Per class: where it goes and with which key.
    let targets: Vec<(String, String)> = CLASSES
        .iter()
        .map(|c| if c.direct { (direct_url.clone(), UPSTREAM_KEY.to_owned()) } else { (url.clone(), gw.token.clone()) })
        .collect();

    let total_secs = args.minutes * 60.0;
    let warmup_secs = (args.warmup_secs as f64).min(total_secs / 4.0);
    let total = (total_secs * args.rate as f64).round() as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally {
            window: vec![Vec::new(); CLASSES.len()],
            all: vec![Vec::new(); CLASSES.len()],
            outcomes: vec![BTreeMap::new(); CLASSES.len()],
            unexpected: vec![0; CLASSES.len()],
            examples: Vec::new(),
        }),
        sent: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        in_flight: AtomicI64::new(0),
        max_lag_us: AtomicU64::new(0),
    });
    let bodies: Vec<String> = CLASSES.iter().map(request_body).collect();
    let chunks_of = |c: &Class| if c.model == "slow" { args.slow_chunks } else { args.fast_chunks };

    // Each class once before the clock starts: everything answers as it must.
    step("checking each class once");
    rt.block_on(async {
        for (i, class) in CLASSES.iter().enumerate() {
            let (url, token) = &targets[i];
            let outcome = send(&client, url, token, class, bodies[i].clone(), chunks_of(class)).await;
            if let Some(why) = outcome.unexpected {
                return Err(format!("{} answered what it must not before the soak: {why}", class.name));
            }
        }
        Ok(())
    })?;

    step(&format!(
        "{total} requests at {} req/s over {:.1} min (warm-up {warmup_secs:.0} s, a sample every {} s)",
        args.rate, args.minutes, args.sample_secs
    ));
    eprintln!(
        "soak: {:>6} {:>9} {:>5} {:>7} {:>9} {:>9} {:>10}  p99 per class (ms): {}",
        "t",
        "RSS",
        "fds(not conn.)",
        "threads",
        "in-flight",
        "answered",
        "unexpected",
        CLASSES.iter().map(|c| c.name).collect::<Vec<_>>().join(" / ")
    );
    let started = Instant::now();
    let samples: Vec<Sample> = rt.block_on(async {
        let driver = {
            let shared = shared.clone();
            let client = client.clone();
            let targets = targets.clone();
            let period = Duration::from_secs_f64(1.0 / args.rate as f64);
            let chunks: Vec<usize> = CLASSES.iter().map(chunks_of).collect();
            tokio::spawn(async move {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64;
                let mut order = Vec::new();
                for n in 0..total {
                    if order.is_empty() {
                        order = cycle(&mut seed);
                    }
                    let class = order.pop().unwrap_or(0);
                    let due = started + period.mul_f64(n as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let lag = Instant::now().saturating_duration_since(due).as_micros() as u64;
                    shared.max_lag_us.fetch_max(lag, Ordering::Relaxed);
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    shared.in_flight.fetch_add(1, Ordering::Relaxed);
                    let (url, token) = targets[class].clone();
                    let (shared, client, body) = (shared.clone(), client.clone(), bodies[class].clone());
                    let chunks = chunks[class];
                    tokio::spawn(async move {
                        let outcome = send(&client, &url, &token, &CLASSES[class], body, chunks).await;
                        let latency_ms = due.elapsed().as_secs_f64() * 1000.0;
                        shared.record(class, latency_ms, outcome);
                        shared.answered.fetch_add(1, Ordering::Relaxed);
                        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            })
        };
        let mut samples = Vec::new();
        let mut k = 1u64;
        loop {
            let at = Duration::from_secs(k * args.sample_secs).as_secs_f64().min(total_secs);
            tokio::time::sleep_until((started + Duration::from_secs_f64(at)).into()).await;
            let sample = take_sample(&shared, &watched, started);
            print_sample(&sample);
            samples.push(sample);
            if at >= total_secs {
                break;
            }
            k += 1;
        }
        let _ = driver.await;
        samples
    });

    // The schedule is over: wait for the answers still on their way.
    step("waiting for the requests still in flight");
    let drain_deadline = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
    while shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let drain_secs = (started.elapsed().as_secs_f64() - total_secs).max(0.0);
    let never_answered = shared.in_flight.load(Ordering::Relaxed).max(0) as u64;
    let after_drain = take_sample(&shared, &watched, started);
    let exited = gw.proc.exited();
    drop(rt);

    // --- verdicts
    let warm_index = samples.iter().position(|s| s.t_secs + 0.5 >= warmup_secs).unwrap_or(0);
    let warm = &samples[warm_index];
    let last = samples.last().unwrap_or(warm);
    let post: Vec<&Sample> = samples[warm_index + 1..].iter().collect();
    let span = ((60 / args.sample_secs).max(1) as usize).min((post.len() / 2).max(1));
    let first_windows: Vec<&Sample> = post.iter().take(span).copied().collect();
    let last_windows: Vec<&Sample> = post.iter().rev().take(span).rev().copied().collect();
    let joined = |windows: &[&Sample], class: usize| -> Vec<f64> {
        windows.iter().flat_map(|s| s.window[class].iter().copied()).collect()
    };

    let rss_growth = last.rss_kb as f64 / warm.rss_kb.max(1) as f64 - 1.0;
    let memory_ok = rss_growth <= args.rss_tolerance;
    let earlier_peak =
        samples.iter().filter(|s| s.t_secs <= total_secs * 0.75).map(|s| s.fds).max().unwrap_or(warm.fds);
    let fd_ok = (last.fds <= warm.fds + args.fd_slack || last.fds <= earlier_peak)
        && last.fds_other <= warm.fds_other + args.fd_other_slack;
    let tally = shared.tally.lock().map_err(|_| "the tally is poisoned".to_owned())?;
    let unexpected_total: u64 = tally.unexpected.iter().sum();
    let sent = shared.sent.load(Ordering::Relaxed);
    let answered = shared.answered.load(Ordering::Relaxed);
    let dropped = unexpected_total + never_answered;
    let nothing_dropped = dropped == 0 && answered == sent && sent == total && exited.is_none();

    // What the control's p99 did between the same windows: the machine's own noise, as a rise in
    // milliseconds and as a factor (neither below zero or 1).
    let control = CLASSES.iter().position(|c| c.direct).unwrap_or(0);
    let (control_first, control_last) =
        (percentile(&joined(&first_windows, control), 99.0), percentile(&joined(&last_windows, control), 99.0));
    let finite_or = |v: f64, or: f64| if v.is_finite() { v } else { or };
    let noise_ms = finite_or(control_last - control_first, 0.0).max(0.0);
    let noise_factor = finite_or(control_last / control_first, 1.0).max(1.0);
    let mut class_rows = Vec::new();
    let mut class_json = Vec::new();
    let mut p99_ok = true;
    let mut worst_ratio = 0.0f64;
    for (i, class) in CLASSES.iter().enumerate() {
        let first = percentile(&joined(&first_windows, i), 99.0);
        let end = percentile(&joined(&last_windows, i), 99.0);
        let ratio = end / first;
        let stable = !(first.is_finite() && end.is_finite())
            || end <= first * args.p99_factor * noise_factor
            || end - first <= args.p99_slack_ms + noise_ms;
        // The control is the machine's noise, not ferrolite: shown, not judged.
        if !class.direct {
            if first.is_finite() && end.is_finite() {
                worst_ratio = worst_ratio.max(ratio);
            }
            p99_ok &= stable;
        }
        let outcomes: Vec<String> = tally.outcomes[i].iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let n = tally.all[i].len();
        class_rows.push(vec![
            format!("`{}`", class.name),
            class.what.to_owned(),
            format!("{}%", class.weight),
            n.to_string(),
            outcomes.join(", "),
            tally.unexpected[i].to_string(),
            ms(percentile(&tally.all[i], 50.0)),
            ms(percentile(&tally.all[i], 99.0)),
            ms(first),
            ms(end),
            if ratio.is_finite() { format!("{ratio:.2}x") } else { "–".into() },
            if class.direct { format!("control ({})", verdict(stable)) } else { verdict(stable).to_owned() },
        ]);
        class_json.push(json!({
            "class": class.name, "what": class.what, "weight_pct": class.weight, "model": class.model,
            "stream": class.stream, "answered": n, "outcomes": tally.outcomes[i], "unexpected": tally.unexpected[i],
            "p50_ms": round3(percentile(&tally.all[i], 50.0)), "p99_ms": round3(percentile(&tally.all[i], 99.0)),
            "p999_ms": round3(percentile(&tally.all[i], 99.9)),
            "first_p99_ms": round3(first), "last_p99_ms": round3(end), "p99_ratio": round3(ratio), "p99_stable": stable,
        }));
    }
    let examples = tally.examples.clone();
    drop(tally);

    let max_rss = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let max_in_flight = samples.iter().map(|s| s.in_flight).max().unwrap_or(0);
    let slope = rss_slope_kb_per_min(&samples[warm_index..]);
    let max_lag_ms = shared.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0;

    let verdicts = vec![
        (
            "memory flat",
            format!("RSS at the end <= {:.0}% above RSS after the warm-up", args.rss_tolerance * 100.0),
            format!(
                "{} after {:.0} s -> {} at the end ({:+.1}%); peak {}, trend {:+.0} KB/min",
                mb(warm.rss_kb),
                warm.t_secs,
                mb(last.rss_kb),
                rss_growth * 100.0,
                mb(max_rss),
                slope
            ),
            memory_ok,
        ),
        (
            "no fd growth",
            format!(
                "open fds at the end <= after the warm-up + {} (or <= the peak before the last quarter, \
                 {earlier_peak}: pooled connections follow the concurrency's peaks); fds other than established \
                 connections <= after the warm-up + {}",
                args.fd_slack, args.fd_other_slack
            ),
            format!(
                "{} -> {} (peak {}; {} after the drain); not connections {} -> {} (close-wait {} -> {})",
                warm.fds,
                last.fds,
                max_fds,
                after_drain.fds,
                warm.fds_other,
                last.fds_other,
                warm.fds_close_wait,
                last.fds_close_wait
            ),
            fd_ok,
        ),
        (
            "p99 stable",
            format!(
                "per class, p99 of the last {span} window(s) <= {}x the first {span} after the warm-up, or at most \
                 {} ms above it; either widened by what the control (the fast upstream called directly) did \
                 between the same windows: times its last / first ratio when above 1, plus its rise in ms",
                args.p99_factor, args.p99_slack_ms
            ),
            format!(
                "worst ratio {worst_ratio:.2}x; the control: {} -> {} ({noise_factor:.2}x, +{noise_ms:.1} ms)",
                ms(control_first),
                ms(control_last)
            ),
            p99_ok,
        ),
        (
            "nothing dropped",
            "0 unexpected outcomes, every request answered, ferrolite alive".to_owned(),
            format!(
                "{sent} sent, {answered} answered, {unexpected_total} unexpected, {never_answered} never answered{}",
                exited.as_ref().map(|e| format!("; {e}")).unwrap_or_default()
            ),
            nothing_dropped,
        ),
    ];
    let all_ok = verdicts.iter().all(|v| v.3);

    // --- report
    let mut report = Report::default();
    report.table(
        "Verdicts",
        "",
        &["check", "criterion", "measured", ""],
        &verdicts
            .iter()
            .map(|v| vec![v.0.to_owned(), v.1.clone(), v.2.clone(), verdict(v.3).to_owned()])
            .collect::<Vec<_>>(),
    );
    report.table(
        "Per class",
        "Latency counts from when a request was due (open loop: a late start is not hidden), to the last \
         byte of its answer. p99 first / last: over the first and the last windows after the warm-up.",
        &[
            "class",
            "what",
            "share",
            "answered",
            "outcomes",
            "unexpected",
            "p50",
            "p99",
            "p99 first",
            "p99 last",
            "last / first",
            "p99",
        ],
        &class_rows,
    );
    let shown = ["fast_json", "fast_stream", "slow_json", "slow_stream", "refused", "mock", "direct_json"];
    let mut headers =
        vec!["t", "RSS", "fds", "clients / upstreams / other", "threads", "in flight", "req/s answered", "unexpected"];
    let p99_headers: Vec<String> = shown.iter().map(|n| format!("p99 {n}")).collect();
    headers.extend(p99_headers.iter().map(String::as_str));
    let mut rows = Vec::new();
    let mut previous = (0.0, 0u64);
    for (k, s) in samples.iter().enumerate() {
        let rate = (s.answered - previous.1) as f64 / (s.t_secs - previous.0).max(0.001);
        previous = (s.t_secs, s.answered);
        let mut row = vec![
            format!("{:.0} s{}", s.t_secs, if k == warm_index { " (warm-up)" } else { "" }),
            mb(s.rss_kb),
            s.fds.to_string(),
            format!("{} / {} / {}", s.fds_clients, s.fds_upstreams, s.fds_other),
            s.threads.to_string(),
            s.in_flight.to_string(),
            format!("{rate:.0}"),
            s.unexpected.to_string(),
        ];
        for name in shown {
            let i = CLASSES.iter().position(|c| c.name == name).unwrap_or(0);
            row.push(ms(percentile(&s.window[i], 99.0)));
        }
        rows.push(row);
    }
    let mut drained = vec![
        format!("+{drain_secs:.1} s (drained)"),
        mb(after_drain.rss_kb),
        after_drain.fds.to_string(),
        format!("{} / {} / {}", after_drain.fds_clients, after_drain.fds_upstreams, after_drain.fds_other),
        after_drain.threads.to_string(),
        after_drain.in_flight.to_string(),
        "–".into(),
        after_drain.unexpected.to_string(),
    ];
    drained.extend(shown.iter().map(|_| "–".to_owned()));
    rows.push(drained);
    report.table(
        "Samples",
        "ferrolite's VmRSS, its open file descriptors (`/proc/PID/fd`) and threads, the client's requests in \
         flight, and the p99 of the requests answered in each window.",
        &headers,
        &rows,
    );
    if !examples.is_empty() {
        let _ = writeln!(report.md, "\n## Unexpected outcomes (first {})\n", examples.len());
        for e in &examples {
            let _ = writeln!(report.md, "- {}", e.replace('\n', " "));
        }
    }

    let cores = cores();
    let cpu_model = cpu_model();
    let date = cmd_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let checkout = Checkout::current();
    let ferrolite_version = cmd_output(&args.bin_dir.join("ferrolite").display().to_string(), &["--version"]);
    let load_after = loadavg();
    let mix: Vec<String> = CLASSES.iter().map(|c| format!("{} {}%", c.name, c.weight)).collect();
    let mut md = String::new();
    let _ = writeln!(md, "# ferrolite soak results\n");
    let _ = writeln!(
        md,
        "{} ({} checks failed).\n",
        if all_ok { "**Every verdict met**" } else { "**A verdict failed**" },
        verdicts.iter().filter(|v| !v.3).count()
    );
    let _ = writeln!(md, "- date: {date}");
    let _ =
        writeln!(md, "- machine: {cores} cores, {cpu_model}; the client, both fake upstreams and ferrolite share them");
    let _ = writeln!(md, "- load average (1, 5, 15 min) before: {load_before}; after: {load_after}");
    let _ = writeln!(md, "- version: {ferrolite_version} (commit {checkout})");
    let _ = writeln!(
        md,
        "- traffic: {} req/s open loop for {:.1} min ({sent} requests), warm-up {warmup_secs:.0} s, a sample every {} s; \
         the driver started a request at most {max_lag_ms:.1} ms late; most in flight at a sample: {max_in_flight}",
        args.rate, args.minutes, args.sample_secs
    );
    let _ = writeln!(md, "- mix per 100 requests: {}", mix.join(", "));
    let _ = writeln!(
        md,
        "- upstreams: fast (no latency, streams of {} chunks 1 ms apart), slow ({} ms latency, streams of {} chunks {} ms \
         apart), refused (a port nothing listens on); app settings `{}`",
        args.fast_chunks,
        args.slow_latency_ms,
        args.slow_chunks,
        args.slow_gap_ms,
        litellm_settings()
    );
    let _ = writeln!(
        md,
        "- reproduce: `benches/soak.sh{}`",
        if (args.minutes - 10.0).abs() > f64::EPSILON || args.rate != 200 {
            format!(" --minutes {} --rate {}", args.minutes, args.rate)
        } else {
            String::new()
        }
    );
    md += &report.md;

    let out = json!({
        "date": date,
        "machine": {"cores": cores, "cpu_model": cpu_model,
            "shared": "the client, both fake upstreams and ferrolite share the cores"},
        "loadavg": {"before": load_before, "after": load_after},
        "versions": {"ferrolite": ferrolite_version, "commit": checkout.commit, "dirty": checkout.dirty},
        "parameters": {
            "rate": args.rate, "minutes": args.minutes, "sample_secs": args.sample_secs, "warmup_secs": warmup_secs,
            "rss_tolerance": args.rss_tolerance, "fd_slack": args.fd_slack, "fd_other_slack": args.fd_other_slack, "p99_factor": args.p99_factor,
            "p99_slack_ms": args.p99_slack_ms, "p99_windows": span, "p99_control_rise_ms": round3(noise_ms), "p99_control_factor": round3(noise_factor),
            "request_timeout_secs": REQUEST_TIMEOUT.as_secs(), "error_deadline_secs": ERROR_DEADLINE.as_secs(),
            "fast_upstream": {"latency_ms": 0, "chunks": args.fast_chunks, "gap_ms": 1},
            "slow_upstream": {"latency_ms": args.slow_latency_ms, "chunks": args.slow_chunks, "gap_ms": args.slow_gap_ms},
            "litellm_settings": litellm_settings(),
            "mix_pct": CLASSES.iter().map(|c| (c.name.to_owned(), json!(c.weight))).collect::<serde_json::Map<_, _>>(),
        },
        "verdicts": verdicts.iter().map(|v| json!({"check": v.0, "criterion": v.1, "measured": v.2, "pass": v.3})).collect::<Vec<_>>(),
        "pass": all_ok,
        "totals": {"sent": sent, "answered": answered, "unexpected": unexpected_total, "never_answered": never_answered,
            "ferrolite_exited": exited, "max_lag_ms": max_lag_ms, "max_in_flight": max_in_flight,
            "rss_warmup_kb": warm.rss_kb, "rss_end_kb": last.rss_kb, "rss_peak_kb": max_rss, "rss_growth": round3(rss_growth),
            "rss_trend_kb_per_min": round3(slope), "fds_warmup": warm.fds, "fds_end": last.fds, "fds_peak": max_fds,
            "fds_after_drain": after_drain.fds, "fds_other_warmup": warm.fds_other, "fds_other_end": last.fds_other, "rss_after_drain_kb": after_drain.rss_kb},
        "classes": class_json,
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        "unexpected_examples": examples,
    });
    let (md_path, json_path) = write_results(&args.harness.out_dir, "soak", &md, &out)?;

    eprintln!();
    for v in &verdicts {
        eprintln!("soak: {:<16} {:<8} {}", v.0, if v.3 { "met" } else { "MISSED" }, v.2);
    }
    for e in examples.iter().take(5) {
        eprintln!("soak: unexpected: {e}");
    }
    eprintln!("soak: wrote {md_path} and {json_path}");
    drop(fast);
    drop(slow);
    gw.proc.stop();
    Ok(all_ok)
}

fn print_sample(s: &Sample) {
    let p99: Vec<String> = s.window.iter().map(|w| format!("{:.1}", percentile(w, 99.0))).collect();
    eprintln!(
        "soak: {:>5.0}s {:>9} {:>5} {:>7} {:>9} {:>9} {:>10}  {}",
        s.t_secs,
        mb(s.rss_kb),
        format!("{}({})", s.fds, s.fds_other),
        s.threads,
        s.in_flight,
        s.answered,
        s.unexpected,
        p99.join(" / ")
    );
}

/// Least-squares slope of RSS over time, in KB per minute.
fn rss_slope_kb_per_min(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.t_secs).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kb as f64).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.t_secs - mean_t) * (s.rss_kb as f64 - mean_r)).sum();
    let var: f64 = samples.iter().map(|s| (s.t_secs - mean_t).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

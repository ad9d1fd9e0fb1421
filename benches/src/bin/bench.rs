//! The benchmark driver of issue 6: one run on one machine measures a fake upstream directly, through
//! nginx (a plain `proxy_pass` hop, the physical limit of one proxy hop here), through ferrolite,
//! through litellm's proxy and through Portkey's open-source gateway, and writes
//! `benches/results/latest.md` and `latest.json`.
//!
//! It builds nothing: `benches/run.sh` builds the release binaries and installs the load tools
//! (`oha`, and `wrk` for the plain HTTP cross-check), nginx, litellm and Portkey's gateway, then
//! runs this with its arguments. Every process it starts runs in a process group of its own and is
//! stopped when the run ends, fails or is interrupted. All traffic goes to 127.0.0.1.

use clap::Parser;
use ferrolite_bench::gateway::{
    chunk_text, deployment, event_content, manifest, nginx_conf, portkey_route, start_ferrolite, start_litellm,
    start_nginx, start_portkey, Ferrolite, Launch, PortkeyLaunch, PORTKEY_SCRIPT, UPSTREAM_KEY,
};
use ferrolite_bench::load::{Call, Load};
use ferrolite_bench::procs::{
    clock_ticks_per_sec, free_port, group_cpu_ticks, group_pids, group_rss_kb, install_signal_handler, run_to_end,
    stop_all, vm_rss_kb, wait_ready, Bystanders, Finished, Proc,
};
use ferrolite_bench::real_headers::{PROVIDER_HEADERS, SDK_HEADERS};
use ferrolite_bench::report::{
    cmd_output, cores, cpu_model, loadavg, mb, median, ms, opt_f, percentile, rps, thp_mode, verdict, write_results,
    Checkout, Report,
};
use ferrolite_bench::wrk::Wrk;
use ferrolite_bench::Res;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Measure ferrolite beside a direct hop, nginx, litellm and Portkey's gateway on this machine.
#[derive(Debug, Parser, Clone)]
#[command(name = "bench")]
struct Args {
    /// A short run: 3 s per measurement, a 20 s soak, fewer rate points, fewer streams.
    #[arg(long)]
    quick: bool,
    /// Length of each load measurement (default 10, or 3 with --quick).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Length of the memory soak on ferrolite (default 300, or 20 with --quick).
    #[arg(long)]
    soak_secs: Option<u64>,
    /// Do not install or measure litellm (the results say so).
    #[arg(long)]
    skip_litellm: bool,
    /// Do not install or measure Portkey's open-source gateway (the results say so).
    #[arg(long)]
    skip_portkey: bool,
    /// Do not measure routing with many deployments and many apps.
    #[arg(long)]
    skip_routing: bool,
    /// In the routing lane, stop at 1,000 deployments and 1,000 apps (issue 22's scale is
    /// 100,000 deployments in one group and 10,000 running apps).
    #[arg(long)]
    skip_scale: bool,
    /// Do not measure the HTTPS upstream lane (ferrolite and nginx to a fake behind TLS).
    #[arg(long)]
    skip_https: bool,
    /// Connections of the throughput measurement.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The fixed open-loop rates, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "200,1000,3000")]
    rates: Vec<u64>,
    /// Content chunks the fake sends in a stream.
    #[arg(long, default_value_t = 200)]
    stream_chunks: usize,
    /// Pause between two streamed chunks at the fake, in milliseconds.
    #[arg(long, default_value_t = 1)]
    stream_gap_ms: u64,
    /// Streams per target in the streaming measurement (default 20, or 8 with --quick).
    #[arg(long)]
    streams: Option<usize>,
    /// Fixed latency of the fake upstream, in milliseconds.
    #[arg(long, default_value_t = 0)]
    upstream_latency_ms: u64,
    /// Worker threads of the fake upstream.
    #[arg(long, default_value_t = 1)]
    fake_workers: usize,
    /// Where `ferrolite` and `fake-upstream` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The `ferrolite` in --bin-dir is the profile-guided build of `scripts/build-pgo.sh`
    /// (`benches/run.sh --pgo` builds it and passes this on): the results say so.
    #[arg(long)]
    pgo: bool,
    /// The virtualenv that holds litellm.
    #[arg(long, default_value = "benches/.venv")]
    venv: PathBuf,
    /// The folder where `npm ci` installed Portkey's gateway (`@portkey-ai/gateway`).
    #[arg(long, default_value = "benches/portkey")]
    portkey_dir: PathBuf,
    /// The node that runs Portkey's gateway.
    #[arg(long, default_value = "node")]
    node: String,
    #[arg(long, default_value = "oha")]
    oha: String,
    /// wrk (4.1, Debian's), the second load tool of the plain HTTP cross-check.
    #[arg(long, default_value = "wrk")]
    wrk: String,
    /// Do not run the plain HTTP cross-check (nginx with one worker per core and with one worker,
    /// and ferrolite, each under oha and wrk).
    #[arg(long)]
    skip_cross_check: bool,
    /// Run only the fake, the two nginx, ferrolite and the plain HTTP cross-check, and write it to
    /// cross-check.md / .json in --out-dir (latest.md is left alone).
    #[arg(long, conflicts_with_all = ["skip_cross_check", "only_stream_capacity"])]
    only_cross_check: bool,
    #[arg(long, default_value = "nginx")]
    nginx: String,
    #[command(flatten)]
    stream_capacity: ferrolite_bench::stream_capacity::Options,
    #[command(flatten)]
    harness: ferrolite_bench::Harness,
}

/// `ferrolite --version` of the binary measured, and how it was built when not by the plain
/// `cargo build --release`.
fn ferrolite_version(args: &Args) -> String {
    let version = cmd_output(&args.bin_dir.join("ferrolite").display().to_string(), &["--version"]);
    if args.pgo {
        format!("{version} (profile-guided build, scripts/build-pgo.sh)")
    } else {
        version
    }
}

// ---------------------------------------------------------------------------------------------
// Memory of the targets

/// Samples the resident memory of the watched groups every 100 ms and keeps each one's peak.
#[derive(Clone, Default)]
struct Sampler {
    watched: Arc<Mutex<BTreeMap<String, (u32, u64)>>>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    /// Samples every 100 ms. Finding a group's members takes a walk over all of /proc (hundreds
    /// of reads); that is done every 2 s, and in between only the known members' VmRSS is read,
    /// so the sampling itself stays out of the latencies it runs beside.
    fn start(&self) {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut members: BTreeMap<String, Vec<u32>> = BTreeMap::new();
            let mut tick = 0u64;
            while !me.stop.load(Ordering::Relaxed) {
                let leaders: Vec<(String, u32)> = match me.watched.lock() {
                    Ok(w) => w.iter().map(|(k, (pid, _))| (k.clone(), *pid)).collect(),
                    Err(_) => return,
                };
                for (name, pid) in leaders {
                    if tick % 20 == 0 || !members.contains_key(&name) {
                        members.insert(name.clone(), group_pids(pid));
                    }
                    let rss: u64 = members.get(&name).map_or(0, |m| m.iter().map(|p| vm_rss_kb(*p)).sum());
                    if let Ok(mut w) = me.watched.lock() {
                        if let Some(entry) = w.get_mut(&name) {
                            entry.1 = entry.1.max(rss);
                        }
                    }
                }
                tick += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }

    fn watch(&self, name: &str, pid: u32) {
        if let Ok(mut w) = self.watched.lock() {
            w.insert(name.to_owned(), (pid, group_rss_kb(pid)));
        }
    }

    fn peak_kb(&self, name: &str) -> Option<u64> {
        self.watched.lock().ok()?.get(name).map(|e| e.1)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

fn post_json(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    body: &Value,
) -> Res<Value> {
    rt.block_on(async {
        let response = client
            .post(url)
            .bearer_auth(auth)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("POST {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST {url}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("POST {url}: not JSON ({e}): {text}"))
    })
}

// ---------------------------------------------------------------------------------------------
// The load tool

struct Oha {
    bin: String,
    ticks: f64,
    pidfile: Option<PathBuf>,
    /// Paused while another target is measured.
    bystanders: Bystanders,
}

fn pct(v: &Value, key: &str) -> f64 {
    v.get("latencyPercentiles").and_then(|p| p.get(key)).and_then(Value::as_f64).unwrap_or(f64::NAN) * 1000.0
}

impl Oha {
    fn run(&self, call: &Call, connections: usize, secs: u64, rate: Option<u64>) -> Res<Load> {
        let _paused = self.bystanders.pause_all_but(call.leader);
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--no-tui", "--output-format", "json", "-z", &format!("{secs}s"), "-c", &connections.to_string()]);
        cmd.args(["-m", "POST", "-H", "content-type: application/json", "-d", &call.body, "-t", "30s", "-w"]);
        if let Some(token) = &call.auth {
            cmd.args(["-H", &format!("authorization: Bearer {token}")]);
        }
        for (name, value) in &call.extra_headers {
            cmd.args(["-H", &format!("{name}: {value}")]);
        }
        if let Some(rate) = rate {
            cmd.args(["-q", &rate.to_string(), "--latency-correction"]);
        }
        cmd.arg(&call.url);
        let cpu_before = call.leader.map(group_cpu_ticks);
        let started = Instant::now();
        let Finished { status, stdout, stderr } = run_to_end("oha", &mut cmd, self.pidfile.as_deref())?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = call.leader.map(group_cpu_ticks);
        if !status.success() {
            return Err(format!("oha failed ({status}): {stderr}"));
        }
        let v: Value =
            serde_json::from_str(&stdout).map_err(|e| format!("oha's output is not JSON ({e}): {stdout}"))?;
        let codes = v.get("statusCodeDistribution").and_then(Value::as_object).cloned().unwrap_or_default();
        let ok: u64 = codes.iter().filter(|(k, _)| k.starts_with('2')).filter_map(|(_, n)| n.as_u64()).sum();
        let answered: u64 = codes.values().filter_map(Value::as_u64).sum();
        let failed: u64 = v
            .get("errorDistribution")
            .and_then(Value::as_object)
            .map(|e| e.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let requests = answered + failed;
        let errors = requests - ok;
        let summary = v.get("summary").cloned().unwrap_or(Value::Null);
        let total_secs = summary.get("total").and_then(Value::as_f64).unwrap_or(elapsed);
        let cpu_secs = match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / self.ticks),
            _ => None,
        };
        Ok(Load {
            connections,
            rate,
            secs: total_secs,
            requests,
            ok,
            errors,
            error_rate: if requests == 0 { 1.0 } else { errors as f64 / requests as f64 },
            rps: if total_secs > 0.0 { ok as f64 / total_secs } else { 0.0 },
            p50_ms: pct(&v, "p50"),
            p99_ms: pct(&v, "p99"),
            p999_ms: pct(&v, "p99.9"),
            mean_ms: summary.get("average").and_then(Value::as_f64).unwrap_or(f64::NAN) * 1000.0,
            cpu_secs,
            cpu_secs_per_1k: cpu_secs.filter(|_| ok > 0).map(|c| c / ok as f64 * 1000.0),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The streaming client (oha cannot see time to first token or chunk counts)

#[derive(Debug, Clone, Default, Serialize)]
struct StreamRun {
    status: u16,
    ttft_ms: f64,
    total_ms: f64,
    content_events: usize,
    /// Separate network reads that carried content (chunks that arrived apart).
    reads_with_content: usize,
    text_ok: bool,
}

async fn stream_once(client: &reqwest::Client, call: &Call, chunks: usize) -> Res<StreamRun> {
    use futures::StreamExt;
    let started = Instant::now();
    let mut request = client.post(&call.url).header("content-type", "application/json").body(call.body.clone());
    if let Some(token) = &call.auth {
        request = request.bearer_auth(token).header("x-api-key", token);
    }
    for (name, value) in &call.extra_headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| format!("stream {}: {e}", call.url))?;
    let status = response.status().as_u16();
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut run = StreamRun { status, ttft_ms: f64::NAN, ..StreamRun::default() };
    let mut text = String::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| format!("stream {}: {e}", call.url))?;
        buffer.push_str(&String::from_utf8_lossy(&piece));
        let mut content_in_read = false;
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data:") else { continue };
                if let Some(content) = event_content(data.trim()) {
                    if run.content_events == 0 {
                        run.ttft_ms = started.elapsed().as_secs_f64() * 1000.0;
                    }
                    run.content_events += 1;
                    content_in_read = true;
                    text += &content;
                }
            }
        }
        if content_in_read {
            run.reads_with_content += 1;
        }
    }
    run.total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let expected: String = (0..chunks).map(chunk_text).collect();
    run.text_ok = text == expected;
    Ok(run)
}

#[derive(Debug, Clone, Default, Serialize)]
struct StreamStats {
    streams: usize,
    failed: usize,
    ttft_p50_ms: f64,
    ttft_p99_ms: f64,
    total_p50_ms: f64,
    chunks_in: usize,
    /// Content events the client received, per stream (the smallest seen).
    chunks_out_min: usize,
    chunks_out_max: usize,
    /// Upstream chunks merged into another event, worst stream.
    coalesced: usize,
    /// The fewest separate network reads that carried text in one stream (chunks sent 1 ms apart
    /// arrive in about as many reads unless something on the way buffers them).
    reads_with_text_min: usize,
    text_intact: bool,
}

fn stream_stats(rt: &tokio::runtime::Runtime, call: &Call, streams: usize, chunks: usize) -> Res<StreamStats> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(4).build().map_err(|e| e.to_string())?;
    let runs: Vec<StreamRun> = rt.block_on(async {
        // One stream first to open the connection, not counted.
        let _ = stream_once(&client, call, chunks).await;
        let mut runs = Vec::new();
        for _ in 0..streams {
            runs.push(stream_once(&client, call, chunks).await?);
        }
        Ok::<_, String>(runs)
    })?;
    let good: Vec<&StreamRun> = runs.iter().filter(|r| r.status == 200).collect();
    let ttft: Vec<f64> = good.iter().map(|r| r.ttft_ms).collect();
    let total: Vec<f64> = good.iter().map(|r| r.total_ms).collect();
    let out_min = good.iter().map(|r| r.content_events).min().unwrap_or(0);
    Ok(StreamStats {
        streams,
        failed: runs.len() - good.len(),
        ttft_p50_ms: median(&ttft),
        ttft_p99_ms: percentile(&ttft, 99.0),
        total_p50_ms: median(&total),
        chunks_in: chunks,
        chunks_out_min: out_min,
        chunks_out_max: good.iter().map(|r| r.content_events).max().unwrap_or(0),
        coalesced: chunks.saturating_sub(out_min),
        reads_with_text_min: good.iter().map(|r| r.reads_with_content).min().unwrap_or(0),
        text_intact: !good.is_empty() && good.iter().all(|r| r.text_ok),
    })
}

// ---------------------------------------------------------------------------------------------
// Configs of the targets

const CHAT_BODY: &str = r#"{"model":"MODEL","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16}"#;
const STREAM_BODY: &str =
    r#"{"model":"MODEL","messages":[{"role":"user","content":"Hello!"}],"max_tokens":256,"stream":true}"#;
const ANTHROPIC_BODY: &str =
    r#"{"model":"claude-3-5-sonnet-20241022","max_tokens":16,"messages":[{"role":"user","content":"Hello!"}]}"#;
const ANTHROPIC_STREAM_BODY: &str = r#"{"model":"claude-3-5-sonnet-20241022","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello!"}]}"#;
const LITELLM_KEY: &str = "sk-bench-master";
const MOCK_TEXT: &str = "This is a mock benchmark response";
fn portkey_launch(args: &Args) -> PortkeyLaunch<'_> {
    PortkeyLaunch { node: &args.node, dir: &args.portkey_dir }
}

fn body(template: &str, model: &str) -> String {
    template.replace("MODEL", model)
}

fn model_list(fake: u16) -> Vec<Value> {
    vec![
        deployment("gpt", fake),
        // The same upstream answering with OpenAI's headers (the fake's routes under /real).
        json!({"model_name": REAL_MODEL, "litellm_params": {
            "model": "openai/gpt-4o", "api_base": format!("http://127.0.0.1:{fake}/real/v1"),
            "api_key": UPSTREAM_KEY}}),
        json!({"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-3-5-sonnet-20241022", "api_base": format!("http://127.0.0.1:{fake}"),
            "api_key": UPSTREAM_KEY}}),
        json!({"model_name": "mock", "litellm_params": {"model": "openai/gpt-4o", "mock_response": MOCK_TEXT}}),
    ]
}

/// litellm's config.yaml: the same model list (JSON is valid YAML).
fn litellm_config(fake: u16) -> String {
    let models = model_list(fake);
    let mut out = String::from("model_list:\n");
    for m in models {
        let _ = writeln!(out, "  - {m}");
    }
    let _ = writeln!(out, "general_settings:\n  master_key: {LITELLM_KEY}");
    out
}

/// Portkey's gateway, routed per request by headers: `gpt` goes to the fake as OpenAI (passed
/// through); `claude` goes to the fake as Anthropic (translated from the OpenAI request).
fn portkey_target(port: u16, leader: u32, fake: u16) -> Target {
    let route = |provider: &str| portkey_route(provider, fake);
    Target {
        name: "portkey",
        base: format!("http://127.0.0.1:{port}/v1"),
        auth: Some(UPSTREAM_KEY.into()),
        leader,
        model_headers: vec![("gpt", route("openai")), ("claude", route("anthropic"))],
    }
}

// ---------------------------------------------------------------------------------------------
// The governed lane

/// Limits high enough never to refuse the load, so the figure is the cost of checking them.
fn governed_key_settings() -> Value {
    json!({"name": "bench", "max_budget": 1.0e9, "budget_duration": "30d", "rpm": 1_000_000_000u64, "max_parallel": 100_000})
}

/// Creates a key on the ferrolite at `port` with `token`.
fn bench_key(ctx: &Ctx, port: u16, token: &str) -> Res<String> {
    let url = format!("http://127.0.0.1:{port}/default/services/server-apps/create_key");
    let made = post_json(&ctx.rt, &ctx.client, &url, token, &governed_key_settings())?;
    made["key"].as_str().map(str::to_owned).ok_or_else(|| format!("create_key answered no key: {made}"))
}

/// Pass-through req/s with a token and with a governed key, on the main instance (its token
/// figure is the throughput step's) and on an instance with Redis (both measured here).
fn governed(ctx: &mut Ctx, report: &mut Report, gw: &Ferrolite, app: &Path, token_load: &Load) -> Res<Value> {
    let conns = ctx.args.connections;
    let base = |port: u16| format!("http://127.0.0.1:{port}/default/apps/bench/v1");
    let target = |port: u16, auth: &str, leader: u32| Target {
        name: "ferrolite",
        base: base(port),
        auth: Some(auth.to_owned()),
        leader,
        model_headers: Vec::new(),
    };
    step(&format!("governed lane at {conns} connections: one instance"));
    let key = bench_key(ctx, gw.port, &gw.token)?;
    let keyed = target(gw.port, &key, gw.proc.pid()).call(CHAT_BODY, "gpt");
    ctx.check("governed chat", &keyed, "fake answer")?;
    let alone = ctx.load(&keyed, conns, None)?;

    step("starting redis-server and a ferrolite that shares state through it");
    let redis_bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("redis-server is required for the governed lane (apt-get install redis-server)")?;
    let redis_port = free_port()?;
    let pidfile = ctx.args.harness.pidfile.clone();
    let mut redis = Proc::spawn(
        "redis-server",
        Command::new(redis_bin)
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        pidfile.as_deref(),
    )?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let shared = start_ferrolite(&ctx.launch(), "redis", &[app.to_path_buf()], "bench", &["--redis-url", &redis_url]);
    let shared = match shared {
        Ok(shared) => shared,
        Err(e) => {
            redis.stop();
            return Err(e);
        }
    };
    // Only this instance is measured while it runs, and it stops before anything else is: it is
    // no bystander. Nor is Redis, which it calls: pausing Redis while the instance is measured
    // (as bystanders are) froze every lease renewal and made the lane measure Redis's absence.
    step(&format!("governed lane at {conns} connections: with Redis"));
    let shared_token =
        ctx.load(&target(shared.port, &shared.token, shared.proc.pid()).call(CHAT_BODY, "gpt"), conns, None)?;
    let shared_key = bench_key(ctx, shared.port, &shared.token)?;
    let shared_keyed =
        ctx.load(&target(shared.port, &shared_key, shared.proc.pid()).call(CHAT_BODY, "gpt"), conns, None)?;
    let mut shared = shared;
    shared.proc.stop();
    redis.stop();

    let row = |lane: &str, token: &Load, key: &Load| {
        vec![
            lane.to_owned(),
            rps(token.rps),
            rps(key.rps),
            format!("{:.2}x", key.rps / token.rps),
            opt_f(token.cpu_secs_per_1k, 3),
            opt_f(key.cpu_secs_per_1k, 3),
        ]
    };
    report.table(
        &format!("The governed lane at {conns} connections"),
        "The pass-through chat with a workspace token and with an API key that has a budget (every request \
         reserves its worst case and settles it), an rpm limit and a parallel limit, none of them reached. \
         With Redis the budget is held through this instance's leases, renewed every 200 ms: no Redis call per \
         request. Target: the key at least 0.9x the token.",
        &["instance", "token req/s", "key req/s", "key vs token", "token CPU s / 1k", "key CPU s / 1k"],
        &[row("one", token_load, &alone), row("with Redis", &shared_token, &shared_keyed)],
    );
    let value = json!({
        "one": {"token": token_load, "key": alone},
        "redis": {"token": shared_token, "key": shared_keyed},
    });
    report.put("governed", value.clone());
    Ok(value)
}

/// A closed-loop load's row: target, req/s, over nginx's, errors, p50, p99, CPU per 1,000.
fn load_row(name: &str, l: &Load, nginx_rps: f64) -> Vec<String> {
    vec![
        name.to_string(),
        rps(l.rps),
        format!("{:.2}x", l.rps / nginx_rps),
        format!("{:.2}%", l.error_rate * 100.0),
        ms(l.p50_ms),
        ms(l.p99_ms),
        opt_f(l.cpu_secs_per_1k, 3),
    ]
}

/// The pass-through with an agent's long conversation (`long_conversation::body`, 110 KB) at
/// the throughput lane's connections: the fake alone, nginx and ferrolite. The other gateways
/// are left out: the lane compares the hop's cost per byte with the plain proxy's.
fn long_conversation(ctx: &mut Ctx, report: &mut Report, targets: &[Target]) -> Res<()> {
    let conns = ctx.args.connections;
    let template = ferrolite_bench::long_conversation::body();
    let measured: Vec<&Target> =
        targets.iter().filter(|t| matches!(t.name, "direct" | "nginx" | "ferrolite")).collect();
    let mut loads: BTreeMap<&str, Load> = BTreeMap::new();
    for t in &measured {
        let call = t.call(&template, "gpt");
        ctx.check(&format!("{} long conversation", t.name), &call, "fake answer")?;
        step(&format!("long conversation at {conns} connections: {}", t.name));
        loads.insert(t.name, ctx.load(&call, conns, None)?);
    }
    let nginx = loads.get("nginx").map_or(f64::NAN, |l| l.rps);
    let mb = template.len() as f64 / 1e6;
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|t| {
            let l = &loads[t.name];
            let mut row = load_row(t.name, l, nginx);
            row.insert(3, format!("{:.0}", l.rps * mb));
            row
        })
        .collect();
    report.table(
        &format!("A long conversation at {conns} connections"),
        &format!(
            "The pass-through chat with an agent's turn late in a session: {} bytes of 181 messages (tool calls \
             and their results) and 20 tools, answered with the short JSON answer. MB/s counts request bodies. \
             nginx keeps bodies up to 1 MiB in memory, as ferrolite does. The direct row's CPU is the fake's, \
             which parses each body too.",
            template.len()
        ),
        &["target", "req/s", "vs nginx", "MB/s", "errors", "p50", "p99", "CPU s / 1k req"],
        &rows,
    );
    report.put("long_conversation", json!({"body_bytes": template.len(), "loads": loads}));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Targets

/// One thing the load is sent to: the fake directly, nginx, ferrolite, litellm or Portkey.
#[derive(Clone)]
struct Target {
    name: &'static str,
    /// The OpenAI base, ending in /v1 (or the service's /v1).
    base: String,
    auth: Option<String>,
    leader: u32,
    /// Headers sent with a model's requests, by model name (Portkey's provider and upstream);
    /// none for a model not listed, and none at all for the other targets.
    model_headers: Vec<(&'static str, Vec<(String, String)>)>,
}

impl Target {
    fn call(&self, template: &str, model: &str) -> Call {
        Call {
            url: format!("{}/chat/completions", self.base),
            body: body(template, model),
            auth: self.auth.clone(),
            leader: Some(self.leader),
            extra_headers: self
                .model_headers
                .iter()
                .find(|(m, _)| *m == model)
                .map(|(_, h)| h.clone())
                .unwrap_or_default(),
        }
    }
}

struct Ctx {
    args: Args,
    tmp: PathBuf,
    secs: u64,
    oha: Oha,
    wrk: Wrk,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    fake_port: u16,
}

impl Ctx {
    fn launch(&self) -> Launch<'_> {
        Launch { bin_dir: &self.args.bin_dir, scratch: &self.tmp, pidfile: self.args.harness.pidfile.as_deref() }
    }

    fn load(&self, call: &Call, connections: usize, rate: Option<u64>) -> Res<Load> {
        self.oha.run(call, connections, self.secs, rate)
    }

    fn check(&self, what: &str, call: &Call, expect: &str) -> Res<()> {
        let mut request =
            self.client.post(&call.url).header("content-type", "application/json").body(call.body.clone());
        if let Some(token) = &call.auth {
            request = request.bearer_auth(token);
        }
        for (name, value) in &call.extra_headers {
            request = request.header(name, value);
        }
        let text = self.rt.block_on(async {
            let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| format!("{what}: {e}"))?;
            if status.as_u16() != 200 {
                return Err(format!("{what}: {status}: {text}"));
            }
            Ok(text)
        })?;
        if !text.contains(expect) {
            return Err(format!("{what}: the answer lacks {expect:?}: {text}"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handler("bench");
    let result = run(args);
    stop_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(what: &str) {
    eprintln!("bench: {what}");
}

fn run(mut args: Args) -> Res<()> {
    if args.only_cross_check {
        // Just the fake, the two nginx and ferrolite.
        args.skip_litellm = true;
        args.skip_portkey = true;
        args.stream_capacity.skip_stream_capacity = true;
    }
    let secs = args.duration_secs.unwrap_or(if args.quick { 3 } else { 10 });
    let soak_secs = args.soak_secs.unwrap_or(if args.quick { 20 } else { 300 });
    let streams = args.streams.unwrap_or(if args.quick { 8 } else { 20 });
    let tmp = std::env::temp_dir().join(format!("ferrolite-bench-{}", std::process::id()));
    let bystanders = Bystanders::default();
    let wrk = Wrk {
        bin: args.wrk.clone(),
        ticks: clock_ticks_per_sec(),
        pidfile: args.harness.pidfile.clone(),
        bystanders: bystanders.clone(),
        scratch: tmp.clone(),
    };
    if !args.skip_cross_check {
        // Now, not after the lanes before it: a missing wrk fails the run at once.
        wrk.version().map_err(|e| format!("the plain HTTP cross-check: {e}; --skip-cross-check leaves it out"))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    for bin in ["ferrolite", "fake-upstream"] {
        if !args.bin_dir.join(bin).exists() {
            return Err(format!(
                "{} is missing: build first (cargo build --release -p ferrolite -p ferrolite-bench)",
                args.bin_dir.join(bin).display()
            ));
        }
    }
    let litellm_bin = args.venv.join("bin/litellm");
    if !args.skip_litellm && !litellm_bin.exists() {
        return Err(format!(
            "{} is missing: benches/run.sh installs it (or pass --skip-litellm)",
            litellm_bin.display()
        ));
    }
    let portkey_script = args.portkey_dir.join(PORTKEY_SCRIPT);
    if !args.skip_portkey && !portkey_script.exists() {
        return Err(format!(
            "{} is missing: benches/run.sh installs it with npm ci (or pass --skip-portkey)",
            portkey_script.display()
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    // The client's connection tasks run only inside `rt.block_on`, so between two calls nothing
    // notices a server closing an idle connection (ferrolite and nginx do, after 30 s and 75 s):
    // a pooled connection idle that long is not reused, or the next call fails on it.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    let started_at = Instant::now();
    let mut ctx = Ctx {
        oha: Oha {
            bin: args.oha.clone(),
            ticks: clock_ticks_per_sec(),
            pidfile: args.harness.pidfile.clone(),
            bystanders,
        },
        wrk,
        args: args.clone(),
        tmp: tmp.clone(),
        secs,
        rt,
        client,
        fake_port: 0,
    };
    let result = measure(&mut ctx, soak_secs, streams);
    if result.is_ok() && !args.harness.keep_tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        eprintln!("bench: configs and logs are in {}", tmp.display());
    }
    eprintln!("bench: finished in {:.0} s", started_at.elapsed().as_secs_f64());
    result
}

fn measure(ctx: &mut Ctx, soak_secs: u64, streams: usize) -> Res<()> {
    let load_before = loadavg();
    let args = ctx.args.clone();
    let secs = ctx.secs;
    let pidfile = args.harness.pidfile.as_deref();
    let mut report = Report::default();
    let sampler = Sampler::default();
    sampler.start();

    // --- 0. stream capacity (issue 22, src/stream_capacity.rs): its own fake, nginx, ferrolite
    // and litellm, started and stopped before the rest; `--only-stream-capacity` ends the run here.
    let lane = ferrolite_bench::stream_capacity::Env {
        launch: ctx.launch(),
        nginx: &args.nginx,
        litellm: (!args.skip_litellm).then(|| args.venv.join("bin/litellm")),
        portkey: (!args.skip_portkey).then(|| portkey_launch(&args)),
        quick: args.quick,
        out_dir: &args.harness.out_dir,
    };
    if ferrolite_bench::stream_capacity::driver_lane(&lane, &args.stream_capacity, &mut report)? {
        return Ok(());
    }

    // --- the fake upstream
    step("starting the fake upstream");
    let fake_port = free_port()?;
    ctx.fake_port = fake_port;
    let fake_log = std::fs::File::create(ctx.tmp.join("fake.log")).map_err(|e| e.to_string())?;
    let mut fake = Proc::spawn(
        "fake-upstream",
        Command::new(args.bin_dir.join("fake-upstream"))
            .args(["--port", &fake_port.to_string(), "--workers", &args.fake_workers.to_string()])
            .args(["--latency-ms", &args.upstream_latency_ms.to_string()])
            .args(["--chunks", &args.stream_chunks.to_string(), "--gap-ms", &args.stream_gap_ms.to_string()])
            .stdout(Stdio::null())
            .stderr(fake_log),
        pidfile,
    )?;
    let since = fake.started;
    wait_ready(&mut fake, fake_port, "/health", None, since, Duration::from_secs(20))?;
    sampler.watch("fake", fake.pid());

    // --- nginx
    step("starting nginx");
    let nginx_port = free_port()?;
    // One worker per core, as Debian's own config runs it and as ferrolite runs one connection
    // lane per core: the best a plain hop does here.
    let conf = nginx_conf(&ctx.tmp, nginx_port, fake_port, None, 4096, "http", "");
    let (nginx, nginx_ready) = start_nginx("nginx", &args.nginx, &ctx.tmp, &conf, nginx_port, pidfile)?;
    sampler.watch("nginx", nginx.pid());
    ctx.oha.bystanders.add(nginx.pid());
    // The same with one worker, for the plain HTTP cross-check: a directory of its own (pid and
    // temp files), a port of its own.
    let mut nginx_one: Option<(Proc, u16)> = None;
    if !args.skip_cross_check {
        step("starting nginx with one worker");
        let dir = ctx.tmp.join("nginx-one-worker");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        let conf = nginx_conf(&dir, port, fake_port, Some(1), 4096, "http", "");
        let (proc, _) = start_nginx("nginx (one worker)", &args.nginx, &dir, &conf, port, pidfile)?;
        sampler.watch("nginx (one worker)", proc.pid());
        ctx.oha.bystanders.add(proc.pid());
        nginx_one = Some((proc, port));
    }

    // --- ferrolite
    step("starting ferrolite");
    let app = ctx.tmp.join("bench-app.json");
    std::fs::write(&app, manifest("bench", model_list(fake_port)).to_string()).map_err(|e| e.to_string())?;
    let gw = start_ferrolite(&ctx.launch(), "main", std::slice::from_ref(&app), "bench", &[])?;
    sampler.watch("ferrolite", gw.proc.pid());
    ctx.oha.bystanders.add(gw.proc.pid());

    // --- litellm
    let mut litellm: Option<(Proc, u16, Duration)> = None;
    if !args.skip_litellm {
        step("starting litellm (its first start takes a while)");
        let port = free_port()?;
        let config = ctx.tmp.join("litellm-config.yaml");
        std::fs::write(&config, litellm_config(fake_port)).map_err(|e| e.to_string())?;
        let (proc, ready) = start_litellm(
            "litellm",
            &args.venv.join("bin/litellm"),
            &config,
            port,
            &ctx.tmp.join("litellm.log"),
            pidfile,
        )?;
        sampler.watch("litellm", proc.pid());
        ctx.oha.bystanders.add(proc.pid());
        litellm = Some((proc, port, ready));
    }

    // --- Portkey's open-source gateway (node), routed per request by headers (`portkey_target`)
    let mut portkey: Option<(Proc, u16, Duration)> = None;
    if !args.skip_portkey {
        step("starting Portkey's gateway");
        let port = free_port()?;
        let (proc, ready) =
            start_portkey("portkey", portkey_launch(&args), port, &ctx.tmp.join("portkey.log"), pidfile)?;
        sampler.watch("portkey", proc.pid());
        ctx.oha.bystanders.add(proc.pid());
        portkey = Some((proc, port, ready));
    }

    let direct = Target {
        name: "direct",
        base: format!("http://127.0.0.1:{fake_port}/v1"),
        auth: Some(UPSTREAM_KEY.into()),
        leader: fake.pid(),
        model_headers: Vec::new(),
    };
    let mut targets = vec![
        direct.clone(),
        Target {
            name: "nginx",
            base: format!("http://127.0.0.1:{nginx_port}/v1"),
            auth: None,
            leader: nginx.pid(),
            model_headers: Vec::new(),
        },
        Target {
            name: "ferrolite",
            base: format!("http://127.0.0.1:{}/default/apps/bench/v1", gw.port),
            auth: Some(gw.token.clone()),
            leader: gw.proc.pid(),
            model_headers: Vec::new(),
        },
    ];
    if let Some((proc, port, _)) = &litellm {
        targets.push(Target {
            name: "litellm",
            base: format!("http://127.0.0.1:{port}/v1"),
            auth: Some(LITELLM_KEY.into()),
            leader: proc.pid(),
            model_headers: Vec::new(),
        });
    }
    if let Some((proc, port, _)) = &portkey {
        targets.push(portkey_target(*port, proc.pid(), fake_port));
    }
    // The gateways that translate (`claude` to the Anthropic fake); all but Portkey also answer
    // `mock` without an upstream (Portkey has no mock_response, so it is not in that table).
    let gateways: Vec<&Target> =
        targets.iter().filter(|t| matches!(t.name, "ferrolite" | "litellm" | "portkey")).collect();

    // --- idle memory, before any load
    std::thread::sleep(Duration::from_secs(2));
    let idle: BTreeMap<&str, u64> =
        targets.iter().map(|t| (if t.name == "direct" { "fake" } else { t.name }, group_rss_kb(t.leader))).collect();

    // --- does every path answer?
    step("checking every path once");
    for t in &targets {
        ctx.check(&format!("{} chat", t.name), &t.call(CHAT_BODY, "gpt"), "fake answer")?;
    }
    for t in &gateways {
        ctx.check(&format!("{} claude", t.name), &t.call(CHAT_BODY, "claude"), "fake answer")?;
        if t.name != "portkey" {
            ctx.check(&format!("{} mock", t.name), &t.call(CHAT_BODY, "mock"), "mock benchmark")?;
        }
    }
    let anthropic_direct = Call {
        url: format!("http://127.0.0.1:{fake_port}/v1/messages"),
        body: ANTHROPIC_BODY.into(),
        auth: None,
        leader: Some(fake.pid()),
        extra_headers: Vec::new(),
    };
    ctx.check("direct messages", &anthropic_direct, "fake answer")?;

    // Warm-up, not reported: connections and pools open, code paged in.
    step("warming up");
    for t in &targets {
        ctx.secs = 1;
        let warm = ctx.load(&t.call(CHAT_BODY, "gpt"), 8, None);
        ctx.secs = secs;
        warm?;
    }

    // The plain HTTP cross-check's targets: nginx both ways, and ferrolite.
    let cross_targets: Vec<Target> = match &nginx_one {
        Some((proc, port)) => {
            let mut per_core = targets.iter().find(|t| t.name == "nginx").cloned().ok_or("no nginx target")?;
            per_core.name = NGINX_PER_CORE;
            let one = Target {
                name: NGINX_ONE_WORKER,
                base: format!("http://127.0.0.1:{port}/v1"),
                auth: None,
                leader: proc.pid(),
                model_headers: Vec::new(),
            };
            let fer = targets.iter().find(|t| t.name == "ferrolite").cloned().ok_or("no ferrolite target")?;
            vec![per_core, one, fer]
        }
        None => Vec::new(),
    };
    if args.only_cross_check {
        cross_check(ctx, &mut report, &cross_targets, Shape::Plain)?;
        cross_check(ctx, &mut report, &cross_targets, Shape::RealHeaders)?;
        stop_targets([gw.proc].into_iter().chain(nginx_one.map(|n| n.0)).chain([nginx, fake]), &sampler);
        return write_cross_check_alone(ctx, report, &load_before);
    }

    // --- 1. throughput at N connections
    let conns = args.connections;
    let mut throughput: BTreeMap<&str, Load> = BTreeMap::new();
    for t in &targets {
        step(&format!("throughput at {conns} connections: {}", t.name));
        throughput.insert(t.name, ctx.load(&t.call(CHAT_BODY, "gpt"), conns, None)?);
    }
    let direct_rps = throughput["direct"].rps;
    let nginx_rps = throughput["nginx"].rps;
    let rows: Vec<Vec<String>> = targets.iter().map(|t| load_row(t.name, &throughput[t.name], nginx_rps)).collect();
    report.table(
        &format!("Throughput at {conns} connections (chat, JSON)"),
        &format!(
            "Closed loop, {secs} s, oha with {conns} connections. `vs nginx` is req/s over nginx's. CPU is the \
             target's own (its whole process group), seconds per 1,000 requests. The direct row's CPU is the fake's."
        ),
        &["target", "req/s", "vs nginx", "errors", "p50", "p99", "CPU s / 1k req"],
        &rows,
    );
    report.put("throughput", json!(throughput));

    // --- 1a. plain HTTP cross-check: nginx with one worker per core and with one worker, and
    // ferrolite, each under oha and under wrk (issue 22).
    if !args.skip_cross_check {
        cross_check(ctx, &mut report, &cross_targets, Shape::Plain)?;
        cross_check(ctx, &mut report, &cross_targets, Shape::RealHeaders)?;
    }

    // --- 1b. the governed lane: the same traffic with an API key that has a budget (so every
    // request reserves and settles), an rpm limit and a parallel limit; alone and over Redis.
    let governed = governed(ctx, &mut report, &gw, &app, &throughput["ferrolite"])?;

    // --- 1c. an agent's long conversation: the same hop with a 110 KB body.
    long_conversation(ctx, &mut report, &targets)?;

    // --- 2. one connection
    let mut single: BTreeMap<&str, Load> = BTreeMap::new();
    for t in &targets {
        step(&format!("latency at one connection: {}", t.name));
        single.insert(t.name, ctx.load(&t.call(CHAT_BODY, "gpt"), 1, None)?);
    }
    let d1 = single["direct"].clone();
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            let l = &single[t.name];
            vec![
                t.name.to_string(),
                rps(l.rps),
                ms(l.p50_ms),
                ms(l.p99_ms),
                ms(l.p999_ms),
                if t.name == "direct" { "–".into() } else { ms(l.p50_ms - d1.p50_ms) },
                if t.name == "direct" { "–".into() } else { ms(l.p99_ms - d1.p99_ms) },
            ]
        })
        .collect();
    report.table(
        "Latency at one connection (chat, JSON)",
        &format!("Closed loop, one connection, {secs} s. Added = target minus direct, same percentile."),
        &["target", "req/s", "p50", "p99", "p99.9", "added p50", "added p99"],
        &rows,
    );
    report.put("one_connection", json!(single));

    // --- 3. fixed open-loop rates
    let open_conns = 64;
    let mut fixed: Vec<Value> = Vec::new();
    let mut rows = Vec::new();
    let mut p99_at: BTreeMap<(u64, &str), f64> = BTreeMap::new();
    for &rate in &args.rates {
        for t in &targets {
            let cap = throughput[t.name].rps;
            if rate as f64 > cap * 1.05 {
                rows.push(vec![
                    format!("{rate}"),
                    t.name.to_string(),
                    format!("not run: over what it sustains ({} req/s at {conns} connections)", rps(cap)),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                fixed.push(json!({"rate": rate, "target": t.name, "skipped": "over capacity", "capacity_rps": cap}));
                continue;
            }
            step(&format!("open loop at {rate} req/s: {}", t.name));
            let l = ctx.load(&t.call(CHAT_BODY, "gpt"), open_conns, Some(rate))?;
            p99_at.insert((rate, t.name), l.p99_ms);
            let added = match p99_at.get(&(rate, "direct")) {
                Some(d) if t.name != "direct" => ms(l.p99_ms - d),
                _ => "–".into(),
            };
            rows.push(vec![
                format!("{rate}"),
                t.name.to_string(),
                rps(l.rps),
                format!("{:.2}%", l.error_rate * 100.0),
                ms(l.p50_ms),
                ms(l.p99_ms),
                ms(l.p999_ms),
                added,
            ]);
            fixed.push(json!({"rate": rate, "target": t.name, "load": l}));
        }
    }
    report.table(
        "Latency at fixed rates (open loop, latency correction)",
        &format!(
            "oha `-q RATE --latency-correction`, {open_conns} connections, {secs} s: latency counts from when each \
             request was due, so queueing shows. A rate above what a target passed at {conns} connections is not run."
        ),
        &["rate", "target", "achieved req/s", "errors", "p50", "p99", "p99.9", "added p99"],
        &rows,
    );
    report.put("fixed_rates", Value::Array(fixed));

    // --- 4. the highest rate sustained with <1% errors and p99 < 50 ms
    let fractions: &[f64] = if args.quick {
        &[0.9, 0.6, 0.35, 0.15, 0.05]
    } else {
        &[1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    };
    let mut sustained: BTreeMap<&str, Value> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut max_rate: BTreeMap<&str, f64> = BTreeMap::new();
    for t in &targets {
        let cap = throughput[t.name].rps;
        let mut tried = Vec::new();
        let mut found: Option<(u64, Load)> = None;
        for f in fractions {
            let rate = ((cap * f).round() as u64).max(1);
            step(&format!("searching the sustained rate of {}: {rate} req/s", t.name));
            let l = ctx.load(&t.call(CHAT_BODY, "gpt"), open_conns, Some(rate))?;
            let pass = l.error_rate < 0.01 && l.p99_ms < 50.0 && l.rps >= rate as f64 * 0.95;
            tried.push(json!({"rate": rate, "pass": pass, "load": l}));
            if pass {
                found = Some((rate, l));
                break;
            }
        }
        match &found {
            Some((rate, l)) => {
                max_rate.insert(t.name, *rate as f64);
                rows.push(vec![
                    t.name.to_string(),
                    format!("{rate}"),
                    ms(l.p50_ms),
                    ms(l.p99_ms),
                    format!("{}", tried.len()),
                ])
            }
            None => rows.push(vec![
                t.name.to_string(),
                "none of the rates tried".into(),
                "".into(),
                "".into(),
                format!("{}", tried.len()),
            ]),
        }
        sustained.insert(t.name, json!({"rate": found.as_ref().map(|f| f.0), "tried": tried}));
    }
    report.table(
        "Highest rate sustained (errors < 1%, p99 < 50 ms)",
        &format!(
            "Open loop with latency correction, {secs} s per step, from {} down to {} of the req/s each passed at \
             {conns} connections; the first rate that passes (and is reached within 5%) is shown.",
            fractions[0],
            fractions[fractions.len() - 1]
        ),
        &["target", "req/s", "p50", "p99", "steps"],
        &rows,
    );
    report.put("sustained", json!(sustained));

    // --- 5. streams
    let chunks = args.stream_chunks;
    let mut stream_results: Vec<(String, StreamStats, Option<f64>)> = Vec::new();
    let anthropic_stream = Call {
        url: anthropic_direct.url.clone(),
        body: ANTHROPIC_STREAM_BODY.into(),
        auth: None,
        leader: None,
        extra_headers: Vec::new(),
    };
    // Like every load, each run of streams has the other targets paused.
    let streams_of = |call: &Call| {
        let _paused = ctx.oha.bystanders.pause_all_but(call.leader);
        stream_stats(&ctx.rt, call, streams, chunks)
    };
    step("streams: direct");
    let direct_stream = streams_of(&direct.call(STREAM_BODY, "gpt"))?;
    step("streams: direct Anthropic");
    let direct_anthropic_stream = streams_of(&anthropic_stream)?;
    stream_results.push(("direct (OpenAI)".into(), direct_stream.clone(), None));
    stream_results.push(("direct (Anthropic)".into(), direct_anthropic_stream.clone(), None));
    for t in targets.iter().filter(|t| t.name != "direct") {
        step(&format!("streams: {}", t.name));
        let s = streams_of(&t.call(STREAM_BODY, "gpt"))?;
        let added = s.ttft_p50_ms - direct_stream.ttft_p50_ms;
        stream_results.push((format!("{} (gpt, pass-through)", t.name), s, Some(added)));
        if t.name != "nginx" {
            step(&format!("streams: {} translated", t.name));
            let s = streams_of(&t.call(STREAM_BODY, "claude"))?;
            let added = s.ttft_p50_ms - direct_anthropic_stream.ttft_p50_ms;
            stream_results.push((format!("{} (claude, OpenAI -> Anthropic)", t.name), s, Some(added)));
        }
    }
    let rows: Vec<Vec<String>> = stream_results
        .iter()
        .map(|(name, s, added)| {
            vec![
                name.clone(),
                ms(s.ttft_p50_ms),
                ms(s.ttft_p99_ms),
                added.map(ms).unwrap_or_else(|| "–".into()),
                format!("{} / {}", s.chunks_out_min, s.chunks_in),
                format!("{}", s.coalesced),
                format!("{}", s.reads_with_text_min),
                if s.text_intact { "yes".into() } else { "**no**".into() },
                ms(s.total_p50_ms),
                format!("{}", s.failed),
            ]
        })
        .collect();
    report.table(
        &format!("Streams of {chunks} chunks"),
        &format!(
            "{streams} streams one after another per row (after one not counted); the fake sends a chunk every \
             {} ms. Time to first token = until the first event carrying text. Chunks out / in = the fewest \
             text-carrying events any stream delivered / the chunks the fake sent; coalesced = chunks merged away; \
             reads with text = the fewest separate socket reads that carried text (bursts show as fewer). \
             Added TTFT is against the direct stream of the same wire format.",
            args.stream_gap_ms
        ),
        &[
            "path",
            "TTFT p50",
            "TTFT p99",
            "added TTFT p50",
            "chunks out / in",
            "coalesced",
            "reads with text",
            "text intact",
            "whole stream p50",
            "failed",
        ],
        &rows,
    );
    report.put(
        "streams",
        json!(stream_results
            .iter()
            .map(|(n, s, a)| json!({"path": n, "stats": s, "added_ttft_p50_ms": a}))
            .collect::<Vec<_>>()),
    );

    // --- 6. the translation path beside pass-through
    step("translation: direct Anthropic");
    let direct_anthropic_32 = ctx.load(&anthropic_direct, conns, None)?;
    let direct_anthropic_1 = ctx.load(&anthropic_direct, 1, None)?;
    let mut translation = Vec::new();
    let mut rows = Vec::new();
    rows.push(vec![
        "direct (OpenAI)".into(),
        rps(direct_rps),
        ms(d1.p50_ms),
        "–".into(),
        opt_f(throughput["direct"].cpu_secs_per_1k, 3),
    ]);
    rows.push(vec![
        "direct (Anthropic)".into(),
        rps(direct_anthropic_32.rps),
        ms(direct_anthropic_1.p50_ms),
        "–".into(),
        opt_f(direct_anthropic_32.cpu_secs_per_1k, 3),
    ]);
    let mut translation_ratio: Option<(f64, f64)> = None;
    for t in &gateways {
        step(&format!("translation: {}", t.name));
        let pass32 = &throughput[t.name];
        let pass1 = &single[t.name];
        let tr32 = ctx.load(&t.call(CHAT_BODY, "claude"), conns, None)?;
        let tr1 = ctx.load(&t.call(CHAT_BODY, "claude"), 1, None)?;
        let pass_added = pass1.p50_ms - d1.p50_ms;
        let tr_added = tr1.p50_ms - direct_anthropic_1.p50_ms;
        rows.push(vec![
            format!("{} gpt (pass-through)", t.name),
            rps(pass32.rps),
            ms(pass1.p50_ms),
            ms(pass_added),
            opt_f(pass32.cpu_secs_per_1k, 3),
        ]);
        rows.push(vec![
            format!("{} claude (translated)", t.name),
            rps(tr32.rps),
            ms(tr1.p50_ms),
            ms(tr_added),
            opt_f(tr32.cpu_secs_per_1k, 3),
        ]);
        let cpu_ratio = match (tr32.cpu_secs_per_1k, pass32.cpu_secs_per_1k) {
            (Some(a), Some(b)) if b > 0.0 => a / b,
            _ => f64::NAN,
        };
        let latency_ratio = tr_added / pass_added;
        if t.name == "ferrolite" {
            translation_ratio = Some((cpu_ratio, latency_ratio));
        }
        translation.push(json!({
            "target": t.name, "pass_through_32": pass32, "pass_through_1": pass1,
            "translated_32": tr32, "translated_1": tr1,
            "added_p50_ms_pass_through": pass_added, "added_p50_ms_translated": tr_added,
            "cpu_ratio": cpu_ratio, "added_latency_ratio": latency_ratio,
        }));
    }
    report.table(
        "Translation (OpenAI request to the Anthropic fake) beside pass-through",
        &format!(
            "req/s at {conns} connections; p50 at one connection; added = minus the direct call of the same wire \
             format; CPU of the gateway per 1,000 requests. Ratios (ferrolite, translated / pass-through): CPU {}, \
             added p50 {}.",
            translation_ratio.map(|r| format!("{:.2}x", r.0)).unwrap_or_else(|| "–".into()),
            translation_ratio.map(|r| format!("{:.2}x", r.1)).unwrap_or_else(|| "–".into()),
        ),
        &["path", "req/s", "p50 (1 conn)", "added p50", "CPU s / 1k req"],
        &rows,
    );
    report.put(
        "translation",
        json!({"direct_anthropic_32": direct_anthropic_32, "direct_anthropic_1": direct_anthropic_1, "gateways": translation}),
    );

    // --- 7. mock_response
    let mut mock: BTreeMap<&str, Load> = BTreeMap::new();
    for t in gateways.iter().filter(|t| t.name != "portkey") {
        step(&format!("mock_response: {}", t.name));
        mock.insert(t.name, ctx.load(&t.call(CHAT_BODY, "mock"), conns, None)?);
    }
    let mock_ratio = mock.get("litellm").map(|l| mock["ferrolite"].rps / l.rps);
    let rows: Vec<Vec<String>> = mock
        .iter()
        .map(|(n, l)| vec![n.to_string(), rps(l.rps), ms(l.p50_ms), ms(l.p99_ms), opt_f(l.cpu_secs_per_1k, 3)])
        .collect();
    report.table(
        "mock_response chat",
        &format!(
            "{conns} connections, {secs} s, no upstream (Portkey's gateway has no such answer). \
             ferrolite / litellm: {}.",
            mock_ratio.map(|r| format!("{r:.0}x")).unwrap_or_else(|| "litellm not measured".into())
        ),
        &["target", "req/s", "p50", "p99", "CPU s / 1k req"],
        &rows,
    );
    report.put("mock", json!({"loads": mock, "ratio_ferrolite_over_litellm": mock_ratio}));

    // --- 8. soak (ferrolite)
    let soak_rate = max_rate.get("ferrolite").copied().unwrap_or(1000.0).clamp(1.0, 1000.0) as u64;
    step(&format!("soak: ferrolite at {soak_rate} req/s for {soak_secs} s"));
    let gw_target = targets.iter().find(|t| t.name == "ferrolite").cloned().ok_or("no ferrolite target")?;
    let soak_call = gw_target.call(CHAT_BODY, "gpt");
    // oha opens its connections as it needs them, so a hiccup in the soak opens more (up to
    // `open_conns`, each with its upstream connection): RSS then stepped up once, a high-water
    // mark the soak would count as growth. A burst on as many connections first makes that mark;
    // the soak then measures growth over time at steady load.
    ctx.oha.run(&soak_call, open_conns, 2, None)?;
    let rss_before_soak = group_rss_kb(gw.proc.pid());
    let soak_samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let soak_done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let samples = soak_samples.clone();
        let done = soak_done.clone();
        let pid = gw.proc.pid();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if let Ok(mut s) = samples.lock() {
                    s.push((t0.elapsed().as_secs_f64(), group_rss_kb(pid)));
                }
                for _ in 0..10 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let soak = ctx.oha.run(&soak_call, open_conns, soak_secs, Some(soak_rate));
    soak_done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let soak = soak?;
    let rss_end_soak = group_rss_kb(gw.proc.pid());
    std::thread::sleep(Duration::from_secs(2));
    let rss_after_soak = group_rss_kb(gw.proc.pid());
    let samples = soak_samples.lock().map(|s| s.clone()).unwrap_or_default();
    // Warm = the first sample past a tenth of the soak.
    let warm = samples.iter().find(|(t, _)| *t >= soak_secs as f64 / 10.0).map(|s| s.1).unwrap_or(rss_before_soak);
    let soak_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let growth = rss_end_soak as f64 / warm.max(1) as f64 - 1.0;

    // --- memory table
    let mut rows = Vec::new();
    let mut memory = serde_json::Map::new();
    for t in &targets {
        let key = if t.name == "direct" { "fake" } else { t.name };
        let peak = sampler.peak_kb(key).unwrap_or(0);
        let now = group_rss_kb(t.leader);
        rows.push(vec![
            key.to_string(),
            mb(idle[key]),
            mb(peak),
            if t.name == "ferrolite" { mb(rss_end_soak) } else { mb(now) },
            if t.name == "ferrolite" { format!("{:+.1}%", growth * 100.0) } else { "–".into() },
        ]);
        memory.insert(key.into(), json!({"idle_kb": idle[key], "peak_kb": peak, "end_kb": now}));
    }
    memory.insert(
        "ferrolite_soak".into(),
        json!({"rate": soak_rate, "secs": soak_secs, "load": soak, "before_kb": rss_before_soak, "warm_kb": warm,
            "end_kb": rss_end_soak, "after_2s_idle_kb": rss_after_soak, "max_kb": soak_max, "growth_from_warm": growth,
            "samples": samples.iter().map(|(t, kb)| json!([(*t * 10.0).round() / 10.0, kb])).collect::<Vec<_>>()}),
    );
    report.table(
        "Resident memory (VmRSS of the whole process group)",
        &format!(
            "Idle = 2 s after ready, before any request. Peak = the highest of samples every 100 ms over the whole \
             run. ferrolite's soak: {soak_secs} s at {soak_rate} req/s (pass-through chat; {} requests, {:.2}% \
             errors, p99 {}), after a 2 s burst on its {open_conns} connections (so that the load tool opening \
             more connections mid-soak is not counted as growth); its RSS was {} at the start, {} a tenth of the way in (warm), {} at the end; growth \
             = end over warm. Other rows: RSS at the end of the run.",
            soak.requests,
            soak.error_rate * 100.0,
            ms(soak.p99_ms),
            mb(rss_before_soak),
            mb(warm),
            mb(rss_end_soak),
        ),
        &["process", "idle", "peak", "after soak / at end", "growth in soak"],
        &rows,
    );
    report.put("memory", Value::Object(memory));

    // --- 9. time to ready
    let ready_runs = if args.quick { 3 } else { 7 };
    let mut ready_ms = vec![gw.ready.as_secs_f64() * 1000.0];
    let paused = ctx.oha.bystanders.pause_all_but(None);
    for i in 1..ready_runs {
        step(&format!("time to ready: start {}", i + 1));
        let mut f = start_ferrolite(&ctx.launch(), &format!("ready-{i}"), std::slice::from_ref(&app), "bench", &[])?;
        ready_ms.push(f.ready.as_secs_f64() * 1000.0);
        f.proc.stop();
    }
    drop(paused);
    let mut rows = vec![vec![
        "ferrolite".into(),
        ms(median(&ready_ms)),
        ms(ready_ms.iter().copied().fold(0.0, f64::max)),
        format!("{}", ready_ms.len()),
    ]];
    rows.push(vec!["nginx".into(), ms(nginx_ready.as_secs_f64() * 1000.0), "".into(), "1".into()]);
    if let Some((_, _, ready)) = &litellm {
        rows.push(vec!["litellm".into(), ms(ready.as_secs_f64() * 1000.0), "".into(), "1".into()]);
    }
    if let Some((_, _, ready)) = &portkey {
        rows.push(vec!["portkey".into(), ms(ready.as_secs_f64() * 1000.0), "".into(), "1".into()]);
    }
    report.table(
        "Time from process start to the first 200 on readiness",
        "ferrolite: `/default/apps/bench/health/readiness` with the bench app (3 deployments), a fresh data dir \
         each start (only the token secret made beforehand), polled every 0.5 ms over new connections. litellm: \
         `/health/readiness`; Portkey: `/`; nginx: a proxied `/health`.",
        &["target", "median", "max", "starts"],
        &rows,
    );
    report.put(
        "ready",
        json!({"ferrolite_ms": ready_ms, "nginx_ms": nginx_ready.as_secs_f64() * 1000.0,
            "litellm_ms": litellm.as_ref().map(|l| l.2.as_secs_f64() * 1000.0),
            "portkey_ms": portkey.as_ref().map(|l| l.2.as_secs_f64() * 1000.0)}),
    );

    // --- 10. routing cost as deployments and apps grow
    let mut routing_summary: Option<RoutingRatios> = None;
    if !args.skip_routing {
        routing_summary = Some(routing(ctx, &mut report, &d1)?);
    }

    // --- 11. an HTTPS upstream: ferrolite and nginx over TLS to the fake (src/https_lane.rs)
    if !args.skip_https {
        use ferrolite_bench::https_lane::{measure, Call as TlsCall, Hooks, Setup};
        let call = |c: &TlsCall| Call {
            url: c.url.clone(),
            body: c.body.clone(),
            auth: c.auth.clone(),
            leader: Some(c.leader),
            extra_headers: Vec::new(),
        };
        let setup = Setup {
            launch: ctx.launch(),
            nginx: &args.nginx,
            fake_workers: args.fake_workers,
            upstream_latency_ms: args.upstream_latency_ms,
            connections: conns,
            secs,
            bystanders: ctx.oha.bystanders.clone(),
        };
        let hooks = Hooks {
            load: &|c, n, s| ctx.oha.run(&call(c), n, s, None).map(|l| json!(l)),
            check: &|what, c, expect| ctx.check(what, &call(c), expect),
        };
        measure(&setup, &hooks, &mut report)?;
    }

    // --- stop the targets
    let gateways = litellm.map(|l| l.0).into_iter().chain(portkey.map(|p| p.0)).chain([gw.proc]);
    stop_targets(gateways.chain(nginx_one.map(|n| n.0)).chain([nginx, fake]), &sampler);

    // --- the targets of issue 6
    let nginx_added_p50 = single["nginx"].p50_ms - d1.p50_ms;
    let gw_added_p50 = single["ferrolite"].p50_ms - d1.p50_ms;
    let p99_1000 = p99_at.get(&(1000, "ferrolite")).map(|p| p - p99_at.get(&(1000, "direct")).copied().unwrap_or(0.0));
    let fer_stream = stream_results.iter().find(|r| r.0.starts_with("ferrolite (gpt")).map(|r| (r.1.clone(), r.2));
    let fer_stream_tr = stream_results.iter().find(|r| r.0.starts_with("ferrolite (claude")).map(|r| r.1.clone());
    let fer_mem_peak = sampler.peak_kb("ferrolite").unwrap_or(0);
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    let mut goal = |what: &str, target: &str, measured: String, pass: Option<bool>| {
        rows.push(vec![
            what.to_string(),
            target.to_string(),
            measured.clone(),
            match (pass, target) {
                (Some(p), _) => verdict(p),
                (None, "–") => "(no target)",
                (None, _) => "not measured",
            }
            .to_string(),
        ]);
        goals.push(json!({"goal": what, "target": target, "measured": measured, "met": pass}));
    };
    let fr = throughput["ferrolite"].rps;
    for (lane, what) in [("one", "governed lane, one instance"), ("redis", "governed lane, with Redis")] {
        let (token, key) = (governed[lane]["token"]["rps"].as_f64(), governed[lane]["key"]["rps"].as_f64());
        let ratio = token.zip(key).map(|(t, k)| k / t);
        goal(
            what,
            ">= 0.9x the token's req/s",
            ratio.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "–".into()),
            ratio.map(|r| r >= 0.9),
        );
    }
    goal(
        "pass-through req/s at 32 connections",
        ">= 0.5x nginx",
        format!("{} vs nginx {} ({:.2}x)", rps(fr), rps(nginx_rps), fr / nginx_rps),
        Some(fr >= 0.5 * nginx_rps),
    );
    goal(
        "added latency p50, one connection",
        "<= 50 µs",
        format!("{} (nginx adds {})", ms(gw_added_p50), ms(nginx_added_p50)),
        Some(gw_added_p50 <= 0.050),
    );
    goal(
        "added p99 at 1,000 req/s open loop",
        "<= 1 ms",
        p99_1000.map(ms).unwrap_or_else(|| "not run".into()),
        p99_1000.map(|p| p <= 1.0),
    );
    goal(
        "translation within 1.5x of pass-through",
        "<= 1.5x",
        translation_ratio
            .map(|(c, l)| format!("CPU per request {c:.2}x, added p50 {l:.2}x"))
            .unwrap_or_else(|| "–".into()),
        translation_ratio.map(|(c, _)| c <= 1.5),
    );
    goal(
        "mock_response req/s",
        ">= 50x litellm",
        mock_ratio
            .map(|r| format!("{r:.0}x ({} vs {})", rps(mock["ferrolite"].rps), rps(mock["litellm"].rps)))
            .unwrap_or_else(|| format!("{} req/s; litellm skipped", rps(mock["ferrolite"].rps))),
        mock_ratio.map(|r| r >= 50.0),
    );
    goal("memory idle", "<= 30 MB", mb(idle["ferrolite"]), Some(idle["ferrolite"] <= 30 * 1024));
    goal("memory at peak", "<= 100 MB", mb(fer_mem_peak), Some(fer_mem_peak <= 100 * 1024));
    goal(
        "memory flat after the soak",
        "within 10%",
        format!("{:+.1}% over {soak_secs} s", growth * 100.0),
        Some(growth.abs() <= 0.10),
    );
    if let Some((s, added)) = &fer_stream {
        let added = added.unwrap_or(f64::NAN);
        goal("added time to first token", "<= 1 ms", ms(added), Some(added <= 1.0));
        let tr = fer_stream_tr.as_ref().map(|t| t.coalesced).unwrap_or(0);
        goal(
            "coalesced chunks",
            "0",
            format!("{} pass-through, {} translated", s.coalesced, tr),
            Some(s.coalesced == 0 && tr == 0 && s.text_intact),
        );
    }
    let ready_median = median(&ready_ms);
    goal("ready from start", "<= 100 ms", ms(ready_median), Some(ready_median <= 100.0));
    match &routing_summary {
        Some(r) => {
            goal(
                "routing with 1,000 deployments vs 1",
                "<= 2x",
                format!(
                    "CPU per request {:.2}x, added p50 {:.2}x (req/s at {conns} connections {:.2}x lower)",
                    r.deploy_cpu, r.deploy_added, r.deploy_rps
                ),
                Some(r.deploy_cpu <= 2.0 && r.deploy_added <= 2.0),
            );
            goal(
                "1,000 running apps vs 1",
                "–",
                format!(
                    "CPU per request {:.2}x, added p50 {:.2}x (req/s {:.2}x lower)",
                    r.apps_cpu, r.apps_added, r.apps_rps
                ),
                None,
            );
        }
        None => goal("routing with 1,000 deployments vs 1", "<= 2x", "skipped (--skip-routing)".into(), None),
    }
    match routing_summary.as_ref().and_then(|r| r.scale.as_ref()) {
        Some(s) => {
            goal(
                "scale: 100,000 deployments in one group vs 1",
                "–",
                format!("CPU per request {:.2}x; RSS {:.0} MB", s.deploy_cpu, s.deploy_rss_mb),
                None,
            );
            goal(
                "scale: 10,000 running apps vs 1",
                "–",
                format!(
                    "CPU per request {:.2}x; RSS {:.0} MB vs {:.0} MB ({:.1} KB per app)",
                    s.apps_cpu,
                    s.apps_rss_mb,
                    s.apps_rss_mb_one,
                    (s.apps_rss_mb - s.apps_rss_mb_one) * 1024.0 / 9_999.0
                ),
                None,
            );
        }
        None => goal("scale: 100,000 deployments, 10,000 apps", "–", "skipped (--skip-scale)".into(), None),
    }

    // --- write
    let cpu_model = cpu_model();
    let cores = cores();
    let date = cmd_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let checkout = Checkout::current();
    let ferrolite_version = ferrolite_version(&args);
    let nginx_version = cmd_output(&args.nginx, &["-v"]);
    let oha_version = cmd_output(&args.oha, &["--version"]);
    let wrk_version = if args.skip_cross_check {
        "wrk not run (--skip-cross-check)".to_owned()
    } else {
        ctx.wrk.version().unwrap_or_else(|e| e)
    };
    let litellm_version = if args.skip_litellm {
        "skipped (--skip-litellm)".to_owned()
    } else {
        cmd_output(
            &args.venv.join("bin/python").display().to_string(),
            &["-c", "import importlib.metadata as m; print('litellm', m.version('litellm'))"],
        )
    };
    let portkey_version = if args.skip_portkey {
        "Portkey skipped (--skip-portkey)".to_owned()
    } else {
        let package = args.portkey_dir.join("node_modules/@portkey-ai/gateway/package.json");
        let version = std::fs::read_to_string(package)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        format!("@portkey-ai/gateway {version} on node {}", cmd_output(&args.node, &["--version"]))
    };
    let mut md = String::new();
    let _ = writeln!(md, "# ferrolite benchmark results\n");
    let _ = writeln!(md, "- date: {date}");
    let thp = thp_mode();
    let _ = writeln!(md, "- machine: {cores} cores, {cpu_model}; transparent huge pages: {thp} (ferrolite opts out)");
    let _ = writeln!(
        md,
        "- **the load tool (oha), the fake upstream ({} worker thread(s)) and the gateway under test share these {cores} \
         cores**; figures are noisy when anything else runs (other builds on this machine included)",
        args.fake_workers
    );
    let load_after = loadavg();
    let _ = writeln!(
        md,
        "- load average (1, 5, 15 min) before the run: {load_before}; after: {load_after} (this run itself keeps \
         about 2 busy while it measures)"
    );
    let _ = writeln!(
        md,
        "- versions: {ferrolite_version} (commit {checkout}), {nginx_version}, {oha_version}, {wrk_version}, \
         {litellm_version}, {portkey_version}"
    );
    let _ = writeln!(
        md,
        "- mode: {}; {secs} s per measurement; soak {soak_secs} s; fake upstream latency {} ms{}",
        if args.quick { "quick" } else { "full" },
        args.upstream_latency_ms,
        if args.skip_litellm { "; **litellm was not measured (--skip-litellm)**" } else { "" }
    );
    if args.skip_portkey {
        let _ = writeln!(md, "- **Portkey's gateway was not measured (--skip-portkey)**");
    }
    let _ = writeln!(
        md,
        "- reproduce: `benches/run.sh{}{}{}{}`",
        if args.pgo { " --pgo" } else { "" },
        if args.quick { " --quick" } else { "" },
        if args.skip_litellm { " --skip-litellm" } else { "" },
        if args.skip_portkey { " --skip-portkey" } else { "" }
    );
    let _ = writeln!(md, "\n## Targets of issue 6\n");
    let _ = writeln!(md, "| goal | target | measured | |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for row in &rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md += &report.md;
    let mut out = serde_json::Map::new();
    out.insert(
        "machine".into(),
        json!({"cores": cores, "cpu_model": cpu_model, "transparent_huge_pages": thp, "shared_cores": "load tool, fake upstream and gateway share the cores"}),
    );
    out.insert("date".into(), json!(date));
    out.insert("loadavg".into(), json!({"before": load_before, "after": load_after}));
    out.insert(
        "versions".into(),
        json!({"ferrolite": ferrolite_version, "commit": checkout.commit, "dirty": checkout.dirty, "nginx": nginx_version,
            "oha": oha_version, "wrk": wrk_version, "litellm": litellm_version, "portkey": portkey_version}),
    );
    out.insert(
        "settings".into(),
        json!({"quick": args.quick, "duration_secs": secs, "soak_secs": soak_secs, "connections": conns,
            "rates": args.rates, "stream_chunks": chunks, "stream_gap_ms": args.stream_gap_ms, "streams": streams,
            "upstream_latency_ms": args.upstream_latency_ms, "fake_workers": args.fake_workers,
            "skip_litellm": args.skip_litellm, "skip_portkey": args.skip_portkey, "skip_routing": args.skip_routing,
            "skip_cross_check": args.skip_cross_check}),
    );
    out.insert("goals".into(), Value::Array(goals));
    out.extend(report.json);
    let (md_path, json_path) = write_results(&args.harness.out_dir, "latest", &md, &Value::Object(out))?;
    eprintln!("bench: wrote {md_path} and {json_path}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The plain HTTP cross-check (issue 22)

/// The cross-check's names of the two nginx.
const NGINX_PER_CORE: &str = "nginx, one worker per core";
const NGINX_ONE_WORKER: &str = "nginx, one worker";

/// The model of `model_list` whose upstream answers with OpenAI's headers.
const REAL_MODEL: &str = "gpt-real";

/// The traffic of a cross-check.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// The chat with the load tool's few headers, answered with the fake's three.
    Plain,
    /// The same chat with the openai SDK's headers, answered with OpenAI's besides the fake's
    /// (the fake's routes under `/real`, which nginx passes on as it passes any path).
    RealHeaders,
}

impl Shape {
    fn call(self, t: &Target) -> Call {
        match self {
            Shape::Plain => t.call(CHAT_BODY, "gpt"),
            Shape::RealHeaders => {
                // nginx proxies any path to the fake; ferrolite names the upstream by model.
                let nginx = t.name != "ferrolite";
                let mut call = t.call(CHAT_BODY, if nginx { "gpt" } else { REAL_MODEL });
                if nginx {
                    call.url = call.url.replacen("/v1/", "/real/v1/", 1);
                }
                call.extra_headers.extend(SDK_HEADERS.iter().map(|(n, v)| (n.to_string(), v.to_string())));
                call
            }
        }
    }
}

/// Plain-HTTP throughput at `--connections` measured so that the comparison depends neither on
/// nginx's worker count nor on one load tool: nginx with one worker per core and with one worker,
/// and ferrolite (`targets`, in that order), each under oha and under wrk with one thread,
/// with the traffic of `shape`.
fn cross_check(ctx: &mut Ctx, report: &mut Report, targets: &[Target], shape: Shape) -> Res<()> {
    let conns = ctx.args.connections;
    let secs = ctx.secs;
    // The one-worker nginx is in no other section, nor the real headers' paths: checked (and
    // the nginx warmed up) here.
    for t in targets {
        let call = shape.call(t);
        ctx.check(t.name, &call, "fake answer")?;
        if t.name != NGINX_ONE_WORKER {
            continue;
        }
        ctx.secs = 1;
        let warm = ctx.load(&call, 8, None);
        ctx.secs = secs;
        warm?;
    }
    // Rounds taking the targets in turn, so that a slow moment of the machine falls on all of
    // them rather than on one: each row is its median round (by req/s), its CPU the median CPU.
    let mut rounds: Vec<(&str, &str, Vec<Load>)> = Vec::new();
    for round in 1..=CROSS_CHECK_ROUNDS {
        for t in targets {
            let call = shape.call(t);
            for tool in ["oha", "wrk"] {
                let what = if shape == Shape::Plain { "" } else { ", real headers" };
                step(&format!(
                    "plain HTTP cross-check{what} at {conns} connections, round {round} of {CROSS_CHECK_ROUNDS}: {} under {tool}",
                    t.name
                ));
                let load =
                    if tool == "oha" { ctx.load(&call, conns, None)? } else { ctx.wrk.run(&call, conns, secs)? };
                match rounds.iter_mut().find(|(n, k, _)| *n == t.name && *k == tool) {
                    Some((_, _, loads)) => loads.push(load),
                    None => rounds.push((t.name, tool, vec![load])),
                }
            }
        }
    }
    let loads: Vec<(&str, &str, Load)> = rounds.into_iter().map(|(n, k, loads)| (n, k, median_round(loads))).collect();
    let rps_of = |target: &str, tool: &str| {
        loads.iter().find(|(n, t, _)| *n == target && *t == tool).map_or(f64::NAN, |(_, _, l)| l.rps)
    };
    let ratio = |v: f64| if v.is_finite() { format!("{v:.2}x") } else { "–".into() };
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (target, tool, l) in &loads {
        let per_core = l.rps / rps_of(NGINX_PER_CORE, tool);
        let one = l.rps / rps_of(NGINX_ONE_WORKER, tool);
        rows.push(vec![
            target.to_string(),
            tool.to_string(),
            rps(l.rps),
            ratio(per_core),
            ratio(one),
            format!("{:.2}%", l.error_rate * 100.0),
            ms(l.p50_ms),
            ms(l.p99_ms),
            opt_f(l.cpu_secs_per_1k, 3),
        ]);
        out.push(json!({"target": target, "tool": tool, "load": l,
            "vs_nginx_per_core": per_core, "vs_nginx_one_worker": one}));
    }
    let (title, key, about) = match shape {
        Shape::Plain => ("(chat, JSON)", "plain_http_cross_check", String::new()),
        Shape::RealHeaders => (
            "with real traffic's headers",
            "plain_http_cross_check_real_headers",
            format!(
                " Here every request carries the {} headers the openai SDK sends (its user agent and ten \
                 `x-stainless-*` among them) and every answer the {} headers OpenAI's API answers with \
                 besides the fake's (request id, rate limits, its CDN's: the fake's routes under `/real`). nginx \
                 hands all of them on both ways; ferrolite reads the request's, sends the upstream its own, and \
                 keeps of the answer's only its content type.",
                SDK_HEADERS.len() + 4,
                PROVIDER_HEADERS.len()
            ),
        ),
    };
    report.table(
        &format!("Plain HTTP cross-check at {conns} connections {title}"),
        &format!(
            "Closed loop, {secs} s per run, {conns} connections, {CROSS_CHECK_ROUNDS} rounds taking the targets in \
             turn: each row is the median round by req/s (its errors and latency), with the median CPU. Each \
             target under oha (as in every other table) \
             and under wrk 4.1 with one thread (`-t1`, the POST set by a Lua script). nginx runs twice, with \
             `worker_processes auto` (one per core, the nginx of the other tables) and with `worker_processes 1`, \
             otherwise the same config. The `vs` columns are req/s over that nginx's under the same tool. wrk \
             counts answers above 399 and socket errors as errors. CPU is the target's process group, seconds per \
             1,000 requests.{about}"
        ),
        &[
            "target",
            "tool",
            "req/s",
            "vs nginx per-core",
            "vs nginx 1 worker",
            "errors",
            "p50",
            "p99",
            "CPU s / 1k req",
        ],
        &rows,
    );
    report.put(key, json!({"connections": conns, "secs": secs, "wrk_threads": 1, "rows": out}));
    Ok(())
}

/// Stops the run's targets in the order given (the fake last, so that nothing in flight towards
/// it sees it gone first), then the memory sampler.
fn stop_targets(targets: impl IntoIterator<Item = Proc>, sampler: &Sampler) {
    for mut proc in targets {
        proc.stop();
    }
    sampler.stop.store(true, Ordering::Relaxed);
}

/// Rounds of the plain HTTP cross-check.
const CROSS_CHECK_ROUNDS: usize = 3;

/// The round whose req/s is the median, with the median CPU per 1,000 requests of all rounds.
fn median_round(mut loads: Vec<Load>) -> Load {
    loads.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mut cpu: Vec<f64> = loads.iter().filter_map(|l| l.cpu_secs_per_1k).collect();
    cpu.sort_by(f64::total_cmp);
    let mid = loads.len() / 2;
    let mut median = loads.swap_remove(mid);
    median.cpu_secs_per_1k = cpu.get(cpu.len() / 2).copied();
    median
}

/// `--only-cross-check`: the section alone, written to cross-check.md / .json in `--out-dir`.
fn write_cross_check_alone(ctx: &Ctx, report: Report, load_before: &str) -> Res<()> {
    let args = &ctx.args;
    let date = cmd_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let checkout = Checkout::current();
    let ferrolite_version = ferrolite_version(args);
    let nginx_version = cmd_output(&args.nginx, &["-v"]);
    let oha_version = cmd_output(&args.oha, &["--version"]);
    let wrk_version = ctx.wrk.version().unwrap_or_else(|e| e);
    let (cores, cpu_model, load_after) = (cores(), cpu_model(), loadavg());
    let mut md = String::from("# ferrolite plain HTTP cross-check\n\n");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(
        md,
        "- machine: {cores} cores, {cpu_model}; the load tool, the fake upstream ({} worker thread(s)) and the \
         target share them",
        args.fake_workers
    );
    let _ = writeln!(md, "- load average (1, 5, 15 min) before the run: {load_before}; after: {load_after}");
    let _ = writeln!(
        md,
        "- versions: {ferrolite_version} (commit {checkout}), {nginx_version}, {oha_version}, {wrk_version}"
    );
    let _ = writeln!(
        md,
        "- mode: {}; {} s per measurement; fake upstream latency {} ms",
        if args.quick { "quick" } else { "full" },
        ctx.secs,
        args.upstream_latency_ms
    );
    let _ = writeln!(
        md,
        "- reproduce: `benches/run.sh --only-cross-check{}{}`",
        if args.pgo { " --pgo" } else { "" },
        if args.quick { " --quick" } else { "" }
    );
    md += &report.md;
    let mut out = serde_json::Map::new();
    out.insert("date".into(), json!(date));
    out.insert("machine".into(), json!({"cores": cores, "cpu_model": cpu_model}));
    out.insert("loadavg".into(), json!({"before": load_before, "after": load_after}));
    out.insert(
        "versions".into(),
        json!({"ferrolite": ferrolite_version, "commit": checkout.commit, "dirty": checkout.dirty, "nginx": nginx_version,
            "oha": oha_version, "wrk": wrk_version}),
    );
    out.insert(
        "settings".into(),
        json!({"quick": args.quick, "duration_secs": ctx.secs, "connections": args.connections,
            "upstream_latency_ms": args.upstream_latency_ms, "fake_workers": args.fake_workers}),
    );
    out.extend(report.json);
    let (md_path, json_path) = write_results(&args.harness.out_dir, "cross-check", &md, &Value::Object(out))?;
    step(&format!("wrote {md_path} and {json_path}"));
    Ok(())
}

/// 1,000 over 1 for deployments in a group and for running apps: CPU per request, added p50 at one
/// connection, and how many times fewer req/s at 32 connections.
struct RoutingRatios {
    deploy_cpu: f64,
    deploy_added: f64,
    deploy_rps: f64,
    apps_cpu: f64,
    apps_added: f64,
    apps_rps: f64,
    /// Issue 22's scale, when measured (not `--skip-scale`): 100,000 deployments over 1 and
    /// 10,000 apps over 1, CPU per request, and the RSS of each.
    scale: Option<ScaleRatios>,
}

struct ScaleRatios {
    deploy_cpu: f64,
    deploy_rss_mb: f64,
    apps_cpu: f64,
    apps_rss_mb: f64,
    apps_rss_mb_one: f64,
}

/// The deployment counts and app counts the routing lane measures: issue 6's 1, 100, 1,000,
/// and issue 22's 100,000 deployments and 10,000 apps unless `--skip-scale`.
fn routing_steps(skip_scale: bool) -> (Vec<usize>, Vec<usize>) {
    if skip_scale {
        (vec![1, 100, 1000], vec![1, 100, 1000])
    } else {
        (vec![1, 100, 1000, 100_000], vec![1, 100, 1000, 10_000])
    }
}

/// Routing cost with 1, 100 and 1,000 (and 100,000) deployments in one model group, and with 1,
/// 100 and 1,000 (and 10,000) running apps.
fn routing(ctx: &mut Ctx, report: &mut Report, d1: &Load) -> Res<RoutingRatios> {
    let (deploy_steps, app_steps) = routing_steps(ctx.args.skip_scale);
    let fake = ctx.fake_port;
    let conns = ctx.args.connections;
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let mut measure = |ctx: &Ctx, label: String, t: &Target| -> Res<(Load, Load)> {
        step(&format!("routing: {label}"));
        let l32 = ctx.load(&t.call(CHAT_BODY, "gpt"), conns, None)?;
        let l1 = ctx.load(&t.call(CHAT_BODY, "gpt"), 1, None)?;
        rows.push(vec![
            label.clone(),
            rps(l32.rps),
            opt_f(l32.cpu_secs_per_1k, 3),
            ms(l1.p50_ms),
            ms(l1.p50_ms - d1.p50_ms),
            mb(group_rss_kb(t.leader)),
        ]);
        results.push(json!({"case": label, "load_32": l32, "load_1": l1, "rss_kb": group_rss_kb(t.leader)}));
        Ok((l32, l1))
    };
    let cpu = |l: &Load| l.cpu_secs_per_1k.unwrap_or(f64::NAN);

    // Deployments: three apps on one instance, each with one model group of N deployments.
    let mut configs = Vec::new();
    for &n in &deploy_steps {
        let path = ctx.tmp.join(format!("deploy-{n}.json"));
        let models: Vec<Value> = (0..n).map(|_| deployment("gpt", fake)).collect();
        std::fs::write(&path, manifest(&format!("deploy-{n}"), models).to_string()).map_err(|e| e.to_string())?;
        configs.push(path);
    }
    step(&format!("routing: starting ferrolite with {deploy_steps:?} deployments"));
    let last = format!("deploy-{}", deploy_steps.last().copied().unwrap_or(1));
    let mut inst = start_ferrolite(&ctx.launch(), "deployments", &configs, &last, &[])?;
    let mut per_deploy = Vec::new();
    for &n in &deploy_steps {
        let t = Target {
            name: "ferrolite",
            base: format!("http://127.0.0.1:{}/default/apps/deploy-{n}/v1", inst.port),
            auth: Some(inst.token.clone()),
            leader: inst.proc.pid(),
            model_headers: Vec::new(),
        };
        ctx.check(&format!("deploy-{n}"), &t.call(CHAT_BODY, "gpt"), "fake answer")?;
        let warm_secs = ctx.secs;
        ctx.secs = 1;
        let _ = ctx.load(&t.call(CHAT_BODY, "gpt"), 8, None);
        ctx.secs = warm_secs;
        per_deploy.push(measure(ctx, format!("{n} deployment(s) in the group"), &t)?);
    }
    let deploy_rss_kb = group_rss_kb(inst.proc.pid());
    inst.proc.stop();
    let added = |l: &Load| l.p50_ms - d1.p50_ms;
    let deploy_ratio = cpu(&per_deploy[2].0) / cpu(&per_deploy[0].0);
    let deploy_added = added(&per_deploy[2].1) / added(&per_deploy[0].1);
    let deploy_rps = per_deploy[0].0.rps / per_deploy[2].0.rps;

    // Apps: one instance, measured with 1, then 100, then 1,000 running apps.
    let first = ctx.tmp.join("apps-0.json");
    std::fs::write(&first, manifest("apps-0", vec![deployment("gpt", fake)]).to_string()).map_err(|e| e.to_string())?;
    step("routing: starting ferrolite with one app");
    let mut inst = start_ferrolite(&ctx.launch(), "apps", std::slice::from_ref(&first), "apps-0", &[])?;
    let admin = std::fs::read_to_string(ctx.tmp.join("data-apps").join("admin-token"))
        .map_err(|e| format!("admin token: {e}"))?
        .trim()
        .to_owned();
    let t = Target {
        name: "ferrolite",
        base: format!("http://127.0.0.1:{}/default/apps/apps-0/v1", inst.port),
        auth: Some(inst.token.clone()),
        leader: inst.proc.pid(),
        model_headers: Vec::new(),
    };
    let controller = format!("http://127.0.0.1:{}/default/services/server-apps", inst.port);
    let mut per_apps = Vec::new();
    let mut running = 1usize;
    let mut install_secs = Vec::new();
    let mut apps_rss_kb = Vec::new();
    for &target_count in &app_steps {
        let t0 = Instant::now();
        let before = running;
        if running < target_count {
            step(&format!("routing: installing and starting apps up to {target_count}"));
        }
        while running < target_count {
            let id = format!("apps-{running}");
            let installed = post_json(
                &ctx.rt,
                &ctx.client,
                &format!("{controller}/install"),
                &admin,
                &json!({"manifest": manifest(&id, vec![deployment("gpt", fake)]), "overwrite": true}),
            )?;
            let app_id = installed.get("id").and_then(Value::as_str).unwrap_or(&id).to_owned();
            post_json(&ctx.rt, &ctx.client, &format!("{controller}/start"), &admin, &json!({"app_id": app_id}))?;
            running += 1;
        }
        if running > before {
            install_secs.push(json!({"apps_added": running - before, "secs": t0.elapsed().as_secs_f64()}));
        }
        let listed = post_json(&ctx.rt, &ctx.client, &format!("{controller}/list_running"), &admin, &json!({}))?;
        let count = listed.as_array().map(Vec::len).unwrap_or(0);
        if count != target_count {
            return Err(format!("list_running shows {count} sessions, expected {target_count}"));
        }
        per_apps.push(measure(ctx, format!("{target_count} running app(s)"), &t)?);
        apps_rss_kb.push(group_rss_kb(inst.proc.pid()));
    }
    inst.proc.stop();
    let apps_ratio = cpu(&per_apps[2].0) / cpu(&per_apps[0].0);
    let apps_added = added(&per_apps[2].1) / added(&per_apps[0].1);
    let apps_rps = per_apps[0].0.rps / per_apps[2].0.rps;
    let mb_of = |kb: u64| kb as f64 / 1024.0;
    let scale = (per_deploy.len() > 3 && per_apps.len() > 3).then(|| ScaleRatios {
        deploy_cpu: cpu(&per_deploy[3].0) / cpu(&per_deploy[0].0),
        deploy_rss_mb: mb_of(deploy_rss_kb),
        apps_cpu: cpu(&per_apps[3].0) / cpu(&per_apps[0].0),
        apps_rss_mb: mb_of(apps_rss_kb[3]),
        apps_rss_mb_one: mb_of(apps_rss_kb[0]),
    });
    report.table(
        "Routing cost as deployments and apps grow (ferrolite)",
        &format!(
            "Each row: req/s and ferrolite's CPU per 1,000 requests at {conns} connections, p50 at one connection \
             and added p50 (minus the direct p50 measured earlier), RSS after. Deployments: three apps on one \
             instance whose `gpt` group has {deploy_steps:?} deployments (simple-shuffle, all to the fake). \
             Apps: one instance where one-deployment apps are installed and started through the server-apps \
             controller up to {app_steps:?} while the first is measured. 1,000 over 1, CPU per request: \
             deployments {deploy_ratio:.2}x, apps {apps_ratio:.2}x."
        ),
        &["case", "req/s", "CPU s / 1k req", "p50 (1 conn)", "added p50", "RSS"],
        &rows,
    );
    report.put(
        "routing",
        json!({"cases": results, "deployments_cpu_ratio_1000_over_1": deploy_ratio,
            "deployments_added_p50_ratio_1000_over_1": deploy_added, "deployments_rps_1_over_1000": deploy_rps,
            "apps_cpu_ratio_1000_over_1": apps_ratio, "apps_added_p50_ratio_1000_over_1": apps_added,
            "apps_rps_1_over_1000": apps_rps, "app_installs": install_secs,
            "scale": scale.as_ref().map(|s| json!({"deployments_cpu_ratio_100000_over_1": s.deploy_cpu,
                "deployments_100000_rss_mb": s.deploy_rss_mb, "apps_cpu_ratio_10000_over_1": s.apps_cpu,
                "apps_10000_rss_mb": s.apps_rss_mb, "apps_1_rss_mb": s.apps_rss_mb_one}))}),
    );
    Ok(RoutingRatios {
        deploy_cpu: deploy_ratio,
        deploy_added,
        deploy_rps,
        apps_cpu: apps_ratio,
        apps_added,
        apps_rps,
        scale,
    })
}

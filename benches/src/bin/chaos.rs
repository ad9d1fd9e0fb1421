//! The soak's fault phase (issue 23): `benches/soak.sh --faults`. Two `ferrolite serve`
//! instances share a redis-server; mixed traffic (JSON and streamed chats through a fake
//! upstream, `mock_response` chats) goes to both at a fixed rate, and installs and uninstalls go
//! through either, while a cycle of faults repeats: Redis killed and restarted empty, one
//! instance killed with -9 and restarted, Redis frozen (SIGSTOP) for `--freeze-secs`.
//!
//! Verdicts: no request stuck past its timeout; no request failed except on the killed
//! instance while it was down; after each fault both instances hold every acknowledged change
//! within `--converge-secs`; at the end both hold the same apps, and the spend both count is at
//! most what was answered (never counted twice) and at least that minus what the killed
//! instance answered in the second before each kill (its store is written every second).
//! `benches/results/chaos.md` and `chaos.json` get the figures; the exit code is non-zero when
//! a verdict fails. The suite's `tests/it/chaos.rs` is the short version.

use clap::Parser;
use ferrolite_bench::cluster_client::{app_ids, chat, controller, Changes};
use ferrolite_bench::gateway::deployment;
use ferrolite_bench::procs::{free_port, install_signal_handler, signal_group, stop_all, wait_ready, Proc};
use ferrolite_bench::report::{cmd_output, cores, loadavg, verdict, write_results, Report};
use ferrolite_bench::Res;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two instances over Redis under mixed traffic while Redis and an instance fail.
#[derive(Debug, Parser, Clone)]
#[command(name = "chaos")]
struct Args {
    /// Length of the traffic, in minutes (the fault cycle repeats within it).
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Requests per second over both instances, sent open loop.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// How long Redis stays frozen in each cycle.
    #[arg(long, default_value_t = 10)]
    freeze_secs: u64,
    /// How long the instances may take to hold every acknowledged change after a fault ends.
    #[arg(long, default_value_t = 10)]
    converge_secs: u64,
    /// Where `ferrolite` and `fake-upstream` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[command(flatten)]
    harness: ferrolite_bench::Harness,
}

/// A request with no complete answer after this long is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Each price per token of the traffic's models: a request costs its total tokens times this.
const PRICE: f64 = 0.000_001;
/// The killed instance's spend of this long before the kill may be lost (stored every second).
const UNSTORED: Duration = Duration::from_millis(1500);

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handler("chaos");
    let tmp = std::env::temp_dir().join(format!("ferrolite-chaos-{}", std::process::id()));
    let result = std::fs::create_dir_all(&tmp).map_err(|e| e.to_string()).and_then(|()| run(&args, &tmp));
    stop_all();
    if matches!(result, Ok(true)) && !args.harness.keep_tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        eprintln!("chaos: data dirs and logs are in {}", tmp.display());
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chaos: a verdict failed (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::from(2)
        }
    }
}

fn step(what: &str) {
    eprintln!("chaos: {what}");
}

// ---------------------------------------------------------------------------------------------
// The processes

/// A redis-server without persistence, restartable on its port.
struct Redis {
    proc: Option<Proc>,
    port: u16,
}

impl Redis {
    fn start(port: u16, args: &Args, tmp: &Path) -> Res<Redis> {
        let mut redis = Redis { proc: None, port };
        redis.spawn(args, tmp)?;
        Ok(redis)
    }

    fn spawn(&mut self, args: &Args, tmp: &Path) -> Res<()> {
        let log = std::fs::File::options().create(true).append(true).open(tmp.join("redis.log"));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(log.map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .stderr(Stdio::null());
        let proc = Proc::spawn("redis-server", &mut cmd, args.harness.pidfile.as_deref())
            .map_err(|e| format!("{e} (install it: apt-get install redis-server)"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc = Some(proc);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            signal_group(p.pid(), "KILL");
            p.stop();
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(p) = &self.proc {
            signal_group(p.pid(), signal);
        }
    }
}

/// One `ferrolite serve --redis-url`, restartable on its port with its data dir.
struct Instance {
    name: &'static str,
    proc: Option<Proc>,
    port: u16,
    data: PathBuf,
    token: String,
}

impl Instance {
    fn start(name: &'static str, args: &Args, tmp: &Path, redis: &Redis) -> Res<Instance> {
        let data = tmp.join(format!("data-{name}"));
        let mut instance = Instance { name, proc: None, port: free_port()?, data, token: String::new() };
        instance.spawn(args, tmp, redis)?;
        Ok(instance)
    }

    /// Starts the process; ready once its banner (printed when it serves) gave the token.
    fn spawn(&mut self, args: &Args, tmp: &Path, redis: &Redis) -> Res<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(tmp.join(format!("ferrolite-{}.log", self.name)))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(args.bin_dir.join("ferrolite"));
        cmd.args(["serve", "--port", &self.port.to_string(), "--allow-private-upstreams", "--data-dir"])
            .arg(&self.data)
            .args(["--redis-url", &format!("redis://127.0.0.1:{}", redis.port)])
            .stdout(Stdio::piped())
            .stderr(log);
        let mut proc = Proc::spawn(&format!("ferrolite ({})", self.name), &mut cmd, args.harness.pidfile.as_deref())?;
        let stdout = proc.child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(t) = line.strip_prefix("  token:") {
                    let _ = tx.send(t.trim().to_owned());
                }
                line.clear();
            }
        });
        self.token = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| format!("ferrolite ({}) printed no banner within 60 s", self.name))?;
        self.proc = Some(proc);
        Ok(())
    }

    fn kill_9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            signal_group(p.pid(), "KILL");
            p.stop();
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic and changes

/// What one request got.
#[derive(Debug, Clone)]
struct Outcome {
    instance: usize,
    class: &'static str,
    sent: Instant,
    done: Instant,
    result: Result<f64, String>,
}

/// (name, model, streamed)
const CLASSES: [(&str, &str, bool); 3] =
    [("fast JSON", "fast", false), ("fast stream", "fast", true), ("mock JSON", "mock", false)];

// ---------------------------------------------------------------------------------------------
// The run

/// A fault and how long the instances took to hold every acknowledged change after it ended.
struct Fault {
    what: String,
    at: Duration,
    converged: Option<Duration>,
}

struct World<'a> {
    args: &'a Args,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    token: String,
    bases: Vec<String>,
    changes: Arc<Mutex<Changes>>,
    start: Instant,
}

impl World<'_> {
    /// Seconds until every instance holds every change acknowledged so far (None past the limit).
    fn converge(&self) -> Option<Duration> {
        let since = Instant::now();
        let limit = Duration::from_secs(self.args.converge_secs);
        let changes = self.changes.lock().map(|c| c.clone()).unwrap_or_default();
        while since.elapsed() < limit {
            let held = self.rt.block_on(async {
                for base in &self.bases {
                    if !app_ids(&self.client, base, &self.token).await.is_some_and(|ids| changes.held_by(&ids)) {
                        return false;
                    }
                }
                true
            });
            if held {
                return Some(since.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn pause(&self, secs: f64, until: Instant) -> bool {
        let wake = Instant::now() + Duration::from_secs_f64(secs);
        std::thread::sleep(wake.min(until).saturating_duration_since(Instant::now()));
        Instant::now() < until
    }
}

fn run(args: &Args, tmp: &Path) -> Res<bool> {
    if args.rate == 0 || args.minutes <= 0.0 {
        return Err("--rate and --minutes must be positive".into());
    }
    for bin in ["ferrolite", "fake-upstream"] {
        if !args.bin_dir.join(bin).exists() {
            return Err(format!("{} is missing: build first", args.bin_dir.join(bin).display()));
        }
    }
    let load_before = loadavg();
    step("starting the fake upstream, redis-server and two instances");
    let fake_port = free_port()?;
    let mut fake = Proc::spawn(
        "fake-upstream",
        Command::new(args.bin_dir.join("fake-upstream"))
            .args(["--port", &fake_port.to_string(), "--workers", "1", "--chunks", "10", "--gap-ms", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        args.harness.pidfile.as_deref(),
    )?;
    let since = fake.started;
    wait_ready(&mut fake, fake_port, "/health", None, since, Duration::from_secs(20))?;
    let mut redis = Redis::start(free_port()?, args, tmp)?;
    let mut instances = vec![Instance::start("a", args, tmp, &redis)?, Instance::start("b", args, tmp, &redis)?];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().map_err(|e| e.to_string())?;
    let token = instances[0].token.clone();
    let bases: Vec<String> = instances.iter().map(Instance::base).collect();

    let mut fast = deployment("fast", fake_port);
    fast["litellm_params"]["input_cost_per_token"] = json!(PRICE);
    fast["litellm_params"]["output_cost_per_token"] = json!(PRICE);
    let mock = json!({"model_name": "mock", "litellm_params": {"model": "gpt-4o", "mock_response": "steady",
        "input_cost_per_token": PRICE, "output_cost_per_token": PRICE}});
    let app = json!({"id": "chaos", "name": "chaos", "type": "llm-proxy", "config": {"service_id": "chaos",
        "model_list": [fast, mock], "litellm_settings": {"max_budget": 1.0e6}}});
    let session = rt.block_on(async {
        let (status, body) = controller(&client, &bases[0], &token, "install", json!({"manifest": app})).await;
        if status != 200 {
            return Err(format!("install: {status} {body}"));
        }
        let (status, session) = controller(&client, &bases[0], &token, "start", json!({"app_id": "chaos"})).await;
        (status == 200).then_some(session.clone()).ok_or(format!("start: {status} {session}"))
    })?;
    let world = World {
        args,
        rt,
        client,
        token,
        bases,
        changes: Arc::new(Mutex::new(Changes::default())),
        start: Instant::now(),
    };
    if world.converge().is_none() {
        return Err("the second instance never took up the app".into());
    }
    step(&format!("traffic at {} req/s for {} min, with faults", args.rate, args.minutes));
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let traffic = world.rt.spawn(traffic(&world, args.rate, stop.clone(), outcomes.clone()));
    let churn = world.rt.spawn(churn(&world, stop.clone()));

    let until = world.start + Duration::from_secs_f64(args.minutes * 60.0);
    let mut faults = Vec::new();
    let mut downtimes: Vec<(Instant, Instant)> = Vec::new();
    while world.pause(5.0, until) {
        let at = world.start.elapsed();
        step("killing redis (restarted empty 3 s later)");
        redis.kill();
        if !world.pause(3.0, until + Duration::from_secs(3)) {
            break;
        }
        redis.spawn(args, tmp)?;
        faults.push(Fault { what: "redis killed, restarted empty after 3 s".into(), at, converged: world.converge() });
        if !world.pause(5.0, until) {
            break;
        }
        let at = world.start.elapsed();
        step("killing instance b with -9 (restarted 2 s later)");
        let killed = Instant::now();
        instances[1].kill_9();
        std::thread::sleep(Duration::from_secs(2));
        instances[1].spawn(args, tmp, &redis)?;
        downtimes.push((killed, Instant::now()));
        faults.push(Fault {
            what: "instance b killed (-9), restarted after 2 s".into(),
            at,
            converged: world.converge(),
        });
        if !world.pause(5.0, until) {
            break;
        }
        let at = world.start.elapsed();
        step(&format!("freezing redis for {} s", args.freeze_secs));
        redis.signal("STOP");
        std::thread::sleep(Duration::from_secs(args.freeze_secs));
        redis.signal("CONT");
        faults.push(Fault {
            what: format!("redis frozen for {} s", args.freeze_secs),
            at,
            converged: world.converge(),
        });
    }
    stop.store(true, Ordering::Relaxed);
    world.rt.block_on(async {
        let _ = traffic.await;
        let _ = churn.await;
    });
    step("checking");
    let outcomes = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
    let report = judge(&world, &session, &outcomes, &faults, &downtimes, &load_before)?;
    drop(instances);
    drop(redis);
    Ok(report)
}

/// Open-loop requests at `rate`, alternating instances and classes, until `stop`.
fn traffic(
    world: &World,
    rate: u64,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (client, bases, token) = (world.client.clone(), world.bases.clone(), world.token.clone());
    async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut n = 0usize;
        let mut running = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            let instance = n % 2;
            let (class, model, stream) = CLASSES[(n / 2) % CLASSES.len()];
            let (client, base, token, outcomes) =
                (client.clone(), bases[instance].clone(), token.clone(), outcomes.clone());
            running.push(tokio::spawn(async move {
                let sent = Instant::now();
                let result = chat(&client, &base, &token, model, stream).await.map(|tokens| tokens * PRICE);
                let outcome = Outcome { instance, class, sent, done: Instant::now(), result };
                if let Ok(mut all) = outcomes.lock() {
                    all.push(outcome);
                }
            }));
            running.retain(|r| !r.is_finished());
        }
        for r in running {
            let _ = r.await;
        }
    }
}

/// Every second an install through one instance or the other; every third app installed is
/// uninstalled again. Only acknowledged (200) changes count.
fn churn(world: &World, stop: Arc<AtomicBool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (client, bases, token, changes) =
        (world.client.clone(), world.bases.clone(), world.token.clone(), world.changes.clone());
    async move {
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n += 1;
            Changes::churn_once(&changes, &client, &bases[n % 2], &token, n).await;
        }
    }
}

/// The verdicts and the report; Ok(false) when one failed.
fn judge(
    world: &World,
    session: &Value,
    outcomes: &[Outcome],
    faults: &[Fault],
    downtimes: &[(Instant, Instant)],
    load_before: &str,
) -> Res<bool> {
    let down = |o: &Outcome| o.instance == 1 && downtimes.iter().any(|(k, b)| o.done >= *k && o.sent <= *b);
    let stuck = outcomes.iter().filter(|o| o.done - o.sent >= REQUEST_TIMEOUT).count();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err() && !down(o)).collect();
    let failed_down = outcomes.iter().filter(|o| o.result.is_err() && down(o)).count();
    let converged_all = faults.iter().all(|f| f.converged.is_some());

    // Final state: same apps on both, every acknowledged change held.
    let final_converged = world.converge();
    let same_apps = world.rt.block_on(async {
        let a = app_ids(&world.client, &world.bases[0], &world.token).await;
        a.is_some() && a == app_ids(&world.client, &world.bases[1], &world.token).await
    });

    // Spend, as both count it once their figures were exchanged.
    std::thread::sleep(Duration::from_millis(600));
    let spend: Vec<f64> = world.rt.block_on(async {
        let mut out = Vec::new();
        for base in &world.bases {
            let kwargs = json!({"session_id": session["id"]});
            let (_, usage) = controller(&world.client, base, &world.token, "get_usage", kwargs).await;
            out.push(usage["spend"].as_f64().unwrap_or(f64::NAN));
        }
        out
    });
    let unit = outcomes.iter().filter_map(|o| o.result.as_ref().ok().copied()).fold(0.0, f64::max);
    let answered: f64 = outcomes.iter().filter_map(|o| o.result.as_ref().ok()).sum();
    let cut = failed_down as f64 * unit;
    let unstored: f64 = outcomes
        .iter()
        .filter(|o| o.instance == 1 && downtimes.iter().any(|(k, _)| o.done <= *k && *k - o.done < UNSTORED))
        .filter_map(|o| o.result.as_ref().ok())
        .sum();
    let eps = 1e-9 + unit * 2.0; // the two probes before the traffic began
    let spend_ok = (spend[0] - spend[1]).abs() < 1e-6
        && spend[0] <= answered + cut + eps
        && spend[0] >= answered - unstored - 1e-9;

    let mut r = Report::default();
    r.md.push_str("# ferrolite chaos (the soak's fault phase)\n\n");
    r.md += &format!(
        "- machine: {} cores; load before: {load_before}; after: {}\n- versions: {}, {}\n- {} requests at {} req/s over {:.1} min, freeze {} s; reproduce: `benches/soak.sh --faults`\n",
        cores(),
        loadavg(),
        cmd_output(&world.args.bin_dir.join("ferrolite").display().to_string(), &["--version"]).trim(),
        cmd_output("redis-server", &["--version"]).split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        outcomes.len(),
        world.args.rate,
        world.args.minutes,
        world.args.freeze_secs,
    );
    let checks = [
        ("no request stuck past its timeout", format!("{stuck} stuck"), stuck == 0),
        (
            "no request failed but on the killed instance while down",
            format!("{} failed elsewhere, {failed_down} while down", failed.len()),
            failed.is_empty(),
        ),
        (
            "every acknowledged change held after each fault",
            format!(
                "{} of {} faults within {} s",
                faults.iter().filter(|f| f.converged.is_some()).count(),
                faults.len(),
                world.args.converge_secs
            ),
            converged_all,
        ),
        (
            "the same apps on both at the end",
            format!("held: {}, same: {same_apps}", final_converged.is_some()),
            final_converged.is_some() && same_apps,
        ),
        (
            "spend never counted twice, lost at most the killed instance's last second",
            format!(
                "{:.6} / {:.6} counted, {answered:.6} answered, {unstored:.6} unstored, {cut:.6} cut",
                spend[0], spend[1]
            ),
            spend_ok,
        ),
    ];
    let rows: Vec<Vec<String>> =
        checks.iter().map(|(what, got, ok)| vec![what.to_string(), got.clone(), verdict(*ok).to_string()]).collect();
    r.table("Verdicts", "", &["check", "measured", ""], &rows);
    let rows: Vec<Vec<String>> = faults
        .iter()
        .map(|f| {
            let converged =
                f.converged.map(|d| format!("{:.2} s", d.as_secs_f64())).unwrap_or("not within the limit".into());
            vec![format!("{:.1} s", f.at.as_secs_f64()), f.what.clone(), converged]
        })
        .collect();
    r.table(
        "Faults",
        "Converged: from the fault's end until both instances listed every acknowledged change.",
        &["at", "fault", "converged in"],
        &rows,
    );
    let rows: Vec<Vec<String>> = CLASSES
        .iter()
        .map(|(name, _, _)| {
            let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.class == *name).collect();
            let ok = of.iter().filter(|o| o.result.is_ok()).count();
            vec![name.to_string(), of.len().to_string(), ok.to_string(), (of.len() - ok).to_string()]
        })
        .collect();
    r.table("Traffic", "", &["class", "sent", "200", "failed"], &rows);
    if !failed.is_empty() {
        r.md += "\n## Failures outside the downtime (first 10)\n\n";
        for o in failed.iter().take(10) {
            r.md += &format!(
                "- instance {} {} at {:.2} s: {:?}\n",
                o.instance,
                o.class,
                (o.sent - world.start).as_secs_f64(),
                o.result
            );
        }
    }
    r.put("requests", json!(outcomes.len()));
    r.put("stuck", json!(stuck));
    r.put("failed_outside_downtime", json!(failed.len()));
    r.put("failed_while_down", json!(failed_down));
    r.put("faults", json!(faults.iter().map(|f| json!({"at_s": f.at.as_secs_f64(), "fault": f.what, "converged_s": f.converged.map(|d| d.as_secs_f64())})).collect::<Vec<_>>()));
    r.put("spend", json!({"counted": spend, "answered": answered, "unstored": unstored, "cut": cut}));
    let pass = checks.iter().all(|(_, _, ok)| *ok);
    r.put("pass", json!(pass));
    let (md, js) = write_results(&world.args.harness.out_dir, "chaos", &r.md, &Value::Object(r.json))?;
    step(&format!("wrote {md} and {js}"));
    print!("{}", r.md);
    Ok(pass)
}

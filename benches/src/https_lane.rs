//! The HTTPS upstream lane (issue 22, point 2): the pass-through chat at N connections through
//! ferrolite and through nginx when the upstream is behind TLS with a private CA.
//!
//! A CA and a server certificate for `localhost` and 127.0.0.1 are made for the run (rcgen) in
//! the scratch dir. The fake upstream serves them over rustls (`--tls-cert`, `--tls-key`; ALPN
//! offers h2 and http/1.1). ferrolite trusts the CA through `SSL_CERT_FILE` only (its
//! `SSL_CERT_DIR` removed) and calls `https://127.0.0.1:PORT/v1`; nginx proxies with
//! `proxy_pass https://` to an upstream block with `keepalive 64`, verifying the certificate
//! against the CA (`proxy_ssl_verify on`, the name `localhost`, SNI, session reuse). A second fake
//! offers http/1.1 only, so ferrolite is also measured on the protocol nginx speaks upstream.
//!
//! The driver (`bin/bench.rs`) calls [`measure`] with its load tool and its check as [`Hooks`];
//! everything else (processes, certificates, configs, the report's table) is here.

use crate::gateway::{manifest, start_ferrolite_with_env, Launch, UPSTREAM_KEY};
use crate::procs::{free_port, raw_get, Bystanders, Proc};
use crate::report::{median, ms, opt_f, rps, verdict, Report};
use crate::Res;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Measured rounds: each round loads every target once, one after another, so a slow spell of
/// the machine does not fall on one target only; req/s and CPU are the medians.
pub const ROUNDS: usize = 3;

const CHAT_BODY: &str = r#"{"model":"gpt","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16}"#;

/// A request the driver's load tool sends again and again.
pub struct Call {
    pub url: String,
    pub body: String,
    pub auth: Option<String>,
    /// The process group whose CPU time the load is charged to.
    pub leader: u32,
}

/// What the lane needs of the run.
pub struct Setup<'a> {
    pub launch: Launch<'a>,
    /// The nginx binary.
    pub nginx: &'a str,
    /// Worker threads of the fake upstream.
    pub fake_workers: usize,
    pub upstream_latency_ms: u64,
    pub connections: usize,
    /// Length of each measured load.
    pub secs: u64,
    /// Groups paused while another target is measured; the lane's nginx and ferrolite join them
    /// for as long as they run.
    pub bystanders: Bystanders,
}

/// The driver's tools: `load` runs the load tool closed loop against a call (connections,
/// seconds) and returns its record as JSON (at least `rps`, `error_rate`, `p50_ms`, `p99_ms`,
/// `cpu_secs_per_1k`); `check` sends the call once and fails unless it answers 200 with `expect`
/// in the body.
pub struct Hooks<'a> {
    pub load: &'a dyn Fn(&Call, usize, u64) -> Res<Value>,
    pub check: &'a dyn Fn(&str, &Call, &str) -> Res<()>,
}

/// One target of the lane.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub name: String,
    /// The upstream URL the target calls.
    pub upstream: String,
    /// The ALPN protocols the fake behind it offers.
    pub fake_alpn: String,
    /// HTTP versions of the requests the fake received from this target (check, warm-up, rounds).
    pub upstream_requests: BTreeMap<String, u64>,
    /// TLS handshakes the fake completed meanwhile, by "version suite alpn=protocol full|resumed".
    pub tls_handshakes: BTreeMap<String, u64>,
    pub rps_median: f64,
    pub cpu_secs_per_1k_median: Option<f64>,
    /// Every measured round's record from the load tool.
    pub rounds: Vec<Value>,
}

/// The lane's figures (`https_upstream` in latest.json).
#[derive(Debug, Clone, Serialize)]
pub struct HttpsLane {
    pub connections: usize,
    pub secs: u64,
    pub rounds: usize,
    pub certificate: String,
    pub nginx: TargetResult,
    /// ferrolite against the fake that offers h2 and http/1.1 (its default: HTTP/1.1 on the
    /// lanes' own connections).
    pub ferrolite: TargetResult,
    /// ferrolite against the fake that offers http/1.1 only (the protocol nginx speaks upstream).
    pub ferrolite_http1: TargetResult,
    /// A second ferrolite run with `--upstream-http2`, against the fake that offers h2.
    pub ferrolite_http2: TargetResult,
    /// Whether that one negotiated HTTP/2 (and only it).
    pub ferrolite_negotiated_h2: bool,
    /// ferrolite's req/s over nginx's (medians).
    pub rps_ratio: f64,
    /// ferrolite's CPU per request over nginx's (medians).
    pub cpu_ratio: Option<f64>,
    pub http1_rps_ratio: f64,
    pub http1_cpu_ratio: Option<f64>,
    pub http2_rps_ratio: f64,
    pub http2_cpu_ratio: Option<f64>,
    /// ferrolite at least 0.9x nginx's req/s.
    pub target_met: bool,
}

/// The run's CA and the upstream's certificate and key, as PEM files.
pub struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA, and a server certificate for `localhost` and 127.0.0.1 it signed (ECDSA P-256), written
/// to `dir` as `ca.pem`, `upstream.pem` and `upstream-key.pem`.
pub fn make_certificates(dir: &Path) -> Res<Certificates> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| format!("making the certificates: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "ferrolite bench CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(err)?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).map_err(err)?;
    let out =
        Certificates { ca: dir.join("ca.pem"), cert: dir.join("upstream.pem"), key: dir.join("upstream-key.pem") };
    for (path, pem) in [(&out.ca, ca.pem()), (&out.cert, leaf.pem()), (&out.key, leaf_key.serialize_pem())] {
        std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(out)
}

/// nginx in front of the HTTPS fake: the worker settings of the driver's plain nginx config (one
/// worker per core, `worker_connections` each), an upstream block with keepalive, and the upstream's
/// certificate verified against the run's CA under the name `localhost`. TLS 1.3 is allowed
/// explicitly: nginx before 1.23.4 (Debian 12 has 1.22) speaks only up to TLS 1.2 upstream by
/// default, and ferrolite and the fake settle on 1.3.
pub fn nginx_conf(dir: &Path, port: u16, fake: u16, ca: &Path, worker_connections: usize) -> String {
    let ssl = format!(
        "      proxy_ssl_trusted_certificate {};\n      proxy_ssl_verify on;\n      proxy_ssl_verify_depth 2;\n      \
         proxy_ssl_name localhost;\n      proxy_ssl_server_name on;\n      proxy_ssl_session_reuse on;\n      \
         proxy_ssl_protocols TLSv1.2 TLSv1.3;\n",
        ca.display()
    );
    crate::gateway::nginx_conf(dir, port, fake, None, worker_connections, "https", &ssl)
}

/// A fake upstream behind TLS.
struct Fake {
    proc: Proc,
    port: u16,
    alpn: &'static str,
}

/// Removes a group from the bystanders when dropped (before its process stops, so its id is
/// never signalled once it may belong to someone else).
struct Standing<'a>(&'a Bystanders, u32);

impl<'a> Standing<'a> {
    fn new(bystanders: &'a Bystanders, leader: u32) -> Standing<'a> {
        bystanders.add(leader);
        Standing(bystanders, leader)
    }
}

impl Drop for Standing<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// What the fakes saw over TLS, read from their `GET /tls-stats` over one kept-alive
/// HTTP/1.1 connection (so reading it adds no handshake once the first read opened it).
struct Stats {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Stats {
    fn new(ca_pem: &[u8]) -> Res<Stats> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let ca = reqwest::Certificate::from_pem(ca_pem).map_err(|e| format!("the run's CA: {e}"))?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .http1_only()
            .pool_idle_timeout(None)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Stats { rt, client })
    }

    fn get(&self, url: &str) -> Res<(u16, String)> {
        self.rt.block_on(async {
            let response = self.client.get(url).send().await.map_err(|e| format!("GET {url}: {e:?}"))?;
            let status = response.status().as_u16();
            Ok((status, response.text().await.map_err(|e| format!("GET {url}: {e}"))?))
        })
    }

    fn read(&self, fake: &Fake) -> Res<Value> {
        let url = format!("https://127.0.0.1:{}/tls-stats", fake.port);
        let (status, text) = self.get(&url)?;
        if status != 200 {
            return Err(format!("GET {url}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON ({e}): {text}"))
    }

    /// Polls the fake's `/health` over HTTPS until it answers 200.
    fn wait_ready(&self, fake: &mut Fake) -> Res<()> {
        let url = format!("https://127.0.0.1:{}/health", fake.port);
        let since = Instant::now();
        loop {
            let answer = self.get(&url);
            if matches!(answer, Ok((200, _))) {
                return Ok(());
            }
            if let Some(exit) = fake.proc.exited() {
                return Err(exit);
            }
            if since.elapsed() > Duration::from_secs(20) {
                return Err(format!("the HTTPS fake did not answer 200 on {url} within 20 s: {answer:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Counts that grew between two reads of `/tls-stats` (`field` is `handshakes` or `requests`).
fn grown(before: &Value, after: &Value, field: &str, into: &mut BTreeMap<String, u64>) {
    let Some(after) = after.get(field).and_then(Value::as_object) else { return };
    for (key, n) in after {
        let was = before.pointer(&format!("/{field}/{}", key.replace('~', "~0").replace('/', "~1")));
        let grew = n.as_u64().unwrap_or(0).saturating_sub(was.and_then(Value::as_u64).unwrap_or(0));
        if grew > 0 {
            *into.entry(key.clone()).or_default() += grew;
        }
    }
}

fn num(load: &Value, key: &str) -> f64 {
    load.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// One target as the lane drives it.
struct Lane<'a> {
    name: &'static str,
    call: Call,
    fake: &'a Fake,
    upstream: String,
    requests: BTreeMap<String, u64>,
    handshakes: BTreeMap<String, u64>,
    rounds: Vec<Value>,
}

impl<'a> Lane<'a> {
    fn new(name: &'static str, call: Call, fake: &'a Fake, upstream: String) -> Lane<'a> {
        Lane { name, call, fake, upstream, requests: BTreeMap::new(), handshakes: BTreeMap::new(), rounds: Vec::new() }
    }

    /// Runs `what` (a check or a load) and adds what the fake saw meanwhile to this target's counts.
    fn seen<T>(&mut self, stats: &Stats, what: impl FnOnce(&Call) -> Res<T>) -> Res<T> {
        let before = stats.read(self.fake)?;
        let out = what(&self.call)?;
        let after = stats.read(self.fake)?;
        grown(&before, &after, "requests", &mut self.requests);
        grown(&before, &after, "handshakes", &mut self.handshakes);
        Ok(out)
    }

    fn result(self) -> TargetResult {
        let rps_all: Vec<f64> = self.rounds.iter().map(|l| num(l, "rps")).collect();
        let cpu_all: Vec<f64> = self.rounds.iter().map(|l| num(l, "cpu_secs_per_1k")).collect();
        TargetResult {
            name: self.name.to_owned(),
            upstream: self.upstream,
            fake_alpn: self.fake.alpn.to_owned(),
            upstream_requests: self.requests,
            tls_handshakes: self.handshakes,
            rps_median: median(&rps_all),
            cpu_secs_per_1k_median: Some(median(&cpu_all)).filter(|c| c.is_finite()),
            rounds: self.rounds,
        }
    }
}

/// Starts a fake upstream over TLS offering `alpn`; ready when `/health` answers over HTTPS.
fn start_fake(setup: &Setup, certs: &Certificates, stats: &Stats, tag: &str, alpn: &'static str) -> Res<Fake> {
    let port = free_port()?;
    let log = setup.launch.scratch.join(format!("fake-{tag}.log"));
    let log = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(setup.launch.bin_dir.join("fake-upstream"));
    cmd.args(["--port", &port.to_string(), "--workers", &setup.fake_workers.to_string()])
        .args(["--latency-ms", &setup.upstream_latency_ms.to_string()])
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .args(["--tls-alpn", alpn])
        .stdout(Stdio::null())
        .stderr(log);
    let proc = Proc::spawn(&format!("fake-upstream ({tag})"), &mut cmd, setup.launch.pidfile)?;
    let mut fake = Fake { proc, port, alpn };
    stats.wait_ready(&mut fake)?;
    // It speaks TLS only: a plain HTTP request to its port gets no HTTP answer.
    if let Some(status) = raw_get(port, "/health", None) {
        return Err(format!("the HTTPS fake answered plain HTTP ({status})"));
    }
    Ok(fake)
}

/// Starts the lane's processes, checks that each target answers through TLS, measures them
/// ([`ROUNDS`] rounds after a warm-up), stops them, and adds the table to `report` (and
/// `https_upstream` to its JSON).
pub fn measure(setup: &Setup, hooks: &Hooks, report: &mut Report) -> Res<HttpsLane> {
    let step = |what: &str| eprintln!("bench: https upstream: {what}");
    let dir = setup.launch.scratch.join("https");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    step("making a CA and the upstream's certificate (localhost, 127.0.0.1)");
    let certs = make_certificates(&dir)?;
    let ca_pem = std::fs::read(&certs.ca).map_err(|e| e.to_string())?;
    let stats = Stats::new(&ca_pem)?;

    step("starting the fake upstream over TLS (ALPN h2,http/1.1, and http/1.1 only)");
    let fake = start_fake(setup, &certs, &stats, "https", "h2,http/1.1")?;
    let fake_h1 = start_fake(setup, &certs, &stats, "https-h1", "http/1.1")?;

    step("starting nginx (proxy_pass https://, proxy_ssl_verify on)");
    let nginx_port = free_port()?;
    // nginx's /health is the fake's, fetched over verified TLS.
    let conf = nginx_conf(&dir, nginx_port, fake.port, &certs.ca, 4096);
    let (nginx, _) = crate::gateway::start_nginx(
        "nginx (https upstream)",
        setup.nginx,
        &dir,
        &conf,
        nginx_port,
        setup.launch.pidfile,
    )?;
    let nginx_standing = Standing::new(&setup.bystanders, nginx.pid());

    step("starting ferrolite with SSL_CERT_FILE naming the run's CA");
    let app = |service: &str, port: u16| -> Res<(PathBuf, String)> {
        let api_base = format!("https://127.0.0.1:{port}/v1");
        let model = json!({"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": api_base, "api_key": UPSTREAM_KEY}});
        let path = dir.join(format!("{service}-app.json"));
        std::fs::write(&path, manifest(service, vec![model]).to_string()).map_err(|e| e.to_string())?;
        Ok((path, api_base))
    };
    let (app_h2, base_h2) = app("https", fake.port)?;
    let (app_h1, base_h1) = app("https-h1", fake_h1.port)?;
    let env = [("SSL_CERT_FILE", Some(certs.ca.as_os_str())), ("SSL_CERT_DIR", None)];
    let gw = start_ferrolite_with_env(&setup.launch, "https", &[app_h2, app_h1], "https", &[], &env)?;
    let gw_standing = Standing::new(&setup.bystanders, gw.proc.pid());
    step("starting a second ferrolite with --upstream-http2");
    let (app_h2c, _) = app("https-h2", fake.port)?;
    let gw2 = start_ferrolite_with_env(&setup.launch, "https-h2", &[app_h2c], "https-h2", &["--upstream-http2"], &env)?;
    let gw2_standing = Standing::new(&setup.bystanders, gw2.proc.pid());

    let call_on = |gw: &crate::gateway::Ferrolite, service: &str| Call {
        url: format!("http://127.0.0.1:{}/default/apps/{service}/v1/chat/completions", gw.port),
        body: CHAT_BODY.to_owned(),
        auth: Some(gw.token.clone()),
        leader: gw.proc.pid(),
    };
    let gateway_call = |service: &str| call_on(&gw, service);
    let nginx_call = Call {
        url: format!("http://127.0.0.1:{nginx_port}/v1/chat/completions"),
        body: CHAT_BODY.to_owned(),
        auth: None,
        leader: nginx.pid(),
    };
    let mut lanes = [
        Lane::new("nginx", nginx_call, &fake, format!("https://localhost:{}/v1 (127.0.0.1)", fake.port)),
        Lane::new("ferrolite", gateway_call("https"), &fake, base_h2.clone()),
        Lane::new("ferrolite (http/1.1 only)", gateway_call("https-h1"), &fake_h1, base_h1),
        Lane::new("ferrolite --upstream-http2", call_on(&gw2, "https-h2"), &fake, base_h2),
    ];

    step("checking that each target answers through TLS");
    for l in lanes.iter_mut() {
        let what = format!("{} over an HTTPS upstream", l.name);
        l.seen(&stats, |call| (hooks.check)(&what, call, "fake answer"))?;
        if l.requests.values().sum::<u64>() == 0 {
            return Err(format!("{what}: the answer did not come from the HTTPS fake"));
        }
    }

    step("warming up");
    for l in lanes.iter_mut() {
        l.seen(&stats, |call| (hooks.load)(call, 8, 1))?;
    }
    let conns = setup.connections;
    for round in 1..=ROUNDS {
        for l in lanes.iter_mut() {
            step(&format!("{conns} connections, round {round} of {ROUNDS}: {}", l.name));
            let load = l.seen(&stats, |call| (hooks.load)(call, conns, setup.secs))?;
            l.rounds.push(load);
        }
    }
    let [nginx_lane, gw_lane, gw_h1_lane, gw_h2_lane] = lanes;
    let (nginx_result, gw_result, gw_h1_result) = (nginx_lane.result(), gw_lane.result(), gw_h1_lane.result());
    let gw_h2_result = gw_h2_lane.result();
    // Stop them before the report is written (bystanders first, by the guards' drop order).
    drop(gw2_standing);
    drop(gw2);
    drop(gw_standing);
    drop(gw);
    drop(nginx_standing);
    drop(nginx);
    drop(fake_h1);
    drop(fake);

    let cpu_ratio = |a: &TargetResult, b: &TargetResult| {
        a.cpu_secs_per_1k_median.zip(b.cpu_secs_per_1k_median).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b)
    };
    let negotiated_h2 = gw_h2_result.upstream_requests.get("HTTP/2").copied().unwrap_or(0) > 0
        && gw_h2_result.upstream_requests.get("HTTP/1.1").copied().unwrap_or(0) == 0;
    let lane = HttpsLane {
        connections: conns,
        secs: setup.secs,
        rounds: ROUNDS,
        certificate: "ECDSA P-256 for localhost and 127.0.0.1, signed by a CA made for the run (rcgen)".into(),
        rps_ratio: gw_result.rps_median / nginx_result.rps_median,
        cpu_ratio: cpu_ratio(&gw_result, &nginx_result),
        http1_rps_ratio: gw_h1_result.rps_median / nginx_result.rps_median,
        http1_cpu_ratio: cpu_ratio(&gw_h1_result, &nginx_result),
        http2_rps_ratio: gw_h2_result.rps_median / nginx_result.rps_median,
        http2_cpu_ratio: cpu_ratio(&gw_h2_result, &nginx_result),
        target_met: gw_result.rps_median >= 0.9 * nginx_result.rps_median,
        ferrolite_negotiated_h2: negotiated_h2,
        nginx: nginx_result,
        ferrolite: gw_result,
        ferrolite_http1: gw_h1_result,
        ferrolite_http2: gw_h2_result,
    };
    write_table(report, &lane);
    Ok(lane)
}

fn write_table(report: &mut Report, lane: &HttpsLane) {
    let keys = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
        }
    };
    let nginx_rps = lane.nginx.rps_median;
    let nginx_cpu = lane.nginx.cpu_secs_per_1k_median;
    let row = |t: &TargetResult| {
        // p50, p99 and errors of the round whose req/s is the median.
        let mut rounds: Vec<&Value> = t.rounds.iter().collect();
        rounds.sort_by(|a, b| num(a, "rps").total_cmp(&num(b, "rps")));
        let mid = rounds.get(rounds.len() / 2).copied().cloned().unwrap_or(Value::Null);
        vec![
            t.name.clone(),
            keys(&t.upstream_requests),
            keys(&t.tls_handshakes),
            rps(t.rps_median),
            format!("{:.2}x", t.rps_median / nginx_rps),
            format!("{:.2}%", num(&mid, "error_rate") * 100.0),
            ms(num(&mid, "p50_ms")),
            ms(num(&mid, "p99_ms")),
            opt_f(t.cpu_secs_per_1k_median, 3),
            t.cpu_secs_per_1k_median
                .zip(nginx_cpu)
                .map(|(a, b)| format!("{:.2}x", a / b))
                .unwrap_or_else(|| "–".into()),
        ]
    };
    let rows = vec![row(&lane.nginx), row(&lane.ferrolite), row(&lane.ferrolite_http1), row(&lane.ferrolite_http2)];
    report.table(
        &format!("HTTPS upstream at {} connections (chat, JSON)", lane.connections),
        &format!(
            "The fake upstream behind TLS (rustls over ring; its certificate is {}). ferrolite calls \
             `https://127.0.0.1:PORT/v1` and trusts the CA through `SSL_CERT_FILE` only (`SSL_CERT_DIR` removed); \
             nginx proxies with `proxy_pass https://` to an upstream block with `keepalive 64`, HTTP/1.1, \
             `proxy_ssl_verify on` against the CA, `proxy_ssl_name localhost` with SNI, \
             `proxy_ssl_session_reuse on` and `proxy_ssl_protocols TLSv1.2 TLSv1.3` (the plain nginx's worker \
             settings; nginx closes an upstream connection after 1,000 requests, its default \
             `keepalive_requests`, hence its handshakes). The fake offers h2 and http/1.1 \
             by ALPN; ferrolite calls it over HTTP/1.1 on its lanes' own connections by default, the \
             `--upstream-http2` row is a second ferrolite that takes HTTP/2 where offered (hyper's pooled \
             client), and the http/1.1-only row is ferrolite against a second fake that offers http/1.1 only. \
             Closed loop, \
             {} s per load, {} rounds taking the targets in turn: req/s and CPU (the target's process group, \
             seconds per 1,000 requests) are the medians, errors and latency the median round's. Upstream \
             requests and TLS handshakes are what the fake counted from each target over its check, warm-up \
             and rounds. Target: ferrolite at least 0.9x nginx's req/s: {:.2}x ({}); with --upstream-http2 \
             it {} HTTP/2.",
            lane.certificate,
            lane.secs,
            lane.rounds,
            lane.rps_ratio,
            verdict(lane.target_met),
            if lane.ferrolite_negotiated_h2 { "negotiated" } else { "did not negotiate" },
        ),
        &[
            "target",
            "upstream requests",
            "TLS handshakes",
            "req/s",
            "vs nginx",
            "errors",
            "p50",
            "p99",
            "CPU s / 1k req",
            "CPU vs nginx",
        ],
        &rows,
    );
    report.put("https_upstream", json!(lane));
}

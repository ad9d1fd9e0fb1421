//! wrk as a second load tool beside oha (issue 22: a throughput figure that does not depend on one
//! tool). Debian's wrk 4.1, one thread (`-t1`), closed loop, `--latency`; the POST request is set
//! in a Lua script written for each run (`wrk.method`, `wrk.body`, `wrk.headers`), and wrk's text
//! output is parsed into the [`Load`] the oha runner returns. As with oha, the target's process
//! group is charged its CPU time, the other targets are paused while it runs, and wrk runs in a
//! process group of its own, its id in the pid file.

use crate::load::{Call, Load};
use crate::procs::{group_cpu_ticks, run_to_end, Bystanders, Finished};
use crate::Res;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What to do when wrk cannot be run.
pub const INSTALL_HINT: &str = "wrk is required: as root, apt-get install -y wrk (or pass --wrk PATH)";

/// The wrk runner.
pub struct Wrk {
    /// The wrk binary.
    pub bin: String,
    /// Clock ticks per second (for the CPU figures).
    pub ticks: f64,
    pub pidfile: Option<PathBuf>,
    /// Paused while another target is measured.
    pub bystanders: Bystanders,
    /// Where the Lua scripts go (`wrk-N.lua`).
    pub scratch: PathBuf,
}

/// What one wrk run printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Answers received, whatever their status ("N requests in ...").
    pub completed: u64,
    /// The run's length, in seconds ("... in 2.00s").
    pub secs: f64,
    /// "Requests/sec:", answers of any status.
    pub requests_per_sec: f64,
    /// "Non-2xx or 3xx responses:" (wrk counts statuses above 399), 0 when the line is absent.
    pub non_2xx: u64,
    /// "Socket errors: connect C, read R, write W, timeout T", zeros when the line is absent.
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A time as wrk prints it (`342.00us`, `2.21ms`, `1.10s`, `1.00m`, `1.00h`), in milliseconds.
fn time_ms(text: &str) -> Option<f64> {
    let units = [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0), ("h", 3_600_000.0)];
    units.iter().find_map(|(unit, scale)| text.strip_suffix(unit)?.parse::<f64>().ok().map(|v| v * scale))
}

/// Parses wrk 4.1's text output (run with `--latency`).
pub fn parse(text: &str) -> Res<Output> {
    let mut out = Output { mean_ms: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN, ..Output::default() };
    let mut seen_requests = false;
    let mut seen_rate = false;
    let number = |s: &str| s.trim().trim_end_matches(',').parse::<u64>().ok();
    for line in text.lines() {
        let line = line.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            out.requests_per_sec = rest.trim().parse().map_err(|e| format!("wrk: bad Requests/sec {rest:?}: {e}"))?;
            seen_rate = true;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            out.non_2xx = number(rest).ok_or_else(|| format!("wrk: bad line {line:?}"))?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut kv = part.split_whitespace();
                let (Some(kind), Some(n)) = (kv.next(), kv.next().and_then(number)) else {
                    return Err(format!("wrk: bad line {line:?}"));
                };
                match kind {
                    "connect" => out.connect_errors = n,
                    "read" => out.read_errors = n,
                    "write" => out.write_errors = n,
                    "timeout" => out.timeouts = n,
                    _ => {}
                }
            }
        } else if words.len() >= 4 && words[1] == "requests" && words[2] == "in" {
            out.completed = number(words[0]).ok_or_else(|| format!("wrk: bad line {line:?}"))?;
            out.secs =
                time_ms(words[3].trim_end_matches(',')).ok_or_else(|| format!("wrk: bad line {line:?}"))? / 1000.0;
            seen_requests = true;
        } else if words.len() == 5 && words[0] == "Latency" {
            out.mean_ms = time_ms(words[1]).unwrap_or(f64::NAN);
        } else if words.len() == 2 && words[0] == "50%" {
            out.p50_ms = time_ms(words[1]).unwrap_or(f64::NAN);
        } else if words.len() == 2 && words[0] == "99%" {
            out.p99_ms = time_ms(words[1]).unwrap_or(f64::NAN);
        }
    }
    if !seen_requests || !seen_rate {
        return Err(format!("wrk's output lacks its request count or rate: {text}"));
    }
    Ok(out)
}

impl Output {
    /// As the oha runner reports it: `ok` = answers of 2xx (or 3xx), errors = the other answers
    /// plus every socket error (timeouts included), req/s of the ok answers only.
    pub fn to_load(&self, connections: usize, cpu_secs: Option<f64>) -> Load {
        let ok = self.completed.saturating_sub(self.non_2xx);
        let errors = self.non_2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts;
        let requests = ok + errors;
        // wrk's rate has more digits than its duration ("2.00s").
        let secs = if self.requests_per_sec > 0.0 { self.completed as f64 / self.requests_per_sec } else { self.secs };
        Load {
            connections,
            rate: None,
            secs,
            requests,
            ok,
            errors,
            error_rate: if requests == 0 { 1.0 } else { errors as f64 / requests as f64 },
            rps: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            p999_ms: f64::NAN,
            mean_ms: self.mean_ms,
            cpu_secs,
            cpu_secs_per_1k: cpu_secs.filter(|_| ok > 0).map(|c| c / ok as f64 * 1000.0),
        }
    }
}

/// `text` as a Lua string literal.
fn lua_string(text: &str) -> String {
    let mut out = String::from("\"");
    for b in text.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            // Control characters and UTF-8 bytes as decimal escapes (always three digits, so a
            // digit after one is never read as part of it).
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

/// The Lua script that makes wrk send `call`: a POST with its body and headers.
pub fn lua_script(call: &Call) -> String {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(token) = &call.auth {
        headers.push(("authorization".to_owned(), format!("Bearer {token}")));
    }
    headers.extend(call.extra_headers.iter().cloned());
    let mut out = String::from("wrk.method = \"POST\"\n");
    let _ = writeln!(out, "wrk.body = {}", lua_string(&call.body));
    for (name, value) in headers {
        let _ = writeln!(out, "wrk.headers[{}] = {}", lua_string(&name), lua_string(&value));
    }
    out
}

static SCRIPTS: AtomicUsize = AtomicUsize::new(0);

impl Wrk {
    /// wrk's version line; an error saying how to install it when it cannot be run.
    pub fn version(&self) -> Res<String> {
        let out = Command::new(&self.bin)
            .arg("-v")
            .output()
            .map_err(|e| format!("cannot run {}: {e}; {INSTALL_HINT}", self.bin))?;
        // wrk -v prints its version, then its usage, and exits 1.
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let first = text.lines().next().unwrap_or("").trim().to_owned();
        if !first.starts_with("wrk ") {
            return Err(format!("{} -v does not print wrk's version ({first:?}); {INSTALL_HINT}", self.bin));
        }
        Ok(first)
    }

    /// `call` with `connections` connections on one thread for `secs` seconds, closed loop.
    pub fn run(&self, call: &Call, connections: usize, secs: u64) -> Res<Load> {
        let script = self.scratch.join(format!("wrk-{}.lua", SCRIPTS.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&script, lua_script(call)).map_err(|e| format!("{}: {e}", script.display()))?;
        let _paused = self.bystanders.pause_all_but(call.leader);
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-t1", "-c", &connections.to_string(), "-d", &format!("{secs}s"), "--latency", "--timeout", "30s"]);
        cmd.arg("-s").arg(&script).arg(&call.url);
        let cpu_before = call.leader.map(group_cpu_ticks);
        let started = Instant::now();
        let Finished { status, stdout, stderr } =
            run_to_end("wrk", &mut cmd, self.pidfile.as_deref()).map_err(|e| format!("{e}; {INSTALL_HINT}"))?;
        let cpu_after = call.leader.map(group_cpu_ticks);
        if !status.success() {
            return Err(format!("wrk failed ({status}) on {}: {stderr}{stdout}", call.url));
        }
        let output = parse(&stdout)?;
        let cpu_secs = match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / self.ticks),
            _ => None,
        };
        let mut load = output.to_load(connections, cpu_secs);
        if !load.secs.is_finite() || load.secs <= 0.0 {
            load.secs = started.elapsed().as_secs_f64();
        }
        Ok(load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1 (debian/4.1.0-3+b2) on this machine: `-t1 -c32 -d2s --latency --timeout 30s` with
    /// the chat POST against the fake upstream.
    const FAKE: &str = "Running 2s test @ http://127.0.0.1:18933/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   338.77us  133.13us   2.21ms   80.66%
    Req/Sec    92.57k    12.19k  134.29k    85.00%
  Latency Distribution
     50%  342.00us
     75%  385.00us
     90%  445.00us
     99%  721.00us
  183586 requests in 2.00s, 83.86MB read
Requests/sec:  91744.93
Transfer/sec:     41.91MB
";

    /// The same wrk against a Python server that answers every tenth request 500 and closes
    /// every fiftieth connection without an answer.
    const ERRORS: &str = "Running 2s test @ http://127.0.0.1:18932/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    42.03ms    8.56ms  50.54ms   95.74%
    Req/Sec    93.95     17.49   130.00     80.00%
  Latency Distribution
     50%   43.93ms
     75%   44.02ms
     90%   44.10ms
     99%   50.50ms
  188 requests in 2.01s, 29.39KB read
  Socket errors: connect 0, read 4, write 0, timeout 0
  Non-2xx or 3xx responses: 19
Requests/sec:     93.60
Transfer/sec:     14.63KB
";

    #[test]
    fn parses_a_clean_run() {
        let out = parse(FAKE).unwrap();
        assert_eq!(out.completed, 183_586);
        assert_eq!(out.secs, 2.0);
        assert_eq!(out.requests_per_sec, 91_744.93);
        assert_eq!((out.non_2xx, out.connect_errors, out.read_errors, out.write_errors, out.timeouts), (0, 0, 0, 0, 0));
        assert!((out.mean_ms - 0.33877).abs() < 1e-9);
        assert!((out.p50_ms - 0.342).abs() < 1e-9);
        assert!((out.p99_ms - 0.721).abs() < 1e-9);
        let load = out.to_load(32, Some(1.5));
        assert_eq!((load.requests, load.ok, load.errors), (183_586, 183_586, 0));
        assert!((load.rps - 91_744.93).abs() < 1e-6);
        assert!((load.cpu_secs_per_1k.unwrap() - 1.5 / 183.586).abs() < 1e-9);
        assert!(load.p999_ms.is_nan());
    }

    #[test]
    fn counts_non_2xx_and_socket_errors() {
        let out = parse(ERRORS).unwrap();
        assert_eq!(out.completed, 188);
        assert_eq!(out.secs, 2.01);
        assert_eq!(
            (out.non_2xx, out.connect_errors, out.read_errors, out.write_errors, out.timeouts),
            (19, 0, 4, 0, 0)
        );
        assert!((out.p50_ms - 43.93).abs() < 1e-9);
        assert!((out.p99_ms - 50.5).abs() < 1e-9);
        let load = out.to_load(4, None);
        assert_eq!((load.requests, load.ok, load.errors), (192, 169, 23));
        assert!((load.rps - 169.0 * 93.60 / 188.0).abs() < 1e-9);
        assert_eq!(load.cpu_secs_per_1k, None);
    }

    #[test]
    fn rejects_what_is_not_a_result() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused\n").is_err());
    }

    #[test]
    fn times_in_every_unit() {
        assert_eq!(time_ms("500.00us"), Some(0.5));
        assert_eq!(time_ms("2.21ms"), Some(2.21));
        assert_eq!(time_ms("1.10s"), Some(1100.0));
        assert_eq!(time_ms("1.00m"), Some(60_000.0));
        assert_eq!(time_ms("-nanus").map(f64::is_nan), Some(true));
        assert_eq!(time_ms("Distribution"), None);
    }

    #[test]
    fn script_quotes_body_and_headers() {
        let call = Call {
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            body: "{\"content\":\"a\\\"b\nÄ\"}".into(),
            auth: Some("tok".into()),
            leader: None,
            extra_headers: vec![("x-portkey-provider".into(), "openai".into())],
        };
        assert_eq!(
            lua_script(&call),
            "wrk.method = \"POST\"\nwrk.body = \"{\\\"content\\\":\\\"a\\\\\\\"b\\010\\195\\132\\\"}\"\n\
             wrk.headers[\"content-type\"] = \"application/json\"\nwrk.headers[\"authorization\"] = \"Bearer tok\"\n\
             wrk.headers[\"x-portkey-provider\"] = \"openai\"\n"
        );
    }
}

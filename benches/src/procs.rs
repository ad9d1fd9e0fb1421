//! Processes the harness starts and watches: each in a process group of its own, stopped (the
//! whole group) when dropped, when the program ends or fails, and on a signal; their memory, CPU
//! time and open file descriptors from `/proc`; free ports and readiness polling.

use crate::Res;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Leaders of the process groups this run started, stopped on exit or on a signal.
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Process groups that stand by while another target is measured: each measurement pauses them
/// (SIGSTOP) and resumes them (SIGCONT) when it ends, so their background work (litellm's event
/// loop wakes several times a second) never lands in another target's tail latency.
#[derive(Clone, Default)]
pub struct Bystanders(Arc<Mutex<Vec<u32>>>);

impl Bystanders {
    /// `leader`'s group is paused whenever something else is measured.
    pub fn add(&self, leader: u32) {
        if let Ok(mut all) = self.0.lock() {
            all.push(leader);
        }
    }

    /// `leader`'s group is no longer paused (it is about to stop, and its id may be reused).
    pub fn remove(&self, leader: u32) {
        if let Ok(mut all) = self.0.lock() {
            all.retain(|p| *p != leader);
        }
    }

    /// Pauses every group but `target`'s until the guard drops.
    pub fn pause_all_but(&self, target: Option<u32>) -> Paused {
        let paused: Vec<u32> = self.0.lock().map(|all| all.clone()).unwrap_or_default();
        let paused: Vec<u32> = paused.into_iter().filter(|p| Some(*p) != target).collect();
        for pid in &paused {
            signal_group(*pid, "STOP");
        }
        Paused(paused)
    }
}

/// Groups paused for a measurement; dropping it resumes them.
#[must_use = "the groups resume when this drops"]
pub struct Paused(Vec<u32>);

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal_group(*pid, "CONT");
        }
    }
}

pub fn group_alive(pid: u32) -> bool {
    group_pids(pid).iter().any(|p| proc_state(*p).is_some_and(|s| s != "Z"))
}

/// Stops every group still registered (a signal arrived or the run is failing).
pub fn stop_all() {
    let pids: Vec<u32> = STARTED.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
    for pid in &pids {
        // A group paused for another target's measurement must run again to see the TERM.
        signal_group(*pid, "CONT");
        signal_group(*pid, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|p| group_alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &pids {
        signal_group(*pid, "KILL");
    }
}

/// On SIGINT, SIGTERM or SIGHUP: stops every group started, then exits 130 (`who` names the
/// program in the message).
pub fn install_signal_handler(who: &'static str) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
            else {
                return;
            };
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {}, _ = hup.recv() => {} }
            eprintln!("{who}: interrupted; stopping every process it started");
            stop_all();
            std::process::exit(130);
        });
    });
}

/// A child process in a process group of its own, stopped (the whole group) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub started: Instant,
    stopped: bool,
}

/// What a load tool printed, and how it ended.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end in a process group of its own (so an interrupted run stops it too; its
/// id in `pidfile`), reading its stdout and stderr as it runs.
pub fn run_to_end(name: &str, cmd: &mut Command, pidfile: Option<&Path>) -> Res<Finished> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut proc = Proc::spawn(name, cmd, pidfile)?;
    let stderr = proc.child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        })
    });
    let mut stdout = String::new();
    if let Some(mut o) = proc.child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    let status = proc.wait().map_err(|e| format!("{name}: {e}"))?;
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Finished { status, stdout, stderr })
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, pidfile: Option<&Path>) -> Res<Proc> {
        cmd.process_group(0);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let pid = child.id();
        if let Ok(mut v) = STARTED.lock() {
            v.push(pid);
        }
        if let Some(file) = pidfile {
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
                let _ = writeln!(f, "{pid}");
            }
        }
        Ok(Proc { name: name.to_owned(), child, started, stopped: false })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            _ => None,
        }
    }

    /// Waits for a process that ends by itself (its group is still stopped afterwards).
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait();
        self.stop();
        status
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.pid();
        signal_group(pid, "CONT");
        signal_group(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && group_alive(pid) {
            let _ = self.child.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(pid, "KILL");
        let _ = self.child.wait();
        if let Ok(mut v) = STARTED.lock() {
            v.retain(|p| *p != pid);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// /proc: memory and CPU of a process group

/// The fields of /proc/PID/stat after the command name (index 0 is field 3, the state).
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

pub fn proc_state(pid: u32) -> Option<String> {
    proc_stat(pid).and_then(|f| f.first().cloned())
}

/// Every process whose process group is `leader`'s.
pub fn group_pids(leader: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some(fields) = proc_stat(pid) {
            if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(leader) {
                out.push(pid);
            }
        }
    }
    out
}

/// VmRSS of one process, in KiB.
pub fn vm_rss_kb(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a whole process group, in KiB.
pub fn group_rss_kb(leader: u32) -> u64 {
    group_pids(leader).into_iter().map(vm_rss_kb).sum()
}

pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process group (and its reaped children), in clock ticks.
pub fn group_cpu_ticks(leader: u32) -> u64 {
    group_pids(leader)
        .into_iter()
        .filter_map(proc_stat)
        .map(|f| [11, 12, 13, 14].iter().filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok())).sum::<u64>())
        .sum()
}

/// A fresh connection with an HTTP/1.1 GET written on it (the connection closed after the
/// answer).
fn send_get(port: u16, path: &str, auth: Option<&str>) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.set_nodelay(true).ok()?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(token) = auth {
        request += &format!("Authorization: Bearer {token}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes()).ok()?;
    Some(stream)
}

/// The status and body of one GET (an answer framed by its length or its close), or None when
/// nothing answered.
pub fn get_text(port: u16, path: &str, auth: Option<&str>) -> Option<(u16, String)> {
    let mut answer = String::new();
    send_get(port, path, auth)?.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.split_whitespace().nth(1)?.parse().ok()?, body.to_owned()))
}

/// One HTTP/1.1 GET over a fresh connection; the status, or None when nothing answered.
pub fn raw_get(port: u16, path: &str, auth: Option<&str>) -> Option<u16> {
    let mut stream = send_get(port, path, auth)?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut head[got..]).ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&head[..got]).to_string();
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `path` until it answers 200; the time since `since`.
pub fn wait_ready(
    proc: &mut Proc,
    port: u16,
    path: &str,
    auth: Option<&str>,
    since: Instant,
    timeout: Duration,
) -> Res<Duration> {
    poll_until(proc, since, timeout, &format!("answer 200 on {path}"), || raw_get(port, path, auth) == Some(200))
}

/// Waits until `proc` accepts connections on `port` (a server whose protocol the harness does
/// not speak, such as the fake behind TLS); the time since `since`.
pub fn wait_listening(proc: &mut Proc, port: u16, since: Instant, timeout: Duration) -> Res<Duration> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    poll_until(proc, since, timeout, &format!("listen on port {port}"), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Polls `ready` until it holds, failing when `proc` exits first or `timeout` passes (naming
/// what it was to do).
fn poll_until(
    proc: &mut Proc,
    since: Instant,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Res<Duration> {
    loop {
        if ready() {
            return Ok(since.elapsed());
        }
        if let Some(exit) = proc.exited() {
            return Err(exit);
        }
        if since.elapsed() > timeout {
            return Err(format!("{} did not {what} within {timeout:?}", proc.name));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

pub fn free_port() -> Res<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Open file descriptors of one process (entries of /proc/PID/fd), or None when unreadable.
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

/// Threads of one process (the `Threads:` line of /proc/PID/status).
pub fn thread_count(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// A TCP socket one of a process's descriptors holds: its state (the code of /proc/net/tcp:
/// 0x01 established, 0x08 close-wait, 0x0A listen, ...) and its ports.
#[derive(Debug, Clone, Copy)]
pub struct TcpSocket {
    pub state: u8,
    pub local_port: u16,
    pub remote_port: u16,
}

pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_CLOSE_WAIT: u8 = 0x08;

/// The TCP sockets among a process's open descriptors, and how many descriptors are anything
/// else (files, pipes, event and timer descriptors, other sockets).
pub fn tcp_sockets(pid: u32) -> (Vec<TcpSocket>, usize) {
    let port = |field: &str| field.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0);
    let mut by_inode = std::collections::HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let state = u8::from_str_radix(f[3], 16).unwrap_or(0);
            by_inode.insert(f[9].to_owned(), TcpSocket { state, local_port: port(f[1]), remote_port: port(f[2]) });
        }
    }
    let (mut sockets, mut other) = (Vec::new(), 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
        let target = std::fs::read_link(entry.path()).map(|t| t.display().to_string()).unwrap_or_default();
        let inode = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']'));
        match inode.and_then(|i| by_inode.get(i)) {
            Some(socket) => sockets.push(*socket),
            None => other += 1,
        }
    }
    (sockets, other)
}

//! ferrolite as the harness runs it: app manifests, `ferrolite serve` on a fresh data dir with its
//! token, and the SSE events it streams back.

use crate::procs::{free_port, wait_ready, Proc};
use crate::Res;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The API key every deployment sends to a fake upstream.
pub const UPSTREAM_KEY: &str = "sk-bench-upstream";

/// An nginx config in `dir` proxying 127.0.0.1:`port` to the fake on `fake` the way every lane
/// runs it: `workers` worker processes (None: `auto`, one per core) with `worker_connections`
/// each, an upstream block with `keepalive 64`, HTTP/1.1 with keep-alive; `scheme` is `http` or
/// `https`, and `location` adds directives to the proxied location (the HTTPS lane's `proxy_ssl_*`).
/// Request bodies up to 1 MiB stay in memory (nginx's default writes one past 16 KiB to a temp
/// file), as ferrolite keeps them: the long-conversation lane's 112 KB bodies compare the hops.
pub fn nginx_conf(
    dir: &Path,
    port: u16,
    fake: u16,
    workers: Option<usize>,
    worker_connections: usize,
    scheme: &str,
    location: &str,
) -> String {
    let d = dir.display();
    let workers = workers.map_or_else(|| "auto".to_owned(), |n| n.to_string());
    format!(
        "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections {worker_connections}; }}\n\
         http {{\n  access_log off;\n  client_body_buffer_size 1m;\n  client_body_temp_path {d}/nginx-body;\n  proxy_temp_path {d}/nginx-proxy;\n  \
         fastcgi_temp_path {d}/nginx-fastcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n  \
         upstream fake {{ server 127.0.0.1:{fake}; keepalive 64; }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass {scheme}://fake;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n{location}    }}\n  }}\n}}\n"
    )
}

/// nginx (`bin`) run with `conf` written to `dir/nginx.conf`, ready once its proxied `/health`
/// answers on `port`: the process and how long it took.
pub fn start_nginx(
    name: &str,
    bin: impl AsRef<OsStr>,
    dir: &Path,
    conf: &str,
    port: u16,
    pidfile: Option<&Path>,
) -> Res<(Proc, Duration)> {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("nginx.log")).map_err(|e| e.to_string())?;
    let mut nginx = Proc::spawn(
        name,
        Command::new(bin)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log),
        pidfile,
    )?;
    let since = nginx.started;
    let ready = wait_ready(&mut nginx, port, "/health", None, since, Duration::from_secs(20))?;
    Ok((nginx, ready))
}

/// Portkey's start script (the package's `bin`), under the folder where `npm ci` installed it.
pub const PORTKEY_SCRIPT: &str = "node_modules/@portkey-ai/gateway/build/start-server.js";

/// How Portkey's open-source gateway is run: by `node`, from `dir` (`benches/portkey`).
#[derive(Debug, Clone, Copy)]
pub struct PortkeyLaunch<'a> {
    pub node: &'a str,
    pub dir: &'a Path,
}

/// Portkey's gateway on 127.0.0.1:`port`, its output in `log`, ready: the process and how long
/// it took. It has no config file here: each request names its provider and upstream in headers
/// ([`portkey_route`]).
pub fn start_portkey(
    name: &str,
    launch: PortkeyLaunch<'_>,
    port: u16,
    log: &Path,
    pidfile: Option<&Path>,
) -> Res<(Proc, Duration)> {
    let dir = launch.dir.canonicalize().map_err(|e| format!("{}: {e}", launch.dir.display()))?;
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut proc = Proc::spawn(
        name,
        Command::new(launch.node)
            // Its start script listens on every interface; this makes it 127.0.0.1 only.
            .arg("--import")
            .arg(dir.join("loopback.mjs"))
            .arg(dir.join(PORTKEY_SCRIPT))
            .args([&format!("--port={port}"), "--headless"])
            // The custom hosts it may send to without its SSRF check (127.0.0.1 is also its
            // default list; set so that the fake stays allowed whatever the environment says).
            .env("TRUSTED_CUSTOM_HOSTS", "127.0.0.1")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
        pidfile,
    )?;
    let since = proc.started;
    let ready = wait_ready(&mut proc, port, "/", None, since, Duration::from_secs(60))?;
    Ok((proc, ready))
}

/// The headers that route a request through Portkey's gateway to the fake on port `fake` as
/// `provider` (`openai`: passed through; `anthropic`: translated from the OpenAI request). Its
/// `Authorization` is the upstream's key.
pub fn portkey_route(provider: &str, fake: u16) -> Vec<(String, String)> {
    vec![
        ("x-portkey-provider".to_owned(), provider.to_owned()),
        ("x-portkey-custom-host".to_owned(), format!("http://127.0.0.1:{fake}/v1")),
    ]
}

/// litellm's proxy (`bin`) on 127.0.0.1:`port` with `config`, its output in `log`, ready (its
/// first start takes a while): the process and how long it took.
pub fn start_litellm(
    name: &str,
    bin: &Path,
    config: &Path,
    port: u16,
    log: &Path,
    pidfile: Option<&Path>,
) -> Res<(Proc, Duration)> {
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut proc = Proc::spawn(
        name,
        Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("NO_DOCS", "True")
            .stdout(out)
            .stderr(err),
        pidfile,
    )?;
    let since = proc.started;
    let ready = wait_ready(&mut proc, port, "/health/readiness", None, since, Duration::from_secs(300))?;
    Ok((proc, ready))
}

/// An OpenAI deployment named `model_name` whose upstream is the fake on port `fake`.
pub fn deployment(model_name: &str, fake: u16) -> Value {
    json!({"model_name": model_name, "litellm_params": {
        "model": "openai/gpt-4o", "api_base": format!("http://127.0.0.1:{fake}/v1"), "api_key": UPSTREAM_KEY}})
}

/// An `llm-proxy` app manifest with `models` as its model list.
pub fn manifest(service_id: &str, models: Vec<Value>) -> Value {
    json!({
        "name": format!("bench {service_id}"),
        "type": "llm-proxy",
        "version": "1.0.0",
        "config": {"service_id": service_id, "model_list": models}
    })
}

/// Where the binaries are, where scratch files go, and the pid file a wrapper script reads.
pub struct Launch<'a> {
    pub bin_dir: &'a Path,
    pub scratch: &'a Path,
    pub pidfile: Option<&'a Path>,
}

/// A running `ferrolite serve`.
pub struct Ferrolite {
    pub proc: Proc,
    pub port: u16,
    /// A token of the default workspace (the one the start-up banner prints).
    pub token: String,
    /// Process start to the first 200 on the service's readiness.
    pub ready: Duration,
}

/// Starts `ferrolite serve` (with `extra` arguments) on a fresh data dir under the scratch dir;
/// ready when readiness of `service` answers 200. Its log is `ferrolite-TAG.log` there.
pub fn start_ferrolite(
    launch: &Launch,
    tag: &str,
    configs: &[PathBuf],
    service: &str,
    extra: &[&str],
) -> Res<Ferrolite> {
    start_ferrolite_with_env(launch, tag, configs, service, extra, &[])
}

/// [`start_ferrolite`] with changes to the environment the server inherits: each variable set to
/// the value given, or removed when the value is None (e.g. `SSL_CERT_FILE` naming a private CA).
pub fn start_ferrolite_with_env(
    launch: &Launch,
    tag: &str,
    configs: &[PathBuf],
    service: &str,
    extra: &[&str],
    env: &[(&str, Option<&OsStr>)],
) -> Res<Ferrolite> {
    let ferrolite = launch.bin_dir.join("ferrolite");
    let data = launch.scratch.join(format!("data-{tag}"));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    // The secret is made before the start, so a token exists to poll readiness with.
    let out = Command::new(&ferrolite)
        .args(["token", "--workspace", "default", "--data-dir"])
        .arg(&data)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ferrolite.display()))?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || token.is_empty() {
        return Err(format!("ferrolite token failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = free_port()?;
    let mut cmd = Command::new(&ferrolite);
    cmd.args(["serve", "--port", &port.to_string(), "--data-dir"]).arg(&data);
    for c in configs {
        cmd.arg("--config").arg(c);
    }
    cmd.args(extra);
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let log = std::fs::File::create(launch.scratch.join(format!("ferrolite-{tag}.log"))).map_err(|e| e.to_string())?;
    cmd.stdout(Stdio::piped()).stderr(log);
    let mut proc = Proc::spawn(&format!("ferrolite ({tag})"), &mut cmd, launch.pidfile)?;
    let path = format!("/default/apps/{service}/health/readiness");
    let since = proc.started;
    let ready = wait_ready(&mut proc, port, &path, Some(&token), since, Duration::from_secs(60))?;
    // The banner's token (default workspace), as a user would take it.
    let mut banner_token = None;
    if let Some(stdout) = proc.child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(t) = line.strip_prefix("  token:") {
                banner_token = Some(t.trim().to_owned());
                break;
            }
            line.clear();
        }
        // Keep draining so the pipe never fills.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    }
    let token = banner_token.unwrap_or(token);
    Ok(Ferrolite { proc, port, token, ready })
}

/// The text of one SSE event's data when it carries content (OpenAI chunk or Anthropic delta).
pub fn event_content(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    let text = if v.get("type").and_then(Value::as_str) == Some("content_block_delta") {
        v.pointer("/delta/text").and_then(Value::as_str)
    } else {
        v.pointer("/choices/0/delta/content").and_then(Value::as_str)
    };
    text.filter(|t| !t.is_empty()).map(str::to_owned)
}

/// The text the fake upstream streams as chunk `i` (its number, so order and count can be checked).
pub fn chunk_text(i: usize) -> String {
    format!("t{i} ")
}

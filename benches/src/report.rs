//! The pieces of a results report: Markdown tables beside a JSON object, number formats,
//! percentiles, and what describes the machine and the run (cores, CPU model, load, versions).

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

#[derive(Default)]
pub struct Report {
    pub md: String,
    pub json: serde_json::Map<String, Value>,
}

impl Report {
    pub fn table(&mut self, title: &str, note: &str, headers: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.md, "\n## {title}\n");
        if !note.is_empty() {
            let _ = writeln!(self.md, "{note}\n");
        }
        let _ = writeln!(self.md, "| {} |", headers.join(" | "));
        let _ = writeln!(self.md, "|{}", " --- |".repeat(headers.len()));
        for row in rows {
            let _ = writeln!(self.md, "| {} |", row.join(" | "));
        }
    }

    pub fn put(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }
}

pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() < 1.0 {
        format!("{:.0} µs", v * 1000.0)
    } else {
        format!("{v:.2} ms")
    }
}

pub fn rps(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

pub fn opt_f(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "–".into())
}

pub fn verdict(pass: bool) -> &'static str {
    if pass {
        "met"
    } else {
        "**missed**"
    }
}

/// The commit a results file measured, and whether tracked files differed from it.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub commit: String,
    pub dirty: bool,
}

impl Checkout {
    /// The checkout this harness was built from, by git, wherever it is run from; failing that
    /// (the build reused from a clone since removed, through a shared `CARGO_TARGET_DIR`), the
    /// one it is run in (`run.sh` runs from its checkout's root). `unknown` outside a git
    /// checkout, rather than git's complaint.
    pub fn current() -> Checkout {
        let git = |dir: &str, args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let head = [env!("CARGO_MANIFEST_DIR"), "."]
            .into_iter()
            .find_map(|dir| git(dir, &["rev-parse", "--short", "HEAD"]).map(|commit| (dir, commit)));
        let Some((dir, commit)) = head else { return Checkout { commit: "unknown".into(), dirty: false } };
        let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Checkout { commit, dirty }
    }
}

/// `abc1234`, or `abc1234, uncommitted changes`: what follows "commit" in a results header.
impl std::fmt::Display for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.commit)?;
        if self.dirty {
            f.write_str(", uncommitted changes")?;
        }
        Ok(())
    }
}

pub fn cmd_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).trim().lines().next().unwrap_or("").to_owned()
        })
        .unwrap_or_else(|_| "unknown".into())
}

pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[rank.min(v.len() - 1)]
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The first three fields of /proc/loadavg: how busy the machine was besides this run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU model named in /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The kernel's transparent-huge-page mode (the bracketed word of
/// `/sys/kernel/mm/transparent_hugepage/enabled`): with it on, a heap's resident size grows in
/// 2 MiB steps, so memory figures depend on it. ferrolite opts itself out; the others may not.
pub fn thp_mode() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| s.split('[').nth(1).and_then(|r| r.split(']').next()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Writes `STEM.md` and `STEM.json` (pretty) into `dir`; their paths.
pub fn write_results(dir: &Path, stem: &str, md: &str, json: &Value) -> Result<(String, String), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let md_path = dir.join(format!("{stem}.md"));
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    let pretty = serde_json::to_string_pretty(json).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, pretty + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    Ok((md_path.display().to_string(), json_path.display().to_string()))
}

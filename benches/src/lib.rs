//! What the benchmark driver (`bench`), the soak (`soak`) and its fault phase (`chaos`) share:
//! process handling, ferrolite's start and manifests, the report's pieces, the load tools' request
//! and figures (and wrk's runner), the long-conversation lane's body, real traffic's headers, and the chaos client (which
//! the test suite's chaos test uses too).

pub mod cluster_client;
pub mod gateway;
pub mod https_lane;
pub mod load;
pub mod long_conversation;
pub mod procs;
pub mod real_headers;
pub mod report;
pub mod stream_capacity;
pub mod wrk;

/// Errors are messages for the person running the harness.
pub type Res<T> = Result<T, String>;

/// The options every harness binary takes: where results go, which processes it started, and
/// whether its scratch directory stays.
#[derive(Debug, Clone, clap::Args)]
pub struct Harness {
    /// Where the results (NAME.md and NAME.json) go.
    #[arg(long, default_value = "benches/results")]
    pub out_dir: std::path::PathBuf,
    /// A file to which the id of every process started is appended (the calling script stops
    /// them from it).
    #[arg(long, env = "BENCH_PIDFILE")]
    pub pidfile: Option<std::path::PathBuf>,
    /// Keep the scratch directory (configs, data dirs, logs) after the run.
    #[arg(long)]
    pub keep_tmp: bool,
}

//! What a load tool is given and what it answers, whichever tool runs: the request sent again and
//! again ([`Call`]) and one measurement ([`Load`]). The driver's oha runner and [`crate::wrk`]
//! both return a [`Load`], so their figures go in one table.

use serde::Serialize;

/// A request a load tool sends again and again.
#[derive(Debug, Clone)]
pub struct Call {
    pub url: String,
    pub body: String,
    /// Sent as `authorization: Bearer ...` when set.
    pub auth: Option<String>,
    /// The process group whose CPU time this call is charged to.
    pub leader: Option<u32>,
    /// More headers sent with every request (Portkey takes its provider and upstream this way).
    pub extra_headers: Vec<(String, String)>,
}

/// One load measurement (and /proc for the target's CPU).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Load {
    pub connections: usize,
    /// Open-loop rate asked for (with latency correction), or None for closed loop.
    pub rate: Option<u64>,
    pub secs: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// NaN (null in JSON) when the tool does not report it (wrk).
    pub p999_ms: f64,
    pub mean_ms: f64,
    pub cpu_secs: Option<f64>,
    pub cpu_secs_per_1k: Option<f64>,
}

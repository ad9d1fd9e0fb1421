//! Prometheus metrics: the process-wide recorder, the metric names, and the small typed calls
//! the request path makes (`request_done`, `upstream`, `booked`, ...).
//!
//! Label values come from [`SessionLabels`], built once when a session starts: each request
//! clones `Arc`-backed strings instead of allocating one per label, and a deployment's own
//! metrics are registered on its first use and then updated through their handles (an atomic
//! add, no registry look-up). Labels never carry raw client input (an unknown model is
//! labelled `""`), so a client cannot grow the series count.
//! Gauges of live state (in flight, budget remaining) are read from the sessions at scrape
//! time and cost the request path nothing.

use crate::exchange::Usage;
use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge, Histogram, Label,
    SharedString,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use std::time::Duration;

/// Label text shared by every request that carries it (an `Arc` underneath).
pub type LabelText = SharedString;

pub const REQUESTS: &str = "ferrolite_requests_total";
pub const REQUEST_DURATION: &str = "ferrolite_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "ferrolite_upstream_duration_seconds";
pub const OVERHEAD_DURATION: &str = "ferrolite_overhead_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "ferrolite_time_to_first_token_seconds";
pub const TOKENS: &str = "ferrolite_tokens_total";
pub const COST: &str = "ferrolite_cost_usd_total";
pub const IN_FLIGHT: &str = "ferrolite_in_flight";
pub const SERVER_IN_FLIGHT: &str = "ferrolite_server_in_flight";
pub const RETRIES: &str = "ferrolite_retries_total";
pub const FALLBACKS: &str = "ferrolite_fallbacks_total";
pub const COOLDOWNS: &str = "ferrolite_cooldowns_total";
pub const BUDGET_REMAINING: &str = "ferrolite_budget_remaining_usd";
pub const MCP_CALLS: &str = "ferrolite_mcp_calls_total";
pub const MCP_CALL_DURATION: &str = "ferrolite_mcp_call_duration_seconds";
pub const SPEND_LOG_DROPPED: &str = "ferrolite_spend_log_dropped_total";
pub const CACHE_HITS: &str = "ferrolite_cache_hits_total";
pub const CACHE_MISSES: &str = "ferrolite_cache_misses_total";
pub const OVERLOAD_HELD: &str = "ferrolite_overload_held_total";
pub const OVERLOAD_HOLD: &str = "ferrolite_overload_hold_seconds";

/// Histogram bucket bounds in seconds: from ferrolite's own overhead (tens of µs) to a long
/// generation (minutes).
const LATENCY_BUCKETS: [f64; 22] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls (another server in the same process,
/// as in tests) get the same handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder =
            PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics will show nothing");
        }
        describe();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the metrics upkeep thread ({e}); histograms fold at scrape time only");
        }
        handle
    })
}

fn describe() {
    describe_counter!(REQUESTS, "Requests served, by workspace, app, model_name, deployment, route and status.");
    describe_histogram!(
        REQUEST_DURATION,
        ::metrics::Unit::Seconds,
        "Time from a request's acceptance (token checked) to its response headers (streams: to their first event)."
    );
    describe_histogram!(UPSTREAM_DURATION, ::metrics::Unit::Seconds, "Time an upstream took to answer one attempt.");
    describe_histogram!(
        OVERHEAD_DURATION,
        ::metrics::Unit::Seconds,
        "Time spent in ferrolite itself on a routed request, upstream excluded."
    );
    describe_histogram!(TIME_TO_FIRST_TOKEN, ::metrics::Unit::Seconds, "Time to a stream's first upstream byte.");
    describe_counter!(TOKENS, "Tokens used, by direction (in: prompt, out: completion).");
    describe_gauge!(COST, "US dollars spent (only ever grows; a gauge because metrics counters are integers).");
    describe_gauge!(IN_FLIGHT, "Requests in flight per deployment (streams until their last byte).");
    describe_gauge!(SERVER_IN_FLIGHT, "HTTP requests the server is handling, every route (this scrape included).");
    describe_counter!(RETRIES, "Attempts that retried a model group after a failed one.");
    describe_counter!(FALLBACKS, "Times a request moved on to a fallback model group.");
    describe_counter!(COOLDOWNS, "Times a deployment was put in cooldown.");
    describe_counter!(
        MCP_CALLS,
        "MCP tool calls through an app's gateway, by workspace, app, server, tool and status."
    );
    describe_histogram!(MCP_CALL_DURATION, ::metrics::Unit::Seconds, "Time an MCP server took to answer a tool call.");
    describe_counter!(SPEND_LOG_DROPPED, "Spend log records dropped because the queue to their writer was full.");
    describe_counter!(CACHE_HITS, "Requests answered from the response cache, by workspace and app.");
    describe_counter!(CACHE_MISSES, "Cacheable requests the response cache could not answer, by workspace and app.");
    describe_gauge!(BUDGET_REMAINING, "US dollars left in the current budget period (deployment \"\": the app's).");
    describe_counter!(OVERLOAD_HELD, "New requests held because their I/O thread was behind its streams.");
    describe_histogram!(
        OVERLOAD_HOLD,
        ::metrics::Unit::Seconds,
        "How long a held request waited before it was served."
    );
}

/// A new request was held `waited` while its I/O thread caught up with its streams.
pub fn overload_held(waited: Duration) {
    counter!(OVERLOAD_HELD).increment(1);
    histogram!(OVERLOAD_HOLD).record(waited.as_secs_f64());
}

/// A session's label values, shared by all its requests.
#[derive(Debug)]
pub struct SessionLabels {
    workspace: SharedString,
    app: SharedString,
    /// Same order as the session's deployments.
    deployments: Vec<DeploymentLabels>,
    overhead: OnceLock<Histogram>,
    /// This session among all the process has made: its per-request series' handles are
    /// remembered by it ([`SERIES`]).
    serial: u64,
}

thread_local! {
    /// Handles of the per-request series each thread has seen, by session and series, so a
    /// repeat costs no registry look-up (which, with its label list, was ~6% of a proxied
    /// request). Per thread: one set per session behind a lock had every lane lock it and count
    /// two handles up and down for every request, all on cache lines the lanes shared.
    static SERIES: RefCell<foldhash::HashMap<(u64, RequestSeries), (Histogram, Counter)>> = RefCell::default();
}

/// The labels of one per-request series, as indices into the session's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RequestSeries {
    /// The route's path, a `&'static str` of the catalogue, by address.
    route: usize,
    model: Option<usize>,
    deployment: Option<usize>,
    status: u16,
}

/// At most this many per-request series are remembered by a thread; past it, the set starts
/// over (a bound against a flood of odd statuses, and against sessions long gone).
const MAX_REMEMBERED_SERIES: usize = 16_384;

#[derive(Debug)]
struct DeploymentLabels {
    model_name: SharedString,
    deployment: SharedString,
    /// Registered on first use, once the server's recorder is in place.
    handles: OnceLock<DeploymentHandles>,
}

/// One deployment's metrics that need no per-request label.
#[derive(Debug)]
struct DeploymentHandles {
    upstream: Histogram,
    first_token: Histogram,
    retries: Counter,
    fallbacks: Counter,
    cooldowns: Counter,
    tokens_in: Counter,
    tokens_out: Counter,
    cost: Gauge,
}

fn shared(text: &str) -> SharedString {
    SharedString::from_shared(Arc::<str>::from(text))
}

const EMPTY: SharedString = SharedString::const_str("");

impl SessionLabels {
    /// From the workspace, app id and each deployment's `(model_name, id)`.
    pub fn new<'a>(workspace: &str, app: &str, deployments: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        SessionLabels {
            workspace: shared(workspace),
            app: shared(app),
            deployments: deployments
                .map(|(model_name, id)| DeploymentLabels {
                    model_name: shared(model_name),
                    deployment: shared(id),
                    handles: OnceLock::new(),
                })
                .collect(),
            overhead: OnceLock::new(),
            serial: {
                static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// The model name of deployment `index`, as its labels hold it.
    /// The session's workspace and app, as labels.
    pub fn owner(&self) -> (SharedString, SharedString) {
        (self.workspace.clone(), self.app.clone())
    }

    pub fn model_name(&self, index: usize) -> Option<SharedString> {
        self.deployments.get(index).map(|d| d.model_name.clone())
    }

    /// Deployment `index`'s id, as its labels hold it.
    pub fn deployment_id(&self, index: usize) -> Option<SharedString> {
        self.deployments.get(index).map(|d| d.deployment.clone())
    }

    /// Deployment `index`'s handles (`None` past the table, which the request path never asks).
    fn handles(&self, index: usize) -> Option<&DeploymentHandles> {
        let d = self.deployments.get(index)?;
        Some(d.handles.get_or_init(|| {
            let labels = self.with(d.model_name.clone(), d.deployment.clone(), 1);
            let direction = |dir: &'static str| {
                let mut with = labels.clone();
                with.push(Label::from_static_parts("direction", dir));
                counter!(TOKENS, with)
            };
            DeploymentHandles {
                upstream: histogram!(UPSTREAM_DURATION, labels.clone()),
                first_token: histogram!(TIME_TO_FIRST_TOKEN, labels.clone()),
                retries: counter!(RETRIES, labels.clone()),
                fallbacks: counter!(FALLBACKS, labels.clone()),
                cooldowns: counter!(COOLDOWNS, labels.clone()),
                tokens_in: direction("in"),
                tokens_out: direction("out"),
                cost: gauge!(COST, labels),
            }
        }))
    }

    fn app(&self) -> Vec<Label> {
        vec![Label::new("workspace", self.workspace.clone()), Label::new("app", self.app.clone())]
    }

    /// workspace, app, model_name and deployment of deployment `index`.
    fn deployment(&self, index: usize) -> Vec<Label> {
        let (model_name, deployment) = match self.deployments.get(index) {
            Some(d) => (d.model_name.clone(), d.deployment.clone()),
            None => (EMPTY, EMPTY),
        };
        self.with(model_name, deployment, 0)
    }

    fn with(&self, model_name: SharedString, deployment: SharedString, extra: usize) -> Vec<Label> {
        let mut labels = Vec::with_capacity(4 + extra);
        labels.push(Label::new("workspace", self.workspace.clone()));
        labels.push(Label::new("app", self.app.clone()));
        labels.push(Label::new("model_name", model_name));
        labels.push(Label::new("deployment", deployment));
        labels
    }
}

/// The status label, without formatting a number per request.
fn status_label(status: u16) -> SharedString {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| (100..600u16).map(|s| &*Box::leak(s.to_string().into_boxed_str())).collect());
    match status.checked_sub(100).and_then(|i| names.get(usize::from(i))) {
        Some(name) => SharedString::const_str(name),
        None => SharedString::from_owned(status.to_string()),
    }
}

/// A served request (counted once the session is known): its route, the model group asked
/// for and the deployment that answered (as indices of the session's deployments: only names
/// the app knows become labels, so a client's typo cannot mint a series), the status and the
/// time to the response headers.
pub fn request_done(
    l: &SessionLabels,
    route: &'static str,
    model: Option<usize>,
    deployment: Option<usize>,
    status: u16,
    elapsed: Duration,
) {
    let series = RequestSeries { route: route.as_ptr() as usize, model, deployment, status };
    SERIES.with_borrow_mut(|known| {
        if let Some((duration, count)) = known.get(&(l.serial, series)) {
            duration.record(elapsed.as_secs_f64());
            count.increment(1);
            return;
        }
        let model_name = model.and_then(|i| l.deployments.get(i)).map_or(EMPTY, |d| d.model_name.clone());
        let deployment = deployment.and_then(|i| l.deployments.get(i)).map_or(EMPTY, |d| d.deployment.clone());
        let mut labels = l.with(model_name, deployment, 2);
        labels.push(Label::new("route", SharedString::const_str(route)));
        let duration = histogram!(REQUEST_DURATION, labels.clone());
        labels.push(Label::new("status", status_label(status)));
        let count = counter!(REQUESTS, labels);
        duration.record(elapsed.as_secs_f64());
        count.increment(1);
        if known.len() >= MAX_REMEMBERED_SERIES {
            known.clear();
        }
        known.insert((l.serial, series), (duration, count));
    });
}

/// One upstream attempt's duration (to its response headers).
pub fn upstream(l: &SessionLabels, index: usize, elapsed: Duration) {
    if let Some(h) = l.handles(index) {
        h.upstream.record(elapsed.as_secs_f64());
    }
}

/// An attempt is about to go to deployment `index`: try `retry` (0-based) of its model group,
/// which is a fallback group when `in_fallback`. Counts retries and moves to a fallback.
pub fn attempt(l: &SessionLabels, index: usize, retry: u32, in_fallback: bool) {
    if let Some(h) = l.handles(index) {
        if retry > 0 {
            h.retries.increment(1);
        } else if in_fallback {
            h.fallbacks.increment(1);
        }
    }
}

/// A stream's first upstream byte arrived after `elapsed`.
pub fn first_token(l: &SessionLabels, index: usize, elapsed: Duration) {
    if let Some(h) = l.handles(index) {
        h.first_token.record(elapsed.as_secs_f64());
    }
}

/// Time a routed request spent in ferrolite itself.
pub fn overhead(l: &SessionLabels, overhead: Duration) {
    l.overhead.get_or_init(|| histogram!(OVERHEAD_DURATION, l.app())).record(overhead.as_secs_f64());
}

/// Deployment `index` was put in cooldown.
pub fn cooldown(l: &SessionLabels, index: usize) {
    if let Some(h) = l.handles(index) {
        h.cooldowns.increment(1);
    }
}

/// A request's usage and cost were booked on deployment `index`.
pub fn booked(l: &SessionLabels, index: usize, usage: Usage, cost: f64) {
    if let Some(h) = l.handles(index) {
        h.tokens_in.increment(usage.prompt_tokens);
        h.tokens_out.increment(usage.completion_tokens);
        h.cost.increment(cost);
    }
}

/// Deployment `index` has `count` requests in flight (sampled at scrape time).
/// A spend log record was dropped (its queue was full).
/// A response cache lookup of one of the session's requests.
pub fn cache_lookup(l: &SessionLabels, hit: bool) {
    let labels = [Label::new("workspace", l.workspace.clone()), Label::new("app", l.app.clone())];
    let name = if hit { CACHE_HITS } else { CACHE_MISSES };
    counter!(name, labels.iter()).increment(1);
}

pub fn spend_log_dropped() {
    counter!(SPEND_LOG_DROPPED).increment(1);
}

pub fn in_flight(l: &SessionLabels, index: usize, count: u64) {
    gauge!(IN_FLIGHT, l.deployment(index)).set(count as f64);
}

/// US dollars left in a budget period: deployment `index`'s, or the app's (`None`).
pub fn budget_remaining(l: &SessionLabels, index: Option<usize>, left: f64) {
    let labels = match index {
        Some(i) => l.deployment(i),
        None => l.with(EMPTY, EMPTY, 0),
    };
    gauge!(BUDGET_REMAINING, labels).set(left.max(0.0));
}

/// The Prometheus text exposition of everything recorded, with the server's count of requests
/// in flight (the sessions' own gauges are set by their caller first).
/// One MCP tool call: `status` is `ok`, `tool_error` (the tool said it failed) or `failed`;
/// `tool` is `""` unless the server answered for it (a client's unknown names add no series).
pub fn mcp_call(
    workspace: &LabelText,
    app: &LabelText,
    server: &str,
    tool: &str,
    status: &'static str,
    elapsed: Duration,
) {
    let labels = [
        Label::new("workspace", workspace.clone()),
        Label::new("app", app.clone()),
        Label::new("server", server.to_owned()),
        Label::new("tool", tool.to_owned()),
        Label::new("status", status),
    ];
    counter!(MCP_CALLS, labels.iter()).increment(1);
    histogram!(MCP_CALL_DURATION, labels.iter()).record(elapsed.as_secs_f64());
}

pub fn render(server_in_flight: usize) -> String {
    let handle = install();
    gauge!(SERVER_IN_FLIGHT).set(server_in_flight as f64);
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the unlabelled series `name` in a scrape.
    fn value(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    #[test]
    fn a_held_request_is_counted_with_its_wait() {
        let handle = install();
        let before = value(&handle.render(), OVERLOAD_HELD).unwrap_or(0.0);
        overload_held(Duration::from_millis(120));
        let text = handle.render();
        assert!(value(&text, OVERLOAD_HELD).is_some_and(|n| n >= before + 1.0), "{text}");
        assert!(value(&text, &format!("{OVERLOAD_HOLD}_count")).is_some_and(|n| n >= 1.0), "{text}");
        assert!(value(&text, &format!("{OVERLOAD_HOLD}_sum")).is_some_and(|s| s >= 0.12), "{text}");
    }

    #[test]
    fn status_labels_are_static_for_http_codes_and_formatted_otherwise() {
        assert_eq!(&*status_label(200), "200");
        assert_eq!(&*status_label(599), "599");
        assert_eq!(&*status_label(42), "42");
    }
}

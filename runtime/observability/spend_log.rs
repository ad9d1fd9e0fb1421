//! The request path's side of the spend log: one [`SpendRecord`] per served request, made by a
//! [`SpendTicket`] and pushed into a bounded in-memory [`SpendQueue`] that a writer drains in
//! batches (`store::spend_logs`). Pushing never waits: when the queue is full the record is
//! dropped, counted in `ferrolite_spend_log_dropped_total` and warned about, and the request
//! goes on.

use super::metrics::{self, LabelText};
use crate::exchange::Usage;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Records held before the writer takes them; past this, new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;
/// Records that make the writer flush before its next tick.
pub const BATCH: usize = 512;
/// Longest model name kept in a record (a client may send any text as a model).
const MAX_MODEL_LEN: usize = 256;

/// How a request ended, beside its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendOutcome {
    Ok,
    /// An error answer, or a stream that broke off.
    Error,
    /// The client went away before the answer (or the stream) ended.
    ClientDisconnected,
}

impl SpendOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SpendOutcome::Ok => "ok",
            SpendOutcome::Error => "error",
            SpendOutcome::ClientDisconnected => "client_disconnected",
        }
    }

    pub fn parse(text: &str) -> Option<SpendOutcome> {
        [SpendOutcome::Ok, SpendOutcome::Error, SpendOutcome::ClientDisconnected]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// One served request: who asked what of which app, what it used and cost, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRecord {
    /// When the request was accepted, in Unix milliseconds (RFC 3339 on the wire).
    #[serde(rename = "time", with = "rfc3339")]
    pub at_ms: u64,
    pub request_id: String,
    /// The API key that authenticated the request, when a key did.
    pub key_id: Option<String>,
    /// The user the key belongs to, when it names one.
    pub user: Option<String>,
    /// The workspace of the app that served it. The app's names are shared with its session
    /// ([`SpendNames`]): every record of the app holds them.
    pub workspace: Arc<str>,
    pub app_id: Arc<str>,
    pub service_id: Arc<str>,
    /// The model the client asked for: the app's own name for it, shared, when it has the
    /// model; the client's text otherwise.
    #[serde(default, with = "shared_text")]
    pub model: Option<LabelText>,
    /// The deployment that answered, its id shared with the app's labels.
    #[serde(default, with = "shared_text")]
    pub deployment: Option<LabelText>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the prompt, the tokens read from the provider's cache (0 when it did not say).
    pub cached_tokens: u64,
    /// US dollars.
    pub cost: f64,
    /// The HTTP status the client got (499 when it left before the answer).
    pub status: u16,
    pub outcome: SpendOutcome,
    /// From acceptance to the answer's last byte (a stream's too).
    pub latency_ms: f64,
}

/// Shared text as a plain string.
mod shared_text {
    use super::LabelText;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &Option<LabelText>, s: S) -> Result<S::Ok, S::Error> {
        match text {
            Some(text) => s.serialize_some(&**text),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LabelText>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(LabelText::from_owned))
    }
}

/// Unix milliseconds as RFC 3339 text.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::clock::rfc3339_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        crate::clock::parse_instant(&text).ok_or_else(|| serde::de::Error::custom(format!("not a time: {text:?}")))
    }
}

/// The bounded queue between the request path and the spend log's writer.
pub struct SpendQueue {
    tx: SyncSender<SpendRecord>,
    /// Taken by the writer only; a mutex because a receiver is not shared otherwise.
    rx: Mutex<Receiver<SpendRecord>>,
    pending: AtomicUsize,
    dropped: AtomicU64,
    batch: usize,
    /// Told when a batch is waiting, so the writer need not wait for its tick.
    ready: tokio::sync::Notify,
}

impl Default for SpendQueue {
    fn default() -> Self {
        SpendQueue::new(QUEUE_CAPACITY, BATCH)
    }
}

impl SpendQueue {
    pub fn new(capacity: usize, batch: usize) -> SpendQueue {
        let (tx, rx) = sync_channel(capacity.max(1));
        SpendQueue {
            tx,
            rx: Mutex::new(rx),
            pending: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            batch: batch.max(1),
            ready: tokio::sync::Notify::new(),
        }
    }

    /// Queues `record` without waiting; a full queue drops it (counted and warned about).
    /// Whether it was queued.
    pub fn push(&self, record: SpendRecord) -> bool {
        // Counted before it is sent: counted after, a drain between the send and the count
        // would subtract first (saturating at zero) and the count would stay one too high.
        let pending = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        match self.tx.try_send(record) {
            Ok(()) => {
                if pending == self.batch {
                    self.ready.notify_one();
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::spend_log_dropped();
                // Powers of two: a writer that cannot keep up is reported, not once per request.
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "spend log queue full: records dropped (its writer cannot keep up)");
                }
                false
            }
        }
    }

    /// Up to `max` queued records, oldest first.
    pub fn drain(&self, max: usize) -> Vec<SpendRecord> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        // Sized for what waits: collected into a growing vector, a batch of records was copied
        // again at every doubling.
        let mut batch = Vec::with_capacity(max.min(self.pending()));
        batch.extend(rx.try_iter().take(max));
        let taken = batch.len();
        let _ = self.pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(taken)));
        batch
    }

    /// Records queued and not yet taken by the writer.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Resolves once a batch's worth of records waits (or has since the last call).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

/// A served request's record in the making. It is pushed exactly once: by [`SpendTicket::finish`],
/// or, if the ticket is dropped unfinished (the request's future was dropped because the client
/// went away), as `client_disconnected` with status 499.
pub struct SpendTicket {
    record: Option<SpendRecord>,
    started: Instant,
    queue: Arc<SpendQueue>,
}

/// Who asked what of which app: the parts of a record known when a request is accepted.
#[derive(Debug, Clone, Default)]
pub struct SpendOrigin {
    pub request_id: String,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub app: SpendNames,
}

/// An app's names as its records carry them, made once with its session: each record shares
/// them instead of copying three strings.
#[derive(Debug, Clone, Default)]
pub struct SpendNames {
    pub workspace: Arc<str>,
    pub app_id: Arc<str>,
    pub service_id: Arc<str>,
}

impl SpendNames {
    pub fn new(workspace: &str, app_id: &str, service_id: &str) -> SpendNames {
        SpendNames { workspace: workspace.into(), app_id: app_id.into(), service_id: service_id.into() }
    }
}

/// The parts of a record known when a request ends.
#[derive(Debug, Clone, Default)]
pub struct SpendEnd {
    pub deployment: Option<LabelText>,
    pub usage: Usage,
    /// US dollars.
    pub cost: f64,
    pub status: u16,
    pub outcome: Option<SpendOutcome>,
}

impl SpendTicket {
    /// A ticket for a request accepted at `started`, which is now: the record's time is the
    /// wall clock's now, read once (`started` is measured from for the latency only).
    pub fn new(queue: Arc<SpendQueue>, origin: SpendOrigin, started: Instant) -> SpendTicket {
        let record = SpendRecord {
            at_ms: crate::clock::now_ms(),
            request_id: origin.request_id,
            key_id: origin.key_id,
            user: origin.user,
            workspace: origin.app.workspace,
            app_id: origin.app.app_id,
            service_id: origin.app.service_id,
            model: None,
            deployment: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost: 0.0,
            status: 0,
            outcome: SpendOutcome::ClientDisconnected,
            latency_ms: 0.0,
        };
        SpendTicket { record: Some(record), started, queue }
    }

    /// The model the client asked for, once its body is read: shared as it is, or cut to
    /// [`MAX_MODEL_LEN`] bytes.
    pub fn set_model(&mut self, model: &LabelText) {
        if let Some(record) = &mut self.record {
            if model.len() <= MAX_MODEL_LEN {
                record.model = Some(model.clone());
                return;
            }
            let mut cut = MAX_MODEL_LEN;
            while !model.is_char_boundary(cut) {
                cut -= 1;
            }
            record.model = Some(LabelText::from_owned(model[..cut].to_owned()));
        }
    }

    /// Pushes the record with how the request ended; the outcome, unless given, follows the
    /// status.
    pub fn finish(mut self, end: SpendEnd) {
        let Some(mut record) = self.record.take() else { return };
        record.deployment = end.deployment;
        record.prompt_tokens = end.usage.prompt_tokens;
        record.completion_tokens = end.usage.completion_tokens;
        record.cached_tokens = end.usage.cached_tokens;
        record.cost = end.cost;
        record.status = end.status;
        record.outcome = end.outcome.unwrap_or(if end.status < 400 { SpendOutcome::Ok } else { SpendOutcome::Error });
        self.push(record);
    }

    fn push(&self, mut record: SpendRecord) {
        record.latency_ms = (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        self.queue.push(record);
    }
}

impl Drop for SpendTicket {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.status = 499;
            record.outcome = SpendOutcome::ClientDisconnected;
            self.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(id: &str) -> SpendOrigin {
        SpendOrigin { request_id: id.into(), app: SpendNames::new("w", "a", "s"), ..Default::default() }
    }

    #[test]
    fn a_full_queue_drops_the_record_instead_of_waiting() {
        // No runtime and no writer: a push that waited for room would hang this test.
        let queue = Arc::new(SpendQueue::new(2, 2));
        let started = Instant::now();
        for id in ["r1", "r2", "r3", "r4"] {
            SpendTicket::new(queue.clone(), origin(id), started).finish(SpendEnd { status: 200, ..Default::default() });
        }
        assert_eq!(queue.dropped(), 2);
        assert_eq!(queue.pending(), 2, "dropped records are not counted as waiting");
        let kept: Vec<String> = queue.drain(10).into_iter().map(|r| r.request_id).collect();
        assert_eq!(kept, ["r1", "r2"]);
        assert_eq!(queue.pending(), 0);
        // Room again once the writer took them.
        SpendTicket::new(queue.clone(), origin("r5"), started).finish(SpendEnd { status: 200, ..Default::default() });
        assert_eq!(queue.drain(10).len(), 1);
        assert_eq!(queue.dropped(), 2);
    }

    #[test]
    fn a_ticket_is_pushed_once_and_an_unfinished_one_says_the_client_left() {
        let queue = Arc::new(SpendQueue::default());
        let mut ticket = SpendTicket::new(queue.clone(), origin("r1"), Instant::now());
        ticket.set_model(&LabelText::from_owned("m".repeat(1000)));
        ticket.finish(SpendEnd { status: 502, cost: 0.5, ..Default::default() });
        drop(SpendTicket::new(queue.clone(), origin("r2"), Instant::now()));
        let records = queue.drain(10);
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].status, records[0].outcome, records[0].cost), (502, SpendOutcome::Error, 0.5));
        assert_eq!(records[0].model.as_deref().map(str::len), Some(MAX_MODEL_LEN));
        assert_eq!((records[1].status, records[1].outcome), (499, SpendOutcome::ClientDisconnected));
    }

    #[test]
    fn a_record_reads_back_from_its_json() {
        let queue = Arc::new(SpendQueue::default());
        SpendTicket::new(queue.clone(), origin("r1"), Instant::now()).finish(SpendEnd {
            deployment: Some("m/0".into()),
            usage: Usage { prompt_tokens: 9, completion_tokens: 3, cached_tokens: 4 },
            cost: 0.000_012_5,
            status: 200,
            outcome: None,
        });
        let record = queue.drain(1).remove(0);
        let json = serde_json::to_value(&record).unwrap();
        assert!(json["time"].as_str().unwrap().ends_with('Z'), "{json}");
        assert_eq!(json["outcome"], "ok");
        assert_eq!(serde_json::from_value::<SpendRecord>(json).unwrap(), record);
    }
}

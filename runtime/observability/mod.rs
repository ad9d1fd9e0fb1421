//! What ferrolite tells operators about itself: Prometheus metrics, logs and traces, each
//! session's own log, the spend log's records on their way to the store, and the request id
//! that ties a response to its log lines. A leaf: the request path calls into it with labels
//! and facts, never the other way round.

pub mod logging;
pub mod metrics;
pub mod request_id;
pub mod session_log;
pub mod spend_log;

//! What ferrolite tells operators about itself: Prometheus metrics, logs and traces, and the
//! request id that ties a response to its log lines.

pub mod logging;
pub mod metrics;
pub mod request_id;

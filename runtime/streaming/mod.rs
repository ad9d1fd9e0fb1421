//! Stream codecs: Server-Sent Events out to clients and in from providers, and the
//! newline-delimited JSON some providers stream.

pub mod ndjson;
pub mod sse;

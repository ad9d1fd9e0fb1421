//! Stream codecs: Server-Sent Events out to clients and in from providers (a chat stream's
//! chunks written by `chat_chunks`), and the newline-delimited JSON some providers stream.

pub mod chat_chunks;
pub mod ndjson;
pub mod sse;

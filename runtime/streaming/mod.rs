//! Stream codecs: Server-Sent Events out to clients (and, later, in from providers).

pub mod sse;

//! ferrolite: an OpenAI-compatible LLM gateway that turns declarative `llm-proxy` app
//! manifests into running services.
//!
//! A request flows `http` (generated routes) -> `http::dispatch` (auth, service lookup,
//! schema check) -> `router` (deployment choice) -> `providers` (wire translation) -> upstream,
//! and back through `streaming`. See README's Architecture section.

pub mod api;
pub mod apps;
pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod cluster;
pub mod decimal;
pub mod fuzz_targets;
pub mod grammar;
pub mod http;
pub mod json_scan;
pub mod manifest;
pub mod observability;
pub mod providers;
pub mod router;
pub mod rpc;
pub mod schema_check;
pub mod server;
pub mod store;
pub mod streaming;
pub mod tokenizer;

//! ferrolite: an OpenAI-compatible LLM gateway that turns declarative `llm-proxy` app
//! manifests into running services.
//!
//! The modules are layers whose imports point one way (docs/ARCHITECTURE.md draws them, and
//! `tests/it/architecture.rs` keeps them so): the doors (`cli`, `server`, `hypha`, `rpc`, `http`) ->
//! `apps` (controller, sessions) -> `router` (choosing and failing over) -> `providers` (wire
//! formats and translation) -> `transport` (the upstream HTTP client) -> leaves (`exchange`,
//! `catalogue`, `manifest`, `auth`, `store`, `cluster`, `streaming`, `observability`, ...).

pub mod allocator;
pub mod api;
pub mod apps;
pub mod auth;
pub mod cache;
pub mod catalogue;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod decimal;
pub mod exchange;
pub mod fuzz_targets;
pub mod grammar;
pub mod http;
pub mod hypha;
pub mod json_edit;
pub mod json_scan;
pub mod manifest;
pub mod mcp;
pub mod observability;
pub mod passthrough;
pub mod providers;
pub mod router;
pub mod rpc;
pub mod schema_check;
pub mod server;
pub mod store;
pub mod streaming;
pub mod tokenizer;
pub mod transport;

//! ferrolite's integration tests: one binary, the real server on 127.0.0.1, fakes of each
//! upstream, and real SDK clients where the suite has them.

mod support;

mod catalogue;
mod cli;
mod codegen;
mod http_api;
mod mock_provider;
mod openai_upstream;
mod python_sdk;
mod schema_files;

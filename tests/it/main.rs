//! ferrolite's integration tests: one binary, the real server on 127.0.0.1, fakes of each
//! upstream, and real SDK clients where the suite has them.

mod support;

mod fake_anthropic;
mod fake_bedrock;
mod fake_gemini;
mod provider_anthropic;
mod provider_bedrock;
mod provider_gemini;
mod translate_anthropic;
mod translate_bedrock;
mod translate_gemini;

mod agent_clients;
mod architecture;
mod azure;
mod bad_input;
mod budgets;
mod catalogue;
mod chaos;
mod cli;
mod cluster;
mod codegen;
mod conformance;
mod console;
mod controller_http;
mod durability;
mod failover;
mod fake_openai;
mod fuzz_regressions;
mod h1_differential;
mod http_api;
mod hypha_server;
mod hypha_worker;
mod limits;
mod litellm_config;
mod mcp_gateway;
mod mcp_rest;
mod messages_front;
mod metrics;
mod mock_provider;
mod node_clients;
mod openai_provider;
mod openai_upstream;
mod persistence;
mod python_sdk;
mod responses_bridge;
mod responses_reasoning;
mod responses_state;
mod routing_strategies;
mod rpc;
mod schema_files;
mod secrets;
mod security;
mod shutdown;
mod token_counting;

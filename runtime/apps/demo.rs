//! The embedded demo app that `ferrolite serve` starts when given no config: mock models
//! that need no key and no network.

use serde_json::{json, Value};

/// The workspace the demo app runs in.
pub const WORKSPACE: &str = "default";
/// The demo app's service id.
pub const SERVICE_ID: &str = "demo";

/// The demo manifest, the seed's Quick Start shape with `mock_response` models.
pub fn manifest() -> Value {
    json!({
        "name": "ferrolite demo",
        "type": "llm-proxy",
        "version": "1.0.0",
        "description": "Mock models that answer without any provider key: try the OpenAI SDK against them.",
        "config": {
            "service_id": SERVICE_ID,
            "model_list": [
                {
                    "model_name": "demo-chat",
                    "litellm_params": {
                        "model": "gpt-4o-mini",
                        "mock_response": "Hello from ferrolite! This is the demo model answering without calling any provider."
                    }
                },
                {
                    "model_name": "demo-embedding",
                    "litellm_params": {
                        "model": "text-embedding-3-small",
                        "mock_response": "deterministic embeddings"
                    }
                }
            ],
            "litellm_settings": { "routing_strategy": "simple-shuffle" }
        }
    })
}

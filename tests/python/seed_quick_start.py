"""The seed's Quick Start manifest on mock models, shared by the scripts that run it (against
ferrolite's own /ws and against a real Hypha server with ferrolite as its worker)."""

MOCK_TEXT = "This is a test response from the mock model"
MESSAGES = [{"role": "user", "content": "Hello!"}]

# The seed's Quick Start manifest, its models answered by mock_response.
QUICK_START = {
    "name": "My LLM Proxy",
    "type": "llm-proxy",
    "version": "1.0.0",
    "description": "Multi-provider LLM proxy service",
    "config": {
        "service_id": "my-llm-service",
        "model_list": [
            {
                "model_name": "gpt-3.5-turbo",
                "litellm_params": {"model": "gpt-3.5-turbo", "mock_response": MOCK_TEXT},
            },
            {
                "model_name": "claude-3-opus",
                "litellm_params": {"model": "claude-3-opus-20240229", "mock_response": MOCK_TEXT},
            },
        ],
        "litellm_settings": {"debug": False, "routing_strategy": "simple-shuffle"},
    },
}

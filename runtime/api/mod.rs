//! The wire bodies of every provider, as serde types: requests, answers and stream events.
//! Unknown fields stay in `extra` maps, so what a newer client or upstream sends passes
//! through. A leaf: translations between them live in `providers`.

pub mod anthropic;
pub mod bedrock;
pub mod cohere;
pub mod count_tokens;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod responses;

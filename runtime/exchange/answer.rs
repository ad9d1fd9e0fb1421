//! What a served request gives back: the response on its way to the client, the deployment
//! that answered and the tokens it used.

use axum::response::Response;

/// Token usage of one request, when known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the prompt, the tokens the provider read from its cache, when it says (0 otherwise).
    pub cached_tokens: u64,
}

/// A served request: the response and what the log line says about it.
pub struct Outcome {
    pub response: Response,
    /// The deployment that answered, by its index in the service's table (the router sets it).
    pub deployment: Option<usize>,
    pub usage: Option<Usage>,
}

impl Outcome {
    pub fn local(response: Response) -> Outcome {
        Outcome { response, deployment: None, usage: None }
    }
}

//! A session's failure-handling settings, from `litellm_settings` and `router_settings`
//! (`router_settings` wins where both set one): retries and their backoff, timeouts, cooldowns,
//! fallbacks and rate limits.

use crate::manifest::ProxyConfig;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The failure-handling settings of a session, from `litellm_settings` and `router_settings`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub num_retries: u32,
    /// Whole-request timeout (all attempts).
    pub timeout: Option<Duration>,
    /// Longest gap allowed between two chunks of a stream.
    pub stream_timeout: Option<Duration>,
    /// Failures a deployment may have in a minute before it cools down.
    pub allowed_fails: u64,
    pub cooldown: Duration,
    pub fallbacks: HashMap<String, Vec<String>>,
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
    pub content_policy_fallbacks: HashMap<String, Vec<String>>,
    /// First retry's backoff; doubled each retry, with jitter.
    pub backoff: Duration,
    pub latency_buffer: f64,
    /// litellm's `enforce_model_rate_limits`: rpm / tpm become hard limits.
    pub enforce_rate_limits: bool,
    /// How often `: keep-alive` comments go out while a stream waits for its first token.
    pub keepalive: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            num_retries: 2,
            timeout: None,
            stream_timeout: None,
            allowed_fails: 3,
            cooldown: Duration::from_secs(5),
            fallbacks: HashMap::new(),
            context_window_fallbacks: HashMap::new(),
            content_policy_fallbacks: HashMap::new(),
            backoff: Duration::from_millis(100),
            latency_buffer: 0.0,
            enforce_rate_limits: false,
            keepalive: Duration::from_secs(15),
        }
    }
}

fn seconds(v: &Value) -> Option<Duration> {
    v.as_f64().filter(|s| *s >= 0.0).map(Duration::from_secs_f64)
}

/// `[{"gpt-4": ["claude-3-opus"]}, ...]` as a map.
pub fn fallback_map(v: Option<&Value>) -> HashMap<String, Vec<String>> {
    let mut map = HashMap::new();
    for rule in v.and_then(Value::as_array).into_iter().flatten() {
        for (from, to) in rule.as_object().into_iter().flatten() {
            let targets: Vec<String> =
                to.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
            map.insert(from.clone(), targets);
        }
    }
    map
}

impl Policy {
    /// Reads a session's settings: `router_settings` first, then `litellm_settings`.
    pub fn from_config(config: &ProxyConfig) -> Policy {
        let litellm = serde_json::to_value(&config.litellm_settings).unwrap_or(Value::Null);
        let router = config.router_settings.clone().map(Value::Object).unwrap_or(Value::Null);
        let get =
            |key: &str| router.get(key).filter(|v| !v.is_null()).or_else(|| litellm.get(key).filter(|v| !v.is_null()));
        let default = Policy::default();
        Policy {
            num_retries: get("num_retries").and_then(Value::as_u64).map(|n| n as u32).unwrap_or(default.num_retries),
            timeout: get("timeout").and_then(seconds).or(get("request_timeout").and_then(seconds)),
            stream_timeout: get("stream_timeout").and_then(seconds),
            allowed_fails: get("allowed_fails").and_then(Value::as_u64).unwrap_or(default.allowed_fails),
            cooldown: get("cooldown_time").and_then(seconds).unwrap_or(default.cooldown),
            fallbacks: fallback_map(get("fallbacks")),
            context_window_fallbacks: fallback_map(get("context_window_fallbacks")),
            content_policy_fallbacks: fallback_map(get("content_policy_fallbacks")),
            backoff: get("retry_backoff").and_then(seconds).unwrap_or(default.backoff),
            latency_buffer: get("routing_strategy_args")
                .and_then(|a| a.get("lowest_latency_buffer"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            enforce_rate_limits: get("enforce_model_rate_limits").and_then(Value::as_bool).unwrap_or(false),
            keepalive: get("stream_keepalive_interval")
                .and_then(seconds)
                .filter(|d| !d.is_zero())
                .unwrap_or(default.keepalive),
        }
    }
}

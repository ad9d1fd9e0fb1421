//! A session's failure-handling settings, from `litellm_settings` and `router_settings`
//! (`router_settings` wins where both set one): retries and their backoff, timeouts, cooldowns,
//! fallbacks and rate limits.

use crate::manifest::ProxyConfig;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The failure-handling settings of a session, from `litellm_settings` and `router_settings`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub num_retries: u32,
    /// Whole-request timeout (all attempts; a JSON answer's body included; a stream's gaps
    /// between chunks when it sets no `stream_timeout`).
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
    /// How long a budget reservation held in the shared state outlives its instance.
    pub reservation_ttl: Duration,
}

/// The whole-request timeout when none is set: litellm's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How much longer than the longest timeout a reservation lives by default: a request's last
/// attempt may begin just before its deadline, and its deployment's own timeout runs from there.
pub const RESERVATION_MARGIN: Duration = Duration::from_secs(300);

impl Default for Policy {
    fn default() -> Self {
        Policy {
            num_retries: 2,
            timeout: Some(DEFAULT_TIMEOUT),
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
            reservation_ttl: DEFAULT_TIMEOUT + RESERVATION_MARGIN,
        }
    }
}

/// `[{"gpt-4": ["claude-3-opus"]}, ...]` as a map.
pub fn fallback_map(rules: Option<&[BTreeMap<String, Vec<String>>]>) -> HashMap<String, Vec<String>> {
    let mut map = HashMap::new();
    for rule in rules.into_iter().flatten() {
        for (from, to) in rule {
            map.insert(from.clone(), to.clone());
        }
    }
    map
}

fn seconds(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok()
}

impl Policy {
    /// Reads a session's typed settings: `router_settings` first, then `litellm_settings`.
    pub fn from_config(config: &ProxyConfig) -> Policy {
        let litellm = &config.litellm_settings.routing;
        let router = config.router_settings.as_ref();
        // The first of the two that sets a field.
        macro_rules! get {
            ($field:ident) => {
                router.and_then(|r| r.$field.clone()).or_else(|| litellm.$field.clone())
            };
        }
        let default = Policy::default();
        let timeout = get!(timeout).or(get!(request_timeout)).and_then(seconds).or(default.timeout);
        let longest = config
            .model_list
            .iter()
            .filter_map(|m| m.litellm_params.timeout.and_then(seconds))
            .chain(timeout)
            .max()
            .unwrap_or(DEFAULT_TIMEOUT);
        let fallbacks = |rules: Option<Vec<BTreeMap<String, Vec<String>>>>| fallback_map(rules.as_deref());
        Policy {
            num_retries: get!(num_retries).unwrap_or(default.num_retries),
            timeout,
            stream_timeout: get!(stream_timeout).and_then(seconds),
            allowed_fails: get!(allowed_fails).unwrap_or(default.allowed_fails),
            cooldown: get!(cooldown_time).and_then(seconds).unwrap_or(default.cooldown),
            fallbacks: fallbacks(get!(fallbacks)),
            context_window_fallbacks: fallbacks(get!(context_window_fallbacks)),
            content_policy_fallbacks: fallbacks(get!(content_policy_fallbacks)),
            backoff: get!(retry_backoff).and_then(seconds).unwrap_or(default.backoff),
            latency_buffer: get!(routing_strategy_args).and_then(|a| a.lowest_latency_buffer).unwrap_or(0.0),
            enforce_rate_limits: get!(enforce_model_rate_limits).unwrap_or(false),
            keepalive: get!(stream_keepalive_interval)
                .and_then(seconds)
                .filter(|d| !d.is_zero())
                .unwrap_or(default.keepalive),
            reservation_ttl: get!(budget_reservation_ttl)
                .and_then(seconds)
                .filter(|d| !d.is_zero())
                .unwrap_or(longest.saturating_add(RESERVATION_MARGIN)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(config: serde_json::Value) -> Policy {
        let mut config = config;
        config["model_list"] = json!([]);
        Policy::from_config(&serde_json::from_value(config).unwrap())
    }

    #[test]
    fn router_settings_win_over_litellm_settings_and_defaults_fill_the_rest() {
        let p = policy(json!({
            "litellm_settings": {"num_retries": 5, "cooldown_time": 9, "timeout": 30, "fallbacks": [{"a": ["b"]}]},
            "router_settings": {"num_retries": 1, "retry_backoff": 0.5, "request_timeout": 10,
                                "routing_strategy_args": {"lowest_latency_buffer": 0.2}}
        }));
        assert_eq!(p.num_retries, 1, "router_settings wins");
        assert_eq!(p.cooldown, Duration::from_secs(9), "litellm_settings where the router sets none");
        assert_eq!(p.timeout, Some(Duration::from_secs(30)), "timeout before request_timeout");
        assert_eq!(p.backoff, Duration::from_millis(500));
        assert_eq!(p.latency_buffer, 0.2);
        assert_eq!(p.fallbacks["a"], ["b"]);
        assert_eq!(p.allowed_fails, 3);
        assert_eq!(p.keepalive, Duration::from_secs(15));
        assert_eq!(policy(json!({})).timeout, Some(DEFAULT_TIMEOUT), "litellm's 600 s when unset");
        assert_eq!(p.reservation_ttl, Duration::from_secs(330), "the longest timeout plus the margin");
        assert_eq!(policy(json!({})).reservation_ttl, Duration::from_secs(900));
        let set = policy(json!({"litellm_settings": {"budget_reservation_ttl": 2}}));
        assert_eq!(set.reservation_ttl, Duration::from_secs(2));
    }
}

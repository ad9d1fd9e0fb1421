//! The wall clock, read in the two units the gateway keeps time in. A leaf every layer may read;
//! the request path reads it once per decision, not once per deployment.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

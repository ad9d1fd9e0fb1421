//! `get_spend_logs`' arguments, read once at the door into a [`SpendQuery`]: a value that does
//! not read is a 400 naming its argument, and so is an argument the function does not take
//! (a misspelt filter would otherwise match everything).

use crate::exchange::ApiError;
use crate::store::spend_logs::{SpendQuery, MAX_LIMIT};
use serde_json::{Map, Value};

/// The arguments `get_spend_logs` takes.
pub const ARGUMENTS: &[&str] = &["start", "end", "key", "user", "model", "app", "status", "limit", "cursor"];

/// The query of a `get_spend_logs` call in `workspace` (the caller's, checked).
pub fn query(workspace: &str, kwargs: &Map<String, Value>) -> Result<SpendQuery, ApiError> {
    // `_`-prefixed names are RPC plumbing (hypha-rpc's `_rkwargs`, ...), not filters.
    if let Some(unknown) = kwargs.keys().find(|k| !ARGUMENTS.contains(&k.as_str()) && !k.starts_with('_')) {
        return Err(bad(
            unknown,
            format!("get_spend_logs takes no argument `{unknown}`; it takes {}", ARGUMENTS.join(", ")),
        ));
    }
    let mut query = SpendQuery::workspace(workspace);
    query.start_ms = instant(kwargs, "start")?;
    query.end_ms = instant(kwargs, "end")?;
    if let (Some(start), Some(end)) = (query.start_ms, query.end_ms) {
        if end <= start {
            return Err(bad("end", "`end` must be after `start`".into()));
        }
    }
    query.key_id = text(kwargs, "key")?;
    query.user = text(kwargs, "user")?;
    query.model = text(kwargs, "model")?;
    query.app = text(kwargs, "app")?;
    if let Some(status) = text(kwargs, "status")? {
        query.status = Some(status.parse().map_err(|e| bad("status", format!("`status`: {e}")))?);
    }
    if let Some(cursor) = text(kwargs, "cursor")? {
        query.cursor = Some(cursor.parse().map_err(|e| bad("cursor", format!("`cursor`: {e}")))?);
    }
    if let Some(limit) = kwargs.get("limit").filter(|v| !v.is_null()) {
        let n = match limit {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        query.limit = n
            .filter(|n| (1..=MAX_LIMIT as u64).contains(n))
            .ok_or_else(|| bad("limit", format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, not {limit}")))?
            as usize;
    }
    Ok(query)
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::bad_request(message).with_param(param.to_owned())
}

/// A string argument; numbers are taken as their text (a status may come as 429), empty as none.
fn text(kwargs: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match kwargs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(bad(name, format!("`{name}` must be a string, not {other}"))),
    }
}

/// A time argument: Unix seconds (a number or its text) or RFC 3339; Unix milliseconds.
fn instant(kwargs: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = text(kwargs, name)? else { return Ok(None) };
    crate::clock::parse_instant(&value).map(Some).ok_or_else(|| {
        bad(name, format!("`{name}` must be Unix seconds or an RFC 3339 time (2025-01-31T12:00:00Z), not {value:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::spend_logs::StatusFilter;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn arguments_read_from_json_or_query_strings_and_bad_ones_name_their_field() {
        let q = query(
            "w",
            &args(
                json!({"start": 1735689600, "end": "2025-01-02T00:00:00Z", "status": 429, "limit": "5", "model": "m"}),
            ),
        )
        .unwrap();
        assert_eq!((q.start_ms, q.end_ms), (Some(1_735_689_600_000), Some(1_735_776_000_000)));
        assert_eq!((q.status, q.limit, q.model.as_deref()), (Some(StatusFilter::Code(429)), 5, Some("m")));
        assert_eq!(query("w", &args(json!({}))).unwrap(), SpendQuery::workspace("w"));
        for (bad, field) in [
            (json!({"start": "yesterday"}), "start"),
            (json!({"start": 20, "end": 10}), "end"),
            (json!({"status": "teapot"}), "status"),
            (json!({"limit": 0}), "limit"),
            (json!({"limit": 1001}), "limit"),
            (json!({"cursor": "x"}), "cursor"),
            (json!({"key": ["a"]}), "key"),
            (json!({"modle": "m"}), "modle"),
        ] {
            let error = query("w", &args(bad.clone())).unwrap_err();
            assert_eq!((error.status.as_u16(), error.param.as_deref()), (400, Some(field)), "{bad}: {}", error.message);
        }
    }
}

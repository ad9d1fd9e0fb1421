//! Input items three ways: as a stored record keeps them (typed, with ids, as OpenAI lists
//! them), as they are resent upstream when a conversation continues (without the ids, which
//! only the store that made them knows), and as `GET .../input_items` pages them.

use super::Record;
use serde_json::{json, Map, Value};

/// A request's `input` as stored: a string becomes one user message; every item gets its
/// `type` (an item without one is a message, as the Agents SDK sends them), string content
/// becomes parts, and items without an `id` get one.
pub fn stored(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(text)) => vec![with_id(message("user", text))],
        Some(Value::Array(items)) => items.iter().filter_map(|item| item.as_object()).map(normalized).collect(),
        _ => Vec::new(),
    }
}

fn message(role: &str, text: &str) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("type".into(), json!("message"));
    item.insert("role".into(), json!(role));
    item.insert("content".into(), json!([{"type": part_type(role), "text": text}]));
    item
}

fn part_type(role: &str) -> &'static str {
    if role == "assistant" {
        "output_text"
    } else {
        "input_text"
    }
}

fn normalized(item: &Map<String, Value>) -> Value {
    let mut item = item.clone();
    if !item.get("type").is_some_and(Value::is_string) {
        item.insert("type".into(), json!("message"));
    }
    if item.get("type").and_then(Value::as_str) == Some("message") {
        if let Some(Value::String(text)) = item.get("content") {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
            let parts = json!([{"type": part_type(role), "text": text}]);
            item.insert("content".into(), parts);
        }
    }
    with_id(item)
}

fn with_id(mut item: Map<String, Value>) -> Value {
    if !item.get("id").is_some_and(Value::is_string) {
        let prefix = match item.get("type").and_then(Value::as_str) {
            Some("message") => "msg",
            Some("function_call") => "fc",
            Some("function_call_output") => "fco",
            Some("reasoning") => "rs",
            _ => "item",
        };
        item.insert("id".into(), Value::String(format!("{prefix}_{:032x}", rand::random::<u128>())));
    }
    Value::Object(item)
}

/// The conversation `chain` (oldest first) as input items for the next request: each turn's
/// input then its output. Ids and statuses are left out (an upstream would look them up in a
/// store of its own); reasoning goes only where it carries its content (`encrypted_content`),
/// and items of hosted tools, which no upstream takes back, not at all. MCP items stay whole
/// (their ids pair approvals with their requests) for the MCP tool loop, which turns them
/// into what the model saw, or takes them out (`mcp::agent`).
pub fn resent(chain: &[Record]) -> Vec<Value> {
    let mut items = Vec::new();
    for record in chain {
        let output = record.response.get("output").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for item in record.input.iter().chain(output) {
            let Some(item) = item.as_object() else { continue };
            match item.get("type").and_then(Value::as_str) {
                Some("message" | "function_call" | "function_call_output") => {
                    let mut item = item.clone();
                    item.remove("id");
                    item.remove("status");
                    items.push(Value::Object(item));
                }
                Some("mcp_list_tools" | "mcp_call" | "mcp_approval_request" | "mcp_approval_response") => {
                    items.push(Value::Object(item.clone()));
                }
                Some("reasoning") if item.get("encrypted_content").is_some_and(Value::is_string) => {
                    let mut item = item.clone();
                    item.remove("status");
                    items.push(Value::Object(item));
                }
                _ => {}
            }
        }
    }
    items
}

/// What `GET /v1/responses/{id}/input_items` lists for the last record of `chain`: the earlier
/// turns' inputs and outputs, then its own input, oldest first.
pub fn listed(chain: &[Record]) -> Vec<Value> {
    let mut items = Vec::new();
    for (n, record) in chain.iter().enumerate() {
        items.extend(record.input.iter().cloned());
        if n + 1 < chain.len() {
            if let Some(output) = record.response.get("output").and_then(Value::as_array) {
                items.extend(output.iter().cloned());
            }
        }
    }
    items
}

/// A page of a list, as OpenAI's list endpoints take and give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: usize,
    /// Newest first (OpenAI's default) or oldest first.
    pub descending: bool,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// Why a page's query does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("`limit` must be an integer from 1 to 100, not {0:?}")]
    Limit(String),
    #[error("`order` must be \"asc\" or \"desc\", not {0:?}")]
    Order(String),
}

impl PageError {
    pub fn param(&self) -> &'static str {
        match self {
            PageError::Limit(_) => "limit",
            PageError::Order(_) => "order",
        }
    }
}

impl PageQuery {
    /// Reads `limit`, `order`, `after` and `before` through `param`.
    pub fn read(param: impl Fn(&str) -> Option<String>) -> Result<PageQuery, PageError> {
        let limit = match param("limit") {
            None => 20,
            Some(text) => match text.parse::<usize>() {
                Ok(n @ 1..=100) => n,
                _ => return Err(PageError::Limit(text)),
            },
        };
        let descending = match param("order").as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => return Err(PageError::Order(other.to_owned())),
        };
        Ok(PageQuery { limit, descending, after: param("after"), before: param("before") })
    }
}

/// One page of `items` (oldest first) as a `list` object. A cursor naming no item is ignored,
/// as if absent.
pub fn page(mut items: Vec<Value>, query: &PageQuery) -> Value {
    if query.descending {
        items.reverse();
    }
    let position = |cursor: &Option<String>| {
        cursor
            .as_deref()
            .and_then(|id| items.iter().position(|item| item.get("id").and_then(Value::as_str) == Some(id)))
    };
    let end = position(&query.before).unwrap_or(items.len());
    let start = position(&query.after).map_or(0, |i| i + 1).min(end);
    let window = &items[start..end];
    let data: Vec<Value> = window.iter().take(query.limit).cloned().collect();
    let id_of = |item: Option<&Value>| item.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "data": data,
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": window.len() > query.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_stored_typed_with_parts_and_ids() {
        let items = stored(Some(&json!([
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "assistant", "content": "hello", "id": "msg_given"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"}
        ])));
        assert_eq!(items[0]["type"], "message");
        assert_eq!(items[0]["content"], json!([{"type": "input_text", "text": "hi"}]));
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(items[1]["content"], json!([{"type": "output_text", "text": "hello"}]));
        assert_eq!(items[1]["id"], "msg_given");
        assert!(items[2]["id"].as_str().unwrap().starts_with("fco_"));
        assert_eq!(stored(Some(&json!("hey")))[0]["role"], "user");
    }

    #[test]
    fn a_conversation_is_resent_without_ids_and_listed_with_them() {
        let first = Record {
            response: json!({"id": "resp_1", "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "sig", "status": "completed"},
                {"type": "web_search_call", "id": "ws_1"},
                {"type": "message", "id": "msg_out", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "hello"}]}
            ]}),
            input: stored(Some(&json!("hi"))),
            previous: None,
        };
        let second = Record {
            response: json!({"id": "resp_2", "output": []}),
            input: stored(Some(&json!("again"))),
            previous: Some("resp_1".into()),
        };
        let resent = resent(std::slice::from_ref(&first));
        assert_eq!(resent.len(), 3, "{resent:?}");
        assert_eq!(
            resent[0],
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
        );
        assert_eq!(resent[1], json!({"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "sig"}));
        assert_eq!(resent[2]["role"], "assistant");
        let listed = listed(&[first, second]);
        let ids: Vec<&str> = listed.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 6);
        assert_eq!(&ids[1..5], ["rs_1", "rs_2", "ws_1", "msg_out"]);
    }

    #[test]
    fn mcp_items_are_resent_whole_for_the_tool_loop() {
        let call = json!({"type": "mcp_call", "id": "mcp_1", "server_label": "s", "name": "t", "arguments": "{}",
                          "output": "42", "error": null, "status": "completed", "approval_request_id": "mcpr_1"});
        let turn = Record {
            response: json!({"id": "resp_1", "output": [call]}),
            input: stored(Some(
                &json!([{"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": true}]),
            )),
            previous: None,
        };
        let resent = resent(std::slice::from_ref(&turn));
        assert_eq!(resent[0]["approval_request_id"], "mcpr_1");
        assert_eq!(resent[1], call, "ids and statuses kept: they pair approvals with their calls");
    }

    #[test]
    fn pages_follow_openai_cursors() {
        let items: Vec<Value> = (1..=5).map(|n| json!({"id": format!("i{n}")})).collect();
        let q = |s: &str| {
            let pairs: Vec<(String, String)> =
                s.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
            PageQuery::read(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap()
        };
        let first = page(items.clone(), &q("limit=2"));
        assert_eq!(first["data"], json!([{"id": "i5"}, {"id": "i4"}]));
        assert_eq!(
            (first["first_id"].as_str(), first["last_id"].as_str(), first["has_more"].as_bool()),
            (Some("i5"), Some("i4"), Some(true))
        );
        let next = page(items.clone(), &q("limit=2&after=i4"));
        assert_eq!(next["data"], json!([{"id": "i3"}, {"id": "i2"}]));
        let last = page(items.clone(), &q("limit=2&after=i2"));
        assert_eq!((&last["data"], last["has_more"].as_bool()), (&json!([{"id": "i1"}]), Some(false)));
        let asc = page(items.clone(), &q("order=asc&before=i3"));
        assert_eq!(asc["data"], json!([{"id": "i1"}, {"id": "i2"}]));
        assert_eq!(PageQuery::read(|k| (k == "limit").then(|| "0".into())), Err(PageError::Limit("0".into())));
        assert_eq!(PageQuery::read(|k| (k == "order").then(|| "up".into())).unwrap_err().param(), "order");
    }
}

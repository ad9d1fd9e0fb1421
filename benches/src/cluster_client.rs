//! A client of two instances under faults, shared by the soak's fault phase (`bin/chaos.rs`)
//! and the suite's short version (`tests/it/chaos.rs`): a chat that reports the tokens it
//! used, server-apps calls that report failures as status 0, and the installs and uninstalls
//! acknowledged so far.

use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The service every chaos run sends its traffic to.
pub const SERVICE: &str = "chaos";

/// One chat to `model` of the chaos service (streamed with usage when `stream`); Ok(the total
/// tokens its usage reports).
pub async fn chat(client: &reqwest::Client, base: &str, token: &str, model: &str, stream: bool) -> Result<f64, String> {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "steady traffic"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let response = client
        .post(format!("{base}/default/apps/{SERVICE}/v1/chat/completions"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {}", text.chars().take(200).collect::<String>()));
    }
    let answer = if stream {
        // The last event before [DONE] carries the usage.
        text.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .last()
            .ok_or("an empty stream")?
    } else {
        text.as_str()
    };
    let usage = serde_json::from_str::<Value>(answer).map_err(|e| e.to_string())?["usage"].clone();
    usage["total_tokens"].as_f64().ok_or_else(|| "no usage in the answer".to_owned())
}

/// A server-apps call in the default workspace: (status, body); status 0 when nothing answered.
pub async fn controller(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    function: &str,
    kwargs: Value,
) -> (u16, Value) {
    let sent = client
        .post(format!("{base}/default/services/server-apps/{function}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(kwargs.to_string())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => (0, json!(e.to_string())),
    }
}

/// The ids of the apps an instance lists (None when it does not answer).
pub async fn app_ids(client: &reqwest::Client, base: &str, token: &str) -> Option<BTreeSet<String>> {
    let (status, apps) = controller(client, base, token, "list_apps", json!({})).await;
    let ids = apps.as_array()?.iter().filter_map(|a| a["id"].as_str().map(str::to_owned)).collect();
    (status == 200).then_some(ids)
}

/// A one-model `mock_response` app: what the churn installs and uninstalls.
pub fn small_app(id: &str) -> Value {
    json!({"id": id, "name": id, "type": "llm-proxy", "config": {"service_id": id,
        "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "small"}}]}})
}

/// Installs and uninstalls acknowledged (200) so far.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub wanted: BTreeSet<String>,
    pub removed: BTreeSet<String>,
}

impl Changes {
    /// Whether an instance listing `ids` holds every acknowledged change.
    pub fn held_by(&self, ids: &BTreeSet<String>) -> bool {
        self.wanted.iter().all(|id| ids.contains(id)) && self.removed.iter().all(|id| !ids.contains(id))
    }

    /// Installs app `c{n}` through `base`, and uninstalls it again when `n` is a multiple of 3,
    /// recording what was acknowledged.
    pub async fn churn_once(
        changes: &std::sync::Mutex<Changes>,
        client: &reqwest::Client,
        base: &str,
        token: &str,
        n: usize,
    ) {
        let id = format!("c{n}");
        let (status, _) = controller(client, base, token, "install", json!({"manifest": small_app(&id)})).await;
        if status != 200 {
            return;
        }
        if let Ok(mut c) = changes.lock() {
            c.wanted.insert(id.clone());
        }
        if n % 3 == 0 {
            let (status, _) = controller(client, base, token, "uninstall", json!({"app_id": id})).await;
            if let (200, Ok(mut c)) = (status, changes.lock()) {
                c.wanted.remove(&id);
                c.removed.insert(id);
            }
        }
    }
}

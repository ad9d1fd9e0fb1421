//! The services a Hypha client offers: what they are ([`Service`]: name, type, visibility,
//! functions and the [`Handler`] that serves them), what `register_service` is told of them
//! (no callables), and the service objects the client's `built-in.get_service` answers, whose
//! functions are method objects aimed at the client. The client's own `built-in` is one of them.

use super::client::{Client, ConnectionInfo};
use crate::rpc::codec::{self, map};
use crate::rpc::{Answer, Args};
use futures::future::BoxFuture;
use rmpv::Value;
use serde_json::json;
use std::borrow::Cow;
use std::sync::Arc;

/// A function of a service, as the service object lists it.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: &'static str,
    pub doc: Cow<'static, str>,
    /// Its parameters' JSON schema: told once, at registration, so that the service object
    /// Hypha asks for on every request through its URL stays small.
    pub parameters: Option<serde_json::Value>,
}

impl Function {
    pub const fn new(name: &'static str, doc: &'static str) -> Function {
        Function { name, doc: Cow::Borrowed(doc), parameters: None }
    }
}

/// A service this client offers: announced with `register_service` after every (re)connection,
/// described in full (functions included) when Hypha asks the client's `built-in.get_service`.
pub struct Service {
    /// The part after `:` of `{workspace}/{client_id}:{name}`.
    pub name: String,
    pub kind: String,
    pub description: String,
    /// `public`, `protected` or `unlisted`.
    pub visibility: &'static str,
    /// The app whose service it is (`*` for none).
    pub app_id: String,
    /// Keys of the service object besides its functions (a worker's `supported_types`, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub functions: Vec<Function>,
    pub handler: Arc<dyn Handler>,
}

/// What serves the calls to a [`Service`]'s functions.
pub trait Handler: Send + Sync + 'static {
    /// The answer (a stream becomes a generator), or the message the caller's
    /// `RemoteException` carries.
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, String>>;
}

/// One call Hypha made to a service of this client.
pub struct Call {
    pub function: String,
    pub args: Args,
    /// The caller's workspace, against which callbacks with a bare target resolve.
    pub caller_ws: String,
    /// The caller's user id as Hypha stamped it (`root` for Hypha's own calls).
    pub caller_user: String,
    /// This client, to call the callbacks the arguments carry.
    pub client: Client,
}

fn method_object(info: &ConnectionInfo, service: &str, function: &str, doc: &str) -> Value {
    map([
        ("_rtype", Value::from("method")),
        ("_rtarget", Value::from(info.id())),
        ("_rmethod", Value::from(format!("services.{service}.{function}"))),
        ("_rpromise", Value::from("*")),
        ("_rname", Value::from(function)),
        ("_rdoc", Value::from(doc)),
    ])
}

/// A function's entry in `service_schema`.
fn schema_entry(name: &str, doc: &str, parameters: Option<&serde_json::Value>) -> serde_json::Value {
    let parameters = parameters.cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    json!({"type": "function", "function": {"name": name, "description": doc, "parameters": parameters}})
}

/// What `register_service` is told: the service without callables (Hypha asks for those).
pub(super) fn announcement(service: &Service, info: &ConnectionInfo) -> Value {
    let schema: serde_json::Map<String, serde_json::Value> = service
        .functions
        .iter()
        .map(|f| (f.name.to_owned(), schema_entry(f.name, &f.doc, f.parameters.as_ref())))
        .collect();
    codec::from_json(&json!({
        "id": format!("{}:{}", info.id(), service.name),
        "name": service.name,
        "type": service.kind,
        "description": service.description,
        "docs": null,
        "app_id": service.app_id,
        "config": {"visibility": service.visibility, "require_context": true, "workspace": info.workspace},
        "service_schema": schema,
    }))
}

/// The service object `get_service` answers: its keys and one method object per function.
pub(super) fn service_object(service: &Service, info: &ConnectionInfo) -> Value {
    let mut fields = match announcement(service, info) {
        Value::Map(fields) => fields,
        _ => Vec::new(),
    };
    fields.retain(|(k, _)| k.as_str() != Some("service_schema"));
    fields.extend(service.extra.iter().map(|(k, v)| (Value::from(k.as_str()), codec::from_json(v))));
    for f in &service.functions {
        fields.push((Value::from(f.name), method_object(info, &service.name, f.name, &f.doc)));
    }
    Value::Map(fields)
}

const BUILTIN_FUNCTIONS: [(&str, &str); 7] = [
    ("ping", "Answer \"pong\"."),
    ("get_service", "Describe one of this client's services."),
    ("message_cache.create", "Start a chunked message."),
    ("message_cache.set", "Store one chunk at its index."),
    ("message_cache.append", "Store the next chunk."),
    ("message_cache.process", "Join the chunks and dispatch the message."),
    ("message_cache.remove", "Drop a chunked message."),
];

/// The built-in service as hypha-rpc announces its own (api_version 3: chunks may come in parallel).
pub(super) fn builtin_info(info: &ConnectionInfo) -> Value {
    codec::from_json(&json!({
        "id": format!("{}:built-in", info.id()),
        "name": format!("Builtin services for {}", info.id()),
        "type": "built-in",
        "description": null,
        "docs": null,
        "app_id": "*",
        "config": {"require_context": true, "visibility": "public", "api_version": 3, "workspace": info.workspace},
        "service_schema": {
            "ping": schema_entry("ping", BUILTIN_FUNCTIONS[0].1, None),
            "get_service": schema_entry("get_service", BUILTIN_FUNCTIONS[1].1, None),
        },
    }))
}

pub(super) fn builtin_object(info: &ConnectionInfo) -> Value {
    let mut fields = match builtin_info(info) {
        Value::Map(fields) => fields,
        _ => Vec::new(),
    };
    fields.retain(|(k, _)| k.as_str() != Some("service_schema"));
    let mut cache = Vec::new();
    for (name, doc) in BUILTIN_FUNCTIONS {
        let method = method_object(info, "built-in", name, doc);
        match name.strip_prefix("message_cache.") {
            Some(short) => cache.push((Value::from(short), method)),
            None => fields.push((Value::from(name), method)),
        }
    }
    fields.push((Value::from("message_cache"), Value::Map(cache)));
    Value::Map(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_service_nests_its_message_cache() {
        let info = ConnectionInfo {
            manager_id: "m".into(),
            workspace: "ws".into(),
            client_id: "c".into(),
            reconnection_token: None,
            public_base_url: None,
            hypha_version: None,
        };
        let described = codec::to_json(&builtin_object(&info));
        assert_eq!(described["id"], "ws/c:built-in");
        assert_eq!(described["message_cache"]["process"]["_rmethod"], "services.built-in.message_cache.process");
        assert_eq!(described["ping"]["_rtarget"], "ws/c");
    }
}

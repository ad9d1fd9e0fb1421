//! Services that clients register (`server.register_service({...})`): kept by id
//! (`workspace/client:service`) while their client is connected, and handed to other clients as
//! method objects aimed at the provider, so their calls are relayed to it through the server.

use super::codec::{self, field, map};
use super::lock;
use rmpv::Value;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One client-registered service.
#[derive(Debug, Clone)]
pub struct ClientService {
    /// `workspace/client:service`.
    pub id: String,
    pub workspace: String,
    /// `workspace/client` of the provider.
    pub client: String,
    /// The part after `:`.
    pub name: String,
    /// The info as registered (config, name, type, description, service_schema, ...).
    pub info: Value,
}

impl ClientService {
    pub fn visibility(&self) -> &str {
        field(&self.info, "config").and_then(|c| field(c, "visibility")).and_then(Value::as_str).unwrap_or("protected")
    }

    pub fn kind(&self) -> &str {
        field(&self.info, "type").and_then(Value::as_str).unwrap_or("generic")
    }

    /// Whether a caller of `workspace` may see and call it (hypha's rule: public and unlisted
    /// services for all, protected ones inside their workspace).
    pub fn visible_to(&self, workspace: &str, admin: bool) -> bool {
        admin || self.workspace == workspace || matches!(self.visibility(), "public" | "unlisted")
    }

    /// The summary `list_services` shows.
    pub fn summary(&self) -> Json {
        let text = |k: &str| field(&self.info, k).map(codec::to_json).unwrap_or(Json::Null);
        serde_json::json!({
            "id": self.id,
            "name": text("name"),
            "type": self.kind(),
            "description": text("description"),
            "config": text("config"),
        })
    }

    /// The service as a caller gets it: its info with one method object per function of its
    /// schema, each aimed at the provider (the server relays the calls).
    pub fn describe(&self) -> Value {
        let mut fields: Vec<(Value, Value)> = match &self.info {
            Value::Map(m) => m.iter().filter(|(k, _)| k.as_str() != Some("service_schema")).cloned().collect(),
            _ => Vec::new(),
        };
        if let Some(schema) = field(&self.info, "service_schema") {
            if let Value::Map(members) = methods(&self.client, &self.name, "", schema) {
                fields.extend(members);
            }
        }
        Value::Map(fields)
    }
}

/// Method objects for the functions a `service_schema` describes, nested as the schema nests.
fn methods(client: &str, service: &str, prefix: &str, schema: &Value) -> Value {
    let Value::Map(entries) = schema else { return Value::Nil };
    let mut out = Vec::new();
    for (key, entry) in entries {
        let Some(name) = key.as_str() else { continue };
        let path = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
        if field(entry, "type").and_then(Value::as_str) == Some("function") {
            let function = field(entry, "function");
            let description = function.and_then(|f| field(f, "description")).and_then(Value::as_str).unwrap_or("");
            let mut method = vec![
                ("_rtype", Value::from("method")),
                ("_rtarget", Value::from(client)),
                ("_rmethod", Value::from(format!("services.{service}.{path}"))),
                ("_rpromise", Value::from("*")),
                ("_rname", Value::from(name)),
                ("_rdoc", Value::from(description)),
            ];
            if let Some(function) = function {
                method.push(("_rschema", function.clone()));
            }
            out.push((key.clone(), map(method)));
        } else if matches!(entry, Value::Map(_)) && field(entry, "type").is_none() {
            out.push((key.clone(), methods(client, service, &path, entry)));
        }
    }
    Value::Map(out)
}

/// Every client-registered service, by id.
#[derive(Default)]
pub struct Registry {
    services: Mutex<BTreeMap<String, ClientService>>,
}

impl Registry {
    /// Registers `info` for `client` (`workspace/client`); its id must name that client.
    pub fn register(&self, client: &str, workspace: &str, info: Value) -> Result<ClientService, String> {
        let id = field(&info, "id").and_then(Value::as_str).ok_or("the service info has no `id`")?;
        let (owner, name) = match id.split_once(':') {
            Some((owner, name)) => (owner.to_owned(), name.to_owned()),
            None => (client.to_owned(), id.to_owned()),
        };
        let owner = if owner.contains('/') { owner } else { format!("{workspace}/{owner}") };
        if owner != client {
            return Err(format!("a client can only register its own services: {id:?} is not under {client:?}"));
        }
        let name = name.split('@').next().unwrap_or_default().to_owned();
        let service = ClientService {
            id: format!("{client}:{name}"),
            workspace: workspace.to_owned(),
            client: client.to_owned(),
            name,
            info,
        };
        lock(&self.services).insert(service.id.clone(), service.clone());
        Ok(service)
    }

    /// Removes one of `client`'s services (`id` full, `client:name` or just `name`).
    pub fn unregister(&self, client: &str, workspace: &str, id: &str) -> Result<(), String> {
        let name = id.rsplit(':').next().unwrap_or(id);
        let full = format!("{client}:{name}");
        let owned =
            id == full || id == name || id == format!("{}:{name}", client.trim_start_matches(&format!("{workspace}/")));
        match owned.then(|| lock(&self.services).remove(&full)).flatten() {
            Some(_) => Ok(()),
            None => Err(format!("service {id:?} is not registered by this client")),
        }
    }

    pub fn remove_client(&self, client: &str) {
        lock(&self.services).retain(|_, s| s.client != client);
    }

    /// The service `name` in `workspace`: `client:name` exactly, or the first of that name.
    pub fn find(&self, workspace: &str, name: &str) -> Option<ClientService> {
        let services = lock(&self.services);
        if name.contains(':') {
            return services.get(&format!("{workspace}/{name}")).cloned();
        }
        services.values().find(|s| s.workspace == workspace && s.name == name).cloned()
    }

    /// The services of `workspace`, built-in ones left out.
    pub fn in_workspace(&self, workspace: &str) -> Vec<ClientService> {
        lock(&self.services).values().filter(|s| s.workspace == workspace && s.kind() != "built-in").cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(id: &str, visibility: &str) -> Value {
        codec::from_json(&json!({
            "id": id,
            "name": "Greeter",
            "type": "generic",
            "config": {"visibility": visibility, "workspace": "ws"},
            "service_schema": {
                "hello": {"type": "function", "function": {"name": "hello", "description": "Say hello."}},
                "nested": {"deeper": {"type": "function", "function": {"name": "deeper"}}},
                "count": {"type": "number"},
            },
        }))
    }

    #[test]
    fn a_registered_service_becomes_method_objects_aimed_at_its_client() {
        let registry = Registry::default();
        registry.register("ws/c1", "ws", info("ws/c1:greeter", "protected")).unwrap();
        let service = registry.find("ws", "greeter").expect("found by name");
        assert_eq!(registry.find("ws", "c1:greeter").map(|s| s.id), Some("ws/c1:greeter".to_owned()));
        let described = codec::to_json(&service.describe());
        assert_eq!(described["hello"]["_rtarget"], "ws/c1");
        assert_eq!(described["hello"]["_rmethod"], "services.greeter.hello");
        assert_eq!(described["nested"]["deeper"]["_rmethod"], "services.greeter.nested.deeper");
        assert!(described.get("count").is_none() && described.get("service_schema").is_none());
        assert!(service.visible_to("ws", false) && !service.visible_to("other", false));
    }

    #[test]
    fn a_client_registers_and_removes_only_its_own_services() {
        let registry = Registry::default();
        assert!(registry.register("ws/c1", "ws", info("ws/c2:greeter", "public")).is_err());
        registry.register("ws/c1", "ws", info("ws/c1:greeter", "public")).unwrap();
        assert!(registry.unregister("ws/c2", "ws", "ws/c1:greeter").is_err());
        assert!(registry.find("other", "greeter").is_none());
        registry.remove_client("ws/c1");
        assert!(registry.in_workspace("ws").is_empty());
    }
}

//! The workspace manager (`services.built-in.get_service("default")` on `*/manager-...`): what
//! `connect_to_server` fetches first, and how clients find, register and list services.

use super::codec::{self, map};
use super::{apps, llm, Answer, Args, Client, Hub, Outcome, MANAGER_ID};
use crate::manifest::Visibility;
use rmpv::Value;
use serde_json::json;

/// The manager's functions and what each does.
const FUNCTIONS: &[(&str, &str, &[&str])] = &[
    ("echo", "Return the argument unchanged.", &["data"]),
    ("log", "Write a message to the server log.", &["msg"]),
    (
        "get_service",
        "Get a service by id: `public/server-apps`, `workspace/service_id`, ...",
        &["service_id", "config"],
    ),
    ("register_service", "Register a service of the calling client.", &["service", "config"]),
    ("unregister_service", "Remove a service of the calling client.", &["service"]),
    ("list_services", "List the services of a workspace visible to the caller.", &["query"]),
    ("get_service_info", "Describe a service without its functions.", &["service_id"]),
];

/// `services.default.{function}`.
pub(super) async fn serve(hub: &Hub, client: &Client, function: &str, args: &Args) -> Outcome {
    let value = match function {
        "echo" => args.get(0, "data").cloned().unwrap_or(Value::Nil),
        "log" => {
            let message = args.get(0, "msg").map(codec::to_json).unwrap_or_default();
            tracing::info!(client = %client.id, %message, "client log");
            Value::Nil
        }
        "get_service" => {
            let id = args.str(0, "service_id").ok_or("missing argument `service_id`")?;
            return get_service(hub, client, id);
        }
        "get_service_info" => {
            let id = args.str(0, "service_id").ok_or("missing argument `service_id`")?;
            let Answer::Value(Value::Map(fields)) = get_service(hub, client, id)? else {
                return Err(format!("service {id:?} has no info"));
            };
            Value::Map(fields.into_iter().filter(|(_, v)| codec::field(v, "_rtype").is_none()).collect())
        }
        "register_service" => {
            let info = args.get(0, "service").cloned().ok_or("missing argument `service`")?;
            let service = hub.services.register(&client.id, &client.workspace, info)?;
            tracing::info!(service = %service.id, "service registered");
            codec::from_json(&service.summary())
        }
        "unregister_service" => {
            let id = match args.get(0, "service") {
                Some(Value::String(s)) => s.as_str().unwrap_or_default().to_owned(),
                Some(v) => codec::field(v, "id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                None => return Err("missing argument `service`".to_owned()),
            };
            hub.services.unregister(&client.id, &client.workspace, &id)?;
            Value::Nil
        }
        "list_services" => list_services(hub, client, args)?,
        other => return Err(format!("the manager has no function {other:?}")),
    };
    Ok(Answer::Value(value))
}

/// The manager service; `config` is merged with `connection_info` by the client.
pub(super) fn describe(hub: &Hub) -> Value {
    let target = format!("*/{MANAGER_ID}");
    let base = hub.state.controller.base_url();
    let mut fields = vec![
        ("id", Value::from("default")),
        ("name", Value::from("Default workspace management service")),
        ("description", Value::from("Services of the workspace: find, register, list.")),
        ("type", Value::from("generic")),
        (
            "config",
            codec::from_json(&json!({
                "require_context": true,
                "visibility": "public",
                "server_id": super::SERVER_ID,
                "ferrolite_version": env!("CARGO_PKG_VERSION"),
                "public_base_url": base,
                "local_base_url": base,
            })),
        ),
    ];
    for (name, doc, params) in FUNCTIONS {
        let properties: serde_json::Map<String, serde_json::Value> =
            params.iter().map(|p| ((*p).to_owned(), json!({}))).collect();
        fields.push((
            name,
            super::method(
                &target,
                &format!("default.{name}"),
                name,
                doc,
                json!({"type": "object", "properties": properties}),
            ),
        ));
    }
    map(fields)
}

/// Resolves a service id the way hypha does: `workspace/name`, a bare name in the caller's
/// workspace, `workspace/client:name` for a client's service; `public/server-apps` is the
/// controller acting on the caller's workspace.
fn get_service(hub: &Hub, client: &Client, id: &str) -> Outcome {
    let id = id.split('@').next().unwrap_or(id);
    let (workspace, name) = id.split_once('/').unwrap_or((client.workspace.as_str(), id));
    let claims = client.claims_now(&hub.state.tokens)?;
    if name == apps::SERVICE_ID || name.ends_with(&format!(":{}", apps::SERVICE_ID)) {
        crate::http::controller::acting_workspace(&claims, workspace).map_err(|e| e.message)?;
        return Ok(Answer::Value(apps::describe(workspace)));
    }
    if let Some(service) = hub.services.find(workspace, name) {
        if !service.visible_to(&claims.ws, claims.admin) {
            return Err(format!(
                "Permission denied for protected service {:?}: a token of workspace {:?} cannot use it",
                service.id, claims.ws
            ));
        }
        return Ok(Answer::Value(service.describe()));
    }
    // An LLM service answers as `workspace/service_id`, also under the server's client id.
    let name = name.strip_prefix(&format!("{}:", super::SERVER_ID)).unwrap_or(name);
    let registry = hub.state.controller.registry();
    match registry.get(workspace, name) {
        Some(session) => {
            if session.visibility == Visibility::Protected && !claims.may_enter(&session.workspace) {
                return Err(format!(
                    "service {:?} is protected: a token of workspace {:?} cannot call it",
                    session.service_id, claims.ws
                ));
            }
            Ok(Answer::Value(llm::describe(&session)))
        }
        None if registry.has_workspace(workspace) => Err(format!(
            "service {name:?} not found in workspace {workspace:?}: it is not running (check list_running)"
        )),
        None => Err(format!("service {id:?} not found: workspace {workspace:?} has no such service")),
    }
}

/// `list_services(query)`: `query` is a workspace name or `{"workspace": ...}`; the caller's
/// own by default. Another workspace shows only its public services.
fn list_services(hub: &Hub, client: &Client, args: &Args) -> Result<Value, String> {
    let claims = client.claims_now(&hub.state.tokens)?;
    let workspace = match args.get(0, "query") {
        Some(Value::String(s)) => s.as_str().unwrap_or_default().to_owned(),
        Some(query) => codec::field(query, "workspace").and_then(Value::as_str).unwrap_or(&client.workspace).to_owned(),
        None => client.workspace.clone(),
    };
    let workspace = if workspace == "*" || workspace.is_empty() { client.workspace.clone() } else { workspace };
    let inside = claims.may_enter(&workspace);
    let mut found: Vec<serde_json::Value> = hub
        .services
        .in_workspace(&workspace)
        .into_iter()
        .filter(|s| inside || s.visibility() == "public")
        .map(|s| s.summary())
        .collect();
    for session in hub.state.controller.registry().sessions_in(&workspace) {
        if inside || session.visibility == Visibility::Public {
            found.push(llm::summary(&session));
        }
    }
    if workspace == "public" || inside {
        found.push(json!({
            "id": format!("{workspace}/{}:{}", super::SERVER_ID, apps::SERVICE_ID),
            "name": "Server Apps",
            "type": "server-apps",
            "config": {"visibility": "public", "workspace": workspace},
        }));
    }
    Ok(codec::from_json(&json!(found)))
}

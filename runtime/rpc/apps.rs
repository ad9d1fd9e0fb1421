//! `public/server-apps` over RPC: the HTTP controller's functions, run by the same code
//! (`http::controller::execute`) after the same caller check, so both doors agree on every
//! argument, result and error message.

use super::codec::{self, map};
use super::{Answer, Args, Client, Hub, Outcome, SERVER_ID};
use crate::http::controller::{self, FUNCTIONS, POSITIONAL};
use rmpv::Value;
use serde_json::json;

pub use crate::http::controller::SERVICE_ID;

/// `services.server-apps.{function}` sent to `{workspace}/ferrolite-server`.
pub(super) async fn serve(hub: &Hub, client: &Client, workspace: &str, function: &str, args: &Args) -> Outcome {
    let claims = client.claims_now(&hub.state.tokens)?;
    let (workspace, admin) = controller::acting_workspace(&claims, workspace).map_err(|e| e.message)?;
    crate::http::keys::check_caller(&claims, function).map_err(|e| e.message)?;
    let kwargs = args.json_kwargs(positional(function));
    controller::execute(hub.state.clone(), workspace, admin, function.to_owned(), kwargs)
        .await
        .map(|value| Answer::Value(codec::from_json(&value)))
        .map_err(|e| e.message)
}

fn positional(function: &str) -> &'static [&'static str] {
    POSITIONAL.iter().find(|(f, _)| *f == function).map_or(&[], |(_, names)| names)
}

/// The service object `get_service("public/server-apps")` returns; `workspace` is the one
/// named (`public`: the caller's own).
pub(super) fn describe(workspace: &str) -> Value {
    let target = format!("{workspace}/{SERVER_ID}");
    let mut fields = vec![
        ("id", Value::from(format!("{workspace}/{SERVER_ID}:{SERVICE_ID}"))),
        ("name", Value::from("Server Apps")),
        ("type", Value::from("server-apps")),
        ("description", Value::from("Install, start and stop llm-proxy apps.")),
        ("config", codec::from_json(&json!({"visibility": "public", "require_context": true, "workspace": workspace}))),
    ];
    for function in FUNCTIONS {
        let properties: serde_json::Map<String, serde_json::Value> =
            positional(function).iter().map(|p| ((*p).to_owned(), json!({}))).collect();
        let parameters = json!({"type": "object", "properties": properties});
        let doc = format!("server-apps {function}, as POST /{{workspace}}/services/server-apps/{function}");
        fields
            .push((function, super::method(&target, &format!("{SERVICE_ID}.{function}"), function, &doc, parameters)));
    }
    map(fields)
}

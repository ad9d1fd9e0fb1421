//! A Hypha session's one service, named by the app's service_id. Its type is `asgi`, so Hypha's
//! URL `/{workspace}/apps/{service_id}/...` calls its `serve` (`asgi.rs`); Hypha calls nothing
//! else of an asgi service, and relays calls to its other functions as to any service's. Those
//! are the LLM functions ferrolite's own RPC services have (`chat_completions`,
//! `create_response`, `list_models`, ... and Hypha's `chat_completion`), run by `rpc::llm`
//! through the same HTTP door, so `get_service("{workspace}/{service_id}")` works on Hypha as
//! on ferrolite's own `/ws`; a stream comes back as a generator.

use super::asgi::Asgi;
use super::service::{Call, Function, Handler, Service};
use crate::rpc::{llm, Answer};
use futures::future::BoxFuture;
use std::borrow::Cow;
use std::sync::Arc;

/// What Hypha and the users see of a session's service besides its functions.
pub struct Described {
    pub description: String,
    /// `public` or `protected`.
    pub visibility: &'static str,
    /// Hypha's app id.
    pub app_id: String,
}

/// The session's service: `serve` and every LLM function, answered by `asgi`'s HTTP door.
pub fn service(asgi: Asgi, described: Described) -> Service {
    let mut functions = vec![Function::new("serve", "Serve one HTTP request (ASGI).")];
    functions.extend(llm::functions().into_iter().map(|f| Function {
        name: f.name,
        doc: Cow::Owned(f.doc),
        parameters: Some(f.parameters),
    }));
    Service {
        name: asgi.service_id().to_owned(),
        kind: "asgi".into(),
        description: described.description,
        visibility: described.visibility,
        app_id: described.app_id,
        extra: Default::default(),
        functions,
        handler: Arc::new(SessionHandler(Arc::new(asgi))),
    }
}

struct SessionHandler(Arc<Asgi>);

impl Handler for SessionHandler {
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, String>> {
        let asgi = self.0.clone();
        Box::pin(async move {
            if call.function == "serve" {
                return asgi.serve(call).await.map(Answer::Value).map_err(|e| e.to_string());
            }
            let token = asgi.token();
            llm::call(asgi.http(), &token, asgi.workspace(), asgi.service_id(), &call.function, &call.args).await
        })
    }
}

//! What the gateway forwards besides answers: an upstream's progress notifications, routed back
//! to the client whose call they belong to; a client's cancellation, passed on to the upstream;
//! and the upstreams' `list_changed` notifications, told to every client listening.
//!
//! The gateway is stateless, so a client's `notifications/cancelled` arrives as a POST of its
//! own that rmcp's stateless server would drop; [`InFlight`] finds the call it names by the
//! caller's credential and the JSON-RPC id (ids are only unique per client). Behind a load
//! balancer the cancel and the call, or the change and the listening client, may be on two
//! instances: a [`Relay`] passes them on (over Redis).

use crate::exchange::parse_json;
use axum::http::HeaderMap;
use rmcp::model::{ProgressNotificationParam, ProgressToken, RequestId};
use rmcp::service::{NotificationContext, RoleClient};
use rmcp::{ClientHandler, Peer, RoleServer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The client side of one forwarded call.
#[derive(Clone)]
pub struct Downstream {
    pub peer: Peer<RoleServer>,
    /// The client's own progress token, when it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// Cancelled when the client cancels the call or goes away.
    pub cancel: CancellationToken,
}

type Routes = HashMap<ProgressToken, (Peer<RoleServer>, ProgressToken)>;

/// Which list an upstream said changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListChange {
    Tools,
    Prompts,
    Resources,
}

impl ListChange {
    /// The notification's method, as clients get it.
    pub fn method(self) -> &'static str {
        match self {
            ListChange::Tools => "notifications/tools/list_changed",
            ListChange::Prompts => "notifications/prompts/list_changed",
            ListChange::Resources => "notifications/resources/list_changed",
        }
    }

    pub fn from_method(method: &str) -> Option<ListChange> {
        [ListChange::Tools, ListChange::Prompts, ListChange::Resources].into_iter().find(|c| c.method() == method)
    }
}

/// Passes what this instance cannot act on to the other instances.
pub trait Relay: Send + Sync {
    /// A cancellation of a call this instance is not serving.
    fn cancel(&self, caller: u64, id: RequestId);
    /// An upstream's list changed, seen on this instance's connection to it.
    fn list_changed(&self, change: ListChange);
}

/// How many list changes a slow listener may fall behind before it misses some.
const CHANGES_BUFFER: usize = 16;

/// What the gateway's upstream connections and its clients share: the calls in flight, the
/// clients listening for list changes, and the relay to other instances.
pub struct Notices {
    pub inflight: InFlight,
    changes: tokio::sync::broadcast::Sender<ListChange>,
    relay: std::sync::OnceLock<Box<dyn Relay>>,
}

impl Default for Notices {
    fn default() -> Notices {
        Notices {
            inflight: InFlight::default(),
            changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
            relay: Default::default(),
        }
    }
}

impl Notices {
    /// Sets the relay to other instances (once; with `--redis-url`).
    pub fn set_relay(&self, relay: Box<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    pub fn relay(&self) -> Option<&dyn Relay> {
        self.relay.get().map(|r| &**r)
    }

    /// Tells this instance's listening clients that a list changed.
    pub fn announce(&self, change: ListChange) {
        // No listener is not an error: nobody has the list open.
        let _ = self.changes.send(change);
    }

    pub fn listen(&self) -> tokio::sync::broadcast::Receiver<ListChange> {
        self.changes.subscribe()
    }
}

/// The handler of one upstream connection: progress notifications by the upstream token rmcp
/// put in each request, sent on under the client's token; list changes told to every client.
#[derive(Clone)]
pub struct Forwarder {
    routes: Arc<Mutex<Routes>>,
    notices: Arc<Notices>,
}

impl Forwarder {
    pub fn new(notices: Arc<Notices>) -> Forwarder {
        Forwarder { routes: Default::default(), notices }
    }

    fn changed(&self, change: ListChange) {
        self.notices.announce(change);
        if let Some(relay) = self.notices.relay() {
            relay.list_changed(change);
        }
    }

    /// Routes the upstream's notifications for `upstream` to `downstream` until the guard drops.
    pub fn route(&self, upstream: ProgressToken, downstream: &Downstream) -> Option<RouteGuard> {
        let token = downstream.progress_token.clone()?;
        self.routes.lock().ok()?.insert(upstream.clone(), (downstream.peer.clone(), token));
        Some(RouteGuard { routes: self.routes.clone(), upstream })
    }
}

/// Removes a progress route when its call ends.
pub struct RouteGuard {
    routes: Arc<Mutex<Routes>>,
    upstream: ProgressToken,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&self.upstream);
        }
    }
}

impl ClientHandler for Forwarder {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        let route = self.routes.lock().ok().and_then(|routes| routes.get(&params.progress_token).cloned());
        let Some((peer, token)) = route else { return };
        let mut forwarded = ProgressNotificationParam::new(token, params.progress);
        forwarded.total = params.total;
        forwarded.message = params.message;
        // The client may be gone already; its cancellation reaches the upstream separately.
        let _ = peer.notify_progress(forwarded).await;
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(ListChange::Tools);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(ListChange::Prompts);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(ListChange::Resources);
    }
}

/// Who is calling, as a hash of the credential they presented (never kept itself); the same
/// on every instance, so a cancellation can be passed to the one serving the call.
pub fn caller(headers: Option<&HeaderMap>) -> u64 {
    let credential = headers
        .and_then(|h| h.get(axum::http::header::AUTHORIZATION).or_else(|| h.get("x-api-key")).map(|v| v.as_bytes()));
    let digest = Sha256::digest(credential.unwrap_or_default());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(head)
}

/// The calls in flight on this instance, by caller and JSON-RPC id.
#[derive(Default)]
pub struct InFlight {
    calls: Arc<Mutex<HashMap<(u64, RequestId), CancellationToken>>>,
}

impl InFlight {
    /// Records a call until the guard drops.
    pub fn enter(&self, caller: u64, id: RequestId, cancel: CancellationToken) -> Option<InFlightGuard> {
        let key = (caller, id);
        self.calls.lock().ok()?.insert(key.clone(), cancel);
        Some(InFlightGuard { calls: self.calls.clone(), key })
    }

    /// Cancels the caller's call `id`; false when no such call is in flight here.
    pub fn cancel(&self, caller: u64, id: RequestId) -> bool {
        let cancel = self.calls.lock().ok().and_then(|calls| calls.get(&(caller, id)).cloned());
        cancel.map(|c| c.cancel()).is_some()
    }
}

/// Forgets a call when it ends.
pub struct InFlightGuard {
    calls: Arc<Mutex<HashMap<(u64, RequestId), CancellationToken>>>,
    key: (u64, RequestId),
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(&self.key);
        }
    }
}

/// What the endpoint needs to know of a POSTed message before rmcp serves it.
#[derive(Debug, PartialEq)]
pub enum Posted {
    /// `initialize`: its answer carries a session id.
    Initialize,
    /// `notifications/cancelled` naming a request.
    Cancelled(RequestId),
    Other,
}

impl Posted {
    pub fn of(body: &[u8]) -> Posted {
        #[derive(serde::Deserialize)]
        struct Message {
            method: Option<String>,
            params: Option<Params>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Params {
            request_id: Option<RequestId>,
        }
        let Ok(message) = parse_json::<Message>(body) else { return Posted::Other };
        match (message.method.as_deref(), message.params.and_then(|p| p.request_id)) {
            (Some("initialize"), _) => Posted::Initialize,
            (Some("notifications/cancelled"), Some(id)) => Posted::Cancelled(id),
            _ => Posted::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    #[test]
    fn a_cancel_reaches_only_the_same_callers_call() {
        let inflight = InFlight::default();
        let mut a = HeaderMap::new();
        a.insert("authorization", "Bearer a".parse().unwrap());
        let mut b = HeaderMap::new();
        b.insert("authorization", "Bearer b".parse().unwrap());
        let token = CancellationToken::new();
        let guard = inflight.enter(caller(Some(&a)), NumberOrString::Number(1), token.clone());
        assert!(!inflight.cancel(caller(Some(&b)), NumberOrString::Number(1)), "another caller's id 1");
        assert!(!token.is_cancelled());
        assert!(inflight.cancel(caller(Some(&a)), NumberOrString::Number(1)));
        assert!(token.is_cancelled());
        drop(guard);
        assert!(!inflight.cancel(caller(Some(&a)), NumberOrString::Number(1)), "forgotten when done");
    }

    #[test]
    fn posted_messages_are_told_apart() {
        let cancel = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"x"}}"#;
        assert_eq!(Posted::of(cancel), Posted::Cancelled(NumberOrString::Number(7)));
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
        assert_eq!(Posted::of(init), Posted::Initialize);
        let other = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"requestId":7}}"#;
        assert_eq!(Posted::of(other), Posted::Other);
        assert_eq!(Posted::of(br#"[{"jsonrpc":"2.0"}]"#), Posted::Other);
        assert_eq!(Posted::of(b"not json"), Posted::Other);
    }
}

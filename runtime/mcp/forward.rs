//! What travels with a forwarded tool call besides its answer: the upstream's progress
//! notifications, routed back to the client whose call they belong to, and the client's
//! cancellation, passed on to the upstream.
//!
//! The gateway is stateless, so a client's `notifications/cancelled` arrives as a POST of its
//! own that rmcp's stateless server would drop; [`InFlight`] finds the call it names by the
//! caller's credential and the JSON-RPC id (ids are only unique per client).

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

/// The handler of one upstream connection: progress notifications by the upstream token rmcp
/// put in each request, sent on under the client's token.
#[derive(Clone, Default)]
pub struct Progress {
    routes: Arc<Mutex<Routes>>,
}

impl Progress {
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

impl ClientHandler for Progress {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        let route = self.routes.lock().ok().and_then(|routes| routes.get(&params.progress_token).cloned());
        let Some((peer, token)) = route else { return };
        let mut forwarded = ProgressNotificationParam::new(token, params.progress);
        forwarded.total = params.total;
        forwarded.message = params.message;
        // The client may be gone already; its cancellation reaches the upstream separately.
        let _ = peer.notify_progress(forwarded).await;
    }
}

/// Passes a cancellation this instance has no call for to the other instances.
pub type Relay = Box<dyn Fn(u64, RequestId) + Send + Sync>;

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

/// The request a `notifications/cancelled` body names, if `body` is one.
pub fn cancelled_request(body: &[u8]) -> Option<RequestId> {
    #[derive(serde::Deserialize)]
    struct Notification {
        method: String,
        params: Params,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        request_id: RequestId,
    }
    let notification: Notification = serde_json::from_slice(body).ok()?;
    (notification.method == "notifications/cancelled").then_some(notification.params.request_id)
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
    fn only_cancelled_notifications_name_a_request() {
        let cancel = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"x"}}"#;
        assert_eq!(cancelled_request(cancel), Some(NumberOrString::Number(7)));
        let other = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"requestId":7}}"#;
        assert_eq!(cancelled_request(other), None);
        assert_eq!(cancelled_request(b"not json"), None);
    }
}

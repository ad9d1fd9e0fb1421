//! Worker mode (`serve --hypha-server URL --hypha-token TOKEN`): ferrolite joins a real Hypha
//! server as a hypha-rpc client and registers a `server-app-worker` for `llm-proxy` apps, so the
//! apps its users install through `public/server-apps` run here. Each started app gets a client
//! of its own (the id and token Hypha hands over) whose `asgi` service answers Hypha's URL
//! `/{workspace}/apps/{service_id}/v1/...` with ferrolite's own HTTP door, in-process, and
//! carries the LLM functions of ferrolite's own RPC services (`session.rs`).
//!
//! A door like `rpc` and `http`, the other way round: ferrolite is the client here.

pub mod asgi;
pub mod client;
pub mod service;
pub mod session;
pub mod worker;

use crate::http::AppState;
use asgi::HttpService;
use client::{Client, ClientConfig, ClientError, Reconnect, Status};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// `--hypha-server`, `--hypha-token`, `--hypha-workspace`.
#[derive(Debug, Clone)]
pub struct HyphaOptions {
    /// `http(s)://host[:port]` (or `ws(s)://.../ws`).
    pub server_url: String,
    pub token: String,
    /// Where the worker registers: `public` lets every workspace's apps reach it.
    pub workspace: String,
    /// The worker's client id: kept across restarts, so a restarted worker takes its own place.
    pub client_id: String,
}

/// The running worker: its own client and the sessions it serves.
pub struct HyphaWorker {
    client: Client,
    worker: Arc<worker::Worker>,
}

impl HyphaWorker {
    /// Connects in the background (reconnecting until [`HyphaWorker::close`]).
    pub fn start(options: HyphaOptions, state: AppState, http: HttpService) -> HyphaWorker {
        let worker = worker::Worker::new(state, http, options.server_url.clone());
        let config = ClientConfig {
            server_url: options.server_url,
            workspace: Some(options.workspace),
            client_id: options.client_id,
            token: options.token,
            reconnect: Reconnect::Always,
        };
        let client = Client::spawn(config, vec![worker.service()]);
        let span = tracing::info_span!("hypha_worker");
        tokio::spawn(end_sessions_on_disconnect(client.status(), worker.clone()).instrument(span));
        HyphaWorker { client, worker }
    }

    /// The worker service's id once it is registered, or why it is not (yet).
    pub async fn ready(&self, within: Duration) -> Result<String, ClientError> {
        let info = self.client.ready(within).await?;
        Ok(format!("{}:{}", info.id(), worker::SERVICE_NAME))
    }

    /// Leaves Hypha: the sessions' clients first (Hypha stops their apps), then the worker's.
    pub fn close(&self) {
        self.worker.close_all();
        self.client.close();
    }
}

/// Hypha forgets a worker's sessions when the worker's connection ends (hypha 0.21.137 drops
/// them without a `stop`), so each time it does, the worker's sessions end here too, their
/// services with them: left registered, they would clash with the same apps started again.
async fn end_sessions_on_disconnect(mut status: tokio::sync::watch::Receiver<Status>, worker: Arc<worker::Worker>) {
    loop {
        if status.wait_for(|s| matches!(s, Status::Ready(_))).await.is_err() {
            return;
        }
        let closed = match status.wait_for(|s| !matches!(s, Status::Ready(_))).await {
            Ok(now) => matches!(*now, Status::Ended(None)),
            Err(_) => true,
        };
        if closed {
            return;
        }
        worker.end_all("the worker's connection to Hypha ended, and Hypha forgets a worker's sessions with it").await;
    }
}

//! A hypha-rpc client of a Hypha server's `/ws`: the handshake, keepalive pings, reconnecting
//! with backoff (and registering its services again each time), calls to the server and to the
//! callbacks it hands over, and the calls Hypha makes to the services this client offers,
//! answered with heartbeats while they run.
//!
//! The frames are hypha-rpc's (`rpc::codec`): TEXT JSON for the handshake and keepalives, one
//! BINARY msgpack message per frame for everything else. What the services are and how they
//! are described is `service.rs`. A streamed answer is handed out as a hypha-rpc generator
//! whose `next` the caller calls on this client.

use super::service::{announcement, builtin_info, builtin_object, service_object, Call, Service};
use crate::rpc::chunks::Cache;
use crate::rpc::codec::{self, field, map, Frame};
use crate::rpc::{error_value, random_id, with_heartbeats, Answer, Args, Items};
use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use rmpv::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument as _;

/// How long the TCP and WebSocket handshakes may take, and then the `connection_info` answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// hypha-rpc's keepalive: a TEXT ping every 20 s (the server's idle timeout counts data frames).
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection that delivered nothing (not even a pong) for this long is dead: reconnect.
const SILENT_LIMIT: Duration = Duration::from_secs(65);
/// Reconnect delays: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(30);
/// A connection that lasted this long starts the backoff over when it ends.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a call waits without an answer or a heartbeat (hypha-rpc's method_timeout).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued for the socket before senders wait.
const OUTBOX: usize = 256;
/// A generator nobody read for this long is dropped (and its upstream call with it).
const GENERATOR_IDLE: Duration = Duration::from_secs(300);

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http(s)://host[:port]` of the Hypha server, or its `ws(s)://host[:port]/ws`.
    pub server_url: String,
    /// The workspace to enter; the token's own when `None`.
    pub workspace: Option<String>,
    pub client_id: String,
    pub token: String,
    pub reconnect: Reconnect,
}

/// What a client does when its connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Connect again, with backoff, until closed: the worker must come back after any outage.
    Always,
    /// End: a Hypha app's client, whose disconnection ends its session in Hypha (Hypha stops it,
    /// or forgot it when it restarted), so a new connection would only leave an orphan service.
    Never,
}

/// Why a connection or a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Hypha server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Hypha server refused the connection: {0}")]
    Refused(String),
    #[error("the Hypha server broke the protocol: {0}")]
    Protocol(String),
    #[error("not connected to the Hypha server")]
    Disconnected,
    #[error("the Hypha server closed the connection")]
    ServerClosed,
    #[error("no answer to {method} within {seconds} s")]
    Timeout { method: String, seconds: u64 },
    /// The callee's own error message.
    #[error("{0}")]
    Remote(String),
    #[error("the client was closed")]
    Closed,
}

/// What the server answers the handshake with.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    pub manager_id: String,
    pub workspace: String,
    pub client_id: String,
    #[serde(default)]
    pub reconnection_token: Option<String>,
    #[serde(default)]
    pub public_base_url: Option<String>,
    #[serde(default)]
    pub hypha_version: Option<String>,
}

impl ConnectionInfo {
    /// `workspace/client_id`, the identity every message of this connection carries.
    pub fn id(&self) -> String {
        format!("{}/{}", self.workspace, self.client_id)
    }
}

/// The first frame: who connects.
#[derive(Serialize)]
struct Hello<'a> {
    client_id: &'a str,
    workspace: Option<&'a str>,
    token: &'a str,
    reconnection_token: Option<String>,
}

/// The server's TEXT frames.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerText {
    ConnectionInfo(ConnectionInfo),
    Error {
        message: String,
    },
    ReconnectionToken {
        reconnection_token: String,
    },
    #[serde(other)]
    Other,
}

/// An answer to one of this client's calls, or a sign of life of the callee.
enum Reply {
    Heartbeat,
    Done(Result<Value, ClientError>),
}

/// The live socket: where frames go and who this client is on it.
#[derive(Clone)]
struct Link {
    outbox: mpsc::Sender<Message>,
    info: Arc<ConnectionInfo>,
}

/// Where a client stands.
#[derive(Debug, Clone)]
pub enum Status {
    Connecting,
    /// Connected, every service registered.
    Ready(Arc<ConnectionInfo>),
    /// The last attempt failed; another follows.
    Failed(ClientError),
    /// For good: closed by [`Client::close`] (`None`), or its connection ended and it does not
    /// reconnect (why).
    Ended(Option<ClientError>),
}

/// A streamed answer handed out as a generator: read by the client that asked for it only.
struct Generator {
    reader: String,
    items: Arc<tokio::sync::Mutex<Items>>,
    last_read: Instant,
}

struct Inner {
    config: ClientConfig,
    url: String,
    services: Mutex<Vec<Arc<Service>>>,
    link: Mutex<Option<Link>>,
    /// Calls of this client awaiting their answer, by session.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>,
    /// Open generators, by id.
    generators: Mutex<HashMap<String, Generator>>,
    chunks: Cache,
    status: watch::Sender<Status>,
    closed: watch::Sender<bool>,
    /// Given by the server: lets a reconnection resume the same client.
    reconnection_token: Mutex<Option<String>>,
}

/// A handle on one client connection (kept up by a background task until [`Client::close`]).
#[derive(Clone)]
pub struct Client(Arc<Inner>);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `ws(s)://host/ws` for a server URL given as http(s) (as hypha-rpc's `normalize_server_url`).
pub fn ws_url(server_url: &str) -> String {
    let url = server_url.trim_end_matches('/');
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return url.to_owned();
    }
    match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => format!("wss://{rest}/ws"),
        (None, Some(rest)) => format!("ws://{rest}/ws"),
        (None, None) => format!("ws://{url}/ws"),
    }
}

impl Client {
    /// Starts connecting in the background; [`Client::ready`] tells when the services are
    /// registered.
    pub fn spawn(config: ClientConfig, services: Vec<Service>) -> Client {
        // A root span: a session's client outlives the worker call that started it.
        let span = tracing::info_span!(parent: None, "hypha_client", client_id = %config.client_id);
        let inner = Arc::new(Inner {
            url: ws_url(&config.server_url),
            config,
            services: Mutex::new(services.into_iter().map(Arc::new).collect()),
            link: Mutex::default(),
            pending: Mutex::default(),
            generators: Mutex::default(),
            chunks: Cache::default(),
            status: watch::Sender::new(Status::Connecting),
            closed: watch::Sender::new(false),
            reconnection_token: Mutex::default(),
        });
        tokio::spawn(run(inner.clone()).instrument(span));
        Client(inner)
    }

    /// Waits until the current connection has registered every service, or its attempt failed.
    pub async fn ready(&self, within: Duration) -> Result<Arc<ConnectionInfo>, ClientError> {
        let mut status = self.0.status.subscribe();
        let settled = async {
            let status = status.wait_for(|s| !matches!(s, Status::Connecting)).await;
            status.map(|s| s.clone())
        };
        match tokio::time::timeout(within, settled).await {
            Err(_) => Err(ClientError::Timeout { method: "connect".into(), seconds: within.as_secs() }),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(Status::Ready(info))) => Ok(info),
            Ok(Ok(Status::Failed(e) | Status::Ended(Some(e)))) => Err(e),
            Ok(Ok(Status::Ended(None) | Status::Connecting)) => Err(ClientError::Closed),
        }
    }

    /// Follows the client's status as it changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.0.status.subscribe()
    }

    /// Waits until the client ended for good: `None` when [`Client::close`] ended it, else why
    /// its connection ended (a [`Reconnect::Never`] client).
    pub async fn ended(&self) -> Option<ClientError> {
        let mut status = self.0.status.subscribe();
        let why = match status.wait_for(|s| matches!(s, Status::Ended(_))).await {
            Ok(now) => match &*now {
                Status::Ended(why) => why.clone(),
                _ => None,
            },
            Err(_) => None,
        };
        why
    }

    /// Offers one more service: registered now (the client must be connected), and again
    /// after every reconnection.
    pub async fn add_service(&self, service: Service) -> Result<(), ClientError> {
        let info = lock(&self.0.link).as_ref().map(|l| l.info.clone()).ok_or(ClientError::Disconnected)?;
        let announced = announcement(&service, &info);
        lock(&self.0.services).push(Arc::new(service));
        let manager = format!("*/{}", info.manager_id);
        self.call(&manager, "services.default.register_service", vec![announced], None, CALL_TIMEOUT).await?;
        Ok(())
    }

    /// Leaves the server (close 1000) and stops reconnecting. Idempotent.
    pub fn close(&self) {
        if let Some(link) = lock(&self.0.link).take() {
            let _ = link.outbox.try_send(Message::Close(None));
        }
        self.0.closed.send_replace(true);
    }

    /// `workspace/client_id` while connected.
    pub fn id(&self) -> Option<String> {
        lock(&self.0.link).as_ref().map(|l| l.info.id())
    }

    /// Calls `method` (`services.<service>.<function>` or a callback's path) on `to` and waits
    /// for its answer; each heartbeat of the callee gives it `within` again.
    pub async fn call(
        &self,
        to: &str,
        method: &str,
        mut args: Vec<Value>,
        kwargs: Option<Value>,
        within: Duration,
    ) -> Result<Value, ClientError> {
        let link = lock(&self.0.link).clone().ok_or(ClientError::Disconnected)?;
        let session = random_id();
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.0.pending).insert(session.clone(), tx);
        let _forget = Forget(&self.0, &session);
        let with_kwargs = kwargs.is_some();
        args.extend(kwargs);
        let main = map([
            ("type", Value::from("method")),
            ("from", Value::from(link.info.id())),
            ("to", Value::from(to)),
            ("method", Value::from(method)),
            ("session", Value::from(session.as_str())),
        ]);
        let mut extra = vec![
            ("args", Value::Array(args)),
            ("promise", Value::from("*")),
            ("t", Value::F64(within.as_secs_f64() / 2.0)),
        ];
        if with_kwargs {
            extra.push(("with_kwargs", Value::Boolean(true)));
        }
        let frame = codec::encode_message(main, Some(map(extra)));
        link.outbox.send(Message::binary(frame)).await.map_err(|_| ClientError::Disconnected)?;
        loop {
            match tokio::time::timeout(within, rx.recv()).await {
                Err(_) => return Err(ClientError::Timeout { method: method.to_owned(), seconds: within.as_secs() }),
                Ok(None) => return Err(ClientError::Disconnected),
                Ok(Some(Reply::Heartbeat)) => continue,
                Ok(Some(Reply::Done(outcome))) => return outcome,
            }
        }
    }

    /// Calls a method object handed over in a call's arguments (`_rtype: "method"`); a bare
    /// `_rtarget` is in `caller_ws`. Without `_rpromise` it is fire-and-forget.
    pub async fn call_method(
        &self,
        method: &Value,
        caller_ws: &str,
        args: Vec<Value>,
        within: Duration,
    ) -> Result<Value, ClientError> {
        let text = |key| field(method, key).and_then(Value::as_str);
        let (Some(target), Some(path)) = (text("_rtarget"), text("_rmethod")) else {
            return Err(ClientError::Protocol("a callback without _rtarget or _rmethod".into()));
        };
        let target = if target.contains('/') { target.to_owned() } else { format!("{caller_ws}/{target}") };
        let promised = field(method, "_rpromise").is_some_and(|p| p.as_bool() != Some(false) && !p.is_nil());
        if promised {
            return self.call(&target, path, args, None, within).await;
        }
        let link = lock(&self.0.link).clone().ok_or(ClientError::Disconnected)?;
        let main = map([
            ("type", Value::from("method")),
            ("from", Value::from(link.info.id())),
            ("to", Value::from(target)),
            ("method", Value::from(path)),
        ]);
        let frame = codec::encode_message(main, Some(map([("args", Value::Array(args))])));
        link.outbox.send(Message::binary(frame)).await.map_err(|_| ClientError::Disconnected)?;
        Ok(Value::Nil)
    }
}

/// Whether a service of `visibility` in workspace `own` answers a caller of `caller_ws`.
fn admits(visibility: &str, own: &str, caller_ws: &str, user: &str) -> bool {
    visibility != "protected" || caller_ws == own || user == "root"
}

/// Forgets a call's session when the call ends, however it ends.
struct Forget<'a>(&'a Inner, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.0.pending).remove(self.1);
    }
}

/// Aborts a task when its owner goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a connection up until the client is closed: connect, serve, and after a drop wait
/// (doubling, up to 30 s) and connect again; a [`Reconnect::Never`] client ends instead.
async fn run(inner: Arc<Inner>) {
    let mut closed = inner.closed.subscribe();
    let mut delay = BACKOFF_FIRST;
    let why = loop {
        let began = Instant::now();
        let ended = tokio::select! {
            ended = connection(&inner) => ended,
            _ = closed.wait_for(|c| *c) => break None,
        };
        inner.unlink();
        let error = ended.err().unwrap_or(ClientError::ServerClosed);
        if inner.config.reconnect == Reconnect::Never {
            tracing::info!("Hypha connection ended: {error}");
            break Some(error);
        }
        if matches!(error, ClientError::ServerClosed) {
            tracing::warn!("the Hypha server closed the connection; reconnecting");
            inner.status.send_replace(Status::Connecting);
        } else {
            tracing::warn!("Hypha connection: {error}; retrying in {:.1} s", delay.as_secs_f64());
            inner.status.send_replace(Status::Failed(error));
        }
        if began.elapsed() > STABLE_AFTER {
            delay = BACKOFF_FIRST;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closed.wait_for(|c| *c) => break None,
        }
        delay = (delay * 2).min(BACKOFF_LAST);
    };
    inner.unlink();
    inner.status.send_replace(Status::Ended(why));
}

impl Inner {
    /// Drops the link; calls in flight end with `Disconnected`, generators go (their readers
    /// reached them through this connection).
    fn unlink(&self) {
        lock(&self.link).take();
        lock(&self.pending).clear();
        lock(&self.generators).clear();
    }

    fn service(&self, name: &str) -> Option<Arc<Service>> {
        lock(&self.services).iter().find(|s| s.name == name).cloned()
    }

    /// Hands out `items` as a generator that `reader` reads with `{id}.next`.
    fn open_generator(&self, items: Items, reader: &str, own_id: &str) -> Value {
        let id = format!("gen-{}", random_id());
        let mut generators = lock(&self.generators);
        generators.retain(|_, g| g.last_read.elapsed() < GENERATOR_IDLE);
        let generator = Generator {
            reader: reader.to_owned(),
            items: Arc::new(tokio::sync::Mutex::new(items)),
            last_read: Instant::now(),
        };
        generators.insert(id.clone(), generator);
        map([
            ("_rtype", Value::from("generator")),
            ("_rtarget", Value::from(own_id)),
            ("_rmethod", Value::from(format!("{id}.next"))),
            ("_rclose_method", Value::from(format!("{id}.close"))),
            ("_rpromise", Value::from("*")),
            ("_rdoc", Value::from("Remote generator")),
        ])
    }

    /// hypha-rpc's rule, kept by the callee: a protected service answers its own workspace and
    /// Hypha itself (root) only; the server relays calls between workspaces unchecked.
    fn admit(&self, service: &Service, caller_ws: &str, user: &str) -> Result<(), String> {
        let own = lock(&self.link).as_ref().map(|l| l.info.workspace.clone()).unwrap_or_default();
        if admits(service.visibility, &own, caller_ws, user) {
            return Ok(());
        }
        Err(format!("Permission denied for protected service {}: workspace {caller_ws:?} is not {own:?}", service.name))
    }

    fn settle(&self, session: &str, reply: Reply) {
        let waiting = match reply {
            Reply::Heartbeat => lock(&self.pending).get(session).cloned(),
            Reply::Done(_) => lock(&self.pending).remove(session),
        };
        if let Some(waiting) = waiting {
            let _ = waiting.send(reply);
        }
    }
}

/// One connection: handshake, registration, then frames until it ends.
async fn connection(inner: &Arc<Inner>) -> Result<(), ClientError> {
    inner.status.send_replace(Status::Connecting);
    let unreachable = |reason: String| ClientError::Unreachable { url: inner.url.clone(), reason };
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(inner.url.as_str()))
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sink, mut stream) = socket.split();
    let hello = Hello {
        client_id: &inner.config.client_id,
        workspace: inner.config.workspace.as_deref(),
        token: &inner.config.token,
        reconnection_token: lock(&inner.reconnection_token).clone(),
    };
    let hello = serde_json::to_string(&hello).map_err(|e| ClientError::Protocol(e.to_string()))?;
    sink.send(Message::text(hello)).await.map_err(|e| unreachable(e.to_string()))?;
    let info = tokio::time::timeout(CONNECT_TIMEOUT, handshake(&mut stream))
        .await
        .map_err(|_| ClientError::Protocol("no connection_info within 10 s".into()))??;
    let info = Arc::new(info);
    tracing::info!(id = %info.id(), hypha = info.hypha_version.as_deref().unwrap_or("?"), "connected to Hypha");
    *lock(&inner.reconnection_token) = info.reconnection_token.clone();

    // The writer ends once every sender is gone and the queue (a final Close included) is sent.
    let (outbox, mut queued) = mpsc::channel::<Message>(OUTBOX);
    tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            let last = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
    });
    *lock(&inner.link) = Some(Link { outbox: outbox.clone(), info: info.clone() });
    // Registering needs the answers the loop below reads.
    let _registering = AbortOnDrop(tokio::spawn(register(inner.clone(), info.clone()).in_current_span()));

    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            frame = stream.next() => {
                heard = Instant::now();
                match frame {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(unreachable(e.to_string())),
                    Some(Ok(Message::Binary(bytes))) => match Frame::decode(&bytes) {
                        Ok(frame) => on_frame(inner, frame),
                        Err(e) => tracing::warn!("dropped a frame: {e}"),
                    },
                    Some(Ok(Message::Text(text))) => on_text(inner, &text),
                    Some(Ok(Message::Close(reason))) => {
                        tracing::info!(?reason, "the Hypha server closes the connection");
                        return Ok(());
                    }
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_LIMIT {
                    return Err(ClientError::Protocol(format!("nothing heard for {} s", SILENT_LIMIT.as_secs())));
                }
                let _ = outbox.try_send(Message::text(r#"{"type":"ping"}"#));
            }
        }
    }
}

/// Reads the server's answer to the hello (binary frames before it are skipped, as hypha-rpc does).
async fn handshake<S>(stream: &mut S) -> Result<ConnectionInfo, ClientError>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(reason)) => {
                let reason = reason.map(|r| r.reason.to_string()).unwrap_or_default();
                return Err(ClientError::Refused(format!("closed during the handshake {reason}").trim().to_owned()));
            }
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        return match serde_json::from_str::<ServerText>(&text) {
            Ok(ServerText::ConnectionInfo(info)) => Ok(info),
            Ok(ServerText::Error { message }) => Err(ClientError::Refused(message)),
            _ => Err(ClientError::Protocol(format!("expected connection_info, got {text}"))),
        };
    }
    Err(ClientError::Refused("closed during the handshake".into()))
}

/// Announces the built-in service, then each of the client's services, to the manager.
async fn register(inner: Arc<Inner>, info: Arc<ConnectionInfo>) {
    let client = Client(inner.clone());
    let manager = format!("*/{}", info.manager_id);
    // Hypha refuses (silently) the services of a client whose built-in service it has not seen.
    let services: Vec<Arc<Service>> = lock(&inner.services).clone();
    let infos = std::iter::once(builtin_info(&info)).chain(services.iter().map(|s| announcement(s, &info)));
    for announced in infos.collect::<Vec<_>>() {
        let id = field(&announced, "id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let registered =
            client.call(&manager, "services.default.register_service", vec![announced], None, CALL_TIMEOUT).await;
        if let Err(e) = registered {
            tracing::warn!(service = %id, "cannot register: {e}");
            inner.status.send_replace(Status::Failed(e));
            return;
        }
        tracing::debug!(service = %id, "registered");
    }
    inner.status.send_replace(Status::Ready(info));
}

fn on_text(inner: &Inner, text: &str) {
    match serde_json::from_str::<ServerText>(text) {
        Ok(ServerText::ReconnectionToken { reconnection_token }) => {
            *lock(&inner.reconnection_token) = Some(reconnection_token);
        }
        Ok(ServerText::Error { message }) => tracing::warn!(%message, "the Hypha server reports an error"),
        _ => tracing::trace!(%text, "text frame"),
    }
}

/// A message from the server: a call to one of our services, or the answer to one of our calls.
fn on_frame(inner: &Arc<Inner>, frame: Frame) {
    match frame.str("type") {
        Some("method") => {}
        Some("peer_not_found") => {
            if let Some(session) = frame.str("session") {
                let message = frame.str("message").unwrap_or("peer not found").to_owned();
                inner.settle(session, Reply::Done(Err(ClientError::Remote(message))));
            }
            return;
        }
        other => return tracing::debug!(kind = ?other, "message ignored"),
    }
    let Some(method) = frame.str("method") else { return };
    if let Some(path) = method.strip_prefix("services.") {
        let path = path.to_owned();
        tokio::spawn(serve(inner.clone(), frame, path).in_current_span());
        return;
    }
    let Some((session, verb)) = method.rsplit_once('.') else { return };
    if matches!(verb, "next" | "close") && lock(&inner.generators).contains_key(session) {
        let (id, verb) = (session.to_owned(), verb.to_owned());
        tokio::spawn(read_generator(inner.clone(), frame, id, verb).in_current_span());
        return;
    }
    let first = || match frame.get("args") {
        Some(Value::Array(items)) => items.first().cloned().unwrap_or(Value::Nil),
        _ => Value::Nil,
    };
    match verb {
        "resolve" => inner.settle(session, Reply::Done(Ok(first()))),
        "reject" => inner.settle(session, Reply::Done(Err(ClientError::Remote(error_text(&first()))))),
        "heartbeat" => inner.settle(session, Reply::Heartbeat),
        _ => tracing::debug!(%method, "message ignored"),
    }
}

/// The message of a rejection: hypha-rpc sends `{_rtype: "error", _rvalue, _rtrace}`.
fn error_text(value: &Value) -> String {
    match field(value, "_rvalue").and_then(Value::as_str).or_else(|| value.as_str()) {
        Some(text) => text.to_owned(),
        None => codec::to_json(value).to_string(),
    }
}

/// Serves `services.<service>.<function>`: heartbeats every `t` seconds while it runs, then one
/// `resolve` or `reject` to the caller when it asked for an answer.
async fn serve(inner: Arc<Inner>, frame: Frame, path: String) {
    let (service, function) = path.split_once('.').unwrap_or((path.as_str(), ""));
    let caller = frame.str("from").unwrap_or_default().to_owned();
    let caller_ws = frame
        .str("ws")
        .map(str::to_owned)
        .or_else(|| caller.split_once('/').map(|(ws, _)| ws.to_owned()))
        .unwrap_or_default();
    // Hypha stamps `ws` and `user` on every message it delivers: the caller cannot forge them.
    let user = frame.get("user").and_then(|u| field(u, "id")).and_then(Value::as_str).unwrap_or_default().to_owned();
    let span = tracing::info_span!("hypha_call", %service, %function, %caller);
    tracing::debug!(parent: &span, ws = %caller_ws, %user, "call");
    let args = Args::of(&frame);
    let client = Client(inner.clone());
    let work: BoxFuture<'static, Result<Answer, String>> = if service == "built-in" {
        Box::pin(std::future::ready(builtin(&inner, function, &args, &caller, (&caller_ws, &user)).map(Answer::Value)))
    } else {
        match inner.service(service) {
            Some(s) => match inner.admit(&s, &caller_ws, &user) {
                Ok(()) => {
                    s.handler.call(Call { function: function.to_owned(), args, caller_ws, caller_user: user, client })
                }
                Err(refused) => Box::pin(std::future::ready(Err(refused))),
            },
            None => Box::pin(std::future::ready(Err(format!("this client has no service {service:?}")))),
        }
    };
    answer(&inner, &frame, &caller, work).instrument(span).await;
}

/// Serves `{id}.next` (the next item, or hypha-rpc's `stop_iteration` at the end) and
/// `{id}.close` of a generator, for the client it was handed to only.
async fn read_generator(inner: Arc<Inner>, frame: Frame, id: String, verb: String) {
    let caller = frame.str("from").unwrap_or_default().to_owned();
    let items = match lock(&inner.generators).get_mut(&id) {
        Some(g) if g.reader == caller => {
            g.last_read = Instant::now();
            Some(g.items.clone())
        }
        _ => None,
    };
    let (generators, reader) = (inner.clone(), caller.clone());
    let work: BoxFuture<'static, Result<Answer, String>> = Box::pin(async move {
        let Some(items) = items else { return Err(format!("generator {id} is not open for {reader}")) };
        if verb == "close" {
            lock(&generators.generators).remove(&id);
            return Ok(Answer::Value(Value::Boolean(true)));
        }
        let item = items.lock().await.recv().await;
        if !matches!(item, Some(Ok(_))) {
            lock(&generators.generators).remove(&id);
        }
        match item {
            Some(Ok(value)) => Ok(Answer::Value(value)),
            Some(Err(message)) => Err(message),
            None => Ok(Answer::Value(map([("_rtype", Value::from("stop_iteration"))]))),
        }
    });
    answer(&inner, &frame, &caller, work).await;
}

async fn answer(inner: &Inner, frame: &Frame, caller: &str, work: BoxFuture<'static, Result<Answer, String>>) {
    let Some(session) = frame.str("session").map(str::to_owned) else {
        if let Err(e) = work.await {
            tracing::warn!("a call that wants no answer failed: {e}");
        }
        return;
    };
    let heartbeat = format!("{session}.heartbeat");
    let outcome = with_heartbeats(frame, work, || send_to(inner, caller, &heartbeat, None)).await;
    let (verb, value) = match outcome {
        Ok(Answer::Value(value)) => ("resolve", value),
        Ok(Answer::Stream(items)) => match lock(&inner.link).as_ref().map(|l| l.info.id()) {
            Some(own_id) => ("resolve", inner.open_generator(items, caller, &own_id)),
            None => return,
        },
        Err(message) => {
            tracing::info!(%message, "call failed");
            ("reject", error_value(&message))
        }
    };
    send_to(inner, caller, &format!("{session}.{verb}"), Some(value)).await;
}

/// A message with no answer expected (a heartbeat, a resolve) to `to`, if still connected.
async fn send_to(inner: &Inner, to: &str, method: &str, arg: Option<Value>) {
    let Some(link) = lock(&inner.link).clone() else { return };
    let main = map([
        ("type", Value::from("method")),
        ("from", Value::from(link.info.id())),
        ("to", Value::from(to)),
        ("method", Value::from(method)),
    ]);
    let extra = arg.map(|value| map([("args", Value::Array(vec![value]))]));
    let _ = link.outbox.send(Message::binary(codec::encode_message(main, extra))).await;
}

/// The client's `built-in` service: `get_service` (how Hypha learns a service's functions),
/// `ping`, and the `message_cache` big messages arrive through.
fn builtin(
    inner: &Arc<Inner>,
    function: &str,
    args: &Args,
    caller: &str,
    (caller_ws, user): (&str, &str),
) -> Result<Value, String> {
    let key = || args.str(0, "key").map(str::to_owned).ok_or_else(|| "missing argument `key`".to_owned());
    let link = lock(&inner.link).clone().ok_or("not connected")?;
    match function {
        "ping" => Ok(Value::from("pong")),
        "get_service" => {
            let id = args.str(0, "service_id").ok_or("missing argument `service_id`")?;
            // `name`, `client:name` or `ws/client:name`, maybe with `@app`.
            let name = id.rsplit(':').next().unwrap_or(id).split('@').next().unwrap_or_default();
            if name == "built-in" {
                return Ok(builtin_object(&link.info));
            }
            let service = inner.service(name).ok_or_else(|| format!("no service {id:?}"))?;
            inner.admit(&service, caller_ws, user)?;
            Ok(service_object(&service, &link.info))
        }
        "message_cache.create" => {
            inner.chunks.create(key()?);
            Ok(Value::Nil)
        }
        "message_cache.set" | "message_cache.append" => {
            let (index, data) = if function.ends_with("set") {
                (args.get(1, "index").and_then(Value::as_u64), args.get(2, "data"))
            } else {
                (None, args.get(1, "data"))
            };
            let Some(Value::Binary(data)) = data else { return Err("`data` must be bytes".into()) };
            inner.chunks.put(&key()?, index, data.clone())?;
            Ok(Value::Nil)
        }
        "message_cache.remove" => {
            inner.chunks.remove(&key()?);
            Ok(Value::Nil)
        }
        "message_cache.process" => {
            let mut frame = Frame::decode(&inner.chunks.take(&key()?)?).map_err(|e| e.to_string())?;
            // The joined message comes from whoever sent its chunks, to us.
            frame.set_main("from", Value::from(caller));
            frame.set_main("to", Value::from(link.info.id()));
            frame.extra.retain(|(k, _)| !matches!(k.as_str(), Some("from" | "to")));
            on_frame(inner, frame);
            Ok(Value::Nil)
        }
        other => Err(format!("built-in has no function {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_the_ws_endpoint() {
        assert_eq!(ws_url("http://127.0.0.1:9000"), "ws://127.0.0.1:9000/ws");
        assert_eq!(ws_url("https://hypha.example.org/"), "wss://hypha.example.org/ws");
        assert_eq!(ws_url("wss://hypha.example.org/ws"), "wss://hypha.example.org/ws");
    }

    #[test]
    fn server_text_frames_parse_by_type() {
        let info =
            r#"{"type": "connection_info", "manager_id": "m", "workspace": "public", "client_id": "c", "extra": 1}"#;
        assert!(matches!(serde_json::from_str(info), Ok(ServerText::ConnectionInfo(i)) if i.id() == "public/c"));
        let error = r#"{"type": "error", "message": "bad token"}"#;
        assert!(matches!(serde_json::from_str(error), Ok(ServerText::Error { message }) if message == "bad token"));
        assert!(matches!(serde_json::from_str(r#"{"type": "pong"}"#), Ok(ServerText::Other)));
    }

    #[test]
    fn a_protected_service_answers_its_workspace_and_hypha_only() {
        assert!(admits("protected", "team-a", "team-a", "alice"));
        assert!(admits("protected", "team-a", "public", "root"));
        assert!(!admits("protected", "team-a", "team-b", "mallory"));
        assert!(admits("public", "team-a", "team-b", "mallory"));
    }

    /// A server that greets each connection with `connection_info` and closes it at once,
    /// counting the connections.
    async fn closing_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("ws://{}/ws", listener.local_addr().expect("address"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else { continue };
                let _hello = socket.next().await;
                let info = r#"{"type": "connection_info", "manager_id": "m", "workspace": "ws", "client_id": "c"}"#;
                let _ = socket.send(Message::text(info)).await;
                let _ = socket.close(None).await;
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_client_that_does_not_reconnect_ends_with_its_connection_and_says_why() {
        let (url, accepted) = closing_server().await;
        let config = ClientConfig {
            server_url: url,
            workspace: Some("ws".into()),
            client_id: "c".into(),
            token: "t".into(),
            reconnect: Reconnect::Never,
        };
        let client = Client::spawn(config, Vec::new());
        let why = tokio::time::timeout(Duration::from_secs(5), client.ended()).await.expect("it ends");
        assert!(matches!(why, Some(ClientError::ServerClosed)), "{why:?}");
        // An `Always` client would be back after the first backoff (0.5 s).
        tokio::time::sleep(BACKOFF_FIRST * 3).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn rejections_read_as_their_message() {
        assert_eq!(error_text(&error_value("boom")), "boom");
        assert_eq!(error_text(&Value::from("plain")), "plain");
    }
}

//! The WebSocket door, in Hypha's RPC protocol: `GET /ws` speaks to the unmodified `hypha-rpc`
//! clients, so `connect_to_server({...})` then `get_service("public/server-apps")` work against
//! ferrolite as against Hypha.
//!
//! One connection: a TEXT auth frame (`{client_id, workspace, token}`) checked as HTTP checks a
//! token, a TEXT `connection_info` answer, then BINARY msgpack messages both ways. A message
//! addressed to another connected client is relayed; one addressed to the server (the manager
//! `*/manager-ferrolite-server`, or `{workspace}/ferrolite-server` for server-apps and LLM
//! services) is served here, with heartbeats while it runs and one `resolve` or `reject`.

mod apps;
pub mod chunks;
pub mod codec;
pub mod llm;
mod manager;
mod services;

use crate::auth::Claims;
use crate::clock::unix_now;
use crate::http::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use codec::{map, Frame};
use futures::{SinkExt as _, StreamExt as _};
use rmpv::Value;
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// The client id the server answers as for its own services (server-apps, LLM services).
pub const SERVER_ID: &str = "ferrolite-server";
/// The manager's client id; the client fetches it at `*/{MANAGER_ID}`.
pub const MANAGER_ID: &str = "manager-ferrolite-server";

/// hypha waits this long for the auth frame; so do we.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame a client may send (the client chunks anything over 256 KiB itself).
const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Server-to-client frames above this go through the client's `message_cache`: the client's
/// unpacker refuses a segment over 512,000 bytes.
const CHUNK_THRESHOLD: usize = 256 * 1024 + 1024;
const CHUNK_SIZE: usize = 256 * 1024;
/// Frames queued for one client before senders wait.
const OUTBOX: usize = 256;
/// How long the server waits for a client to answer one of its own calls.
const CLIENT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection shares: the HTTP state, the HTTP router itself (LLM functions go
/// through it in-process, so auth, limits, budgets and logs are the HTTP ones), the connected
/// clients and the services they registered.
pub struct Hub {
    state: AppState,
    http: Router,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    services: services::Registry,
}

/// One connected client.
pub struct Client {
    /// `workspace/client_id`, the identity every message from it carries.
    pub id: String,
    pub workspace: String,
    token: String,
    claims: Claims,
    outbox: mpsc::Sender<Message>,
    chunks: chunks::Cache,
    /// Streams handed out as `_rtype: "generator"`, by generator id.
    generators: Mutex<HashMap<String, OpenStream>>,
    /// The server's own calls to this client awaiting `resolve`/`reject`, by session.
    pending: Mutex<HashMap<String, oneshot::Sender<Result<Value, String>>>>,
}

impl Client {
    fn user(&self) -> Value {
        codec::from_json(&json!({
            "id": self.claims.ws,
            "is_anonymous": false,
            "email": null,
            "roles": if self.claims.admin { vec!["admin"] } else { vec![] },
            "scope": {"workspaces": {self.claims.ws.to_string(): "rw"}},
        }))
    }

    async fn send(&self, bytes: Vec<u8>) {
        // A closed outbox means the client left; its state goes with it.
        let _ = self.outbox.send(Message::Binary(bytes.into())).await;
    }

    async fn send_text(&self, value: serde_json::Value) {
        let _ = self.outbox.send(Message::Text(Utf8Bytes::from(value.to_string()))).await;
    }

    /// The token still valid (it may expire while the socket stays open).
    fn claims_now(&self, tokens: &crate::auth::Tokens) -> Result<Claims, String> {
        tokens.verify(&self.token).map_err(|e| crate::exchange::ApiError::from(e).message)
    }
}

/// The items of a streamed answer, or the message that ended it.
pub type Items = mpsc::Receiver<Result<Value, String>>;
/// A stream handed out as a generator, read by one `next` call at a time.
type OpenStream = Arc<tokio::sync::Mutex<Items>>;

/// What a served call returns.
pub enum Answer {
    Value(Value),
    /// Items as they come, handed to the caller as a remote generator.
    Stream(Items),
}

/// A served call: its answer, or the message the caller's `RemoteException` carries.
pub type Outcome = Result<Answer, String>;

/// The arguments of a call: positional ones, then keyword ones (`with_kwargs`).
#[derive(Debug, Default)]
pub struct Args {
    pub positional: Vec<Value>,
    pub kwargs: Vec<(Value, Value)>,
}

impl Args {
    pub(crate) fn of(frame: &Frame) -> Args {
        let mut positional = match frame.get("args") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let mut kwargs = Vec::new();
        if frame.get("with_kwargs").and_then(Value::as_bool) == Some(true) {
            if let Some(Value::Map(last)) = positional.last() {
                kwargs = last.clone();
                positional.pop();
            }
        }
        Args { positional, kwargs }
    }

    /// The argument `name`, by keyword or else at `index`.
    pub fn get(&self, index: usize, name: &str) -> Option<&Value> {
        codec::lookup(&self.kwargs, name).or_else(|| self.positional.get(index)).filter(|v| !v.is_nil())
    }

    pub fn str(&self, index: usize, name: &str) -> Option<&str> {
        self.get(index, name).and_then(Value::as_str)
    }

    /// Keyword arguments as JSON, positional ones named by `names`.
    pub fn json_kwargs(&self, names: &[&str]) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (name, value) in names.iter().zip(&self.positional) {
            out.insert((*name).to_owned(), codec::to_json(value));
        }
        if let serde_json::Value::Object(kw) = codec::to_json(&Value::Map(self.kwargs.clone())) {
            out.extend(kw);
        }
        out
    }
}

/// Mounts `GET /ws` on the finished HTTP router.
pub fn mount(router: Router, state: AppState) -> Router {
    let hub = Arc::new(Hub { state, http: router.clone(), clients: Mutex::default(), services: Default::default() });
    router.route("/ws", get(upgrade).with_state(hub))
}

async fn upgrade(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES).on_upgrade(move |socket| connection(hub, socket))
}

/// The auth frame the client sends first.
#[derive(Debug, serde::Deserialize)]
struct Hello {
    client_id: Option<String>,
    workspace: Option<String>,
    token: Option<String>,
    reconnection_token: Option<String>,
}

async fn connection(hub: Arc<Hub>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let hello = match tokio::time::timeout(AUTH_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Hello>(&text)
            .map_err(|e| format!("the first frame must be the JSON auth frame: {e}")),
        Ok(_) => Err("the first frame must be the JSON auth frame".to_owned()),
        Err(_) => Err("no auth frame within 5 seconds".to_owned()),
    };
    let admitted = hello.and_then(|hello| hub.admit(hello));
    let (client_id, workspace, token, claims) = match admitted {
        Ok(found) => found,
        Err(reason) => {
            tracing::info!(%reason, "websocket refused");
            let _ = sink.send(Message::Text(json!({"type": "error", "message": reason}).to_string().into())).await;
            let close = CloseFrame { code: 1008, reason: Utf8Bytes::from(truncate(&reason, 120)) };
            let _ = sink.send(Message::Close(Some(close))).await;
            return;
        }
    };
    let id = format!("{workspace}/{client_id}");
    let span = tracing::info_span!("rpc", client = %id);
    let info = json!({
        "type": "connection_info",
        "ferrolite_version": env!("CARGO_PKG_VERSION"),
        "public_base_url": hub.state.controller.base_url(),
        "local_base_url": hub.state.controller.base_url(),
        "manager_id": MANAGER_ID,
        "workspace": workspace,
        "client_id": client_id,
        "user": {"id": claims.ws, "is_anonymous": false, "roles": if claims.admin { vec!["admin"] } else { vec![] }},
        "reconnection_token": token,
        "reconnection_token_life_time": claims.exp.saturating_sub(unix_now()),
    });
    if sink.send(Message::Text(info.to_string().into())).await.is_err() {
        return;
    }
    let (outbox, mut queued) = mpsc::channel::<Message>(OUTBOX);
    let client = Arc::new(Client {
        id: id.clone(),
        workspace,
        token,
        claims,
        outbox,
        chunks: chunks::Cache::default(),
        generators: Mutex::default(),
        pending: Mutex::default(),
    });
    if let Some(old) = lock(&hub.clients).insert(id.clone(), client.clone()) {
        tracing::info!("a new connection replaces {}", old.id);
    }
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    async {
        tracing::info!("connected");
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Text(text) => on_text(&client, &text).await,
                // Relays go out in the order they came; served calls run on their own tasks.
                Message::Binary(bytes) => match Frame::decode(&bytes) {
                    Ok(frame) => hub.clone().route(client.clone(), frame).await,
                    Err(e) => tracing::warn!("dropped a frame: {e}"),
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        tracing::info!("disconnected");
    }
    .instrument(span)
    .await;
    hub.disconnect(&client);
    drop(client);
    writer.abort();
}

/// The client's TEXT keepalives.
async fn on_text(client: &Client, text: &str) {
    let kind = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v["type"].as_str().map(str::to_owned));
    match kind.as_deref() {
        Some("ping") => client.send_text(json!({"type": "pong"})).await,
        // The token the client holds is its reconnection token: nothing new is issued.
        Some("refresh_token") => {
            client.send_text(json!({"type": "reconnection_token", "reconnection_token": client.token})).await
        }
        _ => tracing::debug!(%text, "text frame ignored"),
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.char_indices().take_while(|(i, _)| *i < max).map(|(_, c)| c).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Splits `workspace/client` (a bare id is in `default_ws`).
fn split_target<'a>(target: &'a str, default_ws: &'a str) -> (&'a str, &'a str) {
    target.split_once('/').unwrap_or((default_ws, target))
}

impl Hub {
    /// Checks the auth frame exactly as HTTP checks a request's token.
    fn admit(&self, hello: Hello) -> Result<(String, String, String, Claims), String> {
        let Hello { client_id, workspace, token, reconnection_token } = hello;
        let token = token.or(reconnection_token).filter(|t| !t.is_empty());
        let claims = match token.as_deref() {
            None => Err(crate::auth::AuthError::Missing),
            Some(t) => self.state.tokens.verify(t),
        }
        .map_err(|e| crate::exchange::ApiError::from(e).message)?;
        let workspace = workspace.filter(|w| !w.is_empty()).unwrap_or_else(|| claims.ws.to_string());
        if !claims.may_enter(&workspace) {
            return Err(format!("a token of workspace {:?} cannot enter workspace {workspace:?}", claims.ws));
        }
        let client_id = client_id.filter(|c| !c.is_empty()).unwrap_or_else(random_id);
        if client_id.contains('/') || client_id == SERVER_ID || client_id == MANAGER_ID {
            return Err(format!("client id {client_id:?} is not allowed"));
        }
        Ok((client_id, workspace, token.unwrap_or_default(), claims))
    }

    fn disconnect(&self, client: &Arc<Client>) {
        let mut clients = lock(&self.clients);
        if clients.get(&client.id).is_some_and(|c| Arc::ptr_eq(c, client)) {
            clients.remove(&client.id);
            self.services.remove_client(&client.id);
        }
    }

    fn client(&self, id: &str) -> Option<Arc<Client>> {
        lock(&self.clients).get(id).cloned()
    }

    /// Relays a message to the client it names, or serves it when it names the server.
    /// Boxed: a joined chunked message is routed again from inside a served call.
    fn route(self: Arc<Self>, client: Arc<Client>, frame: Frame) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(self.route_now(client, frame))
    }

    async fn route_now(self: Arc<Self>, client: Arc<Client>, mut frame: Frame) {
        let Some(to) = frame.str("to").map(str::to_owned) else { return };
        let to = if to.contains('/') { to } else { format!("{}/{to}", client.workspace) };
        let (_, target_client) = split_target(&to, &client.workspace);
        if target_client == SERVER_ID || target_client == MANAGER_ID {
            tokio::spawn(self.serve(client, frame, to).in_current_span());
        } else if let Some(peer) = self.client(&to) {
            frame.set_main("from", Value::from(client.id.as_str()));
            frame.set_main("to", Value::from(to.as_str()));
            frame.set_main("ws", Value::from(client.workspace.as_str()));
            frame.set_main("user", client.user());
            peer.send(frame.encode_relay()).await;
        } else if let Some(session) = frame.str("session") {
            let reject = reply(&client, &to, session, "reject", error_value(&format!("peer not found: {to}")));
            client.send(reject).await;
        }
    }

    /// A message to one of the server's own identities.
    async fn serve(self: Arc<Self>, client: Arc<Client>, frame: Frame, to: String) {
        let Some(method) = frame.str("method").map(str::to_owned) else { return };
        if frame.str("type") != Some("method") {
            return;
        }
        let Some(path) = method.strip_prefix("services.") else {
            // `S.resolve` of a call the server made, or `gen.next` of a stream it handed out.
            return self.serve_session(client, frame, to, &method).await;
        };
        let (service, function) = path.split_once('.').unwrap_or((path, ""));
        let (service, function) = (service.to_owned(), function.to_owned());
        let args = Args::of(&frame);
        let span = tracing::info_span!("call", %service, %function);
        let hub = self.clone();
        let caller = client.clone();
        let target = to.clone();
        let work = async move {
            let (target_ws, _) = split_target(&target, &caller.workspace);
            match service.as_str() {
                // `connect_to_server` fetches the manager through the built-in door.
                "built-in" if function == "get_service" && args.str(0, "id") != Some("built-in") => {
                    Ok(Answer::Value(manager::describe(&hub)))
                }
                "built-in" => chunks::serve(&hub, &caller, &target, &function, &args).await,
                "default" => manager::serve(&hub, &caller, &function, &args).await,
                apps::SERVICE_ID => apps::serve(&hub, &caller, target_ws, &function, &args).await,
                _ => llm::call(hub.http.clone(), &caller.token, target_ws, &service, &function, &args).await,
            }
        }
        .instrument(span);
        answer(&self, client, &frame, &to, work).await;
    }

    async fn serve_session(&self, client: Arc<Client>, frame: Frame, to: String, method: &str) {
        let Some((session, verb)) = method.rsplit_once('.') else { return };
        match verb {
            "resolve" | "reject" => {
                let Some(waiting) = lock(&client.pending).remove(session) else { return };
                let value = match frame.get("args") {
                    Some(Value::Array(items)) => items.first().cloned().unwrap_or(Value::Nil),
                    _ => Value::Nil,
                };
                let _ =
                    waiting.send(if verb == "resolve" { Ok(value) } else { Err(codec::to_json(&value).to_string()) });
            }
            "heartbeat" => {}
            "next" | "close" => {
                let generator = lock(&client.generators).get(session).cloned();
                let session = session.to_owned();
                let verb = verb.to_owned();
                let caller = client.clone();
                let work = async move {
                    let Some(generator) = generator else {
                        return Err(format!("generator {session} is not open (it ended or its connection closed)"));
                    };
                    if verb == "close" {
                        lock(&caller.generators).remove(&session);
                        return Ok(Answer::Value(Value::Boolean(true)));
                    }
                    let item = generator.lock().await.recv().await;
                    match item {
                        Some(Ok(value)) => Ok(Answer::Value(value)),
                        Some(Err(message)) => {
                            lock(&caller.generators).remove(&session);
                            Err(message)
                        }
                        None => {
                            lock(&caller.generators).remove(&session);
                            Ok(Answer::Value(map([("_rtype", Value::from("stop_iteration"))])))
                        }
                    }
                };
                answer(self, client, &frame, &to, work).await;
            }
            _ => {}
        }
    }

    /// Calls a function of the client's own (its built-in `message_cache`) as `from`, and
    /// waits for its answer.
    async fn call_client(&self, client: &Client, from: &str, method: &str, args: Vec<Value>) -> Result<Value, String> {
        let session = random_id();
        let (tx, rx) = oneshot::channel();
        lock(&client.pending).insert(session.clone(), tx);
        let main = map([
            ("type", Value::from("method")),
            ("from", Value::from(from)),
            ("to", Value::from(client.id.as_str())),
            ("method", Value::from(method)),
            ("session", Value::from(session.as_str())),
            ("ws", Value::from(client.workspace.as_str())),
            ("user", client.user()),
        ]);
        let extra = map([
            ("args", Value::Array(args)),
            ("promise", Value::from("*")),
            ("t", Value::F64(CLIENT_CALL_TIMEOUT.as_secs_f64() / 2.0)),
        ]);
        client.send(codec::encode_message(main, Some(extra))).await;
        let answer = tokio::time::timeout(CLIENT_CALL_TIMEOUT, rx).await;
        lock(&client.pending).remove(&session);
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the client left".to_owned()),
            Err(_) => Err(format!("the client did not answer {method}")),
        }
    }

    /// Sends a message, through the client's `message_cache` when it is too big for one frame.
    async fn deliver(&self, client: &Client, from: &str, bytes: Vec<u8>) -> Result<(), String> {
        if bytes.len() <= CHUNK_THRESHOLD {
            client.send(bytes).await;
            return Ok(());
        }
        let key = random_id();
        let cache = |f: &str| format!("services.built-in.message_cache.{f}");
        self.call_client(client, from, &cache("create"), vec![Value::from(key.as_str()), Value::Boolean(false)])
            .await?;
        for (index, chunk) in bytes.chunks(CHUNK_SIZE).enumerate() {
            let args = vec![
                Value::from(key.as_str()),
                Value::from(index as u64),
                Value::Binary(chunk.to_vec()),
                Value::Boolean(false),
            ];
            self.call_client(client, from, &cache("set"), args).await?;
        }
        self.call_client(client, from, &cache("process"), vec![Value::from(key.as_str()), Value::Boolean(false)])
            .await?;
        Ok(())
    }
}

/// Awaits `work`, running `beat` every heartbeat interval the call's frame asks for (the first
/// one interval in), so a call longer than the caller's method_timeout stays alive. Both RPC
/// doors (this server's and the Hypha client's) answer calls through it.
pub(crate) async fn with_heartbeats<T, B: Future<Output = ()>>(
    frame: &Frame,
    work: impl Future<Output = T>,
    mut beat: impl FnMut() -> B,
) -> T {
    let mut tick = tokio::time::interval(frame.heartbeat_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            outcome = &mut work => return outcome,
            _ = tick.tick() => beat().await,
        }
    }
}

/// Runs a served call: heartbeats every `t` seconds while it works (so a call longer than the
/// client's method_timeout stays alive), then one `resolve` or `reject` when it asked for one.
async fn answer(hub: &Hub, client: Arc<Client>, frame: &Frame, to: &str, work: impl Future<Output = Outcome>) {
    let Some(session) = frame.str("session").map(str::to_owned) else {
        let _ = work.await;
        return;
    };
    let outcome = with_heartbeats(frame, work, || {
        let main = map([
            ("type", Value::from("method")),
            ("from", Value::from(to)),
            ("to", Value::from(client.id.as_str())),
            ("method", Value::from(format!("{session}.heartbeat"))),
        ]);
        let client = client.clone();
        async move { client.send(codec::encode(&main)).await }
    })
    .await;
    let message = match outcome {
        Ok(Answer::Value(value)) => reply(&client, to, &session, "resolve", value),
        Ok(Answer::Stream(items)) => {
            let id = format!("gen-{}", random_id());
            lock(&client.generators).insert(id.clone(), Arc::new(tokio::sync::Mutex::new(items)));
            let generator = map([
                ("_rtype", Value::from("generator")),
                ("_rtarget", Value::from(to)),
                ("_rmethod", Value::from(format!("{id}.next"))),
                ("_rclose_method", Value::from(format!("{id}.close"))),
                ("_rpromise", Value::from("*")),
                ("_rdoc", Value::from("Remote generator")),
            ]);
            reply(&client, to, &session, "resolve", generator)
        }
        Err(message) => reply(&client, to, &session, "reject", error_value(&message)),
    };
    if let Err(e) = hub.deliver(&client, to, message).await {
        tracing::warn!("could not deliver an answer: {e}");
    }
}

/// `S.resolve` / `S.reject` with its one argument, from the identity the caller called.
fn reply(client: &Client, from: &str, session: &str, verb: &str, value: Value) -> Vec<u8> {
    let main = map([
        ("type", Value::from("method")),
        ("from", Value::from(from)),
        ("to", Value::from(client.id.as_str())),
        ("method", Value::from(format!("{session}.{verb}"))),
        ("ws", Value::from(client.workspace.as_str())),
        ("user", client.user()),
    ]);
    codec::encode_message(main, Some(map([("args", Value::Array(vec![value]))])))
}

/// What the client raises as `RemoteException(message)`.
pub(crate) fn error_value(message: &str) -> Value {
    map([("_rtype", Value::from("error")), ("_rvalue", Value::from(message)), ("_rtrace", Value::from(""))])
}

/// A 22-character id, like the client's shortuuids.
pub(crate) fn random_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..22).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}

/// A method object the client turns into a callable: `target` answers `services.{path}`.
fn method(target: &str, path: &str, name: &str, doc: &str, parameters: serde_json::Value) -> Value {
    map([
        ("_rtype", Value::from("method")),
        ("_rtarget", Value::from(target)),
        ("_rmethod", Value::from(format!("services.{path}"))),
        ("_rpromise", Value::from("*")),
        ("_rname", Value::from(name)),
        ("_rdoc", Value::from(doc)),
        ("_rschema", codec::from_json(&json!({"name": name, "description": doc, "parameters": parameters}))),
    ])
}

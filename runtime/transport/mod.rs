//! The HTTP client that calls upstreams. On a connection lane, upstreams are called over the
//! lane's own HTTP/1.1 keep-alive connections, plain or TLS ([`h1`], [`stream`]), as nginx and
//! litellm (httpx) call theirs: for short JSON answers they cost the fewest instructions. Calls
//! whose answer streams go to TLS upstreams through hyper's pooled clients instead, which speak
//! HTTP/2 where the upstream offers it by ALPN (one set per lane, each HTTP/2 connection
//! carrying at most `--upstream-http2-streams` requests: [`spread`]): a connection carries a
//! hundred long streams with less memory and CPU than a hundred connections. `--upstream-http2`
//! says which calls go that way ([`Http2`]); calls made off the lanes and request bodies that
//! stream always do. Which origins speak HTTP/2, and which only HTTP/1.1, is learned from calls
//! to them ([`origins`]).
//!
//! reqwest on this path cost ~12% of a proxied request's instructions (a URL parse per request
//! for its redirect policy and its response, large futures moved around) for features a gateway
//! does not use on upstream calls. It stays for one case hyper's client does not cover: upstreams
//! reached through a proxy the environment names (`HTTPS_PROXY`, ...).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use futures::StreamExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use spread::Spread;
use std::sync::Arc;
use std::time::Duration;

pub mod deadline;
pub mod framing;
pub mod guard;
mod h1;
mod headers;
pub mod held;
pub mod origins;
pub mod spread;
mod stream;
pub mod trust;

pub use h1::read_answer;
pub use headers::Headers;

/// How long an idle upstream connection stays in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long opening a TCP connection to an upstream may take: a few seconds, so an upstream
/// whose listen queue is full is given up on (and retried elsewhere) long before the request's
/// own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request for an upstream.
pub struct Request {
    pub method: Method,
    /// Shared: a deployment's few URLs are parsed once and counted, not copied, per request.
    pub url: Arc<reqwest::Url>,
    pub headers: Headers,
    pub body: RequestBody,
    /// Bounds the wait for the answer's head (the caller bounds the rest).
    pub timeout: Option<Duration>,
    /// Only public addresses may be connected to (an untrusted app's request; see [`guard`]).
    pub public_only: bool,
    /// The answer is expected to stream (an event stream): it may take HTTP/2 ([`Http2`]).
    pub streamed: bool,
    /// Which of the answer's headers the caller reads.
    pub answer_headers: AnswerHeaders,
}

/// Which of an answer's headers a caller reads. A provider's answer carries a score of them
/// (its request id, rate limits, its CDN's) that a gateway writing its own answer never looks
/// at; the lanes' HTTP/1.1 client leaves those out of the map rather than build each one.
/// Other ways (HTTP/2, a proxy) may bring them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerHeaders {
    /// Every header: the caller hands them on (a pass-through) or may read any.
    All,
    /// These names (in lower case) and those that frame the body.
    Only(&'static [&'static str]),
}

impl AnswerHeaders {
    /// Whether the answer's header `name` (as the upstream spelled it) is kept. The framing
    /// headers always are: the client reads the body by them.
    #[inline]
    fn keeps(self, name: &str) -> bool {
        const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "connection"];
        match self {
            AnswerHeaders::All => true,
            // Length and first letter first: most names differ in one or the other.
            AnswerHeaders::Only(names) => FRAMING.iter().chain(names).any(|n| {
                let (n, name) = (n.as_bytes(), name.as_bytes());
                n.len() == name.len()
                    && n.first() == name.first().map(u8::to_ascii_lowercase).as_ref()
                    && n.eq_ignore_ascii_case(name)
            }),
        }
    }
}

/// What a request sends.
pub enum RequestBody {
    /// Whole, in memory (JSON, or nothing).
    Full(Bytes),
    /// Streamed as it is read (a multipart upload's files).
    Stream(Body),
}

impl RequestBody {
    pub fn empty() -> RequestBody {
        RequestBody::Full(Bytes::new())
    }

    fn into_body(self) -> Body {
        match self {
            RequestBody::Full(bytes) => Body::from(bytes),
            RequestBody::Stream(body) => body,
        }
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(bytes: Vec<u8>) -> RequestBody {
        RequestBody::Full(bytes.into())
    }
}

/// An upstream's answer; its body streams as it arrives.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Why an upstream gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("timed out waiting for {host}")]
    Timeout { host: String },
    #[error("cannot reach {host}: {cause}")]
    Unreachable { host: String, cause: String },
    #[error(transparent)]
    Refused(#[from] guard::Refused),
}

/// Reading an answer's body failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("the upstream answer is too large")]
    TooLarge,
    #[error("{0}")]
    Broken(String),
}

type DirectClient = Client<HttpsConnector<HttpConnector>, Body>;
/// The client of guarded requests: host names resolve to public addresses only.
type GuardedClient = Client<HttpsConnector<HttpConnector<guard::PublicResolver>>, Body>;

thread_local! {
    /// A lane thread's own clients: their connections' tasks run on the lane's runtime, where
    /// the requests that use them run.
    static LANE_CLIENT: std::cell::OnceCell<Spread<DirectClient>> = const { std::cell::OnceCell::new() };
    static LANE_GUARDED: std::cell::OnceCell<Spread<GuardedClient>> = const { std::cell::OnceCell::new() };
}

/// Gives the calling thread (a connection lane) its own upstream connection pools.
pub fn use_lane_pool() {
    LANE_CLIENT.with(|lane| {
        let _ = lane.set(spread_of(HttpConnector::new()));
    });
    LANE_GUARDED.with(|lane| {
        let _ = lane.set(spread_of(HttpConnector::new_with_resolver(guard::PublicResolver)));
    });
    h1::enable(IDLE_TIMEOUT);
    deadline::enable();
}

/// The calling lane's tick: closes its plain-HTTP connections that sat idle past the idle
/// timeout (hyper's pool sweeps its own), and ends the exchanges whose coarse deadline passed.
pub fn sweep_lane_pool() {
    h1::sweep();
    deadline::expire();
}

/// hyper's pooled clients over `http`, TLS where the URL says so (HTTP/2 where ALPN settles on
/// it), spread so that no HTTP/2 connection carries too many requests ([`spread`]). They share
/// one connector: one TLS configuration, one session cache.
fn spread_of<R>(mut http: HttpConnector<R>) -> Spread<Client<HttpsConnector<HttpConnector<R>>, Body>>
where
    R: tower::Service<hyper_util::client::legacy::connect::dns::Name> + Clone + Send + Sync + 'static,
    HttpConnector<R>: tower::Service<Uri>,
    HttpsConnector<HttpConnector<R>>: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = match trust::client_config() {
        Ok(tls) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls),
        Err(e) => {
            tracing::warn!("upstream TLS with the built-in roots only: {e}");
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots()
        }
    };
    let https = https.https_or_http().enable_all_versions().wrap_connector(http);
    Spread::new(move |protocol| {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .http2_only(protocol == origins::Protocol::Http2)
            .build(https.clone())
    })
}

/// Which calls to TLS upstreams go over HTTP/2 where the upstream offers it (`--upstream-http2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Http2 {
    /// None: every call rides the lanes' own HTTP/1.1 connections.
    Never,
    /// Calls whose answer streams; short JSON calls keep the lanes' HTTP/1.1 connections. A TLS
    /// upstream that settles on HTTP/1.1 is remembered and its streams ride the lanes' too.
    #[default]
    Streams,
    /// Every call.
    Always,
}

/// How upstreams are called (`--upstream-http2`, `--upstream-http2-streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Which TLS calls go through hyper's pooled clients, HTTP/2 where offered, rather than over
    /// the lanes' own HTTP/1.1 connections.
    pub http2: Http2,
    /// The most requests one upstream HTTP/2 connection carries at once; past it another opens.
    pub streams_per_connection: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { http2: Http2::default(), streams_per_connection: spread::DEFAULT_STREAMS_PER_CONNECTION }
    }
}

/// The client every upstream call goes through.
pub struct UpstreamClient {
    /// Used off the lanes (background tasks on the main runtime).
    direct: Spread<DirectClient>,
    guarded: Spread<GuardedClient>,
    /// Set when the environment names a proxy; every call then goes through it (reqwest's
    /// clients, spread as hyper's are: their pools are hyper's).
    proxied: Option<Spread<reqwest::Client>>,
    settings: Settings,
}

impl UpstreamClient {
    pub fn new() -> UpstreamClient {
        UpstreamClient {
            direct: spread_of(HttpConnector::new()),
            guarded: spread_of(HttpConnector::new_with_resolver(guard::PublicResolver)),
            proxied: environment_proxy().then(|| proxied_spread(None)),
            settings: Settings::default(),
        }
    }

    /// Sets how upstreams are called: which calls to TLS upstreams go over HTTP/2 where offered
    /// (by ALPN), on hyper's pooled clients, rather than over the lane's own HTTP/1.1
    /// connections; and how many requests an HTTP/2 connection carries at once.
    pub fn configure(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// Whether a request to `url` goes over the calling lane's own connections.
    fn on_lane_connection(&self, url: &reqwest::Url, streamed: bool, public_only: bool) -> bool {
        if !h1::on_lane() {
            return false;
        }
        match url.scheme() {
            "http" => true,
            "https" => match self.settings.http2 {
                Http2::Never => true,
                Http2::Always => false,
                Http2::Streams if !streamed => true,
                Http2::Streams => self.origins(public_only, |origins| origins.speaks_only_http1(origin(url))),
            },
            _ => false,
        }
    }

    /// A wait for the scout out to `url`'s origin ([`origins`]), if one is.
    fn scouting(&self, url: &reqwest::Url, public_only: bool) -> Option<origins::Waiting> {
        if url.scheme() != "https" {
            return None;
        }
        self.origins(public_only, |origins| origins.scouting(origin(url)))
    }

    /// Whether a request to `url` goes over the calling lane's own connections (only one whose
    /// body is `whole` can), once the scout out to its origin, if one is, has taught what the
    /// origin speaks.
    async fn on_lane_once_known(&self, url: &reqwest::Url, whole: bool, streamed: bool, public_only: bool) -> bool {
        let on_lane = |client: &Self| whole && client.on_lane_connection(url, streamed, public_only);
        if on_lane(self) {
            return true;
        }
        let Some(waiting) = self.scouting(url, public_only) else { return false };
        // Boxed: the rare wait's timer stays out of every request's future.
        Box::pin(waiting.done_within(CONNECT_TIMEOUT)).await;
        on_lane(self)
    }

    /// `f` of what is known of origins on the clients a call goes through (the calling lane's,
    /// or the shared ones off the lanes; guarded ones for `public_only` calls).
    fn origins<T>(&self, public_only: bool, f: impl FnOnce(&origins::Origins) -> T) -> T {
        if public_only {
            with_spread(&LANE_GUARDED, &self.guarded, |spread| f(spread.origins()))
        } else {
            with_spread(&LANE_CLIENT, &self.direct, |spread| f(spread.origins()))
        }
    }

    /// Sends `request`; resolves when the answer's head has arrived.
    pub async fn send(&self, request: Request) -> Result<Response, SendError> {
        let Request { method, url, headers, body, timeout, public_only, streamed, answer_headers } = request;
        let answer = async {
            match (&self.proxied, body) {
                (Some(spread), body) => {
                    if public_only {
                        // The proxy connects, so this look-up is the guard's only say.
                        check_public(&url).await?;
                    }
                    let cap = self.settings.streams_per_connection;
                    send_proxied(spread, cap, method, &url, headers.into_map(), body.into_body()).await
                }
                (None, body) => {
                    let whole = matches!(body, RequestBody::Full(_));
                    let on_lane = self.on_lane_once_known(&url, whole, streamed, public_only).await;
                    match body {
                        RequestBody::Full(bytes) if on_lane => {
                            h1::send(&method, &url, &headers, &bytes, public_only, answer_headers).await
                        }
                        body => self.send_direct(method, &url, headers.into_map(), body.into_body(), public_only).await,
                    }
                }
            }
        };
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(result) => result,
                Err(_) => Err(SendError::Timeout { host: request_host(&url) }),
            },
            None => answer.await,
        }
    }

    async fn send_direct(
        &self,
        method: Method,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: Body,
        public_only: bool,
    ) -> Result<Response, SendError> {
        let unreachable = |e: &(dyn std::error::Error + 'static)| match guard::refusal_in(e) {
            Some(refused) => SendError::Refused(refused),
            None => SendError::Unreachable { host: request_host(url), cause: cause(e) },
        };
        let uri: Uri = url.as_str().parse().map_err(|e: axum::http::uri::InvalidUri| unreachable(&e))?;
        let mut outgoing = axum::http::Request::new(body);
        *outgoing.method_mut() = method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        // The request's place on its client's connection, held with the answer's body.
        let origin = origin(url);
        let cap = self.settings.streams_per_connection;
        let (answer, carried) = if public_only {
            // hyper connects to a literal address without asking the resolver.
            if let Some(ip) = literal_ip(url) {
                if guard::private_kind(ip).is_some() {
                    return Err(SendError::Refused(guard::Refused { host: request_host(url) }));
                }
            }
            spread_send(&LANE_GUARDED, &self.guarded, origin, cap, outgoing).await
        } else {
            spread_send(&LANE_CLIENT, &self.direct, origin, cap, outgoing).await
        };
        let answer = answer.map_err(|e| unreachable(&e))?;
        let (parts, body) = answer.into_parts();
        Ok(Response { status: parts.status, headers: parts.headers, body: held::hold(body, carried) })
    }
}

/// Sends `outgoing` to `origin` through the calling lane's clients in `lane` (`shared` off the
/// lanes), and learns whether the origin speaks HTTP/2: from the connection when the request is
/// its scout, else from the answer. The request's place on its client comes back with the
/// answer, to be held with its body.
async fn spread_send<K>(
    lane: &'static std::thread::LocalKey<std::cell::OnceCell<Spread<Client<K, Body>>>>,
    shared: &Spread<Client<K, Body>>,
    origin: &str,
    cap: usize,
    outgoing: axum::http::Request<Body>,
) -> (Result<axum::http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>, spread::Carried)
where
    K: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let spread::Picked { client, protocol, carried, scout } =
        with_spread(lane, shared, |spread| spread.pick_scouting(origin, cap));
    let answer = match scout {
        None => client.request(outgoing).await,
        // Boxed: a scout's extra state stays out of every request's future.
        Some(scout) => {
            Box::pin(scouted(&client, outgoing, scout, |version| {
                with_spread(lane, shared, |spread| spread.origins().learn(origin, protocol, Some(version)))
            }))
            .await
        }
    };
    let version = answer.as_ref().ok().map(|a| a.version());
    with_spread(lane, shared, |spread| spread.origins().learn(origin, protocol, version));
    (answer, carried)
}

/// Sends `outgoing`, the scout to a new origin, through `client`: `learn` is told the version its
/// connection settled on by ALPN as soon as it has, and the scout is dropped then, so that the
/// calls waiting for it go on while this one waits for its answer.
async fn scouted<K>(
    client: &Client<K, Body>,
    mut outgoing: axum::http::Request<Body>,
    scout: origins::Scout,
    learn: impl FnOnce(Version),
) -> Result<axum::http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>
where
    K: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut connection = hyper_util::client::legacy::connect::capture_connection(&mut outgoing);
    let answer = client.request(outgoing);
    futures::pin_mut!(answer);
    // The connection's ALPN, or `None` when the request ended without a connection.
    let settled = async { connection.wait_for_connection_metadata().await.as_ref().map(|c| c.is_negotiated_h2()) };
    tokio::select! {
        answer = &mut answer => answer,
        http2 = settled => {
            if let Some(http2) = http2 {
                learn(if http2 { Version::HTTP_2 } else { Version::HTTP_11 });
            }
            drop(scout);
            answer.await
        }
    }
}

/// `f` of the calling lane's clients in `lane`, or of `shared` off the lanes.
fn with_spread<C: Clone, T>(
    lane: &'static std::thread::LocalKey<std::cell::OnceCell<Spread<C>>>,
    shared: &Spread<C>,
    f: impl FnOnce(&Spread<C>) -> T,
) -> T {
    lane.with(|lane| f(lane.get().unwrap_or(shared)))
}

/// `url`'s origin (scheme, host and port): what clients' counts and what is learned are kept by.
fn origin(url: &reqwest::Url) -> &str {
    &url[..url::Position::BeforePath]
}

/// The address a URL names literally, if it names one.
fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    }
}

/// Refuses a URL whose host is, or resolves to, a non-public address.
async fn check_public(url: &reqwest::Url) -> Result<(), SendError> {
    let host = url.host_str().unwrap_or_default();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match guard::resolve_public(host, url.port_or_known_default().unwrap_or(443)).await {
        Ok(_) => Ok(()),
        Err(guard::GuardedLookup::Refused(refused)) => Err(SendError::Refused(refused)),
        Err(guard::GuardedLookup::Lookup(e)) => {
            Err(SendError::Unreachable { host: request_host(url), cause: e.to_string() })
        }
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        UpstreamClient::new()
    }
}

impl Response {
    /// The body's bytes as they arrive.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
        self.body.into_data_stream()
    }

    /// The whole body, refused past `limit` bytes.
    pub async fn bytes(self, limit: usize) -> Result<Vec<u8>, ReadError> {
        let mut stream = self.into_stream();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ReadError::Broken(e.to_string()))?;
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(ReadError::TooLarge);
            }
        }
        Ok(body)
    }

    /// At most about `cap` bytes of the body (an error's message), however long it is.
    pub async fn head_of_body(self, cap: usize) -> Vec<u8> {
        let mut stream = self.into_stream();
        let mut body = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= cap {
                break;
            }
        }
        body
    }
}

/// A health probe's verdict on an answer: a 2xx, or why not (no secrets, no upstream text).
pub fn answers_ok(answer: Result<Response, SendError>) -> Result<(), String> {
    match answer {
        Ok(r) if r.status.is_success() => Ok(()),
        Ok(r) => Err(format!("upstream answered {}", r.status.as_u16())),
        Err(SendError::Timeout { .. }) => Err("upstream timed out".into()),
        Err(SendError::Unreachable { .. }) => Err("upstream unreachable".into()),
        Err(SendError::Refused(_)) => Err("upstream address refused by the guard".into()),
    }
}

fn request_host(url: &reqwest::Url) -> String {
    url.host_str().unwrap_or("the upstream").to_owned()
}

/// The innermost cause of a client error: "Connection refused (os error 111)" rather than
/// "client error (Connect)".
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

/// Whether the environment names a proxy for outgoing calls.
fn environment_proxy() -> bool {
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// reqwest's clients, through `proxy` or else the proxies the environment names.
fn proxied_spread(proxy: Option<reqwest::Proxy>) -> Spread<reqwest::Client> {
    Spread::new(move |protocol| proxied_client(proxy.clone(), protocol))
}

/// One of [`proxied_spread`]'s clients, speaking `protocol`.
fn proxied_client(proxy: Option<reqwest::Proxy>, protocol: origins::Protocol) -> reqwest::Client {
    let builder = match proxy {
        Some(proxy) => reqwest::Client::builder().proxy(proxy),
        None => reqwest::Client::builder(),
    };
    let builder = trust::extra_roots().iter().fold(builder, |b, der| match reqwest::Certificate::from_der(der) {
        Ok(certificate) => b.add_root_certificate(certificate),
        Err(_) => b,
    });
    let builder = match protocol {
        origins::Protocol::Negotiated => builder,
        origins::Protocol::Http2 => builder.http2_prior_knowledge(),
    };
    builder
        .pool_idle_timeout(IDLE_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        // A redirect goes back to the client as it came, as litellm (httpx) does; following it
        // would resend bodies and credentials to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

async fn send_proxied(
    spread: &Spread<reqwest::Client>,
    cap: usize,
    method: Method,
    url: &reqwest::Url,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, SendError> {
    let origin = origin(url);
    let picked = spread.pick(origin, cap);
    let answer = picked
        .client
        .request(method, url.clone())
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    spread.origins().learn(origin, picked.protocol, answer.as_ref().ok().map(reqwest::Response::version));
    let answer = answer.map_err(|e| SendError::Unreachable { host: request_host(url), cause: cause(&e) })?;
    let (status, headers) = (answer.status(), answer.headers().clone());
    Ok(Response { status, headers, body: held::hold(Body::from_stream(answer.bytes_stream()), picked.carried) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn with_a_proxy_every_call_goes_through_it_in_absolute_form() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = format!("http://{}", listener.local_addr().unwrap());
        let seen = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        let client = UpstreamClient {
            proxied: Some(proxied_spread(Some(reqwest::Proxy::http(&proxy).unwrap()))),
            ..UpstreamClient::new()
        };
        let request = Request {
            method: Method::POST,
            url: Arc::new(reqwest::Url::parse("http://upstream.invalid/v1/chat/completions").unwrap()),
            headers: Headers::new(),
            body: RequestBody::from(b"{}".to_vec()),
            timeout: Some(Duration::from_secs(10)),
            public_only: false,
            streamed: false,
            answer_headers: AnswerHeaders::All,
        };
        let answer = client.send(request).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.bytes(16).await.unwrap(), b"ok");
        let head = seen.await.unwrap();
        assert!(head.starts_with("POST http://upstream.invalid/v1/chat/completions HTTP/1.1"), "{head}");
    }
}

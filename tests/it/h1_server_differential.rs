//! ferrolite's own HTTP/1.1 server against hyper's, the library it replaces: every request of the
//! corpus (`tests/fixtures/http1_requests/`, also the `h1_request` fuzz target's seeds) is written
//! raw, then half-closed, to both serving the same echo router, and both must answer the same:
//! the same statuses in the same order, and for each success the same echo of what the handler
//! saw (method, URI, version, headers, trailers, body). Error bodies are not compared: ours are
//! JSON, hyper's are empty.

use crate::support::repo_root;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ferrolite::http::serve::{serve, ConnectionSettings};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Requests ours answers differently from hyper on purpose, and why. The test fails if a file
/// listed here answers the same, so the list cannot go stale.
const DIFFERS: &[(&str, &str)] = &[
    (
        "chunked_and_length.http",
        "a request with both Transfer-Encoding and Content-Length is refused (400): the two framings \
         disagreeing is how requests are smuggled past a proxy; hyper takes it as chunked",
    ),
    (
        "chunked_trailers.http",
        "a chunked request's trailers are read and dropped: no route of ours reads them, and none \
         is sent upstream; hyper hands them to the handler",
    ),
    (
        "expect_continue.http",
        "no `100 Continue` for a body that has already arrived with its head (RFC 9110 section \
         10.1.1 lets a server skip it); one still waiting for it gets the 100 \
         (`a_client_that_expects_100_continue_gets_it_before_sending_its_body`)",
    ),
];

/// How long a connection is read for after the request is written and half-closed.
const READ_FOR: Duration = Duration::from_secs(3);

/// One answer on the wire: its status and its body (unchunked).
type Answer = (u16, Vec<u8>);

/// The corpus, by file name, sorted.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("tests/fixtures/http1_requests");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).expect("the corpus").flatten().map(|e| e.path()).collect();
    cases.sort();
    cases
        .into_iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (name, std::fs::read(&path).expect("a case"))
        })
        .collect()
}

/// A value's bytes, printable and exact (obs-text and NUL bytes escaped, not replaced).
fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// FNV-1a: a checksum that tells two bodies apart without echoing 70 KB.
fn fnv(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

fn header_lists(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        lists.entry(name.as_str().to_owned()).or_default().push(escaped(value.as_bytes()));
    }
    lists
}

/// Answers any request with what it saw, as JSON; a body that fails to read is a 400.
async fn echo(request: Request) -> Response {
    let (parts, mut body) = request.into_parts();
    let (mut data, mut trailers) = (Vec::new(), HeaderMap::new());
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else { return (StatusCode::BAD_REQUEST, "body error").into_response() };
        match frame.into_data() {
            Ok(piece) => data.extend_from_slice(&piece),
            Err(frame) => trailers.extend(frame.into_trailers().unwrap_or_default()),
        }
    }
    let seen = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": header_lists(&parts.headers),
        "trailers": header_lists(&trailers),
        "body_len": data.len(),
        "body_fnv": fnv(&data),
        "body_head": escaped(&data[..data.len().min(64)]),
    });
    axum::Json(seen).into_response()
}

fn router() -> Router {
    Router::new().fallback(echo)
}

/// ferrolite's server, as `ferrolite serve` runs it, with the echo router.
async fn start_ours() -> SocketAddr {
    start_ours_with(router()).await
}

/// ferrolite's server with `router`.
async fn start_ours_with(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(serve(listener, router, ConnectionSettings::default(), std::future::pending()));
    addr
}

/// hyper's HTTP/1.1 server, one connection per accepted socket, with its defaults but for
/// half-closes: by default hyper closes a connection as soon as it reads the client's FIN, even
/// with a request in hand, so whether an answer came out at all was a race. Here it answers
/// what it read, as a half-closing client (and ours) expects.
async fn start_hypers() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let router = router();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(
                router.clone().map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(Body::new)),
            );
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(socket);
                let _ = hyper::server::conn::http1::Builder::new().half_close(true).serve_connection(io, service).await;
            });
        }
    });
    addr
}

/// Writes `request` whole on a fresh connection, half-closes it, and reads what comes back
/// until the server closes or `READ_FOR` passes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    exchange_in_pieces(addr, request, request.len().max(1)).await
}

/// Every corpus file's answer bytes from the server at `addr`, all connections at once.
async fn answers(addr: SocketAddr, corpus: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    futures::future::join_all(corpus.iter().map(|(_, request)| exchange(addr, request))).await
}

/// The index just past the first `\r\n` at or after `from`.
fn line_end(bytes: &[u8], from: usize) -> Option<usize> {
    bytes.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|i| from + i + 2)
}

/// A chunked body starting at `from`: the data and where the answer ends, or `None` if cut short.
fn dechunk(bytes: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    loop {
        let end = line_end(bytes, at)?;
        let line = std::str::from_utf8(&bytes[at..end - 2]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = end;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let end = line_end(bytes, at)?;
                let empty = end - at == 2;
                at = end;
                if empty {
                    return Some((body, at));
                }
            }
        }
        body.extend_from_slice(bytes.get(at..at + size)?);
        at = line_end(bytes, at + size)?;
    }
}

/// The answers in `bytes`, in order. Bytes that do not parse as an answer are kept as one more
/// entry with status 0, so they show up in a comparison rather than vanish.
fn parse_answers(bytes: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = head.parse(&bytes[at..]) else {
            answers.push((0, bytes[at..].to_vec()));
            break;
        };
        let status = head.code.unwrap_or(0);
        let header = |name: &str| {
            head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        let start = at + len;
        let framed = if (100..200).contains(&status) || status == 204 || status == 304 {
            Some((Vec::new(), start))
        } else if chunked {
            dechunk(bytes, start)
        } else if let Some(length) = length {
            bytes.get(start..start + length).map(|body| (body.to_vec(), start + length))
        } else {
            Some((bytes[start..].to_vec(), bytes.len()))
        };
        match framed {
            Some((body, end)) => {
                answers.push((status, body));
                at = end;
            }
            None => {
                answers.push((0, bytes[at..].to_vec()));
                break;
            }
        }
    }
    answers
}

/// What differs between two successes' echoes, field by field (empty if nothing).
fn echo_difference(theirs: &[u8], ours: &[u8]) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::from_slice::<Value>(theirs), serde_json::from_slice::<Value>(ours))
    else {
        return if theirs == ours { Vec::new() } else { vec![format!("body hyper {theirs:?}, ours {ours:?}")] };
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let short = |v: Option<&Value>| {
        let text = v.map_or("(none)".to_owned(), Value::to_string);
        if text.len() > 300 {
            format!("{}… ({} chars)", &text[..300], text.len())
        } else {
            text
        }
    };
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: hyper {}, ours {}", short(a.get(k)), short(b.get(k))))
        .collect()
}

/// How ours differs from hyper on one request, or `None` if it does not: the same statuses in
/// order, and the same echo for each success.
fn difference(theirs: &[Answer], ours: &[Answer]) -> Option<String> {
    let statuses = |answers: &[Answer]| answers.iter().map(|(status, _)| *status).collect::<Vec<_>>();
    if statuses(theirs) != statuses(ours) {
        return Some(format!("statuses hyper {:?}, ours {:?}", statuses(theirs), statuses(ours)));
    }
    let fields: Vec<String> = theirs
        .iter()
        .zip(ours)
        .enumerate()
        .filter(|(_, ((status, _), _))| (200..300).contains(status))
        .flat_map(|(i, ((_, a), (_, b)))| echo_difference(a, b).into_iter().map(move |d| format!("answer {i}: {d}")))
        .collect();
    (!fields.is_empty()).then(|| fields.join("; "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_answers_every_request_as_hyper_does() {
    let corpus = corpus();
    assert!(corpus.len() >= 30, "{} cases", corpus.len());
    let (ours, hypers) = (start_ours().await, start_hypers().await);
    let (mine, theirs) = tokio::join!(answers(ours, &corpus), answers(hypers, &corpus));
    let mut unexpected = Vec::new();
    let mut differing = BTreeSet::new();
    let (mut accepted, mut refused) = (0, 0);
    for (((name, _), mine), theirs) in corpus.iter().zip(&mine).zip(&theirs) {
        let (mine, theirs) = (parse_answers(mine), parse_answers(theirs));
        match theirs.first().map(|(status, _)| *status) {
            Some(200..=299) => accepted += 1,
            _ => refused += 1,
        }
        let Some(how) = difference(&theirs, &mine) else { continue };
        differing.insert(name.as_str());
        let listed = DIFFERS.iter().any(|(case, _)| case == name);
        if listed {
            eprintln!("{name} differs as listed: {how}");
        } else {
            unexpected.push(format!("{name}: {how}"));
        }
    }
    let stale: Vec<_> = DIFFERS.iter().map(|(case, _)| *case).filter(|case| !differing.contains(case)).collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} unexpected difference(s):\n{}\nlisted in DIFFERS but answered the same: {stale:?}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(accepted >= 10 && refused >= 10, "the corpus has both kinds: {accepted} accepted, {refused} refused");
}

/// The fuzz target's reader (`read_request`, the server's parsing over the bytes alone) agrees
/// with the live server on each request's first: it reads the method, URI and body the handler
/// saw where the server answered 2xx, and refuses it where the server did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_request_agrees_with_our_server() {
    let corpus = corpus();
    let ours = start_ours().await;
    let mine = answers(ours, &corpus).await;
    let mut differences = Vec::new();
    for ((name, request), mine) in corpus.iter().zip(&mine) {
        let first = parse_answers(mine).into_iter().find(|(status, _)| !(100..200).contains(status));
        let read = ferrolite::http::h1::read_request(request);
        let served = match &first {
            Some((200..=299, body)) => serde_json::from_slice::<Value>(body).ok(),
            _ => None,
        };
        match (served, read) {
            (None, Err(_)) => {}
            (Some(seen), Ok((parts, body))) => {
                let read = json!({
                    "method": parts.method.as_str(),
                    "uri": parts.uri.to_string(),
                    "body_len": body.len(),
                    "body_fnv": fnv(&body),
                });
                let served = json!({
                    "method": seen["method"],
                    "uri": seen["uri"],
                    "body_len": seen["body_len"],
                    "body_fnv": seen["body_fnv"],
                });
                if read != served {
                    differences.push(format!("{name}: read_request {read}, the server {served}"));
                }
            }
            (None, Ok((parts, body))) => differences.push(format!(
                "{name}: read_request reads {} {} ({} body bytes), the server answered {:?}",
                parts.method,
                parts.uri,
                body.len(),
                first.map(|(status, _)| status)
            )),
            (Some(seen), Err(why)) => differences.push(format!(
                "{name}: read_request refuses ({why}), the server served {} {}",
                seen["method"], seen["uri"]
            )),
        }
    }
    assert!(differences.is_empty(), "{} difference(s):\n{}", differences.len(), differences.join("\n"));
}

/// A client that waits for `100 Continue` before sending its body (curl does, for a second, on
/// large uploads) gets it, and then its answer.
#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_before_sending_its_body() {
    let ours = start_ours().await;
    let mut socket = TcpStream::connect(ours).await.expect("connects");
    socket
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .expect("writes the head");
    let mut got = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut got))
        .await
        .expect("a go-ahead")
        .expect("reads");
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    socket.write_all(b"hello").await.expect("writes the body");
    socket.shutdown().await.expect("half-closes");
    let mut answer = Vec::new();
    tokio::time::timeout(READ_FOR, socket.read_to_end(&mut answer)).await.expect("an answer").expect("reads");
    let answers = parse_answers(&answer);
    assert_eq!(answers.len(), 1, "{}", String::from_utf8_lossy(&answer));
    let echo: Value = serde_json::from_slice(&answers[0].1).expect("the echo");
    assert_eq!((answers[0].0, &echo["body_len"]), (200, &json!(5)), "{echo}");
}

/// Writes `request` in pieces of `piece` bytes, each its own segment, then half-closes and reads
/// the answer until the server closes or `READ_FOR` passes: heads and bodies split anywhere.
/// Reading runs alongside writing, so an answer sent before the whole request is taken is read
/// before a reset can discard it.
async fn exchange_in_pieces(addr: SocketAddr, request: &[u8], piece: usize) -> Vec<u8> {
    let socket = TcpStream::connect(addr).await.expect("connects");
    socket.set_nodelay(true).expect("sets nodelay");
    let (mut read, mut write) = socket.into_split();
    let writing = async {
        for part in request.chunks(piece) {
            if write.write_all(part).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = write.shutdown().await;
    };
    let mut answer = Vec::new();
    let reading = tokio::time::timeout(READ_FOR, read.read_to_end(&mut answer));
    let _ = tokio::join!(writing, reading);
    answer
}

/// A request that arrives in many small pieces is served as the same request arriving whole:
/// every accepted request of the corpus, in pieces of 1, 7 and 1,000 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_split_anywhere_are_served_as_when_whole() {
    let ours = start_ours().await;
    let corpus = corpus();
    let whole = answers(ours, &corpus).await;
    let mut checked = 0;
    // A body that has not arrived with its head gets a `100 Continue` first; the answers after
    // it are what is compared.
    let finals =
        |bytes: &[u8]| parse_answers(bytes).into_iter().filter(|(status, _)| *status >= 200).collect::<Vec<_>>();
    for ((name, request), whole) in corpus.iter().zip(&whole) {
        let whole = finals(whole);
        if !whole.first().is_some_and(|(status, _)| (200..300).contains(status)) || request.len() > 80_000 {
            continue;
        }
        for piece in [1, 7, 1000] {
            let split = finals(&exchange_in_pieces(ours, request, piece).await);
            if let Some(how) = difference(&whole, &split) {
                panic!("{name} in pieces of {piece}: {how}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} accepted requests checked");
}

/// A request refused before its body is read (a handler that answers without asking for it)
/// gives no `100 Continue`: the client that waits for one gets the refusal instead, and never
/// sends the body.
#[tokio::test]
async fn a_request_refused_unread_gets_no_100_continue() {
    let refusing = Router::new().fallback(|| async { (StatusCode::PAYLOAD_TOO_LARGE, "too large") });
    let addr = start_ours_with(refusing).await;
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    socket
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n")
        .await
        .expect("writes the head");
    let mut answer = Vec::new();
    tokio::time::timeout(READ_FOR, socket.read_to_end(&mut answer))
        .await
        .expect("an answer and a close")
        .expect("reads");
    let answers = parse_answers(&answer);
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [413], "{}", String::from_utf8_lossy(&answer));
}

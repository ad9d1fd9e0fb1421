//! The lanes' own HTTP/1.1 client against hyper's, the library it replaces: every answer of the
//! corpus (`tests/fixtures/http1/`, also the `h1_answer` fuzz target's seeds) is served by a raw
//! socket to both, and both must come out the same: the same status and body, or both refused.
//! hyper is given the same 64 KB limit on an answer's head. Ours reads each answer twice: keeping
//! every header, and keeping only those a provider's translation reads (the others are not
//! even made into names), which must not change what comes out.

use crate::support::repo_root;
use axum::body::Body;
use axum::http::Method;
use ferrolite::providers::translate::READ_ANSWER_HEADERS;
use ferrolite::transport::{AnswerHeaders, Headers, Request, RequestBody, UpstreamClient};
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Outcome = Result<(u16, Vec<u8>), String>;

/// Answers ours refuses on purpose where hyper takes them, and why.
const STRICTER: &[(&str, &str)] = &[(
    "head_too_large.http",
    "a head over 64 KB is refused however it arrives; hyper applies its limit only while a head \
     is incomplete, so one that arrives in a single read passes",
)];

/// A socket that answers each connection's request with `answer`, then closes.
async fn serve(answer: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let url = format!("http://{}/v1/x", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    url
}

/// The answer through ferrolite's client, on a lane (where plain-HTTP upstreams use it), its map
/// holding the headers `keep` names.
fn ours(url: String, keep: AnswerHeaders) -> Outcome {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            ferrolite::transport::use_lane_pool();
            let request = Request {
                method: Method::GET,
                url: reqwest::Url::parse(&url).map_err(|e| e.to_string())?.into(),
                headers: Headers::new(),
                body: RequestBody::empty(),
                timeout: Some(Duration::from_secs(5)),
                public_only: false,
                streamed: false,
                answer_headers: keep,
            };
            let answer = UpstreamClient::new().send(request).await.map_err(|e| e.to_string())?;
            let status = answer.status.as_u16();
            let mut body = Vec::new();
            let mut stream = answer.into_stream();
            while let Some(piece) = stream.next().await {
                body.extend_from_slice(&piece.map_err(|e| e.to_string())?);
            }
            Ok((status, body))
        })
    })
    .join()
    .unwrap_or_else(|_| Err("our client panicked".into()))
}

/// The answer through hyper's client.
async fn hypers(url: &str) -> Outcome {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http1_max_buf_size(64 * 1024)
        .build_http::<Body>();
    let request = axum::http::Request::get(url).body(Body::empty()).map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    let body = axum::body::to_bytes(Body::new(answer.into_body()), usize::MAX).await.map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

// Our client runs on a lane thread of its own while the socket serves from this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_reads_every_answer_as_hyper_does() {
    let dir = repo_root().join("tests/fixtures/http1");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).expect("the corpus").flatten().map(|e| e.path()).collect();
    cases.sort();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let mut differences = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for path in cases {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let answer = std::fs::read(&path).expect("a case");
        let url = serve(answer.clone()).await;
        let theirs = hypers(&url).await;
        let mine = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || ours(url, AnswerHeaders::All))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        };
        let few = {
            let url = serve(answer.clone()).await;
            tokio::task::spawn_blocking(move || ours(url, READ_ANSWER_HEADERS))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        };
        if few != mine {
            differences.push(format!("{name}: every header kept {mine:?}, a provider's few {few:?}"));
        }
        let stricter = STRICTER.iter().any(|(case, _)| *case == name);
        match (&theirs, &mine) {
            (Ok(a), Ok(b)) if a == b && !stricter => accepted += 1,
            (Err(_), Err(_)) if !stricter => refused += 1,
            (Ok(_), Err(_)) if stricter => refused += 1,
            _ => differences.push(format!("{name}: hyper {theirs:?}, ours {mine:?}")),
        }
        // The fuzz target's reader (the same code, over the bytes alone) agrees with the client.
        let read =
            ferrolite::transport::read_answer(&answer, &Method::GET, AnswerHeaders::All).map(|(s, b)| (s.as_u16(), b));
        if read.is_ok() != mine.is_ok() || read.as_ref().ok() != mine.as_ref().ok() {
            differences.push(format!("{name}: read_answer {read:?}, the client {mine:?}"));
        }
    }
    assert!(differences.is_empty(), "{} difference(s):\n{}", differences.len(), differences.join("\n"));
    assert!(accepted >= 8 && refused >= 8, "the corpus has both kinds: {accepted} accepted, {refused} refused");
}

//! Bad input gets a clear 4xx naming what is wrong, and the server keeps serving.

use crate::support::{read_json, TestServer};
use serde_json::json;

async fn post_raw(server: &TestServer, path: &str, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = server
        .client
        .post(server.demo_url(path))
        .bearer_auth(&server.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    read_json(response).await
}

async fn still_serving(server: &TestServer) {
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "demo-chat", "messages": [{"role": "user", "content": "ok?"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn malformed_bodies_get_a_400_naming_the_problem() {
    let server = TestServer::demo().await;
    let deep = format!("{{\"model\": \"demo-chat\", \"messages\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"model\": \"demo-chat\", \"messages\": [".to_vec(), "request body is not valid JSON: EOF while parsing"),
        (
            b"{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(),
            "request body is not valid JSON: invalid unicode",
        ),
        (deep.into_bytes(), "request body is not valid JSON: recursion limit exceeded"),
        (b"[1, 2, 3]".to_vec(), "invalid request: body: expected object, got array"),
        (
            b"{\"model\": 7, \"messages\": []}".to_vec(),
            "invalid request: `messages`: needs at least 1 item; `model`: expected string, got number",
        ),
        (Vec::new(), "request body is empty"),
    ];
    for (body, expected) in cases {
        let (status, err) = post_raw(&server, "/v1/chat/completions", "application/json", body).await;
        assert_eq!(status, 400, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message:?} should start with {expected:?}");
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn multipart_without_its_file_part_is_a_400_naming_it() {
    let server = TestServer::demo().await;
    let body = b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndemo-chat\r\n--B--\r\n".to_vec();
    let (status, err) = post_raw(&server, "/v1/audio/transcriptions", "multipart/form-data; boundary=B", body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "file");
    assert_eq!(err["error"]["message"], "invalid request: `file` is required");
    let (status, err) = post_raw(&server, "/v1/audio/transcriptions", "multipart/form-data", b"junk".to_vec()).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_multipart")));
    still_serving(&server).await;
}

#[tokio::test]
async fn each_route_family_can_have_its_own_body_limit() {
    let server = TestServer::start(vec![], |c| {
        c.limits.family_body_bytes.insert("audio".into(), 1024);
    })
    .await;
    let mut body = b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndemo-chat\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'x', 4096));
    body.extend_from_slice(b"\r\n--B--\r\n");
    let (status, err) = post_raw(&server, "/v1/audio/transcriptions", "multipart/form-data; boundary=B", body).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["message"], "request body is larger than the 1024 byte limit");
    // Other families keep the default.
    let long = json!({"model": "demo-chat", "messages": [{"role": "user", "content": "y".repeat(8192)}]});
    assert_eq!(server.post_json(&server.demo_url("/v1/chat/completions"), &long).await.0, 200);
}

#[tokio::test]
async fn a_50_mb_manifest_is_refused_without_harm() {
    let server = TestServer::demo().await;
    let huge = json!({"source": "x".repeat(50 * 1024 * 1024)});
    let (status, err) = server.controller("default", &server.token, "install", huge).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");
    assert_eq!(
        server.ok("default", &server.token, "list_apps", json!({})).await.as_array().unwrap().len(),
        1,
        "only the demo app"
    );
    still_serving(&server).await;
}

#[tokio::test]
async fn a_flood_of_header_bytes_is_refused_and_the_server_keeps_serving() {
    let server = TestServer::demo().await;
    let mut request = server.client.get(server.demo_url("/v1/models")).bearer_auth(&server.token);
    for i in 0..5_000 {
        request = request.header(format!("x-junk-{i}"), "a".repeat(20));
    }
    let (status, body) = read_json(request.send().await.unwrap()).await;
    assert_eq!(status, 431, "Request Header Fields Too Large: {body}");
    assert_eq!(body["error"]["code"], "request_header_fields_too_large");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 100 headers"), "{body}");
    still_serving(&server).await;
}

/// What the server answers to raw bytes on a fresh connection (until it closes).
async fn raw_exchange(server: &TestServer, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.running.addr).await.unwrap();
    // The server may answer and close before reading all of a flood; a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn unparseable_http_gets_a_json_error_not_an_empty_answer() {
    let server = TestServer::demo().await;
    let flood: String = (0..100_000).map(|i| format!("x-junk-{i}: aaaaaaaaaaaaaaaaaaaa\r\n")).collect();
    let cases = [
        (format!("GET /health HTTP/1.1\r\nhost: x\r\n{flood}\r\n"), "431", "request_header_fields_too_large"),
        ("GET /he alth HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(), "400", "malformed_request"),
        ("GET /health HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".to_owned(), "400", "malformed_request"),
    ];
    for (request, status, code) in cases {
        let answer = raw_exchange(&server, request.as_bytes()).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    still_serving(&server).await;
}

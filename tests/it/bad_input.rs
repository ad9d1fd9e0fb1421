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
    let status = request.send().await.unwrap().status().as_u16();
    assert_eq!(status, 431, "Request Header Fields Too Large");
    still_serving(&server).await;
}

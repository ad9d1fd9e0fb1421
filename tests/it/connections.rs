//! How a client's connection is taken: HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on one
//! port, told apart by the first bytes, however the client splits them. Both ways of running
//! connections: lanes and the shared runtime. (A client that sends nothing is cut off with the
//! slow ones: `limits.rs`.)

use crate::support::TestServer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn http1_and_h2c_are_served_on_one_port_however_the_first_bytes_arrive() {
    for io_threads in [2, 0] {
        let server = TestServer::start(Vec::new(), |c| c.io_threads = io_threads).await;
        let models = server.demo_url("/v1/models");

        let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
        let answer = h2.get(&models).bearer_auth(&server.token).send().await.unwrap();
        assert_eq!(answer.version(), reqwest::Version::HTTP_2, "io_threads {io_threads}");
        assert_eq!(answer.status(), 200, "io_threads {io_threads}");

        let h1 = server.client.get(&models).bearer_auth(&server.token).send().await.unwrap();
        assert_eq!(h1.version(), reqwest::Version::HTTP_11, "io_threads {io_threads}");
        assert_eq!(h1.status(), 200, "io_threads {io_threads}");

        // A request line whose first byte is also the preface's, sent a byte at first.
        let path = "/default/apps/demo/v1/models";
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n", server.token);
        let answer = in_pieces(&server, &[&request.as_bytes()[..1], &request.as_bytes()[1..]]).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "io_threads {io_threads}: {}", String::from_utf8_lossy(&answer));

        // The preface itself in two pieces: still HTTP/2 (the server's SETTINGS frame answers).
        let answer = in_pieces(&server, &[&PREFACE[..5], &PREFACE[5..], &[0, 0, 0, 4, 0, 0, 0, 0, 0]]).await;
        assert_eq!(answer.get(3), Some(&4), "io_threads {io_threads}: a SETTINGS frame first: {answer:?}");
    }
}

/// Writes `pieces` 50 ms apart and returns the first bytes of the answer.
async fn in_pieces(server: &TestServer, pieces: &[&[u8]]) -> Vec<u8> {
    let mut client = tokio::net::TcpStream::connect(server.running.addr).await.unwrap();
    for piece in pieces {
        client.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut answer)).await.unwrap().unwrap();
    answer.truncate(n);
    answer
}

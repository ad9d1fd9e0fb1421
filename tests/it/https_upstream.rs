//! An upstream behind TLS with a private CA (issue 22, point 2): trusted through SSL_CERT_FILE
//! or SSL_CERT_DIR beside the built-in roots, and refused without them.

use crate::support::{blocking_post, free_port, ServeProcess};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A throwaway CA (its PEM) and a server certificate for localhost it signed.
fn certificates() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ferrolite test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca.pem(), leaf.der().clone(), key)
}

/// An OpenAI-style chat upstream over TLS: one answer per connection.
async fn tls_upstream(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it announces.
                loop {
                    let Ok(n) = tls.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let body = json!({
                    "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "over TLS"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_upstream_is_trusted_through_ssl_cert_file_or_dir_only() {
    let (ca_pem, cert, key) = certificates();
    let port = tls_upstream(cert, key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let ca_dir = dir.path().join("certs");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("private-ca.pem"), &ca_pem).unwrap();
    let config = dir.path().join("app.json");
    let manifest = json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls", "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("https://localhost:{port}/v1"), "api_key": "sk-upstream"}}
    ]}});
    std::fs::write(&config, manifest.to_string()).unwrap();

    let ask = |env: Vec<(&'static str, String)>, name: &'static str| {
        let (config, data) = (config.clone(), dir.path().join(name));
        tokio::task::spawn_blocking(move || {
            let port = free_port().to_string();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let server =
                ServeProcess::spawn_with_env(&["--port", &port, "--config", config.to_str().unwrap()], &data, &env);
            let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]});
            let url = format!("{}/default/apps/tls/v1/chat/completions", server.base);
            blocking_post(&url, &server.token, &body)
        })
    };
    let trusted = |answer: &(u16, Value)| answer.0 == 200 && answer.1["choices"][0]["message"]["content"] == "over TLS";

    let by_file = ask(vec![("SSL_CERT_FILE", ca_file.display().to_string())], "file").await.unwrap();
    assert!(trusted(&by_file), "SSL_CERT_FILE's CA is trusted: {by_file:?}");
    let by_dir = ask(vec![("SSL_CERT_DIR", ca_dir.display().to_string())], "dir").await.unwrap();
    assert!(trusted(&by_dir), "SSL_CERT_DIR's CA is trusted: {by_dir:?}");
    let (status, body) = ask(vec![], "none").await.unwrap();
    assert_eq!(status, 502, "without them the private CA is not trusted: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(message.contains("certificate") || message.contains("issuer"), "{message}");
}

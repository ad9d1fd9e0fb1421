//! Hypha tokens on ferrolite's own URL when the Hypha server's JWT secret is not given: the
//! server itself is asked, once per token and workspace, whether the token may read that
//! workspace (`GET {hypha}/{workspace}/info` with the token: 200 or not), and the answer is kept
//! until the token expires (at most ten minutes, so a revoked token stops passing by then).
//!
//! A token is first checked against the workspace it names as its current one (`wid:` in its
//! scope, read unverified): passing proves it is the server's and whose it is. A protected
//! service of another workspace then asks the server about that one too.

use crate::auth::{AuthError, Claims};
use crate::exchange::parse_json;
use crate::transport::{Request, RequestBody, UpstreamClient};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long an answer is trusted at most.
const KEEP: u64 = 600;
/// Answers kept at most (the map is emptied when full: a bound, not an eviction policy).
const MAX_KEPT: usize = 10_000;
/// How long the Hypha server may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Asks a Hypha server about tokens ferrolite cannot check itself.
pub struct HyphaTokenCheck {
    server: String,
    /// (token, workspace) -> (may read it, until when).
    answers: Mutex<HashMap<(String, String), (bool, u64)>>,
}

/// What a token says of itself, unverified.
#[derive(serde::Deserialize)]
struct Unverified {
    exp: Option<u64>,
    #[serde(default)]
    scope: String,
}

impl HyphaTokenCheck {
    /// Checks tokens with the Hypha server at `server` (`https://host[:port]`, or the `wss://`
    /// URL of its WebSocket).
    pub fn new(server: &str) -> HyphaTokenCheck {
        let server = server.trim_end_matches('/');
        let server = server.strip_suffix("/ws").unwrap_or(server);
        let server = match server.split_once("://") {
            Some(("wss", rest)) => format!("https://{rest}"),
            Some(("ws", rest)) => format!("http://{rest}"),
            _ => server.to_owned(),
        };
        HyphaTokenCheck { server, answers: Mutex::default() }
    }

    /// The claims of `token` as the Hypha server vouches for them, with `target` (the service's
    /// workspace) among the token's workspaces when the server says it may enter it.
    pub async fn claims(&self, http: &UpstreamClient, token: &str, target: &str) -> Result<Claims, AuthError> {
        let seen = unverified(token).ok_or(AuthError::Malformed)?;
        let now = crate::clock::unix_now();
        let exp = seen.exp.unwrap_or(now + KEEP);
        if exp <= now {
            return Err(AuthError::Expired);
        }
        let own = seen.scope.split_whitespace().find_map(|s| s.strip_prefix("wid:")).unwrap_or(target).to_owned();
        if !self.may_read(http, token, &own, exp).await? {
            return Err(AuthError::BadSignature);
        }
        let mut claims = Claims { ws: own.as_str().into(), admin: false, iat: 0, exp, also: Vec::new(), key: None };
        if target != own && self.may_read(http, token, target, exp).await? {
            claims.also.push(target.to_owned());
        }
        Ok(claims)
    }

    /// Whether the server lets `token` read `workspace` (remembered).
    async fn may_read(&self, http: &UpstreamClient, token: &str, workspace: &str, exp: u64) -> Result<bool, AuthError> {
        let key = (token.to_owned(), workspace.to_owned());
        let now = crate::clock::unix_now();
        if let Some(&(answer, until)) = self.lock().get(&key) {
            if until > now {
                return Ok(answer);
            }
        }
        let answer = self.ask(http, token, workspace).await?;
        let mut answers = self.lock();
        if answers.len() >= MAX_KEPT {
            answers.clear();
        }
        answers.insert(key, (answer, exp.min(now + KEEP)));
        Ok(answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (bool, u64)>> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, http: &UpstreamClient, token: &str, workspace: &str) -> Result<bool, AuthError> {
        // A workspace name goes into the path: only the characters Hypha's names use.
        if workspace.is_empty() || !workspace.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_|.@".contains(&b)) {
            return Ok(false);
        }
        let url =
            reqwest::Url::parse(&format!("{}/{workspace}/info", self.server)).map_err(|_| AuthError::Malformed)?;
        let mut headers = HeaderMap::new();
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| AuthError::Malformed)?;
        headers.insert(header::AUTHORIZATION, bearer);
        let request = Request {
            method: Method::GET,
            url: url.into(),
            headers: headers.into(),
            body: RequestBody::empty(),
            timeout: Some(TIMEOUT),
            public_only: false,
            streamed: false,
            answer_headers: crate::transport::AnswerHeaders::All,
        };
        match http.send(request).await {
            Ok(response) => Ok(response.status == StatusCode::OK),
            Err(e) => {
                tracing::warn!("cannot ask the Hypha server about a token: {e}");
                Err(AuthError::Unverifiable)
            }
        }
    }
}

/// A JWT's payload, read without checking its signature.
fn unverified(token: &str) -> Option<Unverified> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    parse_json(&bytes).ok()
}

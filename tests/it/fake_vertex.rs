//! A fake Vertex AI on 127.0.0.1:0, with the Google token endpoint a service account's
//! `token_uri` points at.
//!
//! - `POST /token`: the JWT-bearer grant. The assertion must be an RS256 JWT whose signature
//!   verifies with the test service account's public key
//!   (`tests/fixtures/google/service-account-public.pem`, checked by jsonwebtoken, not by the
//!   code under test), `iss` the account's email, `aud` this `token_uri`, `scope` cloud-platform
//!   and at most an hour between `iat` and `exp`; refusals are OAuth's `{"error",
//!   "error_description"}` (400). A grant is answered `{"access_token": "ya29.fake-N",
//!   "expires_in", "token_type": "Bearer"}`; every grant's header and claims are kept.
//! - `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`:
//!   a token it issued and that has not expired (else Google's 401 `UNAUTHENTICATED`), the
//!   expected project (else 403 `PERMISSION_DENIED`). Google's models (`generateContent`,
//!   `streamGenerateContent?alt=sse`) are answered by a [`FakeGemini`]; Anthropic's
//!   (`rawPredict`, `streamRawPredict`) by a [`FakeAnthropic`], once the body is checked as
//!   Vertex checks it: `anthropic_version` must be `vertex-2023-10-16` and `model` must not be
//!   there (the URL names it). Answers stream through as the inner fakes write them.

use crate::fake_anthropic::FakeAnthropic;
use crate::fake_gemini::FakeGemini;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The test service account.
pub const CLIENT_EMAIL: &str = "ferrolite-test@ferrolite-test.iam.gserviceaccount.com";
pub const PROJECT: &str = "ferrolite-test";
pub const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const INNER_KEY: &str = "fake-vertex-inner-key";

/// The test service account's private key (PKCS#8 PEM).
pub fn private_key() -> String {
    std::fs::read_to_string(crate::support::repo_root().join("tests/fixtures/google/service-account-key.pem"))
        .expect("the test key")
}

/// An unrelated key: assertions it signs must be refused.
pub fn other_private_key() -> String {
    std::fs::read_to_string(crate::support::repo_root().join("tests/fixtures/google/other-key.pem"))
        .expect("the other key")
}

/// The account's public key as PKCS#1 DER, what the token endpoint verifies with.
fn public_key_der() -> Vec<u8> {
    let pem =
        std::fs::read_to_string(crate::support::repo_root().join("tests/fixtures/google/service-account-public.pem"))
            .expect("the test public key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("PEM base64")
}

/// A grant the token endpoint accepted: the assertion's header and claims.
#[derive(Debug, Clone, Deserialize)]
pub struct Grant {
    pub kid: Option<String>,
    pub claims: Claims,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
}

/// One model request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

struct Shared {
    token_uri: String,
    expires_in: u64,
    /// Issued tokens and when each expires (Unix seconds).
    issued: Mutex<Vec<(String, u64)>>,
    /// Every token request, granted or not.
    token_requests: Mutex<usize>,
    grants: Mutex<Vec<Grant>>,
    log: Mutex<Vec<Recorded>>,
    gemini_base: String,
    anthropic_base: String,
    http: reqwest::Client,
}

pub struct FakeVertex {
    /// `http://127.0.0.1:PORT`: the deployments' `api_base`.
    pub base_url: String,
    /// Where the credential's `token_uri` points.
    pub token_uri: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    _gemini: FakeGemini,
    _anthropic: FakeAnthropic,
}

impl FakeVertex {
    /// A fake whose tokens last an hour, as Google's do.
    pub async fn start() -> FakeVertex {
        FakeVertex::with_token_lifetime(3599).await
    }

    /// A fake whose tokens last `expires_in` seconds.
    pub async fn with_token_lifetime(expires_in: u64) -> FakeVertex {
        let gemini = FakeGemini::start(INNER_KEY).await;
        let anthropic = FakeAnthropic::start(INNER_KEY).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Vertex binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            token_uri: format!("{base_url}/token"),
            expires_in,
            issued: Mutex::default(),
            token_requests: Mutex::default(),
            grants: Mutex::default(),
            log: Mutex::default(),
            gemini_base: gemini.base_url.clone(),
            anthropic_base: anthropic.base_url.clone(),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{rest}", post(predict))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeVertex {
            token_uri: shared.token_uri.clone(),
            base_url,
            shared,
            server,
            _gemini: gemini,
            _anthropic: anthropic,
        }
    }

    /// A service-account credential (the JSON Google issues) signed by `private_key`.
    pub fn credential(&self, private_key: &str) -> String {
        json!({
            "type": "service_account", "project_id": PROJECT, "private_key_id": KEY_ID, "private_key": private_key,
            "client_email": CLIENT_EMAIL, "client_id": "100000000000000000001", "token_uri": self.token_uri,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "universe_domain": "googleapis.com"
        })
        .to_string()
    }

    pub fn token_requests(&self) -> usize {
        *self.shared.token_requests.lock().unwrap()
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.shared.grants.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FakeVertex {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

fn google_error(status: StatusCode, name: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": message.into(), "status": name}})))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The token endpoint

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    *shared.token_requests.lock().unwrap() += 1;
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/x-www-form-urlencoded") {
        return oauth_error("invalid_request", "Content-Type must be application/x-www-form-urlencoded");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&shared.token_uri]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&public_key_der());
    let decoded = match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
        Ok(decoded) => decoded,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        }
        Err(e) => return oauth_error("invalid_grant", &format!("Invalid JWT: {e}")),
    };
    let claims = decoded.claims;
    if claims.scope != SCOPE {
        return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
    }
    if claims.exp.saturating_sub(claims.iat) > 3600 {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    shared.grants.lock().unwrap().push(Grant { kid: decoded.header.kid, claims });
    let mut issued = shared.issued.lock().unwrap();
    let access_token = format!("ya29.fake-{}", issued.len() + 1);
    issued.push((access_token.clone(), now() + shared.expires_in));
    axum::Json(json!({"access_token": access_token, "expires_in": shared.expires_in, "token_type": "Bearer"}))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The models

async fn predict(
    State(shared): State<Arc<Shared>>,
    Path((project, location, publisher, rest)): Path<(String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    shared.log.lock().unwrap().push(Recorded {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: authorization.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let token = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
    let valid = shared.issued.lock().unwrap().iter().any(|(t, expires)| t == token && now() < *expires);
    if !valid {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    if project != PROJECT {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}' (or it may not exist)."),
        );
    }
    let Some((model, method)) = rest.split_once(':') else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("The requested URL {} was not found.", uri.path()),
        );
    };
    match (publisher.as_str(), method) {
        ("google", "generateContent" | "streamGenerateContent") => {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            let url = format!("{}/v1beta/models/{model}:{method}{query}", shared.gemini_base);
            relay(shared.http.post(url).header("x-goog-api-key", INNER_KEY).body(body)).await
        }
        ("anthropic", "rawPredict" | "streamRawPredict") => {
            let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&body) else {
                return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid JSON payload received.");
            };
            let invalid = |message: &str| {
                let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
                (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
            };
            if body.contains_key("model") {
                return invalid("model: Extra inputs are not permitted");
            }
            if body.remove("anthropic_version") != Some(json!("vertex-2023-10-16")) {
                return invalid("anthropic_version: Input should be 'vertex-2023-10-16'");
            }
            body.insert("model".into(), json!(model));
            let url = format!("{}/v1/messages", shared.anthropic_base);
            let request = shared.http.post(url).header("x-api-key", INNER_KEY).header("anthropic-version", "2023-06-01");
            relay(request.header("content-type", "application/json").body(Value::Object(body).to_string())).await
        }
        _ => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Publisher Model `projects/{project}/locations/{location}/publishers/{publisher}/models/{model}` not found."),
        ),
    }
}

/// The inner fake's answer, status, type and body, streamed through as it comes.
async fn relay(request: reqwest::RequestBuilder) -> Response {
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => return google_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type =
        answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_owned();
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

//! Google OAuth access tokens for a service account, by the JWT-bearer grant (RFC 7523): an
//! RS256-signed assertion (`iss` the account's email, `scope` cloud-platform, `aud` its
//! `token_uri`) is exchanged at the `token_uri` for an access token, which is cached until
//! shortly before it expires. Vertex AI deployments send it as `Authorization: Bearer`.
//!
//! The credential is the JSON file Google issues for a service account (`type`,
//! `client_email`, `private_key`, `private_key_id`, `token_uri`, `project_id`); its key is
//! parsed when the app starts, so a bad one fails `start`, not the first request. Signing uses
//! ring, already in the tree under rustls. The token request goes through the upstream client,
//! so the address guard applies to the `token_uri` as to any upstream.

use super::deployment::Secret;
use crate::exchange::{parse_json, ApiError};
use crate::transport::{Request, UpstreamClient};
use arc_swap::ArcSwapOption;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// What the token may be used for: Google Cloud APIs, Vertex AI among them.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where Google's tokens are granted, for a credential that names no `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// RFC 7523's grant type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long an assertion is valid (Google takes at most an hour).
const ASSERTION_LIFETIME: u64 = 3600;

/// How long before its expiry a token is replaced, at most: a request that starts with it must
/// still find it valid when it arrives.
const REFRESH_MARGIN: u64 = 300;

/// Largest token answer read.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Why a credential cannot be used. The messages never quote the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("is not a service-account JSON credential: {0}")]
    NotJson(String),
    #[error("is a {0:?} credential; only service_account credentials are built")]
    Kind(String),
    #[error("has no {0}")]
    Missing(&'static str),
    #[error("has a private_key that is not an RSA private key in PEM (PKCS#8 or PKCS#1)")]
    Key,
    #[error("has a token_uri that is not an http(s) URL")]
    TokenUri,
}

/// The members of a service-account JSON file that are read.
#[derive(Deserialize)]
struct CredentialFile {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
}

/// A service account, ready to sign assertions.
pub struct ServiceAccount {
    pub client_email: String,
    /// The project the credential belongs to (Vertex AI's project when none is named).
    pub project_id: Option<String>,
    pub token_uri: reqwest::Url,
    key_id: Option<String>,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'static str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl ServiceAccount {
    /// Reads a service-account JSON credential and parses its key.
    pub fn parse(text: &str) -> Result<ServiceAccount, CredentialError> {
        let file: CredentialFile = serde_json::from_str(text).map_err(|e| {
            // Where the JSON breaks, not what it says: the text holds a private key.
            CredentialError::NotJson(format!("line {} column {}", e.line(), e.column()))
        })?;
        match file.kind.as_deref() {
            Some("service_account") => {}
            Some(other) => return Err(CredentialError::Kind(other.to_owned())),
            None => return Err(CredentialError::Missing("type")),
        }
        let client_email =
            file.client_email.filter(|e| !e.is_empty()).ok_or(CredentialError::Missing("client_email"))?;
        let pem = file.private_key.ok_or(CredentialError::Missing("private_key"))?;
        let token_uri = file.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
        let token_uri = reqwest::Url::parse(token_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or(CredentialError::TokenUri)?;
        Ok(ServiceAccount {
            client_email,
            project_id: file.project_id.filter(|p| !p.is_empty()),
            token_uri,
            key_id: file.private_key_id.filter(|k| !k.is_empty()),
            key: rsa_key(&pem)?,
        })
    }

    /// The signed JWT assertion of the grant, issued at `now` (Unix seconds).
    pub fn assertion(&self, now: u64) -> Result<String, ApiError> {
        let header = Header { alg: "RS256", typ: "JWT", kid: self.key_id.as_deref() };
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: self.token_uri.as_str(),
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        let json = |e: serde_json::Error| ApiError::internal(format!("google auth: {e}"));
        let header = serde_json::to_vec(&header).map_err(json)?;
        let claims = serde_json::to_vec(&claims).map_err(json)?;
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| ApiError::internal("google auth: signing the token assertion failed"))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The RSA key of a PEM block: PKCS#8 (`PRIVATE KEY`, what Google issues) or PKCS#1.
fn rsa_key(pem: &str) -> Result<RsaKeyPair, CredentialError> {
    for (label, pkcs8) in [("PRIVATE KEY", true), ("RSA PRIVATE KEY", false)] {
        let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
        let Some((_, rest)) = pem.split_once(&begin) else { continue };
        let body = rest.split_once(&end).map(|(b, _)| b).ok_or(CredentialError::Key)?;
        let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD.decode(base64).map_err(|_| CredentialError::Key)?;
        let key = if pkcs8 { RsaKeyPair::from_pkcs8(&der) } else { RsaKeyPair::from_der(&der) };
        return key.map_err(|_| CredentialError::Key);
    }
    Err(CredentialError::Key)
}

/// A token and when to replace it (Unix seconds).
struct Token {
    value: Secret,
    refresh_at: u64,
}

/// The grant's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The grant's refusal: `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(Deserialize)]
struct TokenRefusal {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// A service account's access tokens: one at a time, replaced shortly before it expires, and
/// fetched by one request at a time (the others wait for it rather than each asking).
pub struct TokenSource {
    account: ServiceAccount,
    cached: ArcSwapOption<Token>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("account", &self.account).finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(account: ServiceAccount) -> TokenSource {
        TokenSource { account, cached: ArcSwapOption::empty(), refresh: tokio::sync::Mutex::new(()) }
    }

    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// A valid access token: the cached one, or a fresh one from the `token_uri`. `who` names
    /// the deployment in errors; `public_only` is its address guard.
    pub async fn token(&self, client: &UpstreamClient, who: &str, public_only: bool) -> Result<Secret, ApiError> {
        if let Some(token) = self.fresh(crate::clock::unix_now()) {
            return Ok(token);
        }
        let _one_at_a_time = self.refresh.lock().await;
        let now = crate::clock::unix_now();
        // Another request may have fetched one while this one waited.
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        let token = self.fetch(client, who, public_only, now).await?;
        let value = token.value.clone();
        self.cached.store(Some(Arc::new(token)));
        Ok(value)
    }

    fn fresh(&self, now: u64) -> Option<Secret> {
        self.cached.load().as_ref().filter(|t| now < t.refresh_at).map(|t| t.value.clone())
    }

    async fn fetch(&self, client: &UpstreamClient, who: &str, public_only: bool, now: u64) -> Result<Token, ApiError> {
        let assertion = self.account.assertion(now)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER)
            .append_pair("assertion", &assertion)
            .finish();
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        let request = Request {
            method: Method::POST,
            url: self.account.token_uri.clone().into(),
            headers: headers.into(),
            body: body.into_bytes().into(),
            timeout: Some(Duration::from_secs(30)),
            public_only,
            streamed: false,
            answer_headers: crate::transport::AnswerHeaders::All,
        };
        let unreachable = |cause: String| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("deployment {who}: cannot get a Google access token: {cause}"),
            )
            .with_code("google_token_unavailable")
        };
        let response = client.send(request).await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status;
        let answer = response.bytes(ANSWER_LIMIT).await.map_err(|e| unreachable(e.to_string()))?;
        if !status.is_success() {
            let refusal: Option<TokenRefusal> = parse_json(&answer).ok();
            let reason = match refusal {
                Some(TokenRefusal { error: Some(error), error_description }) => {
                    format!("{error}{}", error_description.map(|d| format!(": {d}")).unwrap_or_default())
                }
                _ => format!("the token endpoint answered {status}"),
            };
            // The credential is what is wrong, as with a rejected API key.
            let status = if status.is_client_error() { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_GATEWAY };
            return Err(ApiError::new(
                status,
                crate::providers::translate::error_kind(status),
                format!("deployment {who}: Google refused the service account's token request: {reason}"),
            )
            .with_code("google_token_refused"));
        }
        let answer: TokenAnswer =
            parse_json(&answer).map_err(|e| unreachable(format!("the token endpoint's answer is not a token: {e}")))?;
        let lifetime = answer.expires_in.unwrap_or(ASSERTION_LIFETIME);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(Token { value: Secret::new(answer.access_token), refresh_at: now + lifetime - margin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_that_cannot_sign_are_refused_without_quoting_the_key() {
        let refused = |text: &str| ServiceAccount::parse(text).err();
        assert!(matches!(refused("{not json"), Some(CredentialError::NotJson(_))));
        assert_eq!(refused(r#"{"type": "authorized_user"}"#), Some(CredentialError::Kind("authorized_user".into())));
        assert_eq!(refused(r#"{"type": "service_account"}"#), Some(CredentialError::Missing("client_email")));
        let secret = "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1NQVRFUklBTA==\n-----END PRIVATE KEY-----\n";
        let text =
            serde_json::json!({"type": "service_account", "client_email": "a@b", "private_key": secret}).to_string();
        let e = refused(&text).unwrap();
        assert_eq!(e, CredentialError::Key);
        assert!(!e.to_string().contains("U0VDUkVU"), "{e}");
        let text =
            serde_json::json!({"type": "service_account", "client_email": "a@b", "private_key": "x", "token_uri": "file:///etc/passwd"})
                .to_string();
        assert_eq!(refused(&text), Some(CredentialError::TokenUri));
    }
}

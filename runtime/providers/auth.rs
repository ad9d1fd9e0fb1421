//! The one place a deployment's credentials go onto an upstream request, by its provider's auth
//! scheme (`providers.yaml`: bearer, a key header, Anthropic's key and version, SigV4, a Google
//! service account's token), and the one place they are scrubbed from anything that comes back
//! (an upstream may echo a key).

use super::deployment::{AwsCredentials, Deployment, Secret};
use super::translate::UpstreamRequest;
use crate::catalogue::providers::AuthScheme;
use crate::exchange::ApiError;
use crate::transport::{Headers, UpstreamClient};
use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;

/// The header a client names its Anthropic API version in.
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The headers that carry `d`'s credentials (none for SigV4, which signs the whole request in
/// [`authorize`]), for a request to add its own to. `client` is the caller's own request when it
/// is passed through: Anthropic's version is then the one the client names. Built once per
/// deployment otherwise, and shared by its requests.
pub fn credential_headers(d: &Deployment, client: Option<&HeaderMap>) -> Result<Headers, ApiError> {
    let scheme = d.provider.spec().auth;
    let chosen_by_client = matches!(scheme, AuthScheme::Anthropic { .. })
        && client.and_then(|c| c.get(ANTHROPIC_VERSION)).is_some_and(|v| !v.is_empty());
    let headers = if chosen_by_client {
        build_headers(d, scheme, client).map(Headers::from)
    } else {
        let shared = d.credential_headers.get_or_init(|| build_headers(d, scheme, None).map(Arc::new));
        shared.as_ref().map(|map| Headers::shared(Arc::clone(map)))
    };
    headers.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("deployment {} has a credential that is not a valid header value", d.id),
        )
    })
}

fn build_headers(d: &Deployment, scheme: AuthScheme, client: Option<&HeaderMap>) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(2 + d.extra_headers.len());
    for (name, value) in &d.extra_headers {
        headers.append(HeaderName::try_from(name.as_str()).ok()?, HeaderValue::from_str(value.expose()).ok()?);
    }
    let key = || d.api_key.as_ref().map(|k| HeaderValue::from_str(k.expose())).transpose();
    match scheme {
        AuthScheme::Bearer => {
            if let Some(k) = &d.api_key {
                let value = HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
                headers.insert(axum::http::header::AUTHORIZATION, value);
            }
        }
        AuthScheme::Header(name) => {
            if let Some(value) = key().ok()? {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        AuthScheme::Anthropic { version } => {
            if let Some(value) = key().ok()? {
                headers.insert(X_API_KEY, value);
            }
            let version = match client.and_then(|c| c.get(ANTHROPIC_VERSION)) {
                Some(theirs) => theirs.clone(),
                None => HeaderValue::from_static(version),
            };
            headers.insert(ANTHROPIC_VERSION, version);
        }
        AuthScheme::SigV4 { .. } | AuthScheme::GoogleOAuth | AuthScheme::None => {}
    }
    Some(headers)
}

/// `request` with `d`'s credentials on it, as [`authorize`] puts them, or a Google access token
/// (the cached one, or one fetched through `client` now).
pub async fn authorize_fetching(
    mut request: UpstreamRequest,
    d: &Deployment,
    client: &UpstreamClient,
) -> Result<UpstreamRequest, ApiError> {
    if d.provider.spec().auth != AuthScheme::GoogleOAuth {
        return authorize(request, d);
    }
    let vertex = d.vertex.as_ref().ok_or_else(|| {
        ApiError::bad_request(format!("{} deployment {} has no Google credentials", d.provider, d.id))
    })?;
    let token = vertex.tokens.token(client, &d.id, d.public_only).await?;
    extend_extra(&mut request, d);
    request.headers.push(("authorization".into(), format!("Bearer {}", token.expose())));
    Ok(request)
}

/// `d`'s extra headers on a request whose scheme builds no header map (SigV4, Google).
fn extend_extra(request: &mut UpstreamRequest, d: &Deployment) {
    request.headers.extend(d.extra_headers.iter().map(|(n, v)| (n.clone(), v.expose().to_owned())));
}

/// `request` with `d`'s credentials on it: its scheme's headers, or a SigV4 signature (made
/// now). A Google token has to be fetched: [`authorize_fetching`] does that.
pub fn authorize(mut request: UpstreamRequest, d: &Deployment) -> Result<UpstreamRequest, ApiError> {
    match d.provider.spec().auth {
        AuthScheme::SigV4 { service } => {
            let aws = d.aws.as_ref().ok_or_else(|| {
                ApiError::bad_request(format!("{} deployment {} has no AWS credentials", d.provider, d.id))
            })?;
            // Signed with the rest.
            extend_extra(&mut request, d);
            sign_sigv4(request, aws, service, SystemTime::now())
        }
        AuthScheme::GoogleOAuth => {
            Err(ApiError::internal(format!("deployment {}: a Google token is fetched by authorize_fetching", d.id)))
        }
        _ => {
            for (name, value) in credential_headers(d, None)?.iter() {
                request.headers.push((name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()));
            }
            Ok(request)
        }
    }
}

/// Signs `request` with SigV4 for `service` in the credentials' region, at `time`: adds
/// `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (with a session token) and
/// `authorization`. The signed headers are `host` and the request's own headers.
pub fn sign_sigv4(
    mut request: UpstreamRequest,
    aws: &AwsCredentials,
    service: &str,
    time: SystemTime,
) -> Result<UpstreamRequest, ApiError> {
    let signing_error =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("{service}: cannot sign the request: {e}"));
    let identity = aws_credential_types::Credentials::new(
        aws.access_key_id.expose(),
        aws.secret_access_key.expose(),
        aws.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "ferrolite",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&aws.region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| signing_error(&e))?
        .into();
    const SIGNING_HEADERS: [&str; 4] = ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"];
    request.headers.retain(|(name, _)| !SIGNING_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)));
    let signable = SignableRequest::new(
        request.method.as_str(),
        request.url.as_str(),
        request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(&request.body),
    )
    .map_err(|e| signing_error(&e))?;
    let (instructions, _signature) =
        aws_sigv4::http_request::sign(signable, &params).map_err(|e| signing_error(&e))?.into_parts();
    let (headers, _query) = instructions.into_parts();
    request.headers.extend(headers.iter().map(|h| (h.name().to_owned(), h.value().to_owned())));
    Ok(request)
}

/// A deployment's secrets, kept to mask them wherever an answer or error quotes them; a stream
/// holds its own copy, as its errors may come after the request has moved on.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    secrets: Vec<Secret>,
}

impl Scrubber {
    pub fn of(d: &Deployment) -> Scrubber {
        Scrubber { secrets: secrets(d).cloned().collect() }
    }

    /// `e` with every secret in its message masked to its last four characters.
    pub fn scrub(&self, e: ApiError) -> ApiError {
        scrub_with(e, self.secrets.iter())
    }

    /// `text` with every secret in it masked (an upstream answer passed on as it came).
    pub fn scrub_text(&self, text: &[u8]) -> Vec<u8> {
        let mut text = String::from_utf8_lossy(text).into_owned();
        for secret in &self.secrets {
            mask(&mut text, secret);
        }
        text.into_bytes()
    }
}

/// `e` with every one of `d`'s secrets masked wherever its message quotes one.
pub fn scrub(e: ApiError, d: &Deployment) -> ApiError {
    scrub_with(e, secrets(d))
}

fn secrets(d: &Deployment) -> impl Iterator<Item = &Secret> {
    let aws = d.aws.iter().flat_map(|a| [Some(&a.secret_access_key), a.session_token.as_ref(), Some(&a.access_key_id)]);
    d.api_key.iter().chain(aws.flatten()).chain(d.extra_headers.iter().map(|(_, v)| v))
}

fn scrub_with<'a>(mut e: ApiError, secrets: impl Iterator<Item = &'a Secret>) -> ApiError {
    for secret in secrets {
        mask(&mut e.message, secret);
    }
    e
}

/// Masks every occurrence of `secret` in `text` to its last four characters.
fn mask(text: &mut String, secret: &Secret) {
    let value = secret.expose();
    // A secret under four characters would mask ordinary words.
    if value.len() >= 4 && text.contains(value) {
        *text = text.replace(value, &secret.redacted());
    }
}

//! Tokens: signed JWTs (HS256) naming a workspace, checked on every request.
//!
//! The signing secret is created on first run in the data dir (mode 0600) and never leaves
//! it. A token carries its workspace (`ws`), whether it is an admin token, and an expiry.
//! With a Hypha server's JWT secret, that server's tokens pass too (`hypha.rs`).

pub mod hypha;
pub mod keys;

use crate::clock::coarse_secs;
use axum::http::HeaderMap;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a token says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The workspace the token belongs to. Shared: a verified token's claims are handed to
    /// every request that presents it.
    pub ws: std::sync::Arc<str>,
    /// Admin tokens act on every workspace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    pub iat: u64,
    pub exp: u64,
    /// Other workspaces the token may act in (a Hypha token's scope); never in ferrolite's own.
    #[serde(skip)]
    pub also: Vec<String>,
    /// The API key presented, when it was one rather than a token.
    #[serde(skip)]
    pub key: Option<keys::KeyRef>,
}

impl Claims {
    /// Whether this token may act inside `workspace`.
    pub fn may_enter(&self, workspace: &str) -> bool {
        self.admin || *self.ws == *workspace || self.also.iter().any(|w| w == workspace)
    }
}

/// Why a request's credentials were refused (all map to 401).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials: send 'Authorization: Bearer <token>' or 'x-api-key: <token>'")]
    Missing,
    #[error("malformed token: not a ferrolite token")]
    Malformed,
    #[error("invalid token: bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("the Hypha server that issued this token could not be asked about it; try again")]
    Unverifiable,
    #[error(transparent)]
    Key(#[from] keys::ApiKeyError),
}

/// Setting up the token keys failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot use data dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the server secret in {0} is corrupt (expected 64 hex characters)")]
    Corrupt(PathBuf),
}

/// Issues and verifies tokens with the server secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: VerifiedTokens,
    /// A Hypha server's tokens, accepted too when its JWT secret is given.
    hypha: Option<hypha::HyphaTokens>,
    /// The API keys of every workspace.
    keys: std::sync::Arc<keys::KeyRing>,
}

/// Tokens whose signature was checked recently, so that a client sending the same token on
/// every request pays for the HMAC once (it was ~9% of a proxied request's instructions).
/// A fixed set of slots, each chosen by the token's last bytes (its signature): bounded
/// memory, no eviction bookkeeping; a collision only costs a fresh check. Each thread keeps
/// its own slots: shared ones put every lane's requests with one token through one lock, whose
/// cache line the lanes then took turns holding.
struct VerifiedTokens {
    slots: thread_local::ThreadLocal<RefCell<Box<[Slot]>>>,
}

/// One remembered token and its claims.
type Slot = Option<(Box<str>, Claims)>;

impl VerifiedTokens {
    const SLOTS: usize = 256;

    fn new() -> Self {
        VerifiedTokens { slots: thread_local::ThreadLocal::new() }
    }

    /// This thread's slots and the index of `token`'s.
    fn slots(&self, token: &str) -> (&RefCell<Box<[Slot]>>, usize) {
        let tail =
            token.as_bytes().iter().rev().take(8).fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(*b as usize));
        let slots = self.slots.get_or(|| RefCell::new((0..Self::SLOTS).map(|_| None).collect()));
        (slots, tail % Self::SLOTS)
    }

    /// The claims of `token` if it was verified before and has not expired since.
    fn get(&self, token: &str, now: u64) -> Option<Claims> {
        let (slots, at) = self.slots(token);
        let slots = slots.borrow();
        let (known, claims) = slots[at].as_ref()?;
        (constant_time_eq(known.as_bytes(), token.as_bytes()) && claims.exp >= now).then(|| claims.clone())
    }

    fn put(&self, token: &str, claims: &Claims) {
        let (slots, at) = self.slots(token);
        slots.borrow_mut()[at] = Some((token.into(), claims.clone()));
    }
}

/// Equality whose time does not depend on where two equal-length inputs differ, so a lookup
/// reveals nothing about a cached token to someone timing guesses.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const SECRET_FILE: &str = "server-secret";

impl Tokens {
    /// Loads the server secret from `data_dir`, creating it (mode 0600) on first run.
    pub fn load_or_create(data_dir: &Path) -> Result<Tokens, KeyError> {
        Ok(Tokens::from_secret(&load_or_create_secret(data_dir)?))
    }

    /// Tokens signed with `secret` (32 bytes; several instances share one).
    pub fn from_secret(secret: &[u8]) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: VerifiedTokens::new(),
            hypha: None,
            keys: Default::default(),
        }
    }

    /// Accepts the API keys of `ring` (the controller keeps it up to date).
    pub fn with_keys(mut self, ring: std::sync::Arc<keys::KeyRing>) -> Tokens {
        self.keys = ring;
        self
    }

    /// Also accepts the tokens of the Hypha server whose JWT secret is `secret`.
    pub fn with_hypha_secret(mut self, secret: &[u8]) -> Tokens {
        self.hypha = Some(hypha::HyphaTokens::new(secret));
        self
    }
}

/// The server secret in `data_dir`, created (mode 0600) on first run.
pub fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let path = data_dir.join(SECRET_FILE);
    let secret = match std::fs::read_to_string(&path) {
        Ok(text) => decode_hex(text.trim()).filter(|b| b.len() == 32).ok_or_else(|| KeyError::Corrupt(path.clone()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            write_private(&path, &encode_hex(&bytes)).map_err(io(&path))?;
            bytes
        }
        Err(e) => return Err(io(&path)(e)),
    };
    Ok(secret)
}

/// Replaces the server secret in `data_dir` (written aside, then renamed over the old file, so a
/// crash leaves one whole secret or the other). Used when an instance adopts its cluster's
/// secret, so that `ferrolite token --data-dir` signs what every instance accepts.
pub fn replace_secret(data_dir: &Path, secret: &[u8]) -> Result<(), KeyError> {
    let path = data_dir.join(SECRET_FILE);
    let aside = data_dir.join(format!("{SECRET_FILE}.new"));
    let io = |source| KeyError::Io { path: path.clone(), source };
    write_private(&aside, &encode_hex(secret)).map_err(io)?;
    std::fs::rename(&aside, &path).map_err(io)
}

impl Tokens {
    /// A token for `workspace`, valid for `expires_in`.
    pub fn issue(&self, workspace: &str, admin: bool, expires_in: Duration) -> String {
        let now = coarse_secs();
        let claims = Claims {
            ws: workspace.into(),
            admin,
            iat: now,
            exp: now.saturating_add(expires_in.as_secs()),
            also: Vec::new(),
            key: None,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The API keys these tokens accept beside JWTs.
    pub fn keys(&self) -> &std::sync::Arc<keys::KeyRing> {
        &self.keys
    }

    /// Checks a token's signature and expiry, or an API key's standing.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        if token.starts_with(keys::PREFIX) {
            // Never cached: a revoked key is refused from the next request on.
            let key = self.keys.verify(token)?;
            return Ok(Claims {
                ws: key.workspace.as_str().into(),
                admin: false,
                iat: key.created_at,
                exp: key.expires_at.unwrap_or(u64::MAX),
                also: Vec::new(),
                key: Some(key),
            });
        }
        if let Some(claims) = self.verified.get(token, coarse_secs()) {
            return Ok(claims);
        }
        let ours =
            decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    _ => AuthError::Malformed,
                }
            });
        let claims = match (ours, &self.hypha) {
            (Ok(claims), _) => claims,
            // Not one of ours: perhaps the Hypha server's (an expired one says so).
            (Err(e @ (AuthError::BadSignature | AuthError::Malformed)), Some(hypha)) => match hypha.verify(token) {
                Ok(claims) => claims,
                Err(AuthError::Expired) => return Err(AuthError::Expired),
                Err(_) => return Err(e),
            },
            (Err(e), _) => return Err(e),
        };
        self.verified.put(token, &claims);
        Ok(claims)
    }

    /// Checks the credentials a request carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, AuthError> {
        self.verify(presented_token(headers).ok_or(AuthError::Missing)?)
    }
}

/// The token a request presents: `Authorization: Bearer ...`, else `x-api-key` (Anthropic SDK).
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)).filter(|t| !t.is_empty())
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Hex of bytes (the server secret's file form, an API key's digest: on every keyed request).
pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Bytes of hex text.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::load_or_create(dir.path()).unwrap();
        let t = tokens.issue("alice", false, Duration::from_secs(60));
        let claims = tokens.verify(&t).unwrap();
        assert_eq!(&*claims.ws, "alice");
        assert!(claims.may_enter("alice") && !claims.may_enter("bob"));

        // Same data dir, same secret: tokens survive a restart.
        let again = Tokens::load_or_create(dir.path()).unwrap();
        assert_eq!(&*again.verify(&t).unwrap().ws, "alice");

        let other = Tokens::from_secret(&[7u8; 32]);
        assert_eq!(other.verify(&t), Err(AuthError::BadSignature));
        assert_eq!(tokens.verify("not.a.token"), Err(AuthError::Malformed));
        let expired = tokens.issue("alice", false, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(tokens.verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_tampered_one_is_checked_afresh() {
        let tokens = Tokens::from_secret(&[3u8; 32]);
        let short = tokens.issue("alice", false, Duration::from_secs(1));
        assert_eq!(&*tokens.verify(&short).unwrap().ws, "alice");
        assert_eq!(&*tokens.verify(&short).unwrap().ws, "alice", "from the cache");
        // Same length, same last bytes (same slot), one flipped byte in the payload.
        let mut forged = short.clone().into_bytes();
        forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(tokens.verify(&forged).is_err());
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(tokens.verify(&short), Err(AuthError::Expired), "the cache honours expiry");
    }

    #[test]
    fn each_thread_remembers_tokens_of_its_own() {
        let tokens = std::sync::Arc::new(Tokens::from_secret(&[5u8; 32]));
        let token = tokens.issue("alice", false, Duration::from_secs(60));
        assert_eq!(&*tokens.verify(&token).unwrap().ws, "alice");
        let mut forged = token.clone().into_bytes();
        forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let elsewhere = {
            let tokens = tokens.clone();
            std::thread::spawn(move || {
                (tokens.verify(&token).map(|c| c.ws.to_string()), tokens.verify(&forged).is_err())
            })
        };
        assert_eq!(elsewhere.join().unwrap(), (Ok("alice".to_owned()), true));
    }

    #[cfg(unix)]
    #[test]
    fn server_secret_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Tokens::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

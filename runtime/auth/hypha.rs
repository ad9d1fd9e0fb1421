//! Hypha's own tokens, accepted where ferrolite's are (`--hypha-jwt-secret`, the Hypha
//! server's `HYPHA_JWT_SECRET`): HS256 JWTs whose `scope` lists the workspaces the holder may
//! use (`ws:NAME#r|rw|a`, `*` for all), the current one (`wid:NAME`), and whose subject owns
//! `ws-user-{sub}` besides. A token of another workspace passes authentication and is then
//! refused (403) by a protected service, as in Hypha.

use super::{AuthError, Claims};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// What ferrolite reads of a Hypha token (Hypha writes more: roles, email, audience, issuer).
#[derive(Debug, Deserialize)]
struct HyphaClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    scope: String,
}

/// Checks Hypha tokens signed with the Hypha server's JWT secret.
pub struct HyphaTokens {
    decoding: DecodingKey,
    validation: Validation,
}

impl HyphaTokens {
    pub fn new(secret: &[u8]) -> HyphaTokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Hypha's audience and issuer are its deployment's settings (AUTH0_AUDIENCE,
        // AUTH0_ISSUER); the secret is what proves the token is that server's.
        validation.validate_aud = false;
        HyphaTokens { decoding: DecodingKey::from_secret(secret), validation }
    }

    /// The token's claims in ferrolite's terms: its current workspace as `ws`, every other
    /// workspace it names (and its user's own) in `also`, and `admin` for a root scope (`*`).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = decode::<HyphaClaims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed,
            }
        })?;
        Ok(claims_of(claims))
    }
}

fn claims_of(token: HyphaClaims) -> Claims {
    let own = format!("ws-user-{}", token.sub);
    let mut current = None;
    let mut workspaces = Vec::new();
    let mut admin = false;
    for item in token.scope.split_whitespace() {
        if let Some(grant) = item.strip_prefix("ws:") {
            let name = grant.split('#').next().unwrap_or_default();
            if name == "*" {
                admin = true;
            } else if !name.is_empty() {
                workspaces.push(name.to_owned());
            }
        } else if let Some(name) = item.strip_prefix("wid:") {
            current = Some(name.to_owned());
        }
    }
    workspaces.push(own.clone());
    let ws = current.or_else(|| workspaces.first().cloned()).unwrap_or(own);
    workspaces.retain(|w| *w != ws);
    Claims { ws: ws.into(), admin, iat: token.iat.unwrap_or(0), exp: token.exp, also: workspaces, key: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a hypha server's jwt secret, 32+ bytes";

    fn hypha_token(scope: &str, exp: u64) -> String {
        let claims = json!({"iss": "https://amun.ai/", "sub": "u1", "aud": "https://amun-ai.eu.auth0.com/api/v2/",
            "iat": 1, "exp": exp, "scope": scope, "gty": "client-credentials", "https://amun.ai/roles": []});
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn a_hypha_token_enters_the_workspaces_its_scope_names() {
        let tokens = HyphaTokens::new(SECRET);
        let far = crate::clock::unix_now() + 3600;
        let claims = tokens.verify(&hypha_token("ws:team-a#rw ws:team-b#r cid:c1 wid:team-a", far)).unwrap();
        assert_eq!((&*claims.ws, claims.admin), ("team-a", false));
        assert!(claims.may_enter("team-a") && claims.may_enter("team-b") && claims.may_enter("ws-user-u1"));
        assert!(!claims.may_enter("team-c"));
        let root = tokens.verify(&hypha_token("ws:*#a wid:ws-user-root", far)).unwrap();
        assert!(root.admin && root.may_enter("anything"));
    }

    #[test]
    fn a_hypha_token_must_be_signed_by_its_server_and_current() {
        let tokens = HyphaTokens::new(SECRET);
        let token = hypha_token("ws:team-a#rw", crate::clock::unix_now() + 3600);
        assert_eq!(HyphaTokens::new(b"another secret").verify(&token), Err(AuthError::BadSignature));
        assert_eq!(tokens.verify(&hypha_token("ws:team-a#rw", 10)), Err(AuthError::Expired));
        assert_eq!(tokens.verify("not.a.token"), Err(AuthError::Malformed));
    }
}

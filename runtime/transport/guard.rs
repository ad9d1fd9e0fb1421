//! The address guard: which upstream addresses an untrusted app may reach.
//!
//! An app installed with a non-admin token may not send requests into the server's own network
//! (loopback, link-local, private and unspecified addresses). Its deployments' final base URLs
//! are checked when it starts, and its requests are checked again where the connection is made:
//! a host name is resolved once, every address it resolves to must be public, and the
//! connection goes to those addresses, so a name that resolves elsewhere later (DNS rebinding)
//! gains nothing. A refusal is decided before any connection is tried, so its error cannot
//! tell a caller whether a port behind the guard is open.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// What kind of non-public address `ip` is, if it is one.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                Some("private")
            } else if v4.is_unspecified() || v4.is_broadcast() || o[0] == 0 {
                Some("unspecified")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_kind(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private")
            } else {
                None
            }
        }
    }
}

/// Whether a host name is one that names this machine whatever DNS says.
fn is_local_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost")
}

/// Whether `url` may be called by an untrusted app; the reason when not. Host names are
/// resolved (blocking: called when an app is installed or started, never on a request); every
/// address a name resolves to must be public.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("{url:?} names no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) if is_local_name(host) => return Err(format!("{url} points at a loopback address")),
        // A name that does not resolve now is left to the connection's own check: an app must
        // not fail to start, nor a server to restore it, over a passing DNS fault.
        Err(_) => (host, port).to_socket_addrs().map(|addrs| addrs.map(|a| a.ip()).collect()).unwrap_or_default(),
    };
    for ip in addrs {
        if let Some(kind) = private_kind(ip) {
            return Err(format!("{url} points at a {kind} address ({ip})"));
        }
    }
    Ok(())
}

/// A connection the guard refused: the host is, or resolves to, a non-public address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} is not a public address; only apps installed by an admin may call it")]
pub struct Refused {
    pub host: String,
}

/// The addresses of `host:port` for a guarded connection: all of them public, or refused.
pub async fn resolve_public(host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardedLookup> {
    let refused = || GuardedLookup::Refused(Refused { host: host.to_owned() });
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match private_kind(ip) {
            Some(_) => Err(refused()),
            None => Ok(vec![SocketAddr::new(ip, port)]),
        };
    }
    if is_local_name(host) {
        return Err(refused());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await.map_err(GuardedLookup::Lookup)?.collect();
    if addrs.iter().any(|a| private_kind(a.ip()).is_some()) {
        return Err(refused());
    }
    Ok(addrs)
}

/// Why a guarded look-up gave no address.
#[derive(Debug, thiserror::Error)]
pub enum GuardedLookup {
    #[error(transparent)]
    Refused(Refused),
    #[error(transparent)]
    Lookup(std::io::Error),
}

/// hyper's resolver for guarded connections: names resolve only to public addresses. (hyper
/// connects to a literal address without asking a resolver; the caller checks those.)
#[derive(Clone, Default)]
pub struct PublicResolver;

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = GuardedLookup;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        // hyper sets the URL's port on what this returns.
        Box::pin(async move { resolve_public(name.as_str(), 0).await.map(Vec::into_iter) })
    }
}

/// The guard's refusal somewhere in an error's chain of causes.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        if let Some(GuardedLookup::Refused(refused)) = e.downcast_ref::<GuardedLookup>() {
            return Some(refused.clone());
        }
        // An `io::Error` wrapping another error names that error's source, not the error.
        next = match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused() {
        for url in [
            "http://127.0.0.1:8000/v1",
            "http://localhost/v1",
            "http://10.1.2.3/v1",
            "http://172.20.0.1/v1",
            "http://192.168.1.10/v1",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8000/v1",
            "http://[fd00::1]/v1",
            "http://0.0.0.0/v1",
            "http://100.64.0.1/v1",
            "https://bedrock-runtime.x@127.0.0.1:9/#.amazonaws.com",
        ] {
            assert!(check_url(url).is_err(), "{url} must be refused");
        }
        assert!(check_url("http://8.8.8.8/v1").is_ok());
        assert!(check_url("https://[2606:4700::1111]/v1").is_ok());
    }

    #[tokio::test]
    async fn guarded_lookups_refuse_names_that_resolve_inside() {
        // `localhost` is refused by name, and a literal private address as it is.
        for host in ["localhost", "127.0.0.1", "::1", "10.0.0.1"] {
            assert!(matches!(resolve_public(host, 80).await, Err(GuardedLookup::Refused(_))), "{host}");
        }
        assert_eq!(resolve_public("8.8.8.8", 443).await.unwrap(), vec!["8.8.8.8:443".parse().unwrap()]);
        let e = GuardedLookup::Refused(Refused { host: "h".into() });
        let wrapped = std::io::Error::other(e);
        assert_eq!(refusal_in(&wrapped).map(|r| r.host), Some("h".to_owned()));
    }
}

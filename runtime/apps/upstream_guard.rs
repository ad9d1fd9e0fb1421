//! The server-side request forgery guard: an app installed with a non-admin token may not
//! send requests to loopback, link-local or private addresses (the server's own network),
//! unless the server runs with `--allow-private-upstreams`.
//!
//! Checked at install on the manifest's literal `api_base` values, and again at start on the
//! resolved ones (a secret may hold the URL). Host names are resolved and every address they
//! resolve to must be public.

use crate::manifest::validate::{Finding, Severity};
use crate::manifest::Manifest;
use std::net::{IpAddr, ToSocketAddrs};

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

/// Whether `url` may be called by an untrusted app; the reason when not.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("{url:?} names no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") => {
            return Err(format!("{url} points at a loopback address"));
        }
        Err(_) => {
            (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?.map(|a| a.ip()).collect()
        }
    };
    for ip in addrs {
        if let Some(kind) = private_kind(ip) {
            return Err(format!("{url} points at a {kind} address ({ip})"));
        }
    }
    Ok(())
}

/// The install-time findings: literal `api_base` values that point inside the server's network.
pub fn check_manifest(manifest: &Manifest) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, entry) in manifest.config.model_list.iter().enumerate() {
        let Some(base) = &entry.litellm_params.api_base else { continue };
        if base.starts_with("os.environ/") || base.starts_with("HYPHA_SECRET:") {
            continue; // resolved, and checked, at start
        }
        if let Err(reason) = check_url(base) {
            findings.push(Finding {
                severity: Severity::Error,
                pointer: format!("/config/model_list/{i}/litellm_params/api_base"),
                message: format!("{reason}; only admin tokens may, or a server started with --allow-private-upstreams"),
            });
        }
    }
    findings
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
        ] {
            assert!(check_url(url).is_err(), "{url} must be refused");
        }
        assert!(check_url("http://8.8.8.8/v1").is_ok());
        assert!(check_url("https://[2606:4700::1111]/v1").is_ok());
    }
}

//! Where an upstream's redirect may lead. An upstream is trusted with its
//! data, not with where the gateway connects: a redirect could point it at
//! its own listeners (streaming admin pages, or itself, to subscribers), at
//! a cloud metadata service or at anything on the gateway's loopback. So:
//!
//! - a redirect to another origin (scheme, host, port) is refused unless
//!   its host is on [`RedirectPolicy::hosts`] (empty by default: none);
//! - the gateway's own listening addresses ([`RedirectPolicy::own`]) are
//!   always refused, whatever the list says;
//! - loopback, link-local, unspecified and cloud metadata addresses are
//!   refused unless the configured URL was already one of that kind.
//!
//! Hosts are judged as written in the URL (an IP literal, `localhost`, or a
//! known metadata name). A name on `hosts` is the operator's to trust: it
//! is not resolved here (the connector resolves it).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Where redirects may lead (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RedirectPolicy {
    /// Hosts (names or IP literals, compared without case) that a redirect
    /// to another origin may lead to. Empty (default): a redirect to
    /// another origin is refused.
    pub hosts: Arc<[String]>,
    /// The gateway's own listening addresses: never followed. An
    /// unspecified address (`0.0.0.0:8080`) covers every local address of
    /// its port that a URL can name (loopback, unspecified, `localhost`).
    pub own: Arc<[SocketAddr]>,
}

/// Why a redirect was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectRefusal {
    /// To another origin whose host is not on the list.
    CrossOrigin(String),
    /// To one of the gateway's own listeners.
    Own(SocketAddr),
    /// To a special address the configured URL was not.
    Special(&'static str, String),
}

impl fmt::Display for RedirectRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CrossOrigin(host) => write!(
                f,
                "redirect to another origin ({host}) refused: not on upstream.redirect_hosts"
            ),
            Self::Own(addr) => write!(f, "redirect to the gateway's own listener {addr} refused"),
            Self::Special(kind, host) => write!(
                f,
                "redirect to a {kind} address ({host}) refused: the configured URL is not one"
            ),
        }
    }
}

/// The kinds of address a redirect may not reach from another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Loopback,
    LinkLocal,
    Metadata,
}

impl Special {
    fn label(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Metadata => "cloud metadata",
        }
    }
}

/// Names of cloud metadata services (GCP; AWS and Azure use the address).
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// The special kind of `url`'s host, if any.
fn special(url: &Url) -> Option<Special> {
    match url.host()? {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Some(Special::Loopback)
            } else if METADATA_NAMES.contains(&name.as_str()) {
                Some(Special::Metadata)
            } else {
                None
            }
        }
        Host::Ipv4(ip) => special_ip(IpAddr::V4(ip)),
        Host::Ipv6(ip) => special_ip(IpAddr::V6(ip)),
    }
}

fn special_ip(ip: IpAddr) -> Option<Special> {
    // An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that address.
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200) {
                Some(Special::Metadata)
            } else if v4.is_loopback() || v4.is_unspecified() {
                Some(Special::Loopback)
            } else if v4.is_link_local() {
                Some(Special::LinkLocal)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            // AWS's IPv6 instance metadata endpoint.
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some(Special::Metadata)
            } else if v6.is_loopback() || v6.is_unspecified() {
                Some(Special::Loopback)
            } else if v6.is_unicast_link_local() {
                Some(Special::LinkLocal)
            } else {
                None
            }
        }
    }
}

/// `url`'s host as an address, when it names one (a literal, `localhost`).
fn addresses(url: &Url) -> Vec<IpAddr> {
    match url.host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        // An IPv4 address written as IPv6 is that address.
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip).to_canonical()],
        Some(Host::Domain(_)) if special(url) == Some(Special::Loopback) => vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
        _ => Vec::new(),
    }
}

impl RedirectPolicy {
    /// Whether `url` is one of the gateway's own listeners.
    pub(crate) fn own_listener(&self, url: &Url) -> Option<SocketAddr> {
        let port = url.port_or_known_default()?;
        let ips = addresses(url);
        self.own.iter().copied().find(|own| {
            own.port() == port
                && ips.iter().any(|ip| {
                    *ip == own.ip().to_canonical()
                        || (own.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
                })
        })
    }

    /// Whether a redirect from the configured `origin` (the first URL)
    /// may lead to `next`.
    ///
    /// # Errors
    ///
    /// Why not (see the module docs).
    pub fn check(&self, origin: &Url, next: &Url) -> Result<(), RedirectRefusal> {
        let host = next.host_str().unwrap_or_default().to_string();
        if let Some(own) = self.own_listener(next) {
            return Err(RedirectRefusal::Own(own));
        }
        if !crate::request::same_origin(origin, next) {
            let bare = host.trim_matches(['[', ']']);
            if !self
                .hosts
                .iter()
                .any(|allowed| allowed.trim_matches(['[', ']']).eq_ignore_ascii_case(bare))
            {
                return Err(RedirectRefusal::CrossOrigin(host));
            }
        }
        match special(next) {
            Some(kind) if special(origin) != Some(kind) => {
                Err(RedirectRefusal::Special(kind.label(), host))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("a URL")
    }

    fn policy(hosts: &[&str], own: &[&str]) -> RedirectPolicy {
        RedirectPolicy {
            hosts: hosts.iter().map(|h| (*h).to_string()).collect(),
            own: own.iter().map(|a| a.parse().expect("an address")).collect(),
        }
    }

    #[test]
    fn another_origin_is_refused_unless_listed() {
        let from = url("https://feed.example/v1/a");
        let none = policy(&[], &[]);
        assert!(none.check(&from, &url("https://feed.example/v2/a")).is_ok());
        assert_eq!(
            none.check(&from, &url("https://cdn.example/a")),
            Err(RedirectRefusal::CrossOrigin("cdn.example".into()))
        );
        // Another port is another origin.
        assert!(
            none.check(&from, &url("https://feed.example:8443/a"))
                .is_err()
        );
        let listed = policy(&["CDN.example"], &[]);
        assert!(listed.check(&from, &url("https://cdn.example/a")).is_ok());
        assert!(listed.check(&from, &url("https://evil.example/a")).is_err());
    }

    #[test]
    fn the_gateways_own_listeners_are_always_refused() {
        let from = url("http://127.0.0.1:9000/v1/a");
        let p = policy(
            &["127.0.0.1", "localhost"],
            &["127.0.0.1:8080", "0.0.0.0:9090"],
        );
        assert_eq!(
            p.check(&from, &url("http://127.0.0.1:8080/v1/stream/a")),
            Err(RedirectRefusal::Own("127.0.0.1:8080".parse().unwrap()))
        );
        // An unspecified listener: every loopback name of its port.
        for to in [
            "http://127.0.0.1:9090/admin/events",
            "http://localhost:9090/",
            "http://[::1]:9090/",
            "http://0.0.0.0:9090/",
            "http://[::ffff:127.0.0.1]:9090/",
        ] {
            assert!(
                matches!(p.check(&from, &url(to)), Err(RedirectRefusal::Own(_))),
                "{to}"
            );
        }
        // The same host on another port is not the gateway.
        assert!(p.check(&from, &url("http://127.0.0.1:9001/a")).is_ok());
    }

    #[test]
    fn special_addresses_need_an_origin_of_their_kind() {
        let public = url("https://feed.example/a");
        let open = policy(
            &[
                "127.0.0.1",
                "localhost",
                "169.254.169.254",
                "fe80::1",
                "metadata.google.internal",
            ],
            &[],
        );
        for (to, kind) in [
            ("http://127.0.0.1/", "loopback"),
            ("http://localhost/", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
            ("http://[fe80::1]/", "link-local"),
            ("http://metadata.google.internal/", "cloud metadata"),
        ] {
            assert!(
                matches!(open.check(&public, &url(to)), Err(RedirectRefusal::Special(k, _)) if k == kind),
                "{to}"
            );
        }
        // A loopback upstream may redirect on loopback (listed), not to
        // metadata.
        let local = url("http://127.0.0.1:7000/a");
        assert!(open.check(&local, &url("http://localhost/b")).is_ok());
        assert!(open.check(&local, &url("http://169.254.169.254/")).is_err());
    }
}

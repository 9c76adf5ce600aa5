//! The client's real address behind a balancer: `bridge.trusted_proxies`.
//!
//! A peer inside those ranges is a proxy that says who its client was, in
//! `Forwarded` (RFC 7239) or, when there is none, `X-Forwarded-For`. Each
//! proxy appends the address it saw, so the list is read from the right:
//! the client is the right-most address that is not itself a trusted
//! proxy. Everything left of it was written by the client and is not
//! believed. A peer outside the ranges is the client, whatever it sends.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

/// Entries read from the forwarding headers at most (a longer chain is
/// cut at its right-most entries: those are the ones that count).
const MAX_HOPS: usize = 32;

/// A range of addresses, `10.0.0.0/8` or `2001:db8::/32`, or one address.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr(IpNet);

impl Cidr {
    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        s.parse::<IpAddr>().map(|ip| Self(IpNet::from(ip))).map_err(|_| {
            format!("{s:?} is not an address range (like \"10.0.0.0/8\" or \"2001:db8::/32\") or an address")
        })
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_string())
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Whether `ip` is one of `trusted`.
pub(crate) fn trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The client's address: `peer`'s, unless `peer` is trusted and the
/// headers name someone further out.
pub(crate) fn client(trusted_proxies: &[Cidr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(trusted_proxies, peer) {
        return peer;
    }
    let mut hops = forwarded(headers);
    if hops.is_empty() {
        hops = x_forwarded_for(headers);
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            // A proxy that could not say (`unknown`, an obfuscated name,
            // garbage): nothing left of it can be believed.
            None => break,
            Some(ip) => {
                client = canonical(ip);
                if !trusted(trusted_proxies, client) {
                    break;
                }
            }
        }
    }
    client
}

/// The `for=` of every `Forwarded` element, left to right (`None` for one
/// that is not an address). Empty when there is no such header.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            if let Some(node) = node {
                hops.push(address(node));
            }
        }
    }
    keep_last(hops)
}

/// The entries of every `X-Forwarded-For`, left to right.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(value) => hops.extend(value.split(',').map(|s| address(s.trim()))),
            Err(_) => hops.push(None),
        }
    }
    keep_last(hops)
}

fn keep_last(mut hops: Vec<Option<IpAddr>>) -> Vec<Option<IpAddr>> {
    if hops.len() > MAX_HOPS {
        hops.drain(..hops.len() - MAX_HOPS);
    }
    hops
}

/// An address as proxies write it: `192.0.2.4`, `192.0.2.4:5000`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:5000`.
fn address(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("value"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let t = cidrs(&["10.0.0.0/8", "192.168.1.1"]);
        // Forged left part, real client, then two trusted hops.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(client(&t, ip("192.168.1.1"), &h), ip("203.0.113.9"));
        // The same header from a peer that is not trusted: ignored.
        assert_eq!(client(&t, ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // Several header lines make one list.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9:4711"),
        ]);
        assert_eq!(client(&t, ip("10.0.0.2"), &h), ip("203.0.113.9"));
        // Every hop trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(client(&t, ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // No header: the peer.
        assert_eq!(
            client(&t, ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_wins_and_is_parsed_as_rfc_7239_writes_it() {
        let t = cidrs(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                r#"for=1.2.3.4, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.9;by=10.0.0.1"#,
            ),
        ]);
        assert_eq!(client(&t, ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
    }

    #[test]
    fn an_unknown_hop_stops_the_walk_at_the_proxy_before_it() {
        let t = cidrs(&["10.0.0.0/8"]);
        let h = headers(&[("forwarded", "for=1.2.3.4, for=unknown, for=10.0.0.7")]);
        assert_eq!(client(&t, ip("10.0.0.1"), &h), ip("10.0.0.7"));
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(client(&t, ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn ranges_parse_or_say_why() {
        assert!(Cidr::try_from("10.0.0.0/8".to_string()).is_ok());
        assert!(Cidr::try_from("::1".to_string()).is_ok());
        // Host bits are dropped, as a range means.
        assert!(cidrs(&["10.1.2.3/8"])[0].contains(ip("10.200.0.1")));
        // A v4-mapped v6 peer is its v4 address.
        assert!(cidrs(&["10.0.0.0/8"])[0].contains(ip("::ffff:10.0.0.1")));
        let e = Cidr::try_from("10.0.0.0/33".to_string()).expect_err("bad");
        assert!(e.contains("10.0.0.0/33"), "{e}");
    }
}

//! What an admin action must show besides its credential: that a client
//! meant it, not a page of another site in an operator's browser (CSRF),
//! and that it was sent to this listener by a name it answers to, not one
//! an attacker pointed at it (DNS rebinding).
//!
//! - Actions are allowed at all with `admin_token`, or on a loopback
//!   listener.
//! - The `Host` (or, over HTTP/2, the authority) must be the listener's:
//!   an IP literal or `localhost` with its port, or a name in
//!   `admin_hosts`.
//! - An `Origin`, when present, must be the same host (a browser sends one
//!   with every cross-site POST).
//! - The request must carry `X-Ssegate-Action` (any value): a header no
//!   page of another site can add without a preflight the listener never
//!   grants (the login form, a plain form post, is exempt).

use std::net::{IpAddr, SocketAddr};

use http::header::{HOST, ORIGIN};
use http::{Request, StatusCode};
use sse_conn_pool::Connector;

use crate::reply::{self, Reply};
use crate::state::Shared;

/// The header every action carries.
pub(crate) const ACTION_HEADER: &str = "x-ssegate-action";

/// `None` if the request to act may go on; the refusal otherwise.
pub(super) fn action<C: Connector, B>(
    shared: &Shared<C>,
    req: &Request<B>,
    needs_header: bool,
) -> Option<Reply> {
    let refuse = |why: &str| Some(reply::text(StatusCode::FORBIDDEN, format!("{why}\n")));
    if shared.config.admin_token.is_none() && !shared.admin_addr.ip().is_loopback() {
        return refuse("admin actions on a non-loopback admin listener need bridge.admin_token");
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(host) = host.filter(|h| answers_to(h, shared.admin_addr, &shared.config.admin_hosts))
    else {
        return refuse(
            "this admin listener does not answer to that host (its address, localhost, or a name in bridge.admin_hosts)",
        );
    };
    if let Some(origin) = req.headers().get(ORIGIN) {
        let same = origin.to_str().ok().is_some_and(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(&host))
        });
        if !same {
            return refuse("admin actions are not taken from another site's page");
        }
    }
    if needs_header && !req.headers().contains_key(ACTION_HEADER) {
        return refuse(
            "admin actions need the header `X-Ssegate-Action: 1` (for example `curl -X POST -H 'X-Ssegate-Action: 1' ...`)",
        );
    }
    None
}

/// Whether `host` (a `Host` header: a name or an IP literal, maybe with a
/// port) names the listener at `own`.
fn answers_to(host: &str, own: SocketAddr, names: &[String]) -> bool {
    let (name, port) = split_host(host);
    if names.iter().any(|listed| {
        let (listed_name, listed_port) = split_host(listed);
        listed_name.eq_ignore_ascii_case(name) && (listed_port.is_none() || listed_port == port)
    }) {
        return true;
    }
    // An IP literal cannot be rebound; `localhost` is ours. Either with
    // the listener's port (no port means 80).
    let literal = name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
    (literal || name.eq_ignore_ascii_case("localhost")) && port.unwrap_or(80) == own.port()
}

/// `host[:port]` or `[v6][:port]` into its name and port.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (inside, port);
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons: no port.
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_answers_to_its_address_localhost_and_listed_names() {
        let own: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let names = vec![
            "ssegate.internal".to_string(),
            "admin.example:8443".to_string(),
        ];
        for host in [
            "127.0.0.1:9090",
            "10.0.0.5:9090",
            "[::1]:9090",
            "localhost:9090",
            "LOCALHOST:9090",
            "ssegate.internal",
            "ssegate.internal:9090",
            "admin.example:8443",
        ] {
            assert!(answers_to(host, own, &names), "{host}");
        }
        for host in [
            "evil.example:9090",
            "127.0.0.1:8080",
            "localhost",
            "admin.example:9090",
            "127.0.0.1.nip.io:9090",
        ] {
            assert!(!answers_to(host, own, &names), "{host}");
        }
    }
}

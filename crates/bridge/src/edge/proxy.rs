//! The PROXY protocol, v1 (text) and v2 (binary), HAProxy's header that a
//! balancer sends before the client's bytes (`bridge.proxy_protocol`).
//! Parsing is the `ppp` crate's; what is ours is the reading: within a
//! deadline, at most one header's worth of bytes, and whatever came after
//! the header handed back to go in front of the connection.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult as _};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The most bytes read for a header: a v1 line is at most 107; v2 is 16
/// plus addresses (at most 216, for Unix sockets) plus TLVs, which
/// balancers keep small (AWS's is under 100 bytes).
const MAX_HEADER: usize = 4096;

/// The longest v1 line, CRLF included.
const V1_MAX: usize = 107;

/// What the header said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Proxied {
    /// The client's address, or `None` when the header carries none (a
    /// `LOCAL` command, as in a balancer's health check, or `UNKNOWN`):
    /// the connection's own peer stands.
    pub(crate) source: Option<SocketAddr>,
    /// Bytes read past the header: the start of the client's stream.
    pub(crate) rest: Vec<u8>,
}

/// Reads the header within `timeout`.
///
/// # Errors
///
/// A reason from `metrics::PROXY_FAILURE_REASONS`: the connection is to
/// be closed.
pub(crate) async fn read<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
) -> Result<Proxied, &'static str> {
    let mut buf = Vec::with_capacity(256);
    let read = tokio::time::timeout(timeout, async {
        loop {
            // Never past the longest header: the bytes after it are the
            // client's, and are kept as they come.
            let room = MAX_HEADER - buf.len();
            let mut chunk = (&mut *io).take(room as u64);
            match chunk.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err("eof"),
                Ok(_) => {}
            }
            match parse(&buf) {
                Some(parsed) => return parsed,
                None if buf.len() < MAX_HEADER => {}
                None => return Err("malformed"),
            }
        }
    })
    .await;
    read.unwrap_or(Err("timeout"))
}

/// `Some` once `buf` holds a whole header (or cannot be one).
fn parse(buf: &[u8]) -> Option<Result<Proxied, &'static str>> {
    let header = HeaderResult::parse(buf);
    if header.is_incomplete() {
        // `ppp` calls a v1 line with a part missing incomplete even when
        // its CRLF has come: nothing more can complete it.
        let signature = ppp::v2::PROTOCOL_PREFIX;
        let v2 = signature.starts_with(&buf[..buf.len().min(signature.len())]);
        let v1_ended = !v2 && buf.windows(2).take(V1_MAX).any(|w| w == b"\r\n");
        return (v1_ended || buf.len() >= V1_MAX && buf.starts_with(b"PROXY"))
            .then_some(Err("malformed"));
    }
    let (source, len) = match header {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            (source, h.header.len())
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                (_, ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified) => None,
            };
            (source, h.len())
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => return Some(Err("malformed")),
    };
    Some(Ok(Proxied {
        source,
        rest: buf.get(len..).unwrap_or_default().to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_gives_the_client_and_keeps_what_follows() {
        let p = parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET /").expect("whole");
        assert_eq!(
            p,
            Ok(Proxied {
                source: Some("203.0.113.7:51000".parse().expect("addr")),
                rest: b"GET /".to_vec(),
            })
        );
        let p = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n").expect("whole");
        assert_eq!(
            p.expect("ok").source,
            Some("[2001:db8::7]:51000".parse().expect("addr"))
        );
        let p = parse(b"PROXY UNKNOWN\r\n").expect("whole");
        assert_eq!(p.expect("ok").source, None);
    }

    #[test]
    fn a_partial_header_waits_and_garbage_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 203.0"), None);
        assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), None);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Some(Err("malformed")));
        assert_eq!(
            parse(b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n"),
            Some(Err("malformed"))
        );
        // A part missing, the line ended: nothing can complete it.
        assert_eq!(
            parse(b"PROXY TCP4 nonsense\r\nGET /"),
            Some(Err("malformed"))
        );
        // A v1 line longer than the protocol allows.
        let long = format!("PROXY TCP4 {}", "1".repeat(120));
        assert_eq!(parse(long.as_bytes()), Some(Err("malformed")));
    }

    #[test]
    fn v2_proxy_and_local() {
        use ppp::v2::{Builder, Command, Protocol, Version};
        let addresses = ppp::v2::Addresses::IPv4(ppp::v2::IPv4::new(
            [198, 51, 100, 9],
            [10, 0, 0, 1],
            40000,
            443,
        ));
        let mut header =
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
                .build()
                .expect("header");
        header.extend_from_slice(b"\x16\x03\x01");
        let p = parse(&header).expect("whole").expect("ok");
        assert_eq!(p.source, Some("198.51.100.9:40000".parse().expect("addr")));
        assert_eq!(p.rest, b"\x16\x03\x01");
        let local = Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .expect("header");
        assert_eq!(parse(&local).expect("whole").expect("ok").source, None);
    }
}

//! What happens to a stream-listener connection before HTTP, and who its
//! client is: the PROXY protocol header (`proxy`), TLS (`tls`), and the
//! client's address behind trusted proxies (`forwarded`).
//!
//! The order is the wire's: a balancer's PROXY header comes first, in
//! clear, then the TLS handshake, then HTTP (the fast path for HTTP/1.1
//! subscriptions, `h2` for HTTP/2, hyper for the rest).

pub(crate) mod forwarded;
pub(crate) mod proxy;
pub(crate) mod tls;

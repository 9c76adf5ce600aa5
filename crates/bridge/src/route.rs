//! What the stream listener answers, whatever the protocol a request came
//! in on (the HTTP/1.1 fast path, `http2`, hyper): CORS preflights, the
//! demo page, and streams.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::ORIGIN;
use http::{Method, Request};
use sse_conn_pool::Connector;
use tokio::sync::Notify;

use crate::reply;
use crate::state::Shared;
use crate::subscribe;

/// The demo page (`bridge.demo_page`): an `EventSource` on the topics in
/// its URL. No external assets.
const DEMO_PAGE: &str = include_str!("demo.html");

/// A request on the stream listener from `peer` (the connection's, or the
/// PROXY header's), whatever its protocol: CORS preflight, the demo page,
/// or a stream. `kill` ends the request's connection (HTTP/1.1) or stream
/// (HTTP/2) when its subscriber stalls.
pub(crate) async fn stream<C: Connector, B>(
    shared: &Arc<Shared<C>>,
    req: Request<B>,
    peer: IpAddr,
    kill: Arc<Notify>,
) -> reply::Reply {
    let origin = req.headers().get(ORIGIN).cloned();
    let mut reply = if req.method() == Method::OPTIONS {
        reply::preflight()
    } else if shared.config.demo_page && req.uri().path() == "/" {
        reply::html(DEMO_PAGE)
    } else {
        let ip = shared.client_ip(peer, req.headers());
        subscribe::stream(shared, req, ip, kill).await
    };
    reply::cors(&shared.config, origin.as_ref(), &mut reply);
    reply
}

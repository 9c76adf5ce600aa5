//! In-memory upstreams for paused-time tests: a duplex pipe served by hyper.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use std::convert::Infallible;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;

/// One in-memory connection: every request on it gets a `text/event-stream`
/// response whose body `make_body` builds from the request.
pub fn serve_in_memory<B, F>(make_body: F) -> TokioIo<DuplexStream>
where
    F: Fn(&hyper::Request<Incoming>) -> B + Send + Sync + 'static,
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut response = hyper::Response::new(make_body(&req));
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            async move { Ok::<_, Infallible>(response) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    TokioIo::new(client)
}

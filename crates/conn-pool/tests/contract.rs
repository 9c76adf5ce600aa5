//! The conformance service (`examples/contract-service`) driven the way the
//! public suite drives it: a scripted SSE server and a callback receiver on
//! loopback, the service in-process, every wait bounded.
//!
//! Each case of `docs/SSE-CONTRACT.md` ("what the harness checks") has a
//! test here: parsing, HTTP behaviour, reconnection, timing, and the
//! service's own endpoints.

#[path = "../examples/contract-service/service.rs"]
#[allow(dead_code)]
mod service;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::timeout;

/// The suite's own bound on every expected report.
const WAIT: Duration = Duration::from_secs(5);

type Frames = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

/// A response body fed by the test: data frames, an error (the connection
/// breaks), or the sender dropped (the body ends cleanly).
struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx)
    }
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// One stream request the client made, and the means to answer it.
struct StreamConn {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    frames: Frames,
}

impl StreamConn {
    async fn send(&self, text: &str) {
        self.send_bytes(Bytes::copy_from_slice(text.as_bytes()))
            .await;
    }

    async fn send_bytes(&self, bytes: Bytes) {
        self.frames
            .send(Ok(Frame::data(bytes)))
            .await
            .expect("the client is still connected");
    }

    /// Breaks the connection without ending the body cleanly.
    async fn break_connection(self) {
        let _ = self
            .frames
            .send(Err(io::Error::other("broken by the test")))
            .await;
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the harness answers the next stream request, when not a stream.
#[derive(Clone)]
struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
}

/// The suite's side: the SSE server and the callback receiver.
struct Harness {
    addr: SocketAddr,
    connections: mpsc::Receiver<StreamConn>,
    scripted: Arc<Mutex<VecDeque<Scripted>>>,
    requests: Arc<Mutex<Vec<(Method, String)>>>,
    reports: Arc<Mutex<BTreeMap<u64, Value>>>,
    reported: Arc<Notify>,
    next_report: u64,
}

impl Harness {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (conn_tx, connections) = mpsc::channel(16);
        let scripted: Arc<Mutex<VecDeque<Scripted>>> = Arc::default();
        let requests: Arc<Mutex<Vec<(Method, String)>>> = Arc::default();
        let reports: Arc<Mutex<BTreeMap<u64, Value>>> = Arc::default();
        let reported = Arc::new(Notify::new());
        let shared = (
            conn_tx,
            scripted.clone(),
            requests.clone(),
            reports.clone(),
            reported.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(harness_answer(req, shared).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), handler)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            scripted,
            requests,
            reports,
            reported,
            next_report: 1,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next stream request, within the suite's bound.
    async fn await_connection(&mut self) -> StreamConn {
        timeout(WAIT, self.connections.recv())
            .await
            .expect("the client connects within 5 s")
            .expect("the harness is running")
    }

    /// The next report in `n` order, within the suite's bound.
    async fn next_report(&mut self) -> Value {
        let n = self.next_report;
        let report = timeout(WAIT, async {
            loop {
                let notified = self.reported.notified();
                if let Some(report) = self.reports.lock().remove(&n) {
                    return report;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("report {n} arrives within 5 s"));
        self.next_report += 1;
        report
    }

    /// The next report, which must be this event.
    async fn expect_event(&mut self, event_type: &str, data: &str, id: &str) {
        let report = self.next_report().await;
        assert_eq!(
            report,
            json!({"kind": "event", "event": {"type": event_type, "data": data, "id": id}}),
        );
    }

    async fn expect_error(&mut self) -> String {
        let report = self.next_report().await;
        assert_eq!(report["kind"], "error", "expected an error, got {report}");
        report["error"]
            .as_str()
            .expect("an error message")
            .to_string()
    }

    fn stream_requests(&self) -> usize {
        self.requests
            .lock()
            .iter()
            .filter(|(_, path)| path.starts_with("/stream"))
            .count()
    }
}

type Shared = (
    mpsc::Sender<StreamConn>,
    Arc<Mutex<VecDeque<Scripted>>>,
    Arc<Mutex<Vec<(Method, String)>>>,
    Arc<Mutex<BTreeMap<u64, Value>>>,
    Arc<Notify>,
);

async fn harness_answer(req: Request<Incoming>, shared: Shared) -> Response<AnyBody> {
    let (conn_tx, scripted, requests, reports, reported) = shared;
    let path = req.uri().path().to_string();
    requests.lock().push((req.method().clone(), path.clone()));
    let empty = |status: u16| {
        let mut response = Response::new(
            Full::new(Bytes::new())
                .map_err(|never: Infallible| match never {})
                .boxed(),
        );
        *response.status_mut() = StatusCode::from_u16(status).expect("status");
        response
    };
    if let Some(n) = path
        .strip_prefix("/callback/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let body = req.into_body().collect().await.expect("body").to_bytes();
        let report: Value = serde_json::from_slice(&body).expect("a JSON report");
        reports.lock().insert(n, report);
        reported.notify_waiters();
        return empty(202);
    }
    let next = scripted.lock().pop_front();
    if let Some(script) = next {
        let mut response = empty(script.status);
        for (name, value) in script.headers {
            response
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        return response;
    }
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.expect("body").to_bytes();
    let (frames, rx) = mpsc::channel(64);
    let _ = conn_tx
        .send(StreamConn {
            method,
            headers,
            body,
            frames,
        })
        .await;
    let mut response = Response::new(ChannelBody(rx).boxed());
    response.headers_mut().insert(
        "content-type",
        "text/event-stream; charset=utf-8".parse().expect("value"),
    );
    response
}

/// A request to the service; returns its status, headers and body.
async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Response<Bytes> {
    let socket = TcpStream::connect(addr).await.expect("the service listens");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(body))
        .expect("request");
    let response = timeout(WAIT, sender.send_request(request))
        .await
        .expect("the service answers within 5 s")
        .expect("a response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Response::from_parts(parts, body)
}

/// The service under test, in-process on a loopback port.
struct Service {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(service::serve(listener));
        Self { addr, task }
    }

    /// Creates a client; returns its resource path.
    async fn create(&self, harness: &Harness, extra: Value) -> String {
        let mut params = json!({
            "streamUrl": harness.url("/stream"),
            "callbackUrl": harness.url("/callback"),
            "tag": "test",
            "initialDelayMs": null,
        });
        for (key, value) in extra.as_object().expect("an object") {
            params[key] = value.clone();
        }
        let response = call(self.addr, Method::POST, "/", Some(params)).await;
        assert!(response.status().is_success(), "{:?}", response.body());
        response.headers()["location"]
            .to_str()
            .expect("a location")
            .to_string()
    }
}

/// A harness, a service, a client created with `extra` parameters, and the
/// client's first stream request.
async fn setup(extra: Value) -> (Harness, Service, String, StreamConn) {
    let mut harness = Harness::start().await;
    let service = Service::start().await;
    let client = service.create(&harness, extra).await;
    let conn = harness.await_connection().await;
    (harness, service, client, conn)
}

#[tokio::test]
async fn status_resource_advertises_all_ten_capabilities() {
    let service = Service::start().await;
    let response = call(service.addr, Method::GET, "/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let status: Value = serde_json::from_slice(response.body()).expect("JSON");
    let capabilities: Vec<&str> = status["capabilities"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|c| c.as_str().expect("a string"))
        .collect();
    for capability in [
        "bom",
        "comments",
        "headers",
        "last-event-id",
        "post",
        "report",
        "read-timeout",
        "restart",
        "event-type-listeners",
        "server-directed-shutdown-request",
    ] {
        assert!(capabilities.contains(&capability), "{capability} missing");
    }
    // DELETE / stops the service.
    let response = call(service.addr, Method::DELETE, "/", None).await;
    assert!(response.status().is_success());
    timeout(WAIT, service.task)
        .await
        .expect("the service exits")
        .expect("cleanly");
}

#[tokio::test]
async fn bad_parameters_and_commands_are_refused_clearly() {
    let harness = Harness::start().await;
    let service = Service::start().await;
    let bad = [
        json!({"callbackUrl": harness.url("/callback")}),
        json!({"streamUrl": "not a url", "callbackUrl": harness.url("/callback")}),
        json!({"streamUrl": "http://192.0.2.1/stream", "callbackUrl": harness.url("/callback")}),
        json!({"streamUrl": harness.url("/stream"), "callbackUrl": harness.url("/callback"), "readTimeoutMs": "soon"}),
        json!({"streamUrl": harness.url("/stream"), "callbackUrl": harness.url("/callback"), "headers": {"bad name": "x"}}),
    ];
    for params in bad {
        let response = call(service.addr, Method::POST, "/", Some(params.clone())).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{params}");
        assert!(!response.body().is_empty(), "the 400 says why");
    }
    assert_eq!(harness.stream_requests(), 0, "nothing was half-created");

    let response = call(
        service.addr,
        Method::POST,
        "/clients/99",
        Some(json!({"command": "restart"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let client = service.create(&harness, json!({})).await;
    let response = call(
        service.addr,
        Method::POST,
        &client,
        Some(json!({"command": "dance"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = call(service.addr, Method::DELETE, "/clients/99", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn parsing_cases_are_reported_as_the_spec_says() {
    let (mut harness, _service, _client, conn) = setup(json!({})).await;
    // One event in one chunk, and split over two.
    conn.send("data: Hello\n\n").await;
    harness.expect_event("message", "Hello", "").await;
    conn.send("data: Hel").await;
    conn.send("lo\n\n").await;
    harness.expect_event("message", "Hello", "").await;
    // Two events in one chunk; a two-line message; empty data.
    conn.send("data: Hello\n\ndata: World\n\n").await;
    harness.expect_event("message", "Hello", "").await;
    harness.expect_event("message", "World", "").await;
    conn.send("data: Hello\ndata:World\n\ndata:\n\n").await;
    harness.expect_event("message", "Hello\nWorld", "").await;
    harness.expect_event("message", "", "").await;
    // Type and id, in any order; unknown fields ignored; extra space kept.
    conn.send("data: Hello\nid: abc\nevent: greeting\ncolor: blue\n\n")
        .await;
    harness.expect_event("greeting", "Hello", "abc").await;
    conn.send("event:  spaced\ndata:  Hello\n\n").await;
    harness.expect_event(" spaced", " Hello", "abc").await;
    // An id with NUL is ignored; the last id persists; an empty id resets.
    conn.send("id: a\0bc\ndata: nul\n\n").await;
    harness.expect_event("message", "nul", "abc").await;
    conn.send("id: \ndata: reset\n\n").await;
    harness.expect_event("message", "reset", "").await;
    // A field with no colon.
    conn.send("data\n\ndata\ndata\n\n").await;
    harness.expect_event("message", "", "").await;
    harness.expect_event("message", "\n", "").await;
    // Line endings: CRLF (also split between chunks) and CR.
    conn.send("data: crlf\r").await;
    conn.send("\n\r\n").await;
    harness.expect_event("message", "crlf", "").await;
    conn.send("data: cr\r\r").await;
    harness.expect_event("message", "cr", "").await;
    // Multi-byte characters sent one byte at a time.
    for byte in "data: €豆腐\n\n".bytes() {
        conn.send_bytes(Bytes::copy_from_slice(&[byte])).await;
    }
    harness.expect_event("message", "€豆腐", "").await;
    // Comments are reported as soon as the line arrives.
    conn.send(":hello there\n").await;
    assert_eq!(
        harness.next_report().await,
        json!({"kind": "comment", "comment": "hello there"})
    );
    // 100 events in one chunk arrive in order.
    let all: String = (0..100).map(|i| format!("data: message {i}\n\n")).collect();
    conn.send(&all).await;
    for i in 0..100 {
        harness
            .expect_event("message", &format!("message {i}"), "")
            .await;
    }
}

#[tokio::test]
async fn a_leading_bom_is_skipped_even_split_and_a_second_one_kept() {
    let (mut harness, _service, _client, conn) = setup(json!({})).await;
    conn.send_bytes(Bytes::from_static(b"\xEF\xBB")).await;
    conn.send_bytes(Bytes::from_static(
        b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n",
    ))
    .await;
    harness.expect_event("message", "a", "").await;
    // The second BOM is part of the field name, so that line is not `data`.
    conn.send("data: c\n\n").await;
    harness.expect_event("message", "c", "").await;
}

#[tokio::test]
async fn a_fourteen_megabyte_message_is_delivered_within_five_seconds() {
    let (mut harness, _service, _client, conn) = setup(json!({})).await;
    let data = "x".repeat(14 << 20);
    conn.send_bytes(Bytes::from(format!("data: {data}\n\n")))
        .await;
    let report = harness.next_report().await;
    assert_eq!(report["kind"], "event");
    assert_eq!(
        report["event"]["data"].as_str().map(str::len),
        Some(14 << 20)
    );
}

#[tokio::test]
async fn default_request_is_a_plain_get() {
    let (harness, _service, _client, conn) = setup(json!({})).await;
    assert_eq!(conn.method, Method::GET);
    assert_eq!(conn.header("accept"), Some("text/event-stream"));
    assert_eq!(conn.header("cache-control"), Some("no-cache"));
    assert!(conn.headers.get("last-event-id").is_none());
    assert!(conn.body.is_empty());
    drop(harness);
}

#[tokio::test]
async fn custom_headers_and_an_initial_last_event_id_are_sent() {
    let (_harness, _service, _client, conn) = setup(json!({
        "headers": {"header-name-1": "value-1", "header-name-2": "value-2"},
        "lastEventId": "abc",
    }))
    .await;
    assert_eq!(conn.header("header-name-1"), Some("value-1"));
    assert_eq!(conn.header("header-name-2"), Some("value-2"));
    assert_eq!(conn.header("last-event-id"), Some("abc"));
}

#[tokio::test]
async fn post_and_report_send_the_body_again_on_every_reconnect() {
    for method in ["POST", "REPORT"] {
        let body = r#"{"hello": "world"}"#;
        let (mut harness, _service, _client, conn) = setup(json!({
            "method": method,
            "body": body,
            "headers": {"content-type": "application/json; charset=utf-8"},
            "initialDelayMs": 0,
        }))
        .await;
        assert_eq!(conn.method.as_str(), method);
        assert_eq!(
            conn.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(conn.body, body.as_bytes());
        conn.break_connection().await;
        let again = harness.await_connection().await;
        assert_eq!(again.method.as_str(), method);
        assert_eq!(again.body, body.as_bytes());
    }
}

#[tokio::test]
async fn redirects_are_followed_and_a_missing_location_is_an_error() {
    for status in [301, 307] {
        let mut harness = Harness::start().await;
        let service = Service::start().await;
        harness.scripted.lock().push_back(Scripted {
            status,
            headers: vec![("location", harness.url("/stream/redirected"))],
        });
        service.create(&harness, json!({})).await;
        let conn = harness.await_connection().await;
        conn.send("data: after redirect\n\n").await;
        harness.expect_event("message", "after redirect", "").await;
        let paths: Vec<String> = harness
            .requests
            .lock()
            .iter()
            .map(|(_, p)| p.clone())
            .filter(|p| p.starts_with("/stream"))
            .collect();
        assert_eq!(paths, ["/stream", "/stream/redirected"]);
    }
    for location in [None, Some(String::new())] {
        let mut harness = Harness::start().await;
        let service = Service::start().await;
        harness.scripted.lock().push_back(Scripted {
            status: 301,
            headers: location.into_iter().map(|l| ("location", l)).collect(),
        });
        service.create(&harness, json!({})).await;
        harness.expect_error().await;
        // Not looped: the one redirect was not retried at once.
        assert_eq!(harness.stream_requests(), 1);
    }
}

#[tokio::test]
async fn a_204_stops_reconnection() {
    let mut harness = Harness::start().await;
    let service = Service::start().await;
    harness.scripted.lock().push_back(Scripted {
        status: 204,
        headers: Vec::new(),
    });
    service.create(&harness, json!({"initialDelayMs": 0})).await;
    harness.expect_error().await;
    // Wall clock: the harness is a real socket server; with a 0 ms reconnect delay a retry would
    // come within this second, so its absence shows the 204 stopped the client.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        harness.stream_requests(),
        1,
        "exactly one request within 1 s"
    );
}

#[tokio::test]
async fn reconnect_after_a_clean_end_carries_the_last_id() {
    let (mut harness, _service, _client, conn) = setup(json!({"initialDelayMs": 0})).await;
    assert!(conn.headers.get("last-event-id").is_none());
    conn.send("id: abc\ndata: Hello\n\n").await;
    conn.send("data: World\n\n").await;
    harness.expect_event("message", "Hello", "abc").await;
    harness.expect_event("message", "World", "abc").await;
    drop(conn); // A normal end of the body.
    harness.expect_error().await;
    let again = harness.await_connection().await;
    assert_eq!(again.header("last-event-id"), Some("abc"));
}

#[tokio::test]
async fn a_partial_event_is_discarded_and_its_id_not_used() {
    let (mut harness, _service, _client, conn) = setup(json!({"initialDelayMs": 0})).await;
    conn.send("id: one\ndata: complete\n\nid: two\ndata: partial")
        .await;
    harness.expect_event("message", "complete", "one").await;
    conn.break_connection().await;
    harness.expect_error().await;
    let again = harness.await_connection().await;
    assert_eq!(again.header("last-event-id"), Some("one"));
    again.send("data: next\n\n").await;
    harness.expect_event("message", "next", "one").await;
}

#[tokio::test]
async fn no_last_event_id_after_an_empty_id() {
    let (mut harness, _service, _client, conn) = setup(json!({"initialDelayMs": 0})).await;
    conn.send("id: abc\ndata: a\n\nid:\ndata: b\n\n").await;
    harness.expect_event("message", "a", "abc").await;
    harness.expect_event("message", "b", "").await;
    conn.break_connection().await;
    let again = harness.await_connection().await;
    assert!(again.headers.get("last-event-id").is_none());
}

#[tokio::test]
async fn the_read_timeout_reports_an_error_and_reconnects() {
    let (mut harness, _service, _client, conn) =
        setup(json!({"initialDelayMs": 0, "readTimeoutMs": 500})).await;
    conn.send("data: Hello\n\n").await;
    harness.expect_event("message", "Hello", "").await;
    let error = harness.expect_error().await;
    assert!(error.contains("timeout"), "{error}");
    harness.await_connection().await;
    drop(conn);
}

#[tokio::test]
async fn restart_and_listen_commands_work_and_delete_closes_the_client() {
    let (mut harness, service, client, conn) = setup(json!({"initialDelayMs": 0})).await;
    let listen = json!({"command": "listen", "listen": {"type": "greeting"}});
    let response = call(service.addr, Method::POST, &client, Some(listen)).await;
    assert!(response.status().is_success());
    conn.send("event: greeting\ndata: Hello\n\n").await;
    harness.expect_event("greeting", "Hello", "").await;

    let response = call(
        service.addr,
        Method::POST,
        &client,
        Some(json!({"command": "restart"})),
    )
    .await;
    assert!(response.status().is_success());
    let again = harness.await_connection().await;
    again.send("data: Thanks\n\n").await;
    harness.expect_event("message", "Thanks", "").await;
    drop(conn);

    let response = call(service.addr, Method::DELETE, &client, None).await;
    assert!(response.status().is_success());
    // Closed: its connection ends and no further request is made.
    let requests = harness.stream_requests();
    timeout(WAIT, again.frames.closed())
        .await
        .expect("the client closed its connection");
    // Wall clock: the harness is a real socket server; a request that is not made shows only as
    // silence, and 300 ms is more than the client's reconnect delay (0) plus its scheduling.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(harness.stream_requests(), requests);
}

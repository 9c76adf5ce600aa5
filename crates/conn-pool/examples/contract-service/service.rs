//! The SSE conformance test service (`docs/SSE-CONTRACT.md`) over
//! `sse-conn-pool`'s stream client.
//!
//! The harness creates clients with `POST /`, commands them with
//! `POST /clients/{id}`, closes them with `DELETE /clients/{id}`, and stops
//! the service with `DELETE /`. Each client is one [`spawn_stream`]: what it
//! delivers is posted, in order, to `<callbackUrl>/<n>` with `n` counting
//! from 1 without gaps. Every URL the service is given must point at a
//! loopback address: it never connects anywhere else.
//!
//! This file is also compiled into the crate's `contract` tests with
//! `#[path]`, so the tests drive exactly the service the public suite would.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sse_conn_pool::{StreamConfig, StreamHandle, StreamItem, TcpConnector, UpstreamRequest};
use sse_parser::Limits;
use sse_state_machine::{Reason, StopReason};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use url::Url;

/// Every capability of `docs/SSE-CONTRACT.md`: the client has them all.
pub(crate) const CAPABILITIES: [&str; 10] = [
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
];

/// The largest request body the service reads (a create or command JSON).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// The most clients at once; the suite runs one or two at a time.
const MAX_CLIENTS: usize = 256;
/// The suite sends messages of up to 14 MB.
const MAX_EVENT: usize = 32 << 20;
/// Items a client's reporter may fall behind before it reports a gap.
const REPORT_BACKLOG: usize = 16 * 1024;
/// A callback POST that takes longer is given up (and reported on stderr).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

struct Client {
    stream: Arc<StreamHandle>,
    reporter: JoinHandle<()>,
}

#[derive(Default)]
struct Service {
    clients: Mutex<HashMap<u64, Client>>,
    next_id: Mutex<u64>,
    stop: Notify,
}

/// Serves the protocol on `listener` until `DELETE /` arrives; then closes
/// every client and returns.
pub(crate) async fn serve(listener: TcpListener) {
    let service = Arc::new(Service::default());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let service = service.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, std::convert::Infallible>(service.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), handler)
                        .await;
                });
            }
            () = service.stop.notified() => break,
        }
    }
    let clients: Vec<Client> = service.clients.lock().drain().map(|(_, c)| c).collect();
    for client in clients {
        client.close().await;
    }
}

impl Client {
    async fn close(self) {
        self.reporter.abort();
        // If a command still holds it, dropping the last reference aborts it.
        if let Some(stream) = Arc::into_inner(self.stream) {
            stream.stop().await;
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

impl Service {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/") => {
                let body = json!({"name": "sse-conn-pool", "capabilities": CAPABILITIES});
                let mut response = reply(StatusCode::OK, body.to_string());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            (Method::DELETE, "/") => {
                self.stop.notify_one();
                reply(StatusCode::NO_CONTENT, "")
            }
            (Method::POST, "/") => match read_json(req).await {
                Ok(params) => self.create(&params),
                Err(why) => reply(StatusCode::BAD_REQUEST, why),
            },
            (method, path) => {
                let Some(id) = path
                    .strip_prefix("/clients/")
                    .and_then(|id| id.parse::<u64>().ok())
                else {
                    return reply(StatusCode::NOT_FOUND, "no such resource");
                };
                match method {
                    Method::POST => match read_json(req).await {
                        Ok(command) => self.command(id, &command).await,
                        Err(why) => reply(StatusCode::BAD_REQUEST, why),
                    },
                    Method::DELETE => {
                        let client = self.clients.lock().remove(&id);
                        match client {
                            Some(client) => {
                                client.close().await;
                                reply(StatusCode::NO_CONTENT, "")
                            }
                            None => reply(StatusCode::NOT_FOUND, "no such client"),
                        }
                    }
                    _ => reply(StatusCode::METHOD_NOT_ALLOWED, "use POST or DELETE"),
                }
            }
        }
    }

    fn create(&self, params: &Value) -> Reply {
        let (request, config, callback) = match client_params(params) {
            Ok(parts) => parts,
            Err(why) => return reply(StatusCode::BAD_REQUEST, why),
        };
        let mut clients = self.clients.lock();
        if clients.len() >= MAX_CLIENTS {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("at most {MAX_CLIENTS} clients at once"),
            );
        }
        let stream = match sse_conn_pool::spawn_stream(TcpConnector, request, config) {
            Ok(stream) => stream,
            Err(why) => return reply(StatusCode::BAD_REQUEST, why.to_string()),
        };
        let items = stream.subscribe();
        let reporter = tokio::spawn(report(items, callback));
        let id = {
            let mut next = self.next_id.lock();
            *next += 1;
            *next
        };
        clients.insert(
            id,
            Client {
                stream: Arc::new(stream),
                reporter,
            },
        );
        let mut response = reply(StatusCode::CREATED, "");
        if let Ok(location) = HeaderValue::from_str(&format!("/clients/{id}")) {
            response
                .headers_mut()
                .insert(http::header::LOCATION, location);
        }
        response
    }

    async fn command(&self, id: u64, command: &Value) -> Reply {
        let Some(stream) = self.clients.lock().get(&id).map(|c| c.stream.clone()) else {
            return reply(StatusCode::NOT_FOUND, "no such client");
        };
        match command.get("command").and_then(Value::as_str) {
            Some("restart") => {
                stream.reconnect().await;
                reply(StatusCode::NO_CONTENT, "")
            }
            // Every event type is delivered from the start, so a listener for
            // one more type changes nothing; the type only has to be valid.
            Some("listen") => match command.pointer("/listen/type").and_then(Value::as_str) {
                Some(_) => reply(StatusCode::NO_CONTENT, ""),
                None => reply(StatusCode::BAD_REQUEST, "listen needs listen.type"),
            },
            Some(other) => reply(
                StatusCode::BAD_REQUEST,
                format!("unknown command {other:?}"),
            ),
            None => reply(StatusCode::BAD_REQUEST, "the body needs a \"command\""),
        }
    }
}

async fn read_json(req: Request<Incoming>) -> Result<Value, String> {
    let body = Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the request body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))
}

/// A URL the service may connect to: http, on a loopback address.
fn loopback_url(value: Option<&Value>, name: &str) -> Result<Url, String> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name} is required and must be a string"))?;
    let url = Url::parse(text).map_err(|e| format!("{name}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("{name}: only http URLs are served"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        return Err(format!("{name}: only loopback hosts are allowed"));
    }
    Ok(url)
}

/// A millisecond field: absent or `null` is unset.
fn millis(params: &Value, name: &str) -> Result<Option<Duration>, String> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|ms| *ms <= 3_600_000)
            .map(|ms| Some(Duration::from_millis(ms)))
            .ok_or_else(|| format!("{name} must be a whole number of milliseconds up to 1 hour")),
    }
}

fn client_params(params: &Value) -> Result<(UpstreamRequest, StreamConfig, Url), String> {
    let stream_url = loopback_url(params.get("streamUrl"), "streamUrl")?;
    let callback = loopback_url(params.get("callbackUrl"), "callbackUrl")?;
    let mut request = UpstreamRequest::get(stream_url.as_str()).map_err(|e| e.to_string())?;
    if let Some(method) = params.get("method").and_then(Value::as_str) {
        request.method =
            Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    }
    if let Some(body) = params.get("body").and_then(Value::as_str) {
        request.body = Some(Bytes::copy_from_slice(body.as_bytes()));
    }
    if let Some(headers) = params.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let value = value
                .as_str()
                .ok_or_else(|| format!("header {name} must be a string"))?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| format!("header {name} value: {e}"))?;
            request.headers.insert(name, value);
        }
    }
    // A plain EventSource: no rotation, no spread before the first retry, the
    // server's `retry:` honoured down to 0, and limits above the suite's 14 MB.
    let mut config = StreamConfig {
        health_rotation: false,
        limits: Limits::default()
            .max_line_len(MAX_EVENT)
            .max_event_size(MAX_EVENT),
        channel_capacity: REPORT_BACKLOG,
        ..StreamConfig::default()
    };
    config.machine.max_age = None;
    config.machine.backoff.reconnect_spread = Duration::ZERO;
    config.machine.retry_min = Duration::ZERO;
    if let Some(delay) = millis(params, "initialDelayMs")? {
        config.machine.backoff.initial = delay.min(config.machine.backoff.max);
        config.machine.backoff.after_loss = config.machine.backoff.initial;
    }
    // Without a read timeout the harness may keep a stream silent for as long
    // as a test runs.
    let read_timeout = millis(params, "readTimeoutMs")?.unwrap_or(Duration::from_secs(300));
    if read_timeout.is_zero() {
        return Err("readTimeoutMs must be positive".into());
    }
    config.machine.idle_timeout = read_timeout;
    config.machine.first_byte_timeout = read_timeout;
    config.machine.event_assembly_timeout = read_timeout.max(Duration::from_secs(30));
    match params.get("lastEventId") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => config.last_event_id = Some(id.clone()),
        Some(_) => return Err("lastEventId must be a string".into()),
    }
    Ok((request, config, callback))
}

/// What a status change reports: an error whenever a connection failed or
/// the stream stopped for a reason other than a request.
fn error_report(reason: Reason) -> Option<String> {
    match reason {
        Reason::Failed(_)
        | Reason::Status(_)
        | Reason::NotEventStream
        | Reason::EndOfBody
        | Reason::Timeout(_)
        | Reason::AttemptBudget => Some(reason.to_string()),
        Reason::Stop(stop) if stop != StopReason::Requested => Some(reason.to_string()),
        _ => None,
    }
}

/// Posts what the client delivers to `<callback>/<n>`, in order.
async fn report(mut items: broadcast::Receiver<StreamItem>, callback: Url) {
    let mut poster = Poster::new(callback);
    loop {
        let body = match items.recv().await {
            Ok(StreamItem::Event(event)) => json!({
                "kind": "event",
                "event": {
                    "type": event.event_type.as_str(),
                    "data": event.data.as_str(),
                    "id": event.id.as_str(),
                },
            }),
            Ok(StreamItem::Comment(text)) => json!({"kind": "comment", "comment": text.as_str()}),
            Ok(StreamItem::Status(status)) => match error_report(status.reason) {
                Some(message) => json!({"kind": "error", "error": message}),
                None => continue,
            },
            // Numbered events and losses come from other sources, never
            // from a stream.
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                json!({"kind": "error", "error": format!("the reporter missed {missed} items")})
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        poster.post(body).await;
    }
}

/// Sends callbacks over one kept-alive connection, reconnecting as needed.
struct Poster {
    base: Url,
    n: u64,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    driver: Option<JoinHandle<()>>,
}

impl Poster {
    fn new(base: Url) -> Self {
        Self {
            base,
            n: 0,
            sender: None,
            driver: None,
        }
    }

    async fn post(&mut self, body: Value) {
        self.n += 1;
        let path = format!("{}/{}", self.base.path().trim_end_matches('/'), self.n);
        let body = Bytes::from(body.to_string());
        // One retry on a fresh connection: a kept-alive one may have closed.
        for _ in 0..2 {
            let attempt = tokio::time::timeout(CALLBACK_TIMEOUT, self.send(&path, body.clone()));
            match attempt.await {
                Ok(Ok(())) => return,
                Ok(Err(_)) | Err(_) => self.reset(),
            }
        }
        eprintln!(
            "contract-service: callback {} to {} failed",
            self.n, self.base
        );
    }

    fn reset(&mut self) {
        self.sender = None;
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }

    async fn send(&mut self, path: &str, body: Bytes) -> Result<(), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.reset();
            let host = self.base.host_str().unwrap_or("127.0.0.1");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
                IpAddr::from([127, 0, 0, 1])
            } else {
                host.parse().map_err(|e| format!("{e}"))?
            };
            let port = self.base.port_or_known_default().unwrap_or(80);
            let socket = TcpStream::connect(SocketAddr::new(ip, port))
                .await
                .map_err(|e| e.to_string())?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
                .await
                .map_err(|e| e.to_string())?;
            self.driver = Some(tokio::spawn(async move {
                let _ = connection.await;
            }));
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let authority = self.base[url::Position::BeforeHost..url::Position::AfterPort].to_string();
        let request = Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // Drain the answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("callback answered {status}"))
        }
    }
}

impl Drop for Poster {
    fn drop(&mut self) {
        self.reset();
    }
}

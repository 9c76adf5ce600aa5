//! The subscriber side of the fan-out benchmark: `ssegate-fanout load`, a
//! process of its own holding up to tens of thousands of SSE streams over
//! several 127.0.0.x source addresses. Driven by the orchestrator with one
//! command per line on stdin, answering one JSON line per command on stdout:
//!
//! - `connect <n>`: opens `n` streams; answers when every one has its
//!   response head (or failed): `{"connected":..,"failed":..,"secs":..}`.
//! - `latency on|off`: whether to read each event's publish time (`"t":`
//!   microseconds in its data) into a histogram.
//! - `reset`: zeroes the counters and the histogram.
//! - `stats`: `{"events":..,"bytes":..,"open":..,"errors":..,"p50_us":..,..}`.
//! - `close`: closes every stream; answers when they are gone.
//!
//! With `--tls <ca.pem>` each stream is HTTP/1.1 over TLS; with
//! `--h2-streams <k>` as well, streams are HTTP/2 over TLS, `k` to a
//! connection (a dashboard's tab).
//!
//! Counting is cheap on purpose (a `memmem` for `\ndata:` per frame, the
//! last bytes carried over frame boundaries): the load generator shares the
//! machine with the server and must not be what limits the measurement.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpSocket;
use tokio::sync::{Notify, Semaphore, watch};

/// What a load process is told.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// The server's address.
    #[arg(long)]
    pub(crate) server: SocketAddr,
    /// The stream's path (`/v1/stream/BENCH`, `/sub/BENCH`).
    #[arg(long)]
    pub(crate) path: String,
    /// Source addresses (loopback), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sources: Vec<IpAddr>,
    /// TLS, trusting the CA certificate in this PEM file.
    #[arg(long)]
    pub(crate) tls: Option<std::path::PathBuf>,
    /// HTTP/2 (needs `--tls`): this many streams per connection.
    #[arg(long, default_value_t = 0, requires = "tls")]
    pub(crate) h2_streams: u64,
}

/// A stream's connection: TCP, or TLS over it.
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

#[derive(Default)]
pub(crate) struct Counters {
    events: AtomicU64,
    bytes: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) errors: AtomicU64,
    unparsed: AtomicU64,
    latency_on: AtomicBool,
}

pub(crate) struct Shared {
    pub(crate) args: LoadArgs,
    pub(crate) counters: Counters,
    /// Sharded by stream, so that a thousand streams recording the same
    /// event do not queue on one lock (the load generator must stay cheap).
    latency: Vec<Mutex<Histogram<u64>>>,
    /// Bumped to close every stream open (each holds a receiver from
    /// before it was spawned, so none misses it).
    pub(crate) close: watch::Sender<u64>,
    /// The TLS client (`--tls`), offering `h2` or `http/1.1`.
    tls: Option<tokio_rustls::TlsConnector>,
}

pub(crate) fn main(args: LoadArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: LoadArgs) -> Result<()> {
    let tls = match &args.tls {
        Some(ca) => {
            let pem = std::fs::read_to_string(ca).context("--tls")?;
            let alpn: &[&[u8]] = if args.h2_streams > 0 {
                &[b"h2"]
            } else {
                &[b"http/1.1"]
            };
            Some(ssegate_tests::tls::client_trusting(&pem, alpn).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        tls,
        args,
        counters: Counters::default(),
        latency: (0..SHARDS)
            .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?,
        close: watch::channel(0).0,
    });
    let mut streams = tokio::task::JoinSet::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["connect", n] => {
                let n: u64 = n.parse().context("connect <n>")?;
                if shared.args.h2_streams > 0 {
                    connect_h2(&shared, &mut streams, n).await
                } else {
                    connect(&shared, &mut streams, n).await
                }
            }
            ["latency", on] => {
                shared
                    .counters
                    .latency_on
                    .store(*on == "on", Ordering::SeqCst);
                serde_json::json!({"latency": on})
            }
            ["reset"] => {
                let c = &shared.counters;
                for counter in [&c.events, &c.bytes, &c.errors, &c.unparsed] {
                    counter.store(0, Ordering::SeqCst);
                }
                for shard in &shared.latency {
                    shard.lock().reset();
                }
                serde_json::json!({"reset": true})
            }
            ["stats"] => stats(&shared),
            ["close"] => {
                shared.close.send_modify(|generation| *generation += 1);
                while streams.join_next().await.is_some() {}
                serde_json::json!({"closed": true, "open": shared.counters.open.load(Ordering::SeqCst)})
            }
            ["quit"] => break,
            _ => serde_json::json!({"error": format!("unknown command {line:?}")}),
        };
        println!("{answer}");
    }
    shared.close.send_modify(|generation| *generation += 1);
    Ok(())
}

fn stats(shared: &Shared) -> serde_json::Value {
    let c = &shared.counters;
    let mut h = shared.latency[0].lock().clone();
    for shard in &shared.latency[1..] {
        let _ = h.add(&*shard.lock());
    }
    serde_json::json!({
        "events": c.events.load(Ordering::SeqCst),
        "bytes": c.bytes.load(Ordering::SeqCst),
        "open": c.open.load(Ordering::SeqCst),
        "errors": c.errors.load(Ordering::SeqCst),
        "unparsed": c.unparsed.load(Ordering::SeqCst),
        "samples": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

/// Opens `n` streams (at most 256 handshakes at once, like a crowd of
/// browsers arriving, not a SYN flood); answers when each has its head.
async fn connect(
    shared: &Arc<Shared>,
    streams: &mut tokio::task::JoinSet<()>,
    n: u64,
) -> serde_json::Value {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Notify::new());
    for k in 0..n {
        let closed = shared.close.subscribe();
        let (shared, gate, done, failed, all) = (
            shared.clone(),
            gate.clone(),
            done.clone(),
            failed.clone(),
            all.clone(),
        );
        streams.spawn(async move {
            let permit = gate.acquire_owned().await;
            let source =
                shared.args.sources[usize::try_from(k).unwrap_or(0) % shared.args.sources.len()];
            let opened = open(&shared, source).await;
            drop(permit);
            let body = match opened {
                Ok(opened) => Some(opened),
                Err(_) => {
                    failed.fetch_add(1, Ordering::SeqCst);
                    None
                }
            };
            if done.fetch_add(1, Ordering::SeqCst) + 1 == n {
                all.notify_one();
            }
            if let Some(body) = body {
                read(&shared, usize::try_from(k).unwrap_or(0), body, closed).await;
            }
        });
    }
    if n > 0 {
        all.notified().await;
    }
    serde_json::json!({
        "connected": n - failed.load(Ordering::SeqCst),
        "failed": failed.load(Ordering::SeqCst),
        "secs": started.elapsed().as_secs_f64(),
    })
}

/// Connects and sends the request over a raw socket (one task per stream,
/// no HTTP machinery on the read path: the load generator must cost as
/// little as possible); returns the socket once the head says 200, with
/// what came after the head.
async fn open(shared: &Shared, source: IpAddr) -> Result<(Box<dyn Io>, Vec<u8>)> {
    let mut stream = dial(shared, source).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        shared.args.path, shared.args.server
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .context("response timeout")??;
        anyhow::ensure!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break at + 4;
        }
        anyhow::ensure!(head.len() < 16 * 1024, "response head too long");
    };
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "status: {}",
        String::from_utf8_lossy(&head[..head.len().min(40)])
    );
    Ok((stream, head[end..].to_vec()))
}

/// A connection to the server from `source`, through TLS with `--tls`.
pub(crate) async fn dial(shared: &Shared, source: IpAddr) -> Result<Box<dyn Io>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(30), socket.connect(shared.args.server))
        .await
        .context("connect timeout")??;
    stream.set_nodelay(true)?;
    let Some(tls) = &shared.tls else {
        return Ok(Box::new(stream));
    };
    let name = rustls::pki_types::ServerName::IpAddress(shared.args.server.ip().into());
    let stream = tokio::time::timeout(Duration::from_secs(30), tls.connect(name, stream))
        .await
        .context("TLS handshake timeout")??;
    Ok(Box::new(stream))
}

const MARK: &[u8] = b"\ndata:";

/// Latency histogram shards.
const SHARDS: usize = 16;

/// Counts events (`\ndata:` lines) until the stream ends or `close`. The
/// body's chunked framing never splits an event's lines (both servers write
/// whole events per chunk), so the raw bytes are counted.
async fn read(
    shared: &Shared,
    shard: usize,
    opened: (Box<dyn Io>, Vec<u8>),
    mut closed: watch::Receiver<u64>,
) {
    let (mut stream, first) = opened;
    let c = &shared.counters;
    c.open.fetch_add(1, Ordering::SeqCst);
    let mut marks = Marks::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending = Some(first);
    loop {
        let data: &[u8] = if let Some(first) = pending.take() {
            buf[..first.len().min(16 * 1024)].copy_from_slice(&first[..first.len().min(16 * 1024)]);
            &buf[..first.len().min(16 * 1024)]
        } else {
            let n = tokio::select! {
                n = stream.read(&mut buf) => n,
                _ = closed.changed() => break,
            };
            match n {
                Ok(0) | Err(_) => {
                    c.errors.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(n) => &buf[..n],
            }
        };
        received(shared, shard, &mut marks, data);
    }
    c.open.fetch_sub(1, Ordering::SeqCst);
}

/// Counts what one read of a stream brought: bytes, events, latencies.
pub(crate) fn received(shared: &Shared, shard: usize, marks: &mut Marks, data: &[u8]) {
    let c = &shared.counters;
    c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    c.events.fetch_add(marks.count(data), Ordering::Relaxed);
    if c.latency_on.load(Ordering::Relaxed) {
        record_latency(shared, shard, data);
    }
}

/// `\ndata:` marks in a stream's reads, one split over two reads counted
/// once.
pub(crate) struct Marks {
    finder: memchr::memmem::Finder<'static>,
    /// The end of the previous read.
    carry: Vec<u8>,
}

impl Default for Marks {
    fn default() -> Self {
        Self {
            finder: memchr::memmem::Finder::new(MARK),
            carry: Vec::with_capacity(MARK.len() * 2),
        }
    }
}

impl Marks {
    fn count(&mut self, data: &[u8]) -> u64 {
        let mut n = self.finder.find_iter(data).count() as u64;
        if !self.carry.is_empty() {
            let take = data.len().min(MARK.len() - 1);
            self.carry.extend_from_slice(&data[..take]);
            n += self.finder.find_iter(&self.carry).count() as u64;
        }
        self.carry.clear();
        let tail = data.len().saturating_sub(MARK.len() - 1);
        self.carry.extend_from_slice(&data[tail..]);
        n
    }
}

/// Reads `"t":<unix micros>` from each event in `data`.
fn record_latency(shared: &Shared, shard: usize, data: &[u8]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut h = shared.latency[shard % SHARDS].lock();
    for at in memchr::memmem::find_iter(data, b"\"t\":") {
        let digits = data[at + 4..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .try_fold(0u64, |acc, &b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            });
        match digits {
            Some(t) if t > 0 && t <= now => {
                let _ = h.record((now - t).max(1));
            }
            _ => {
                shared.counters.unparsed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// HTTP/2 subscribers (`--tls <ca> --h2-streams <k>`): streams `k` to a
// connection, each read with the same cheap counting as the HTTP/1.1 ones,
// through the h2 crate's client so that a stream costs a few hundred bytes
// and each DATA frame's window is released as soon as it is counted.

/// Opens `n` streams over `ceil(n / k)` connections (at most 64 handshakes
/// at once); answers when each stream has its head.
pub(crate) async fn connect_h2(
    shared: &Arc<Shared>,
    streams: &mut tokio::task::JoinSet<()>,
    n: u64,
) -> serde_json::Value {
    let per = shared.args.h2_streams.max(1);
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(64));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Notify::new());
    let count = |c: u64| per.min(n - c * per);
    for c in 0..n.div_ceil(per) {
        let closed = shared.close.subscribe();
        let (shared, gate, done, failed, all) = (
            shared.clone(),
            gate.clone(),
            done.clone(),
            failed.clone(),
            all.clone(),
        );
        let k = count(c);
        streams.spawn(async move {
            let report = |ok: u64, bad: u64| {
                failed.fetch_add(bad, Ordering::SeqCst);
                if done.fetch_add(ok + bad, Ordering::SeqCst) + ok + bad == n {
                    all.notify_one();
                }
            };
            let permit = gate.acquire_owned().await;
            let source =
                shared.args.sources[usize::try_from(c).unwrap_or(0) % shared.args.sources.len()];
            let opened = open_h2(&shared, source, k).await;
            drop(permit);
            let bodies = match opened {
                Ok(bodies) => bodies,
                Err(_) => {
                    report(0, k);
                    return;
                }
            };
            report(bodies.len() as u64, k - bodies.len() as u64);
            let mut readers = tokio::task::JoinSet::new();
            for (i, body) in bodies.into_iter().enumerate() {
                let (shared, closed) = (shared.clone(), closed.clone());
                let shard = usize::try_from(c).unwrap_or(0) * 131 + i;
                readers.spawn(async move { read_h2(&shared, shard, body, closed).await });
            }
            while readers.join_next().await.is_some() {}
        });
    }
    if n > 0 {
        all.notified().await;
    }
    serde_json::json!({
        "connected": n - failed.load(Ordering::SeqCst),
        "failed": failed.load(Ordering::SeqCst),
        "secs": started.elapsed().as_secs_f64(),
    })
}

/// One connection with `k` streams whose heads said 200.
async fn open_h2(shared: &Shared, source: IpAddr, k: u64) -> Result<Vec<h2::RecvStream>> {
    let io = dial(shared, source).await?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, bytes::Bytes>(io)
        .await
        .context("HTTP/2 handshake")?;
    // Ends once every stream and the sender are gone.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let uri = format!("https://{}{}", shared.args.server, shared.args.path);
    let mut responses = Vec::new();
    for _ in 0..k {
        let mut ready = sender.clone().ready().await?;
        let request = http::Request::get(uri.as_str()).body(())?;
        let (response, _) = ready.send_request(request, true)?;
        responses.push(response);
    }
    let mut bodies = Vec::new();
    for response in responses {
        let response = tokio::time::timeout(Duration::from_secs(30), response)
            .await
            .context("response timeout")??;
        if response.status() == 200 {
            bodies.push(response.into_body());
        }
    }
    Ok(bodies)
}

async fn read_h2(
    shared: &Shared,
    shard: usize,
    mut body: h2::RecvStream,
    mut closed: watch::Receiver<u64>,
) {
    let c = &shared.counters;
    c.open.fetch_add(1, Ordering::SeqCst);
    let mut marks = Marks::default();
    loop {
        let chunk = tokio::select! {
            chunk = body.data() => chunk,
            _ = closed.changed() => break,
        };
        match chunk {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                received(shared, shard, &mut marks, &data);
            }
            _ => {
                c.errors.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
    }
    c.open.fetch_sub(1, Ordering::SeqCst);
}

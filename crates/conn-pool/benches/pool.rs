//! The pool's costs, each beside the least its job could cost, in one run:
//!
//! - `subscribe`: subscribe + unsubscribe on a stream that is already open,
//!   against a `Mutex<HashMap>` reference count (the least a registry does).
//! - `fanout/N`: per item, parsing one upstream chunk and handing every item
//!   to N subscribers (1, 100, 10,000), against a bare `tokio::sync::broadcast`
//!   of already-parsed items to N receivers.
//!
//! `cargo xtask bench` runs this and writes the ratios into the crate
//! README; memory per idle subscriber comes from `tests/memory.rs`. Set
//! `SSE_BENCH_QUICK=1` for a smoke run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use sse_conn_pool::{Connector, Pool, PoolConfig, StreamItem, Subscription, Target};
use sse_parser::Event;
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, mpsc};

/// Items per measured batch (one upstream chunk).
const BATCH: usize = 64;

fn quick() -> bool {
    std::env::var_os("SSE_BENCH_QUICK").is_some()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// An upstream whose single connection's body the benchmark feeds.
#[derive(Clone, Default)]
struct Fed {
    feed: Arc<Mutex<Option<mpsc::Sender<Bytes>>>>,
}

struct FedBody(mpsc::Receiver<Bytes>);

impl Body for FedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

impl Connector for Fed {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        let (client, server) = tokio::io::duplex(1 << 20);
        let feed = self.feed.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_: hyper::Request<Incoming>| {
                let (tx, rx) = mpsc::channel(4);
                *feed.lock() = Some(tx);
                let mut response = hyper::Response::new(FedBody(rx));
                response.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("text/event-stream"),
                );
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Ok(TokioIo::new(client))
    }
}

fn pool_config() -> PoolConfig {
    let mut config = PoolConfig::new("http://upstream.test/v1/quotes/{topic}/stream");
    // Room for a whole batch per subscriber; no health work in the way.
    config.stream.channel_capacity = 4 * BATCH;
    config
}

/// A chunk of `BATCH` market-data events with ids from `first`.
fn chunk(first: u64) -> Bytes {
    let mut out = String::with_capacity(BATCH * 100);
    for i in first..first + BATCH as u64 {
        out.push_str(&format!(
            "id: {i}\nevent: quote\ndata: {{\"s\":\"AAPL\",\"b\":189.12,\"a\":189.14,\"t\":{}}}\n\n",
            1_700_000_000_000u64 + i
        ));
    }
    Bytes::from(out)
}

/// Receives `n` events on `sub`, skipping status updates.
async fn take_events(sub: &mut Subscription, n: usize) {
    let mut seen = 0;
    while seen < n {
        if let Ok(StreamItem::Event(_)) = sub.recv().await {
            seen += 1;
        }
    }
}

fn subscribe(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("subscribe");
    group.throughput(Throughput::Elements(1));
    let pool = rt.block_on(async { Pool::new(pool_config(), Fed::default()).expect("valid") });
    let _held = rt.block_on(async { pool.subscribe("AAPL").expect("subscribed") });
    group.bench_function("sse-conn-pool", |b| {
        let _enter = rt.enter();
        b.iter(|| drop(pool.subscribe("AAPL").expect("subscribed")));
    });
    let registry: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    registry.lock().insert("AAPL".into(), 1);
    group.bench_function("mutex-hashmap", |b| {
        b.iter(|| {
            *registry.lock().get_mut("AAPL").expect("present") += 1;
            *registry.lock().get_mut("AAPL").expect("present") -= 1;
        });
    });
    group.finish();
    rt.block_on(pool.close());
}

fn fanout(c: &mut Criterion) {
    let counts: &[usize] = if quick() {
        &[1, 100]
    } else {
        &[1, 100, 10_000]
    };
    for &n in counts {
        let mut group = c.benchmark_group(format!("fanout/{n}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        if n >= 10_000 {
            group.sample_size(10);
        }
        let rt = runtime();
        let upstream = Fed::default();
        let pool = rt.block_on(async { Pool::new(pool_config(), upstream.clone()).expect("ok") });
        let mut subs: Vec<Subscription> = rt.block_on(async {
            (0..n)
                .map(|_| pool.subscribe("AAPL").expect("ok"))
                .collect()
        });
        // Wait for the connection, then drain the status updates.
        let feed = rt.block_on(async {
            loop {
                if let Some(feed) = upstream.feed.lock().clone() {
                    break feed;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut next_id = 1u64;
        rt.block_on(async {
            feed.send(chunk(next_id)).await.expect("open");
            for sub in &mut subs {
                take_events(sub, BATCH).await;
            }
        });
        next_id += BATCH as u64;
        group.bench_function("sse-conn-pool", |b| {
            b.iter_batched(
                || {
                    let c = chunk(next_id);
                    next_id += BATCH as u64;
                    c
                },
                |data| {
                    rt.block_on(async {
                        feed.send(data).await.expect("open");
                        for sub in &mut subs {
                            take_events(sub, BATCH).await;
                        }
                    });
                },
                BatchSize::SmallInput,
            );
        });
        drop(subs);
        rt.block_on(pool.close());

        // The peer: already-parsed items through a bare broadcast channel.
        let (tx, _) = broadcast::channel::<StreamItem>(4 * BATCH);
        let mut receivers: Vec<_> = (0..n).map(|_| tx.subscribe()).collect();
        let items: Vec<StreamItem> = (0..BATCH)
            .map(|i| {
                let mut event = Event::new(format!("{{\"s\":\"AAPL\",\"b\":189.12,\"t\":{i}}}"));
                event.id = format!("{i}").into();
                StreamItem::Event(event)
            })
            .collect();
        group.bench_function("tokio-broadcast", |b| {
            b.iter(|| {
                rt.block_on(async {
                    for item in &items {
                        let _ = tx.send(item.clone());
                    }
                    for rx in &mut receivers {
                        for _ in 0..BATCH {
                            let _ = rx.recv().await;
                        }
                    }
                });
            });
        });
        group.finish();
    }
}

fn config() -> Criterion {
    let c = Criterion::default().configure_from_args();
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_secs(1))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = subscribe, fanout
}
criterion_main!(benches);

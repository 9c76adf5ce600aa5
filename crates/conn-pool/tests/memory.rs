//! Memory per idle subscriber, measured by a global allocator that tracks
//! live heap bytes: 10,000 subscriptions to one open stream, against 10,000
//! bare `tokio::sync::broadcast` receivers. `cargo xtask bench` prints the
//! line this test prints; the test fails if a subscriber costs more than its
//! bound.
//!
//! This file holds a single test so that no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use sse_conn_pool::{Connector, Pool, PoolConfig, StreamItem, Subscription, Target};
use tokio::sync::broadcast;

struct Tracking;

static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size.cast_signed() - layout.size().cast_signed(),
            Ordering::Relaxed,
        );
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

const SUBSCRIBERS: usize = 10_000;
/// The bound: heap bytes plus the handle itself, per idle subscriber.
const MAX_BYTES_PER_SUBSCRIBER: usize = 256;

/// An upstream that never answers: the stream stays in `Connecting`, so
/// nothing but the subscriptions changes while they are counted.
#[derive(Clone)]
struct Silent;

impl Connector for Silent {
    type Io = hyper_util::rt::TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        std::future::pending().await
    }
}

fn live() -> usize {
    usize::try_from(LIVE.load(Ordering::Relaxed)).unwrap_or(0)
}

#[tokio::test]
async fn memory_per_idle_subscriber() {
    let pool = Pool::new(
        PoolConfig::new("http://upstream.test/v1/quotes/{topic}/stream"),
        Silent,
    )
    .unwrap();
    let first = pool.subscribe("AAPL").unwrap();
    tokio::task::yield_now().await;
    let mut subs: Vec<Subscription> = Vec::with_capacity(SUBSCRIBERS);
    let before = live();
    for _ in 0..SUBSCRIBERS {
        subs.push(pool.subscribe("AAPL").unwrap());
    }
    let heap = live().saturating_sub(before) / SUBSCRIBERS;
    let ours = heap + size_of::<Subscription>();
    assert_eq!(pool.snapshot()[0].subscribers, SUBSCRIBERS + 1);

    let (tx, _) = broadcast::channel::<StreamItem>(1024);
    let mut receivers = Vec::with_capacity(SUBSCRIBERS);
    let before = live();
    for _ in 0..SUBSCRIBERS {
        receivers.push(tx.subscribe());
    }
    let bare_heap = live().saturating_sub(before) / SUBSCRIBERS;
    let bare = bare_heap + size_of::<broadcast::Receiver<StreamItem>>();

    println!(
        "memory per idle subscriber: sse-conn-pool {ours} bytes ({heap} heap + {} handle), \
         tokio broadcast receiver {bare} bytes ({bare_heap} heap + {} handle)",
        size_of::<Subscription>(),
        size_of::<broadcast::Receiver<StreamItem>>(),
    );
    assert!(
        ours <= MAX_BYTES_PER_SUBSCRIBER,
        "an idle subscriber costs {ours} bytes, over the {MAX_BYTES_PER_SUBSCRIBER}-byte bound"
    );
    drop((subs, receivers, first));
    pool.close().await;
}

//! Allocations per event on the market-data workload, counted by a counting
//! global allocator. Data is a view of the input, the event type is interned,
//! and ids (which change every event) are stored inline when short and
//! copied into a shared slab when long.
//!
//! This file holds a single test so that no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sse_parser::{Item, Parser};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const EVENTS: usize = 20_000;

/// Input (a) of the benchmark; `long_ids` uses 36-byte UUID-like ids, longer
/// than `Utf8Bytes` stores inline.
fn market_data(long_ids: bool) -> Bytes {
    let mut out = String::new();
    for i in 0..EVENTS {
        let id = if long_ids {
            format!("6f1c2a9e-0b7d-4c1e-9a3f-{:012}", 100_000 + i)
        } else {
            format!("{}", 100_000 + i)
        };
        out.push_str(&format!(
            "id: {id}\nevent: quote\ndata: {{\"s\":\"AAPL\",\"b\":189.12,\"a\":189.14,\"t\":{}}}\n\n",
            1_700_000_000_123u64 + i as u64
        ));
    }
    Bytes::from(out)
}

/// Chunks cut from one shared buffer, as an HTTP client hands them over.
fn chunks(input: &Bytes, size: usize) -> Vec<Bytes> {
    (0..input.len())
        .step_by(size)
        .map(|at| input.slice(at..input.len().min(at + size)))
        .collect()
}

/// Parses every chunk and drops every item; returns (events, allocations).
fn count(chunks: &[Bytes]) -> (usize, u64) {
    let mut parser = Parser::new();
    let mut events = 0;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for chunk in chunks {
        parser.feed(chunk.clone());
        while let Some(item) = parser.next_item().expect("within limits") {
            if let Item::Event(event) = item {
                std::hint::black_box(&event);
                events += 1;
            }
        }
    }
    (events, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

#[test]
fn market_data_needs_at_most_one_allocation_per_event() {
    // Short ids are stored inline: the count is a small constant (buffers
    // set up once), whatever the number of events.
    let input = market_data(false);
    for size in [16 * 1024, 1024] {
        let (events, allocations) = count(&chunks(&input, size));
        assert_eq!(events, EVENTS);
        println!("{size}-byte chunks: {allocations} allocations for {events} events");
        assert!(
            allocations <= 16,
            "{allocations} allocations for {events} events in {size}-byte chunks"
        );
    }
    // Long ids are copied into shared 4 KiB slabs: one allocation per ~100 ids.
    let input = market_data(true);
    let (events, allocations) = count(&chunks(&input, 16 * 1024));
    assert_eq!(events, EVENTS);
    println!("16384-byte chunks, 36-byte ids: {allocations} allocations for {events} events");
    assert!(
        allocations * 50 <= events as u64,
        "{allocations} allocations for {events} events with long ids"
    );
}

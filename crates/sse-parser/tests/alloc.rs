//! Allocations per event on the market-data workload, counted by a counting
//! global allocator. Data is a view of the input, the event type is interned,
//! and ids (which change every event) are copied into a shared slab.
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

fn market_data() -> Bytes {
    let mut out = String::new();
    for i in 0..EVENTS {
        out.push_str(&format!(
            "id: {}\nevent: quote\ndata: {{\"s\":\"AAPL\",\"b\":189.12,\"a\":189.14,\"t\":{}}}\n\n",
            100_000 + i,
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
    let input = market_data();
    for size in [16 * 1024, 1024] {
        let chunks = chunks(&input, size);
        let (events, allocations) = count(&chunks);
        assert_eq!(events, EVENTS);
        let per_event = allocations as f64 / events as f64;
        println!(
            "{size}-byte chunks: {allocations} allocations for {events} events ({per_event:.3} per event)"
        );
        // The goal is at most one per event; the design does far better (a
        // slab for ids every few hundred events), so guard that instead.
        assert!(
            allocations * 100 <= events as u64,
            "{allocations} allocations for {events} events in {size}-byte chunks"
        );
    }
}

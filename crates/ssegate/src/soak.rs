//! The `soak` feature: a counting global allocator (live bytes and blocks)
//! whose figures `/debug/vars` reports, so that the soak harness can tell a
//! leak from noise. Off in normal builds: counting costs two atomic
//! operations per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use sse_bridge::HeapStats;

struct Counting;

static BYTES: AtomicU64 = AtomicU64::new(0);
static BLOCKS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
            BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn probe() -> HeapStats {
    HeapStats {
        bytes: BYTES.load(Ordering::Relaxed),
        blocks: BLOCKS.load(Ordering::Relaxed),
    }
}

/// Adds the probe (for `/debug/vars`) to the gateway's hooks, and the
/// deliberate leak when `SSEGATE_SOAK_LEAK=1` (the harness's proof that it
/// catches a leak; see `sse_bridge::Hooks::leak_on_release`).
pub(crate) fn install(hooks: sse_bridge::Hooks) -> sse_bridge::Hooks {
    let hooks = hooks.heap_probe(probe);
    if std::env::var_os("SSEGATE_SOAK_LEAK").is_some_and(|v| v == "1") {
        tracing::warn!("SSEGATE_SOAK_LEAK=1: leaking one entry per released subscriber");
        return hooks.leak_on_release();
    }
    hooks
}

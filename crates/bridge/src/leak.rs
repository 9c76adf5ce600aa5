//! A deliberate leak, for proving that the soak harness catches one (the
//! `leak-injection` feature; never in production builds).
//!
//! Once [`enable`]d, every released subscriber leaves one entry behind in a
//! map nobody reads: the kind of leak that stays reachable, so sanitizers
//! never report it, and that only a count of live heap bytes against
//! operations shows. `/debug/vars` does not report it: the soak must find
//! it from the heap alone, as it would find a real one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

static ON: AtomicBool = AtomicBool::new(false);
static KEPT: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);

/// Starts leaking one entry per released subscriber.
pub fn enable() {
    ON.store(true, Ordering::SeqCst);
}

/// Entries leaked so far.
pub fn entries() -> usize {
    KEPT.lock().as_ref().map_or(0, HashMap::len)
}

pub(crate) fn on_release(ip: IpAddr) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let mut kept = KEPT.lock();
    let map = kept.get_or_insert_with(HashMap::new);
    let key = map.len() as u64;
    map.insert(key, format!("released subscriber from {ip}"));
}

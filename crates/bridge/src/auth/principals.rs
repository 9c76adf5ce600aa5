//! Streams per token holder: bounded by `max_streams_per_token` each, an
//! entry only while its holder has a stream.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Streams per token holder: bounded by `max_streams_per_token` each, and
/// in number by the gateway's stream limit (an entry lives only while its
/// holder has a stream).
pub(crate) struct Principals {
    state: Mutex<PrincipalState>,
}

struct PrincipalState {
    max_per: usize,
    open: HashMap<Arc<str>, usize>,
    admitted: u64,
    released: u64,
}

/// A holder's place; dropping it frees it.
pub(crate) struct PrincipalGuard {
    registry: Arc<Principals>,
    principal: Arc<str>,
}

impl Principals {
    pub(crate) fn new(max_per: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(PrincipalState {
                max_per,
                open: HashMap::new(),
                admitted: 0,
                released: 0,
            }),
        })
    }

    pub(crate) fn set_max(&self, max_per: usize) {
        self.state.lock().max_per = max_per;
    }

    /// Takes a place for `principal`, or `None` at its limit.
    pub(crate) fn admit(self: &Arc<Self>, principal: Arc<str>) -> Option<PrincipalGuard> {
        let mut s = self.state.lock();
        let max = s.max_per;
        let count = s.open.entry(principal.clone()).or_insert(0);
        // `max` is at least 1, so a refused holder already has an entry.
        if *count >= max {
            return None;
        }
        *count += 1;
        s.admitted += 1;
        crate::metrics::record_principals(s.open.len());
        Some(PrincipalGuard {
            registry: self.clone(),
            principal,
        })
    }

    /// Holders with a stream, streams admitted and released (ever).
    pub(crate) fn counts(&self) -> (usize, usize, u64, u64) {
        let s = self.state.lock();
        (s.open.len(), s.open.values().sum(), s.admitted, s.released)
    }
}

impl Drop for PrincipalGuard {
    fn drop(&mut self) {
        let mut s = self.registry.state.lock();
        s.released += 1;
        if let Some(count) = s.open.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                s.open.remove(&self.principal);
            }
        }
        crate::metrics::record_principals(s.open.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_counts_streams_per_holder_and_forgets_idle_ones() {
        let registry = Principals::new(2);
        let a: Arc<str> = Arc::from("token:a");
        let first = registry.admit(a.clone()).unwrap();
        let second = registry.admit(a.clone()).unwrap();
        assert!(
            registry.admit(a.clone()).is_none(),
            "a third is over the limit"
        );
        let b = registry.admit(Arc::from("token:b")).unwrap();
        assert_eq!(registry.counts(), (2, 3, 3, 0));
        drop((first, second, b));
        assert_eq!(registry.counts(), (0, 0, 3, 3));
    }
}

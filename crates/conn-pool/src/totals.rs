//! Lifetime counters summed over streams (the pool's, and a packed
//! route's connections).

use crate::stream::StreamState;

/// Counters of streams, summed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) attempts: u64,
    pub(crate) opened: u64,
    pub(crate) events: u64,
    pub(crate) rotations: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: [u64; 4],
}

impl Totals {
    pub(crate) fn add(&mut self, s: &StreamState) {
        self.merge(&Self {
            attempts: s.attempts,
            opened: s.opened,
            events: s.events,
            rotations: s.rotations,
            bytes: s.bytes,
            errors: s.errors,
        });
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        self.attempts += other.attempts;
        self.opened += other.opened;
        self.events += other.events;
        self.rotations += other.rotations;
        self.bytes += other.bytes;
        for (total, n) in self.errors.iter_mut().zip(other.errors) {
            *total += n;
        }
    }
}

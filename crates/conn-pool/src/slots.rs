//! The pool's slot accounting, as plain data: which keys hold a slot, how
//! many subscribers each has, which are lingering, and whether the pool is
//! closed. The pool keeps it under one lock; the linger timers and the
//! subscription guards call in from other tasks.
//!
//! The race this guards against: a linger timer fires for a key whose last
//! subscriber left, while a new subscriber joins that key. Every join bumps
//! a generation; a timer expires its key only if the key is still idle and
//! its generation is the one the timer was started with.
//!
//! This file has no dependencies beyond `std`, so the loom model
//! (`tests/loom.rs`) compiles it as is and checks every interleaving of
//! subscribe, release, linger expiry and close.

use std::collections::HashMap;

/// One key's slot.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    /// What the pool keeps per key (the stream, its linger timer).
    pub(crate) value: T,
    /// Subscribers now.
    pub(crate) subscribers: usize,
    /// The generation of the last join or release.
    generation: u64,
    /// Whether it counts against the cap (a packed topic does not: its
    /// group does, through `reserved`).
    counts: bool,
}

/// The answer to a join.
#[derive(Debug)]
pub(crate) enum Join<'a, T> {
    /// The key had a slot: one more subscriber (a lingering slot is revived).
    Joined(&'a mut Slot<T>),
    /// No slot for the key, and room for one: call [`Slots::insert`].
    Vacant,
    /// No slot for the key, and no room.
    AtCapacity,
    /// The pool is closed.
    Closed,
}

/// Every key's slot, bounded by `cap`: counted slots plus `reserved`
/// (streams held outside the slots) stay within it.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    entries: HashMap<String, Slot<T>>,
    cap: usize,
    /// Slots that count against the cap.
    counted: usize,
    /// Streams held elsewhere that count against the cap too.
    reserved: usize,
    closed: bool,
    generation: u64,
    /// Subscribers over every slot, kept as a running total so that metrics
    /// cost O(1) per change.
    subscribers: usize,
    /// Slots ever inserted, and ever removed (expired or closed): their
    /// difference is `len()`, which the soak checks at every sample.
    created: u64,
    removed: u64,
}

impl<T> Slots<T> {
    /// No slot yet; at most `cap` at once.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            cap,
            counted: 0,
            reserved: 0,
            closed: false,
            generation: 0,
            subscribers: 0,
            created: 0,
            removed: 0,
        }
    }

    /// A subscriber wants `key`.
    #[allow(
        dead_code,
        reason = "the loom model joins counted slots; the pool says which"
    )]
    pub(crate) fn join(&mut self, key: &str) -> Join<'_, T> {
        self.join_as(key, true)
    }

    /// A subscriber wants `key`; a new slot for it counts against the cap
    /// if `counts` (else its caller bounds it).
    pub(crate) fn join_as(&mut self, key: &str, counts: bool) -> Join<'_, T> {
        if self.closed {
            return Join::Closed;
        }
        self.generation += 1;
        let generation = self.generation;
        let room = !counts || self.counted + self.reserved < self.cap;
        match self.entries.get_mut(key) {
            Some(slot) => {
                slot.subscribers += 1;
                self.subscribers += 1;
                slot.generation = generation;
                Join::Joined(slot)
            }
            None if room => Join::Vacant,
            None => Join::AtCapacity,
        }
    }

    /// Fills the slot a [`Join::Vacant`] found, with its first subscriber.
    /// Only call it under the same lock as that join.
    pub(crate) fn insert(&mut self, key: &str, value: T) {
        self.insert_as(key, value, true);
    }

    /// As [`insert`](Self::insert), after a [`join_as`](Self::join_as).
    pub(crate) fn insert_as(&mut self, key: &str, value: T, counts: bool) {
        debug_assert!(!self.closed && (!counts || self.counted + self.reserved < self.cap));
        self.subscribers += 1;
        self.created += 1;
        self.counted += usize::from(counts);
        self.entries.insert(
            key.to_string(),
            Slot {
                value,
                subscribers: 1,
                generation: self.generation,
                counts,
            },
        );
    }

    /// A subscriber of `key` left. `Some(generation)` when it was the last:
    /// start the linger timer with that generation (and keep its handle in
    /// the slot's value, which this returns).
    pub(crate) fn release(&mut self, key: &str) -> Option<(u64, &mut T)> {
        self.generation += 1;
        let generation = self.generation;
        let slot = self.entries.get_mut(key)?;
        if slot.subscribers > 0 {
            slot.subscribers -= 1;
            self.subscribers -= 1;
        }
        if slot.subscribers > 0 {
            return None;
        }
        slot.generation = generation;
        Some((generation, &mut slot.value))
    }

    /// A subscriber of `key` left, if the slot is still the one it joined
    /// (`same` says so of the slot's value): as [`release`](Self::release),
    /// and nothing for a slot evicted (and maybe refilled) since.
    pub(crate) fn release_if(
        &mut self,
        key: &str,
        same: impl FnOnce(&T) -> bool,
    ) -> Option<(u64, &mut T)> {
        if !self.entries.get(key).is_some_and(|slot| same(&slot.value)) {
            return None;
        }
        self.release(key)
    }

    /// Removes `key` now, subscribers or not (its stream stopped for good):
    /// the slot is free at once; its subscribers' later releases find
    /// nothing (see [`release_if`](Self::release_if)).
    pub(crate) fn evict(&mut self, key: &str) -> Option<T> {
        let slot = self.entries.remove(key)?;
        self.generation += 1;
        self.subscribers -= slot.subscribers;
        self.removed += 1;
        self.counted -= usize::from(slot.counts);
        Some(slot.value)
    }

    /// A linger timer started at `generation` fired: removes `key` if it is
    /// still idle and nobody joined or left since.
    pub(crate) fn expire(&mut self, key: &str, generation: u64) -> Option<T> {
        match self.entries.get(key) {
            Some(slot) if slot.subscribers == 0 && slot.generation == generation => {
                self.removed += 1;
                self.counted -= usize::from(slot.counts);
                self.entries.remove(key).map(|slot| slot.value)
            }
            _ => None,
        }
    }

    /// Closes: no join succeeds from now on; returns every slot's value.
    pub(crate) fn close(&mut self) -> Vec<T> {
        self.closed = true;
        self.subscribers = 0;
        self.counted = 0;
        self.removed += self.entries.len() as u64;
        self.entries.drain().map(|(_, slot)| slot.value).collect()
    }

    /// Whether [`close`](Self::close) was called.
    #[allow(
        dead_code,
        reason = "the loom model asserts on it; the pool checks via join"
    )]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The slot of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Slot<T>> {
        self.entries.get(key)
    }

    /// Slots held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Subscribers over every slot.
    pub(crate) fn subscribers(&self) -> usize {
        debug_assert_eq!(
            self.subscribers,
            self.entries.values().map(|s| s.subscribers).sum::<usize>()
        );
        self.subscribers
    }

    /// Slots that count against the cap.
    pub(crate) fn counted(&self) -> usize {
        self.counted
    }

    /// Streams held outside the slots that count against the cap.
    pub(crate) fn set_reserved(&mut self, reserved: usize) {
        self.reserved = reserved;
    }

    /// A new cap for the next joins (slots beyond it stay until released).
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// Slots ever created and ever removed.
    pub(crate) fn lifetime(&self) -> (u64, u64) {
        (self.created, self.removed)
    }

    /// Every slot, for snapshots.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Slot<T>)> {
        self.entries.iter()
    }
}

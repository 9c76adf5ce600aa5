//! A loom model of the pool's slot accounting (F17): subscribe against
//! release against linger expiry against close, in every interleaving loom
//! explores. It compiles the pool's own `src/slots.rs` and drives it the way
//! the pool does: every operation under one mutex, a stream's value dropped
//! outside it, and a linger timer that may fire at any later point (even
//! after a new subscriber "cancelled" it: the generation check must hold).

#![allow(dead_code, unreachable_pub)] // The pool uses more of slots.rs than the model.

#[path = "../src/slots.rs"]
mod slots;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use slots::{Join, Slots};

/// Stands for an upstream stream: counts itself alive until dropped.
struct Stream(Arc<AtomicUsize>);

impl Stream {
    fn new(alive: &Arc<AtomicUsize>) -> Self {
        alive.fetch_add(1, Ordering::SeqCst);
        Self(alive.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Pool {
    slots: Mutex<Slots<Stream>>,
    alive: Arc<AtomicUsize>,
    cap: usize,
}

impl Pool {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Slots::new(cap)),
            alive: Arc::new(AtomicUsize::new(0)),
            cap,
        })
    }

    /// As `Pool::subscribe`: true if subscribed.
    fn subscribe(&self, key: &str) -> bool {
        let mut slots = self.slots.lock().expect("never poisoned");
        let joined = match slots.join(key) {
            Join::Joined(_) => true,
            Join::Vacant => {
                slots.insert(key, Stream::new(&self.alive));
                true
            }
            Join::AtCapacity | Join::Closed => false,
        };
        assert!(slots.len() <= self.cap, "the cap holds");
        joined
    }

    /// As the subscription guard's drop: the generation to expire with, if
    /// this was the last subscriber.
    fn release(&self, key: &str) -> Option<u64> {
        self.slots
            .lock()
            .expect("never poisoned")
            .release(key)
            .map(|(generation, _)| generation)
    }

    /// As the linger timer firing; the stream is stopped outside the lock.
    fn expire(&self, key: &str, generation: u64) {
        let removed = self
            .slots
            .lock()
            .expect("never poisoned")
            .expire(key, generation);
        drop(removed);
    }

    /// As `Pool::close`.
    fn close(&self) {
        let streams = self.slots.lock().expect("never poisoned").close();
        drop(streams);
    }

    /// While subscribed, the key's stream exists (unless the pool closed).
    fn assert_held(&self, key: &str) {
        let slots = self.slots.lock().expect("never poisoned");
        assert!(
            slots.is_closed() || slots.get(key).is_some_and(|s| s.subscribers > 0),
            "a subscribed key lost its stream"
        );
    }

    /// At the end: nothing leaked, the books balance.
    fn assert_consistent(&self) {
        let slots = self.slots.lock().expect("never poisoned");
        assert_eq!(
            self.alive.load(Ordering::SeqCst),
            slots.len(),
            "every live stream is in a slot, every slot has a live stream"
        );
        assert_eq!(slots.subscribers(), 0, "every subscriber released");
        if slots.is_closed() {
            assert_eq!(slots.len(), 0, "nothing survives close");
        }
    }
}

/// A subscriber's life: subscribe, release, and its linger timer firing.
fn subscriber(pool: &Pool, key: &str) {
    if pool.subscribe(key) {
        pool.assert_held(key);
        if let Some(generation) = pool.release(key) {
            pool.expire(key, generation);
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounded preemptions keep the search exhaustive within CI's minutes.
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn subscribe_release_and_expiry_race_on_one_key() {
    model(|| {
        let pool = Pool::new(2);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || subscriber(&pool, "A"))
            })
            .collect();
        subscriber(&pool, "A");
        for t in threads {
            t.join().unwrap();
        }
        pool.assert_consistent();
        // Whatever the interleaving, the last timer removed the idle slot.
        assert_eq!(pool.slots.lock().expect("never poisoned").len(), 0);
    });
}

#[test]
fn close_races_subscribe_and_release() {
    model(|| {
        let pool = Pool::new(2);
        let a = {
            let pool = pool.clone();
            thread::spawn(move || subscriber(&pool, "A"))
        };
        let b = {
            let pool = pool.clone();
            thread::spawn(move || subscriber(&pool, "B"))
        };
        pool.close();
        a.join().unwrap();
        b.join().unwrap();
        pool.assert_consistent();
        assert!(!pool.subscribe("A"), "no subscription after close");
        assert_eq!(pool.alive.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn the_cap_holds_while_keys_come_and_go() {
    model(|| {
        let pool = Pool::new(1);
        let a = {
            let pool = pool.clone();
            thread::spawn(move || subscriber(&pool, "A"))
        };
        subscriber(&pool, "B");
        a.join().unwrap();
        pool.assert_consistent();
        assert!(pool.slots.lock().expect("never poisoned").len() <= 1);
    });
}

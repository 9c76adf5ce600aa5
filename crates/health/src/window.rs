//! Sliding windows over time, with `now` as an input: a ring of per-second
//! counters and a bounded reservoir of latency samples.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Counts per whole second over the last `len` seconds. Memory is fixed: one
/// `u64` per second of window.
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    origin: Instant,
    /// `buckets[s % len]` counts second `s` since `origin`...
    buckets: Vec<u64>,
    /// ...for seconds in `(head - len, head]`.
    head: u64,
}

impl Counter {
    pub(crate) fn new(origin: Instant, window: Duration) -> Self {
        let len = window.as_secs().max(1);
        Self {
            origin,
            buckets: vec![0; usize::try_from(len).unwrap_or(usize::MAX)],
            head: 0,
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Moves the window to `now`, clearing the seconds that left it.
    fn roll(&mut self, now: Instant) {
        let second = self.second(now);
        if second <= self.head {
            return;
        }
        let len = self.buckets.len() as u64;
        let stale = (second - self.head).min(len);
        for s in 0..stale {
            let idx = self.slot(second - s);
            self.buckets[idx] = 0;
        }
        self.head = second;
    }

    pub(crate) fn add(&mut self, now: Instant, n: u64) {
        self.roll(now);
        let second = self.second(now);
        // A sample older than the window (time never goes back, but be total).
        if second + (self.buckets.len() as u64) <= self.head {
            return;
        }
        let idx = self.slot(second);
        self.buckets[idx] = self.buckets[idx].saturating_add(n);
    }

    /// The bucket of a second.
    fn slot(&self, second: u64) -> usize {
        // Cannot truncate: the remainder is below `buckets.len()`, a usize.
        #[allow(clippy::cast_possible_truncation)]
        let slot = (second % self.buckets.len() as u64) as usize;
        slot
    }

    /// The sum over the window ending at `now`.
    pub(crate) fn sum(&mut self, now: Instant) -> u64 {
        self.roll(now);
        self.buckets.iter().sum()
    }

    pub(crate) fn window(&self) -> Duration {
        Duration::from_secs(self.buckets.len() as u64)
    }

    /// When the oldest count in the window leaves it (the sum changes
    /// then, with nothing added), if it holds any.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let len = self.buckets.len() as u64;
        let first = (self.head + 1).saturating_sub(len);
        (first..=self.head)
            .find(|&second| self.buckets[self.slot(second)] > 0)
            .map(|second| self.origin + Duration::from_secs(second + len))
    }
}

/// Latency samples within the window, at most `cap` of them (the newest).
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    window: Duration,
    cap: usize,
    samples: VecDeque<(Instant, Duration)>,
}

impl Samples {
    pub(crate) fn new(window: Duration, cap: usize) -> Self {
        Self {
            window,
            cap: cap.max(1),
            samples: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.samples.front() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            self.samples.pop_front();
        }
    }

    pub(crate) fn add(&mut self, now: Instant, value: Duration) {
        self.expire(now);
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back((now, value));
    }

    /// When the oldest sample leaves the window, if there is one.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.samples.front().map(|&(at, _)| at + self.window)
    }

    /// The `q`-quantile (`0.0..=1.0`, nearest rank) of the window, if any.
    pub(crate) fn quantile(&mut self, now: Instant, q: f64) -> Option<Duration> {
        self.expire(now);
        if self.samples.is_empty() {
            return None;
        }
        let mut values: Vec<Duration> = self.samples.iter().map(|&(_, v)| v).collect();
        values.sort_unstable();
        // Cannot truncate: the product is at most `values.len()`.
        #[allow(clippy::cast_possible_truncation)]
        let rank =
            ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len());
        Some(values[rank - 1])
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_forgets_what_left_the_window() {
        let t0 = Instant::now();
        let mut c = Counter::new(t0, Duration::from_secs(60));
        c.add(t0, 5);
        c.add(t0 + Duration::from_secs(30), 3);
        assert_eq!(c.sum(t0 + Duration::from_secs(59)), 8);
        assert_eq!(c.sum(t0 + Duration::from_secs(60)), 3);
        assert_eq!(
            c.next_expiry(),
            Some(t0 + Duration::from_secs(90)),
            "the count of second 30 leaves at 90"
        );
        assert_eq!(c.sum(t0 + Duration::from_secs(90)), 0);
        assert_eq!(c.next_expiry(), None, "nothing left to expire");
        // A long silence clears everything, in bounded work.
        c.add(t0 + Duration::from_secs(100), 1);
        assert_eq!(c.sum(t0 + Duration::from_secs(1_000_000)), 0);
    }

    #[test]
    fn quantiles_are_nearest_rank_and_expire() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60), 1000);
        for ms in 1..=100 {
            s.add(t0, Duration::from_millis(ms));
        }
        assert_eq!(s.quantile(t0, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.quantile(t0, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.quantile(t0, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(s.next_expiry(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(s.quantile(t0 + Duration::from_secs(60), 0.5), None);
    }

    #[test]
    fn samples_are_bounded() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60), 10);
        for ms in 0..1000 {
            s.add(t0, Duration::from_millis(ms));
        }
        assert_eq!(s.len(), 10);
        assert_eq!(s.quantile(t0, 0.0), Some(Duration::from_millis(990)));
    }
}

//! A seeded fault schedule for soak runs: every so often (jittered), one
//! fault is injected into a running simulator: a close, a 5xx/429 burst with
//! `Retry-After`, a stall, a slow drip, garbage, a close mid-event, an
//! endless line, or a restart of the whole upstream. The same seed gives the
//! same sequence of faults and topics.
//!
//! Connection-scoped faults are scripted for the topic's next connection,
//! then the topic's open streams are closed, so a client that holds the
//! topic reconnects straight into the fault.

use std::time::{Duration, SystemTime};

use crate::fault::{Fault, Garbage};
use crate::feed::SplitMix;
use crate::server::SimHandle;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// When it was injected (wall clock).
    pub at: SystemTime,
    /// The topic, or `None` for a restart (every topic).
    pub topic: Option<String>,
    /// What: `close`, `burst`, `stall`, `drip`, `garbage`, `close-mid-event`,
    /// `endless-line`, `restart`.
    pub kind: &'static str,
}

/// The schedule. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Chaos {
    seed: u64,
    every: Duration,
    downtime: Duration,
    drip_interval: Duration,
    endless_bytes: usize,
    retry_after: String,
}

/// The kinds, with their weights (out of the sum).
const KINDS: [(&str, u64); 8] = [
    ("close", 20),
    ("burst", 12),
    ("stall", 8),
    ("drip", 8),
    ("garbage", 16),
    ("close-mid-event", 12),
    ("endless-line", 8),
    ("restart", 6),
];

impl Chaos {
    /// A fault every `every` on average (uniform in 0.5x-1.5x), seeded.
    pub fn new(seed: u64, every: Duration) -> Self {
        Self {
            seed,
            every: every.max(Duration::from_millis(10)),
            downtime: Duration::from_secs(1),
            drip_interval: Duration::from_millis(200),
            endless_bytes: 2 << 20,
            retry_after: "1".to_string(),
        }
    }

    /// How long a restart refuses connections (default 1 s).
    #[must_use]
    pub fn downtime(mut self, downtime: Duration) -> Self {
        self.downtime = downtime;
        self
    }

    /// The time between bytes of a drip (default 200 ms).
    #[must_use]
    pub fn drip_interval(mut self, interval: Duration) -> Self {
        self.drip_interval = interval;
        self
    }

    /// The length of an endless line before the server gives up (default
    /// 2 MiB: above the gateway's default line limit of 1 MiB).
    #[must_use]
    pub fn endless_bytes(mut self, bytes: usize) -> Self {
        self.endless_bytes = bytes;
        self
    }

    /// Injects faults into `sim` forever (cancel the future to stop),
    /// calling `report` after each one.
    pub async fn run(self, sim: &SimHandle, mut report: impl FnMut(Injection)) {
        let topics = sim.topics();
        if topics.is_empty() {
            return std::future::pending().await;
        }
        let mut rng = SplitMix(self.seed);
        let total: u64 = KINDS.iter().map(|(_, w)| w).sum();
        let every_ms = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        loop {
            let wait = every_ms / 2 + rng.below(every_ms.saturating_add(1));
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let mut pick = rng.below(total);
            let kind = KINDS
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or("close", |(k, _)| *k);
            let index = usize::try_from(rng.below(topics.len() as u64)).unwrap_or(0);
            let topic = &topics[index];
            let injected = self.inject(sim, kind, topic, &mut rng);
            if let Some(topic) = injected {
                report(Injection {
                    at: SystemTime::now(),
                    topic,
                    kind,
                });
            }
        }
    }

    /// Injects one fault; `None` if skipped (the topic still has one
    /// pending), else the topic it hit (`Some(None)`: all of them).
    #[allow(clippy::option_option, reason = "skipped, one topic, or every topic")]
    fn inject(
        &self,
        sim: &SimHandle,
        kind: &str,
        topic: &str,
        rng: &mut SplitMix,
    ) -> Option<Option<String>> {
        if kind == "restart" {
            sim.restart(self.downtime);
            return Some(None);
        }
        // One fault at a time per topic: a topic nobody holds would pile
        // scripts up for its next subscriber.
        if sim.scripted(topic) > 0 {
            return None;
        }
        let script = match kind {
            "burst" => vec![
                Fault::status(503).retry_after(self.retry_after.clone()),
                Fault::status(429).retry_after(self.retry_after.clone()),
                Fault::status(500),
            ],
            "stall" => vec![Fault::Stall],
            "drip" => vec![Fault::Drip {
                interval: self.drip_interval,
            }],
            "garbage" => vec![Fault::Garbage(match rng.below(4) {
                0 => Garbage::InvalidUtf8,
                1 => Garbage::NulInId,
                2 => Garbage::CrOnly,
                _ => Garbage::NegativeRetry,
            })],
            "close-mid-event" => vec![Fault::CloseMidEvent { after_events: 3 }],
            "endless-line" => vec![Fault::EndlessLine {
                max_bytes: self.endless_bytes,
            }],
            _ => Vec::new(),
        };
        sim.script(topic, script);
        sim.close_topic(topic);
        Some(Some(topic.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sim;

    #[tokio::test(start_paused = true)]
    async fn same_seed_same_schedule_and_every_kind_appears() {
        let sim = Sim::builder()
            .topics(["A", "B", "C"])
            .events_per_sec(0.0)
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let run = |seed| {
            let sim = &sim;
            async move {
                let mut seen = Vec::new();
                let chaos = Chaos::new(seed, Duration::from_millis(100));
                let _ = tokio::time::timeout(
                    Duration::from_secs(60),
                    chaos.run(sim, |i| {
                        // Nothing connects here: a scripted fault would
                        // stay pending and block the next on its topic.
                        if let Some(topic) = &i.topic {
                            let scripted = match i.kind {
                                "close" => 0,
                                "burst" => 3,
                                _ => 1,
                            };
                            assert_eq!(sim.clear_script(topic), scripted, "{}", i.kind);
                        }
                        seen.push((i.topic, i.kind));
                    }),
                )
                .await;
                seen
            }
        };
        let first = run(7).await;
        let second = run(7).await;
        assert!(first.len() > 20, "{}", first.len());
        assert_eq!(first, second);
        for (kind, _) in KINDS {
            assert!(
                first.iter().any(|(_, k)| *k == kind),
                "{kind} never injected"
            );
        }
        assert_ne!(first, run(8).await);
    }
}

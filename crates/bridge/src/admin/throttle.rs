//! Wrong admin credentials, counted per client address: at most
//! [`MAX_FAILURES`] a minute from one address, then that address's
//! credential checks are refused (429) until its minute ends. The real
//! operator, from another address, is never locked out by someone else's
//! guesses. The map is bounded: at [`MAX_ADDRESSES`], expired entries go
//! first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use http::StatusCode;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::reply::{self, Reply};

/// Wrong credentials one address may present per window.
pub(crate) const MAX_FAILURES: u32 = 20;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once.
pub(crate) const MAX_ADDRESSES: usize = 4096;

#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// Whether `ip` may present a credential now.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let failures = self.failures.lock();
        failures
            .get(&ip)
            .is_none_or(|(n, since)| *n < MAX_FAILURES || now.duration_since(*since) >= WINDOW)
    }

    /// `ip` presented a wrong credential.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
            if failures.len() >= MAX_ADDRESSES
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(ip, _)| *ip)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// Addresses remembered now.
    pub(crate) fn len(&self) -> usize {
        self.failures.lock().len()
    }
}

/// The answer to an address over its limit.
pub(crate) fn refusal() -> Reply {
    reply::refuse(
        StatusCode::TOO_MANY_REQUESTS,
        WINDOW,
        "too many wrong admin tokens from your address: try again in a minute\n".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_address_is_throttled_and_another_is_not() {
        let throttle = Throttle::default();
        let (guesser, operator): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            assert!(throttle.allows(guesser));
            throttle.failed(guesser);
        }
        assert!(!throttle.allows(guesser), "the guesser is throttled");
        assert!(throttle.allows(operator), "the operator is not");
        // Paused time: the guesser's minute ends.
        tokio::time::sleep(WINDOW).await;
        assert!(throttle.allows(guesser));
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_is_bounded() {
        let throttle = Throttle::default();
        for i in 0..(MAX_ADDRESSES + 100) {
            let i = u32::try_from(i).expect("small");
            throttle.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(throttle.len(), MAX_ADDRESSES);
    }
}

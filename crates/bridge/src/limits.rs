//! Admission: total streams, streams per client IP, and new streams per
//! second; and, before anything costs the gateway (a token's signature
//! check), stream attempts per client IP per second. At a limit a new
//! stream is refused (429 or 503 with `Retry-After`); streams already
//! admitted are never evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_subscribers` streams are open (503).
    Total,
    /// This IP has `max_per_ip` streams open (429).
    PerIp,
    /// More than `new_streams_per_sec` new streams (429).
    Rate,
    /// More than `new_streams_per_ip_per_sec` attempts from this IP (429),
    /// admitted or not: checked before authentication.
    IpRate,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Total => "max_subscribers",
            Self::PerIp => "max_per_ip",
            Self::Rate => "rate",
            Self::IpRate => "ip_rate",
        }
    }
}

pub(crate) struct Limits {
    state: Mutex<State>,
    /// The soak's proof that it finds a leak (see `Hooks::leak_on_release`):
    /// when on, every released stream leaves an entry here that nobody
    /// reads or removes.
    #[cfg(feature = "leak-injection")]
    leaked: Option<Mutex<HashMap<u64, String>>>,
    /// Signalled when the last stream is released (the drain waits for it).
    emptied: Notify,
}

struct State {
    /// The limits (reloadable: read under the lock at each admission).
    max_total: usize,
    max_per_ip: usize,
    per_sec: f64,
    burst: f64,
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Streams ever admitted and ever released: `admitted - released ==
    /// total` (the soak checks it at every sample).
    admitted: u64,
    released: u64,
    tokens: f64,
    refilled: Instant,
    /// Attempts per second one IP may make (burst twice that), and each
    /// IP's bucket: tokens and when last refilled. At most
    /// [`MAX_TRACKED`] IPs; a full bucket is forgotten first.
    ip_rate: f64,
    attempts: HashMap<IpAddr, (f64, Instant)>,
}

/// Client IPs whose attempt rate is tracked at once.
const MAX_TRACKED: usize = 65_536;

/// An admitted stream; dropping it frees its place.
pub(crate) struct Admission {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    pub(crate) fn new(
        max_total: usize,
        max_per_ip: usize,
        per_sec: u32,
        ip_per_sec: u32,
        #[cfg_attr(not(feature = "leak-injection"), allow(unused_variables))] leak: bool,
    ) -> Arc<Self> {
        let burst = f64::from(per_sec) * 2.0;
        Arc::new(Self {
            state: Mutex::new(State {
                max_total,
                max_per_ip,
                per_sec: f64::from(per_sec),
                burst,
                total: 0,
                per_ip: HashMap::new(),
                admitted: 0,
                released: 0,
                tokens: burst,
                refilled: Instant::now(),
                ip_rate: f64::from(ip_per_sec),
                attempts: HashMap::new(),
            }),
            emptied: Notify::new(),
            #[cfg(feature = "leak-injection")]
            leaked: leak.then(Mutex::default),
        })
    }

    /// Admits a stream from `ip`, or says why not (with a retry hint).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, (Refusal, Duration)> {
        let mut state = self.state.lock();
        let now = Instant::now();
        let refill = now.saturating_duration_since(state.refilled).as_secs_f64() * state.per_sec;
        state.tokens = (state.tokens + refill).min(state.burst);
        state.refilled = now;
        if state.total >= state.max_total {
            return Err((Refusal::Total, Duration::from_secs(5)));
        }
        if state.per_ip.get(&ip).copied().unwrap_or(0) >= state.max_per_ip {
            return Err((Refusal::PerIp, Duration::from_secs(5)));
        }
        if state.tokens < 1.0 {
            return Err((Refusal::Rate, Duration::from_secs(1)));
        }
        state.tokens -= 1.0;
        state.total += 1;
        state.admitted += 1;
        *state.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Admission {
            limits: self.clone(),
            ip,
        })
    }

    /// An attempt to open a stream from `ip` (before its token is
    /// checked): refused with a retry hint when `ip` made more than its
    /// rate allows.
    pub(crate) fn attempt(&self, ip: IpAddr) -> Result<(), (Refusal, Duration)> {
        let mut state = self.state.lock();
        let now = Instant::now();
        let (rate, burst) = (state.ip_rate, state.ip_rate * 2.0);
        if state.attempts.len() >= MAX_TRACKED && !state.attempts.contains_key(&ip) {
            // Forget the IPs whose bucket is full again: nothing to hold.
            state.attempts.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if state.attempts.len() >= MAX_TRACKED {
                // Untracked rather than unbounded; the global rate holds.
                return Ok(());
            }
        }
        let (tokens, at) = state.attempts.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens < 1.0 {
            return Err((Refusal::IpRate, Duration::from_secs(1)));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// New limits for the next admissions; streams already admitted stay
    /// (lowering a cap refuses newcomers until enough have left).
    pub(crate) fn set(&self, max_total: usize, max_per_ip: usize, per_sec: u32, ip_per_sec: u32) {
        let mut state = self.state.lock();
        state.ip_rate = f64::from(ip_per_sec);
        state.max_total = max_total;
        state.max_per_ip = max_per_ip;
        state.per_sec = f64::from(per_sec);
        state.burst = f64::from(per_sec) * 2.0;
        state.tokens = state.tokens.min(state.burst);
    }

    /// Streams admitted now.
    pub(crate) fn total(&self) -> usize {
        self.state.lock().total
    }

    /// Resolves when no stream is admitted.
    pub(crate) async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            // Registered before the check: a release in between is seen.
            notified.as_mut().enable();
            if self.total() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Client IPs with a stream now (the per-IP map's size).
    pub(crate) fn ips(&self) -> usize {
        self.state.lock().per_ip.len()
    }

    /// The `n` client addresses with the most streams, most first (ties by
    /// address): behind a balancer, the real clients'.
    pub(crate) fn busiest(&self, n: usize) -> Vec<(IpAddr, usize)> {
        let mut all: Vec<(IpAddr, usize)> = {
            let state = self.state.lock();
            state.per_ip.iter().map(|(ip, n)| (*ip, *n)).collect()
        };
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Every count, read together (for `/debug/vars`).
    pub(crate) fn counts(&self) -> serde_json::Value {
        let state = self.state.lock();
        serde_json::json!({
            "streams": state.total,
            "admitted": state.admitted,
            "released": state.released,
            "per_ip_entries": state.per_ip.len(),
            "per_ip_sum": state.per_ip.values().sum::<usize>(),
            "per_ip_zero": state.per_ip.values().filter(|n| **n == 0).count(),
            "attempt_buckets": state.attempts.len(),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.limits.state.lock();
        state.total -= 1;
        state.released += 1;
        #[cfg(feature = "leak-injection")]
        if let Some(leaked) = &self.limits.leaked {
            let mut leaked = leaked.lock();
            let key = leaked.len() as u64;
            leaked.insert(key, format!("released subscriber from {}", self.ip));
        }
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
        if state.total == 0 {
            self.limits.emptied.notify_waiters();
        }
    }
}

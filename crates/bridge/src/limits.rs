//! Admission: total streams, streams per client IP, and new streams per
//! second. At a limit a new stream is refused (429 or 503 with
//! `Retry-After`); streams already admitted are never evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
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
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Total => "max_subscribers",
            Self::PerIp => "max_per_ip",
            Self::Rate => "rate",
        }
    }
}

pub(crate) struct Limits {
    state: Mutex<State>,
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
}

/// An admitted stream; dropping it frees its place.
pub(crate) struct Admission {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, per_sec: u32) -> Arc<Self> {
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
            }),
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

    /// New limits for the next admissions; streams already admitted stay
    /// (lowering a cap refuses newcomers until enough have left).
    pub(crate) fn set(&self, max_total: usize, max_per_ip: usize, per_sec: u32) {
        let mut state = self.state.lock();
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

    /// Client IPs with a stream now (the per-IP map's size).
    pub(crate) fn ips(&self) -> usize {
        self.state.lock().per_ip.len()
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
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.limits.state.lock();
        state.total -= 1;
        state.released += 1;
        #[cfg(feature = "leak-injection")]
        crate::leak::on_release(self.ip);
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

//! What every part of a running gateway shares: its settings, the hub, the
//! limits, the drain, the hooks. One `Arc<Shared>` per gateway; the
//! listeners, handlers and housekeeping all hold it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sse_conn_pool::Connector;
use sse_health::Reports;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admin::session::Sessions;
use crate::admin::throttle::Throttle;
use crate::auth::{Authenticator, Principals};
use crate::config::BridgeConfig;
use crate::edge::forwarded::Cidr;
use crate::edge::tls::Certificate;
use crate::hooks::{Hooks, Process};
use crate::hub::Hub;
use crate::limits::Limits;

pub(crate) struct Shared<C: Connector> {
    pub(crate) config: Arc<BridgeConfig>,
    pub(crate) hub: Arc<Hub<C>>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) draining: AtomicBool,
    /// The drain's start, once it started: every stream ends at its own
    /// moment after it.
    pub(crate) drain: watch::Sender<Option<Instant>>,
    pub(crate) reports: Mutex<Reports>,
    /// Spreads streams over the drain window (golden-ratio sequence).
    pub(crate) spread: AtomicU64,
    /// Client connections open, for the cap and baselines.
    pub(crate) connections: AtomicU64,
    /// The cap on client connections (`max_connections`, or the open-file
    /// limit minus `fd_reserve`).
    pub(crate) max_connections: u64,
    /// Admin connections open.
    pub(crate) admin_connections: AtomicU64,
    /// Where the admin listener is (its loopback-ness lets actions go
    /// without a token; its port is part of the `Host` it answers to).
    pub(crate) admin_addr: std::net::SocketAddr,
    /// `write_timeout` in force (reloadable), milliseconds.
    pub(crate) write_timeout_ms: AtomicU64,
    /// Status-page event streams open (at most `admin::events::MAX_WATCHERS`).
    pub(crate) status_streams: AtomicU64,
    /// The subscriber token verifier (replaced on reload).
    pub(crate) auth: RwLock<Arc<Authenticator>>,
    /// Streams per token holder.
    pub(crate) principals: Arc<Principals>,
    /// Status-page logins (admin token set).
    pub(crate) sessions: Sessions,
    /// Wrong admin credentials per client address.
    pub(crate) admin_throttle: Throttle,
    /// What the application gave the gateway.
    pub(crate) hooks: Hooks,
    /// The configuration in force: the one the gateway started with, with
    /// the keys that applied at reloads taken in (`reload::KEYS`).
    pub(crate) in_force: Mutex<BridgeConfig>,
    /// TLS on the stream listener (`bridge.tls`), its pair swapped by
    /// reloads.
    pub(crate) tls: Option<Certificate>,
    /// TLS on the admin listener (`bridge.admin_tls`).
    pub(crate) admin_tls: Option<Certificate>,
    /// `trusted_proxies` in force (reloadable).
    pub(crate) trusted_proxies: RwLock<Vec<Cidr>>,
}

impl<C: Connector> Shared<C> {
    /// The count and the cap of the admin listener's connections, or of
    /// the clients'.
    pub(crate) fn connection_count(&self, admin: bool) -> (&AtomicU64, u64) {
        if admin {
            (
                &self.admin_connections,
                self.config.max_admin_connections as u64,
            )
        } else {
            (&self.connections, self.max_connections)
        }
    }

    /// The client's address for a request from `peer` (see
    /// `edge::forwarded`).
    pub(crate) fn client_ip(
        &self,
        peer: std::net::IpAddr,
        headers: &http::HeaderMap,
    ) -> std::net::IpAddr {
        // Read in place (a request's worth of parsing under a read lock
        // that only a reload takes for writing): no copy per request.
        let trusted = self.trusted_proxies.read();
        if trusted.is_empty() {
            return peer;
        }
        crate::edge::forwarded::client(&trusted, peer, headers)
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The process's figures (zeros without a probe).
    pub(crate) fn process(&self) -> Process<'_> {
        Process(self.hooks.process.as_deref())
    }

    /// `write_timeout` in force.
    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.load(Ordering::Relaxed))
    }

    /// sse-health's pool verdict: not ready while more than half of the
    /// upstream streams have been unhealthy for a minute.
    pub(crate) fn readiness(&self) -> sse_health::Readiness {
        let verdicts: Vec<sse_health::Verdict> = self
            .hub
            .pool()
            .snapshot()
            .into_iter()
            .map(|s| sse_health::Verdict {
                level: s.state.health,
                since: s.state.health_since.into_std(),
                causes: Vec::new(),
            })
            .collect();
        sse_health::readiness(
            &sse_health::ReadinessConfig::default(),
            Instant::now().into_std(),
            &verdicts,
        )
    }
}

/// Milliseconds of `d`, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Waits until `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

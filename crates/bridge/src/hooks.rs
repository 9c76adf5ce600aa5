//! What the application gives the gateway instead of process-wide globals:
//! how to render metrics, change the log filter, re-read the configuration,
//! and read the process's heap and resources. Every hook is optional; a
//! gateway without one says so on the endpoint that would use it.
//!
//! Two gateways in one process (tests do this) each have their own hooks.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::BridgeConfig;

/// Live heap figures, from a counting global allocator the application
/// installs (the soak build does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes allocated and not freed.
    pub bytes: u64,
    /// Blocks allocated and not freed.
    pub blocks: u64,
}

/// The process's resources, as the operating system counts them (the
/// binary reads `/proc`). Each may cost a system call or more: `open_fds`
/// reads a directory with one entry per client, so it is read sparingly.
pub trait ProcessProbe: Send + Sync + 'static {
    /// Resident memory, bytes (0 if unknown).
    fn rss_bytes(&self) -> u64;
    /// Open file descriptors (0 if unknown).
    fn open_fds(&self) -> u64;
    /// The limit on open file descriptors (0 if unknown).
    fn max_fds(&self) -> u64;
}

/// How a [`LogControl`] changes the filter.
type ApplyFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Changes the log filter (an `EnvFilter` directive such as
/// `info,sse_conn_pool=debug`) and remembers the one in force.
pub struct LogControl {
    apply: ApplyFilter,
    current: Mutex<String>,
}

impl LogControl {
    /// A control whose filter is `current` now and which `apply` changes
    /// (`Err` says why a directive was refused).
    pub fn new(
        current: impl Into<String>,
        apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            apply: Box::new(apply),
            current: Mutex::new(current.into()),
        }
    }

    /// The filter in force.
    pub fn current(&self) -> String {
        self.current.lock().clone()
    }

    /// Changes the filter; returns the one it replaced.
    ///
    /// # Errors
    ///
    /// The directive was refused; nothing changed.
    pub fn apply(&self, filter: &str) -> Result<String, String> {
        (self.apply)(filter)?;
        Ok(std::mem::replace(
            &mut *self.current.lock(),
            filter.to_string(),
        ))
    }
}

impl fmt::Debug for LogControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogControl")
            .field("current", &*self.current.lock())
            .finish_non_exhaustive()
    }
}

/// A configuration read again (from its file, say) for
/// [`Reloader::reload`](crate::Reloader::reload) to apply.
#[derive(Debug, Clone)]
pub struct Reload {
    /// Where the settings came from (a file's path), for the report.
    pub source: String,
    /// The `[bridge]` settings.
    pub bridge: BridgeConfig,
    /// The upstream pool's stream cap (`upstream.max_streams`).
    pub max_streams: usize,
    /// The log filter, if the reload may change it (`None`: leave it, as
    /// when the environment set it at start).
    pub log_level: Option<String>,
    /// Keys outside the bridge's settings that changed and apply only at a
    /// restart (the caller knows its own file), reported with the rest.
    pub restart: Vec<String>,
}

/// Reads the configuration again (`POST /admin/reload`, SIGHUP): the
/// application's source of settings. `Err` says why it cannot be used.
pub type ReloadSource = Arc<dyn Fn() -> Result<Reload, String> + Send + Sync>;

/// Renders the cluster's state as JSON (`/admin/cluster`): the
/// application's cluster, if it runs one.
pub type ClusterView = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = serde_json::Value> + Send>> + Send + Sync,
>;

/// This instance's part of the cluster as JSON, from local state only (it
/// never waits on the network): the status page's cluster line and owner
/// column, every two seconds.
pub type ClusterSummary = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Renders every metric in the Prometheus text format (`/metrics`).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Everything the application may give a gateway. Build it with the
/// methods; the default has no hook at all.
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) metrics: Option<RenderMetrics>,
    pub(crate) log: Option<Arc<LogControl>>,
    pub(crate) reload: Option<ReloadSource>,
    pub(crate) heap: Option<fn() -> HeapStats>,
    pub(crate) process: Option<Arc<dyn ProcessProbe>>,
    pub(crate) cluster: Option<ClusterView>,
    pub(crate) cluster_summary: Option<ClusterSummary>,
    pub(crate) leak: bool,
}

impl Hooks {
    /// `/metrics` renders with `render` (a Prometheus recorder's handle).
    #[must_use]
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// `/admin/log-level` and reloads change the log filter through `log`.
    #[must_use]
    pub fn log_control(mut self, log: LogControl) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// `POST /admin/reload` and [`Reloader::reload`](crate::Reloader::reload)
    /// read the configuration with `source`.
    #[must_use]
    pub fn reload(
        mut self,
        source: impl Fn() -> Result<Reload, String> + Send + Sync + 'static,
    ) -> Self {
        self.reload = Some(Arc::new(source));
        self
    }

    /// `/debug/vars` reports the heap with `probe`.
    #[must_use]
    pub fn heap_probe(mut self, probe: fn() -> HeapStats) -> Self {
        self.heap = Some(probe);
        self
    }

    /// `GET /admin/cluster` answers with what `view` renders (without it,
    /// 404: cluster mode is off).
    #[must_use]
    pub fn cluster_view<F>(mut self, view: impl Fn() -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = serde_json::Value> + Send + 'static,
    {
        self.cluster = Some(Arc::new(move || Box::pin(view())));
        self
    }

    /// The status page shows what `summary` returns: a `cluster` object of
    /// the snapshot. The page reads `instance`, `name`, `nats_connected`,
    /// `degraded`, `owned` and `topics` (each with `topic`, `owner`,
    /// `mine` and `local_subscriptions`). Called every two seconds per
    /// open page, so it must be cheap and must not block.
    #[must_use]
    pub fn cluster_summary(
        mut self,
        summary: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.cluster_summary = Some(Arc::new(summary));
        self
    }

    /// Resource gauges, reports and `/debug/vars` read the process with
    /// `probe`.
    #[must_use]
    pub fn process_probe(mut self, probe: impl ProcessProbe) -> Self {
        self.process = Some(Arc::new(probe));
        self
    }
}

impl Hooks {
    /// Test-only (the `leak-injection` feature, through the binary's soak
    /// build): every released subscriber leaves one entry (about 90 bytes)
    /// behind in a map nobody reads. The kind of leak that stays
    /// reachable, so sanitizers never report it, and that only a count of
    /// live heap bytes against operations shows; `/debug/vars` does not
    /// report it. The soak harness must find it from the heap alone.
    #[cfg(feature = "leak-injection")]
    #[must_use]
    pub fn leak_on_release(mut self) -> Self {
        self.leak = true;
        self
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("metrics", &self.metrics.is_some())
            .field("log", &self.log)
            .field("reload", &self.reload.is_some())
            .field("heap", &self.heap.is_some())
            .field("process", &self.process.is_some())
            .finish()
    }
}

/// The process figures, or zeros without a probe.
pub(crate) struct Process<'a>(pub(crate) Option<&'a dyn ProcessProbe>);

impl Process<'_> {
    pub(crate) fn rss_bytes(&self) -> u64 {
        self.0.map_or(0, ProcessProbe::rss_bytes)
    }

    pub(crate) fn open_fds(&self) -> u64 {
        self.0.map_or(0, ProcessProbe::open_fds)
    }

    pub(crate) fn max_fds(&self) -> u64 {
        self.0.map_or(0, ProcessProbe::max_fds)
    }
}

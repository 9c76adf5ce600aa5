//! Every few seconds: disconnect subscribers that stopped reading, record
//! the health, pool and process gauges, and feed the rolling report; once a
//! day, write the day's report (`report_dir`) and log its summary.

use std::sync::Arc;
use std::time::Duration;

use sse_conn_pool::Connector;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics;
use crate::state::{Shared, stopped};

/// How often housekeeping runs.
const EVERY: Duration = Duration::from_secs(5);

/// Descriptors are counted every this many rounds: counting reads
/// `/proc/self/fd`, one entry per client, and with 10,000 subscribers that
/// was a sixth of an idle gateway's CPU (`/metrics` counts afresh at each
/// scrape).
const FDS_EVERY: u64 = 6;

pub(crate) async fn housekeeping<C: Connector>(
    shared: Arc<Shared<C>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Totals::default();
    let mut next_daily = Instant::now() + DAY;
    let mut fds = shared.process().open_fds();
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let now = Instant::now();
        let stalled = shared.hub.sweep(now, shared.write_timeout());
        if stalled > 0 {
            tracing::warn!(stalled, "disconnected subscribers that stopped reading");
        }
        let pool = shared.hub.pool();
        let mut levels = [0usize; 3];
        for stream in pool.snapshot() {
            levels[match stream.state.health {
                sse_health::Level::Healthy => 0,
                sse_health::Level::Degraded => 1,
                sse_health::Level::Unhealthy => 2,
            }] += 1;
        }
        sse_health::metrics::record_levels(levels[0], levels[1], levels[2]);
        let counts = pool.counts();
        let sockets = pool.connections().open_sockets();
        sse_health::metrics::record_pool(&shared.readiness(), counts.streams, pool.max_streams());
        let process = shared.process();
        rounds += 1;
        if rounds.is_multiple_of(FDS_EVERY) {
            fds = process.open_fds();
        }
        let resources = sse_health::Resources {
            connections: sockets as u64,
            subscribers: shared.limits.total() as u64,
            rss_bytes: process.rss_bytes(),
            open_fds: fds,
        };
        metrics::record_process(
            resources.rss_bytes,
            resources.open_fds,
            process.max_fds(),
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        );
        // Lifetime totals (removed streams included): count growth only.
        let totals = Totals {
            attempts: counts.attempts,
            opened: counts.connections_opened,
            rotations: counts.rotations,
            events: counts.events,
            bytes: counts.bytes,
            errors: counts.errors,
        };
        {
            let mut reports = shared.reports.lock();
            let minute = reports.current(now.into_std());
            minute.attempts += totals.attempts.saturating_sub(last.attempts);
            minute.opened += totals.opened.saturating_sub(last.opened);
            minute.rotations += totals.rotations.saturating_sub(last.rotations);
            minute.events += totals.events.saturating_sub(last.events);
            minute.bytes += totals.bytes.saturating_sub(last.bytes);
            for (i, n) in minute.errors.iter_mut().enumerate() {
                *n += totals.errors[i].saturating_sub(last.errors[i]);
            }
            minute.resources = resources;
        }
        last = totals;
        if now >= next_daily {
            next_daily = now + DAY;
            daily(&shared).await;
        }
    }
}

/// A day.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The pool's lifetime counters, as last seen.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    attempts: u64,
    opened: u64,
    rotations: u64,
    events: u64,
    bytes: u64,
    errors: [u64; 4],
}

/// The day's report: a one-line summary in the log and, with
/// `report_dir`, one JSON line in a file of its own
/// (`ssegate-report-<unix seconds>.json`), keeping the newest `report_keep`.
async fn daily<C: Connector>(shared: &Shared<C>) {
    let report = shared.reports.lock().report(Instant::now().into_std(), DAY);
    let json = crate::admin::report_json(&report);
    tracing::info!(
        hours = report.window.as_secs() / 3600,
        attempts = report.attempts,
        failure_ratio = report.failure_ratio,
        rotations = report.rotations,
        events = report.events,
        peak_events_per_sec = report.peak_events_per_sec,
        rss_growth_bytes = report.rss_growth,
        "daily report"
    );
    let Some(dir) = shared.config.report_dir.clone() else {
        return;
    };
    let keep = shared.config.report_keep;
    let written = tokio::task::spawn_blocking(move || write_report(&dir, &json, keep)).await;
    match written {
        Ok(Ok(path)) => tracing::info!(path = %path.display(), "daily report written"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the daily report could not be written"),
        Err(e) => tracing::warn!(error = %e, "the daily report task failed"),
    }
}

/// Writes `json` as one line into a new file in `dir`, and removes the
/// oldest report files beyond `keep`.
fn write_report(
    dir: &std::path::Path,
    json: &serde_json::Value,
    keep: usize,
) -> std::io::Result<std::path::PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(format!("ssegate-report-{stamp}.json"));
    std::fs::write(&path, format!("{json}\n"))?;
    // The reports in `dir`, oldest first (by their stamp).
    let mut reports: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter_map(|p| {
            let stamp = p
                .file_name()?
                .to_str()?
                .strip_prefix("ssegate-report-")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((stamp, p))
        })
        .collect();
    reports.sort();
    let extra = reports.len().saturating_sub(keep);
    for (_, old) in reports.into_iter().take(extra) {
        std::fs::remove_file(old)?;
    }
    Ok(path)
}

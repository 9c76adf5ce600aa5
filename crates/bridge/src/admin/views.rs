//! What the admin listener shows: readiness, `/metrics`, the JSON views of
//! the upstream streams, the rolling report, and `/debug/vars` (every count
//! the soak harness compares against its baseline).

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::json;
use sse_conn_pool::Connector;
use tokio::time::Instant;

use crate::metrics;
use crate::reply::{self, Reply};
use crate::state::{Shared, duration_ms};

/// `/readyz`: 503 while draining or while most upstream streams have been
/// unhealthy for a while.
pub(super) fn ready<C: Connector>(shared: &Shared<C>) -> Reply {
    if shared.draining() {
        return reply::text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let readiness = shared.readiness();
    match readiness.reason {
        Some(why) if !readiness.ready => {
            reply::text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
        }
        _ => reply::text(StatusCode::OK, "ready\n"),
    }
}

/// `/metrics`, with the process gauges as of this scrape.
pub(super) fn metrics<C: Connector>(shared: &Shared<C>) -> Reply {
    let Some(render) = &shared.hooks.metrics else {
        return reply::text(StatusCode::NOT_FOUND, "no metrics recorder installed\n");
    };
    metrics::record_admin_sessions(shared.sessions.len());
    let process = shared.process();
    metrics::record_process(
        process.rss_bytes(),
        process.open_fds(),
        process.max_fds(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    );
    let mut response = reply::text(StatusCode::OK, render());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// `/admin/report?window=1h|24h`: the rolling report.
pub(super) fn report<C: Connector>(shared: &Shared<C>, query: Option<&str>) -> Reply {
    let window = query
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "window")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "1h".into());
    let window = match window.as_str() {
        "1h" => Duration::from_secs(3600),
        "24h" => Duration::from_secs(24 * 3600),
        other => {
            return reply::text(
                StatusCode::BAD_REQUEST,
                format!("window {other:?}: use 1h or 24h\n"),
            );
        }
    };
    let report = shared
        .reports
        .lock()
        .report(Instant::now().into_std(), window);
    reply::json(&report_json(&report))
}

/// A report as JSON (`/admin/report`, and the daily report files).
pub(crate) fn report_json(report: &sse_health::Report) -> serde_json::Value {
    let errors: serde_json::Map<String, serde_json::Value> = report
        .errors
        .iter()
        .map(|(kind, n)| (kind.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "window_secs": report.window.as_secs(),
        "attempts": report.attempts,
        "opened": report.opened,
        "failure_ratio": report.failure_ratio,
        "rotations": report.rotations,
        "errors": errors,
        "events": report.events,
        "events_per_sec": report.events_per_sec,
        "peak_events_per_sec": report.peak_events_per_sec,
        "bytes": report.bytes,
        "event_trend": report.event_trend,
        "resources_last": resources(report.resources_last),
        "resources_max": resources(report.resources_max),
        "rss_growth_bytes": report.rss_growth,
    })
}

fn resources(r: sse_health::Resources) -> serde_json::Value {
    json!({
        "upstream_connections": r.connections,
        "subscribers": r.subscribers,
        "rss_bytes": r.rss_bytes,
        "open_fds": r.open_fds,
    })
}

/// `/admin/streams`: every upstream stream, as the status page shows it.
pub(super) fn streams<C: Connector>(shared: &Shared<C>) -> serde_json::Value {
    let clients: HashMap<String, usize> = shared.hub.topics().into_iter().collect();
    let now = Instant::now();
    let streams: Vec<serde_json::Value> = shared
        .hub
        .pool()
        .snapshot()
        .into_iter()
        .map(|info| {
            let s = &info.state;
            json!({
                "topic": info.topic,
                "route": info.route,
                "phase": s.phase.to_string(),
                "reason": s.reason.to_string(),
                "in_phase_secs": now.saturating_duration_since(s.since).as_secs(),
                "clients": clients.get(&info.topic).copied().unwrap_or(0),
                "lingering": info.lingering,
                "attempts": s.attempts,
                "connections_opened": s.opened,
                "rotations": s.rotations,
                "events": s.events,
                "bytes": s.bytes,
                "last_event_id": s.last_event_id,
                "health": format!("{:?}", s.health).to_lowercase(),
                "causes": s.causes,
                // Null: not measured (the route has no `health.event_time`).
                "latency_p50_ms": s.latency_p50.map(|l| l.as_secs_f64() * 1e3),
                "latency_p99_ms": s.latency_p99.map(|l| l.as_secs_f64() * 1e3),
                "rotations_advised": s.rotations_advised,
            })
        })
        .collect();
    // The client addresses are the real ones behind trusted proxies.
    let busiest: Vec<serde_json::Value> = shared
        .limits
        .busiest(BUSIEST)
        .into_iter()
        .map(|(ip, streams)| json!({"ip": ip.to_string(), "streams": streams}))
        .collect();
    json!({
        "run": shared.hub.run_token(),
        "client_streams": shared.limits.total(),
        "client_addresses": shared.limits.ips(),
        "busiest_clients": busiest,
        "upstream_sockets": shared.hub.pool().connections().open_sockets(),
        "streams": streams,
    })
}

/// Client addresses listed in `/admin/streams` (those with most streams).
const BUSIEST: usize = 10;

/// What the status page shows, as one JSON object.
pub(super) fn snapshot<C: Connector>(shared: &Shared<C>) -> serde_json::Value {
    let mut snapshot = streams(shared);
    let pool = shared.hub.pool();
    let readiness = shared.readiness();
    let draining = shared.draining();
    snapshot["pool"] = json!({
        "streams": pool.counts().streams,
        "max_streams": pool.max_streams(),
    });
    let max = shared.max_connections;
    snapshot["connections"] = json!({
        "open": shared.connections.load(std::sync::atomic::Ordering::Relaxed),
        "max": (max != u64::MAX).then_some(max),
    });
    snapshot["ready"] = json!(readiness.ready && !draining);
    snapshot["ready_reason"] = json!(if draining {
        "draining".to_string()
    } else {
        readiness.reason.map(|r| r.to_string()).unwrap_or_default()
    });
    if let Some(summary) = &shared.hooks.cluster_summary {
        snapshot["cluster"] = summary();
    }
    snapshot["time_ms"] = json!(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, duration_ms)
    );
    snapshot
}

/// `/debug/vars`: everything the soak harness compares against its
/// baseline. Each group is read under one lock, so its equations hold
/// exactly at any instant.
pub(super) fn debug_vars<C: Connector>(shared: &Shared<C>) -> serde_json::Value {
    let pool = shared.hub.pool();
    let counts = pool.counts();
    let snapshot = pool.snapshot();
    let mut phases: HashMap<&'static str, usize> = HashMap::new();
    let (mut attempts, mut opened, mut events) = (0, 0, 0);
    for info in &snapshot {
        *phases
            .entry(sse_conn_pool::metrics::phase_label(info.state.phase))
            .or_default() += 1;
        attempts += info.state.attempts;
        opened += info.state.opened;
        events += info.state.events;
    }
    let auth = shared.principals.counts();
    let heap = shared.hooks.heap.map(|probe| {
        let heap = probe();
        json!({"bytes": heap.bytes, "blocks": heap.blocks})
    });
    let process = shared.process();
    json!({
        "heap": heap,
        "rss_bytes": process.rss_bytes(),
        "open_fds": process.open_fds(),
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "client_streams": shared.limits.total(),
        "client_connections": shared.connections.load(std::sync::atomic::Ordering::SeqCst),
        "admin_connections": shared.admin_connections.load(std::sync::atomic::Ordering::SeqCst),
        "draining": shared.draining(),
        "registries": {
            "per_ip": shared.limits.ips(),
            "pool_streams": snapshot.len(),
            "pool_subscribers": snapshot.iter().map(|s| s.subscribers).sum::<usize>(),
            "socket_hosts": pool.connections().hosts(),
        },
        "limits": shared.limits.counts(),
        "pool": {
            "streams": counts.streams,
            "subscribers": counts.subscribers,
            "created": counts.created,
            "removed": counts.removed,
            "pending": pool.pending(),
            "attempts": counts.attempts,
            "connections_opened": counts.connections_opened,
            "events": counts.events,
            "rotations": counts.rotations,
        },
        "hub": shared.hub.stats(),
        // admitted - released == streams; an entry per holder with a stream.
        "auth": {
            "enabled": shared.auth.read().enabled(),
            "jwt_keys": shared.auth.read().jwt_keys(),
            // Status-page logins: at most 64 (see session.rs).
            "admin_sessions": shared.sessions.len(),
            // Addresses with wrong admin credentials this minute (bounded).
            "admin_throttled": shared.admin_throttle.len(),
            "principals": auth.0,
            "streams": auth.1,
            "admitted": auth.2,
            "released": auth.3,
        },
        "upstream": {
            "phases": phases,
            "sockets": pool.connections().open_sockets(),
            "attempts": attempts,
            "opened": opened,
            "events": events,
        },
        "lifetime": metrics::LIFETIME.json(),
    })
}

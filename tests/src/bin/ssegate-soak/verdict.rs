//! The verdict: every gate with its measured value and its limit, the old
//! plan's success metrics, and the growth fit extrapolated to 72 production
//! hours.

use std::collections::HashMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::harness::{Record, heap_tolerance};
use crate::outage::{Outage, first_delivery, outages, reconnection};
use crate::plan::{Mode, Plan, production};
use crate::report::{self, Report};

/// One gate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Gate {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) limit: String,
    pub(crate) passed: bool,
}

/// A reported figure without a gate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) value: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verdict {
    pub(crate) passed: bool,
    pub(crate) gates: Vec<Gate>,
    pub(crate) figures: Vec<Figure>,
    pub(crate) growth: Growth,
    pub(crate) assumed_production: serde_json::Value,
    /// The ten slowest recoveries, for a look at what bounds them.
    pub(crate) slowest_recoveries: Vec<Outage>,
}

/// Least squares of heap bytes against cumulative operations.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Growth {
    pub(crate) points: usize,
    /// Bytes per operation, and its 95 % upper bound.
    pub(crate) slope: f64,
    pub(crate) slope_upper: f64,
    /// The upper bound times the operations of 72 production hours
    /// (adjusted for the least-compressed operation kind).
    pub(crate) extrapolated_72h_bytes: f64,
    pub(crate) ops_72h: f64,
    pub(crate) compression_adjustment: f64,
}

/// Two-sided 95 % Student t quantiles for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Slope of `y` on `x` and the upper bound of its 95 % confidence interval.
/// `None` with fewer than three points or no spread in `x`.
pub(crate) fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum();
    let se = (sse / (nf - 2.0) / sxx).sqrt();
    let t = T95[(n - 3).min(T95.len() - 1)];
    Some((slope, slope + t * se))
}

pub(crate) fn gate(
    name: impl Into<String>,
    value: impl Into<String>,
    limit: impl Into<String>,
    passed: bool,
) -> Gate {
    Gate {
        name: name.into(),
        value: value.into(),
        limit: limit.into(),
        passed,
    }
}

pub(crate) fn figure(name: impl Into<String>, value: impl Into<String>) -> Figure {
    Figure {
        name: name.into(),
        value: value.into(),
    }
}

pub(crate) fn sum(reports: &[Report], role: &str, f: impl Fn(&Report) -> u64) -> u64 {
    reports.iter().filter(|r| r.role == role).map(f).sum()
}

/// The long-lived checkers' latency histograms, merged.
pub(crate) fn checker_latency(reports: &[Report]) -> Option<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000, 2).ok()?;
    for r in reports.iter().filter(|r| r.role == "checker") {
        for (value, count) in &r.latency_buckets {
            let _ = hist.record_n(*value, *count);
        }
    }
    Some(hist)
}

pub(crate) fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

pub(crate) fn judge(plan: &Plan, record: &Record, leak_injected: bool) -> Verdict {
    let mut gates = Vec::new();
    let mut figures = Vec::new();
    let reports = &record.reports;
    let samples = &record.samples;
    let last = samples.iter().rev().find(|s| s.vars.tasks > 0);
    let topics = plan.topic_names();

    // 1. Operation counts against 72 production hours.
    let sessions = sum(reports, "churn", |r| r.sessions);
    let resumes = sum(reports, "resume", |r| r.resumes);
    let events = last.map_or(0, |s| s.vars.upstream_events);
    let connects = last.map_or(0, |s| s.vars.upstream_connections_opened);
    let reached = [sessions, resumes, events, connects];
    let mut fractions = Vec::new();
    for ((name, per72), got) in Plan::production_counts().into_iter().zip(reached) {
        let fraction = got as f64 / per72;
        fractions.push(fraction);
        gates.push(gate(
            format!("{name} reached"),
            format!("{got} ({:.1} % of 72 h)", fraction * 100.0),
            format!(">= {:.0} % of {per72:.0}", plan.min_fraction * 100.0),
            fraction >= plan.min_fraction,
        ));
    }

    // 2. Conservation at every sample.
    let violations: Vec<&String> = samples.iter().flat_map(|s| &s.violations).collect();
    gates.push(gate(
        "conservation invariants at every sample",
        format!(
            "{} violations in {} samples{}",
            violations.len(),
            samples.len(),
            violations
                .first()
                .map_or(String::new(), |v| format!(" (first: {v})"))
        ),
        "0",
        violations.is_empty() && !samples.is_empty(),
    ));

    // 3. Quiet checkpoints.
    for cp in record.checkpoints.iter().skip(1) {
        gates.push(gate(
            format!("checkpoint {} back to baseline", cp.index),
            if cp.differences.is_empty() {
                format!(
                    "equal; heap {:+} B",
                    i128::from(cp.vars.heap_bytes)
                        - i128::from(record.checkpoints[0].vars.heap_bytes)
                )
            } else {
                cp.differences.join("; ")
            },
            format!(
                "resources equal, heap within {} B",
                heap_tolerance(record.checkpoints[0].vars.heap_bytes)
            ),
            cp.differences.is_empty(),
        ));
    }
    if let Some(base) = record.checkpoints.first() {
        gates.push(gate(
            "baseline taken at a quiet moment",
            if base.differences.is_empty() {
                format!(
                    "tasks {}, fds {}, heap {} B",
                    base.vars.tasks, base.vars.open_fds, base.vars.heap_bytes
                )
            } else {
                base.differences.join("; ")
            },
            "quiet",
            base.differences.is_empty(),
        ));
    }
    gates.push(gate(
        "checkpoints held",
        record.checkpoints.len().to_string(),
        format!("{}", plan.rounds + 1),
        record.checkpoints.len() == plan.rounds + 1,
    ));

    // 4. Growth per operation, extrapolated.
    let points: Vec<(f64, f64)> = record
        .checkpoints
        .iter()
        .map(|c| (c.vars.admitted as f64, c.vars.heap_bytes as f64))
        .collect();
    let ops_72h =
        production::SECONDS * (production::SESSIONS_PER_SEC + production::RESUMES_PER_SEC);
    // Leaks tied to the kind of operation compressed least would grow
    // more over 72 h than the client operations predict.
    let progress: Vec<f64> = fractions.iter().copied().filter(|f| *f > 0.0).collect();
    let client = fractions[0].max(f64::MIN_POSITIVE);
    let least = progress.iter().copied().fold(f64::INFINITY, f64::min);
    let adjustment = if least.is_finite() {
        (client / least).max(1.0)
    } else {
        1.0
    };
    let growth = match fit(&points) {
        Some((slope, upper)) => Growth {
            points: points.len(),
            slope,
            slope_upper: upper,
            extrapolated_72h_bytes: upper.max(0.0) * ops_72h * adjustment,
            ops_72h,
            compression_adjustment: adjustment,
        },
        None => Growth::default(),
    };
    gates.push(gate(
        "heap growth extrapolated to 72 h",
        if growth.points >= 3 {
            format!(
                "{} ({:.3} B/op, upper {:.3} B/op, {} points)",
                mib(growth.extrapolated_72h_bytes),
                growth.slope,
                growth.slope_upper,
                growth.points
            )
        } else {
            "too few checkpoints to fit".to_string()
        },
        format!("<= {}", mib(production::BUDGET_BYTES)),
        growth.points >= 3 && growth.extrapolated_72h_bytes <= production::BUDGET_BYTES,
    ));

    // 5. Event errors and client sessions.
    let quotes: u64 = reports.iter().map(|r| r.quotes).sum();
    let missing: u64 = reports.iter().map(|r| r.missing).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let malformed: u64 = reports.iter().map(|r| r.malformed).sum();
    let errors = missing + duplicates + malformed;
    let error_rate = errors as f64 / (quotes + missing).max(1) as f64;
    gates.push(gate(
        "event error rate (gaps, duplicates, malformed)",
        format!(
            "{:.4} % ({missing} missing, {duplicates} duplicated, {malformed} malformed of {quotes})",
            error_rate * 100.0
        ),
        "< 1 %",
        error_rate < 0.01 && quotes > 0,
    ));
    let client_sessions: u64 = ["churn", "resume"]
        .iter()
        .map(|role| sum(reports, role, |r| r.sessions))
        .sum();
    let mut failures: HashMap<String, u64> = HashMap::new();
    for r in reports.iter().filter(|r| r.role != "slow") {
        for (k, v) in &r.failures {
            *failures.entry(format!("{}:{k}", r.role)).or_default() += v;
        }
    }
    let failed: u64 = failures
        .iter()
        .filter(|(k, _)| !k.starts_with("checker"))
        .map(|(_, v)| v)
        .sum();
    let mut failure_list: Vec<String> = failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
    failure_list.sort();
    let session_failure = failed as f64 / client_sessions.max(1) as f64;
    gates.push(gate(
        "client sessions failed",
        format!(
            "{:.3} % of {client_sessions}{}",
            session_failure * 100.0,
            if failure_list.is_empty() {
                String::new()
            } else {
                format!(" ({})", failure_list.join(", "))
            }
        ),
        "< 1 %",
        session_failure < 0.01 && client_sessions > 0,
    ));
    let resumes_exact = sum(reports, "resume", |r| r.resumes_exact);
    let resumes_reset = sum(reports, "resume", |r| r.resumes_reset);
    figures.push(figure(
        "resumes with Last-Event-ID",
        format!(
            "{resumes}: {resumes_exact} continued exactly, {resumes_reset} reset by the gateway"
        ),
    ));
    gates.push(gate(
        "load processes and checkpoints ran to the end",
        if record.load_failures.is_empty() {
            "all".to_string()
        } else {
            record.load_failures.join("; ")
        },
        "all",
        record.load_failures.is_empty(),
    ));

    // 6. Uptime outside injected outages (1 s after the upstream is back
    // counts as the outage: the reconnection goal).
    let windows = outages(record, &topics);
    let mut excluded: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for inject in record.sim.iter().filter(|e| e.ev == "inject") {
        for topic in topics
            .iter()
            .filter(|t| inject.topic.as_ref().is_none_or(|x| x == *t))
        {
            // Until 1 s after the upstream is back; 10 s when it never came
            // back within a load phase (a checkpoint released the topic).
            let end = windows
                .iter()
                .find(|w| &w.0 == topic && w.1 == inject.t)
                .map_or(inject.t + 10_000, |w| w.3 + 1000);
            excluded.entry(topic).or_default().push((inject.t, end));
        }
    }
    let mut considered = 0u64;
    let mut up = 0u64;
    for (_, from, to) in &record.load_phases {
        // The first seconds of a round: the checkers are subscribing.
        for s in samples
            .iter()
            .filter(|s| s.unix_ms >= from + 3000 && s.unix_ms + 1000 <= *to)
        {
            for (topic, phase) in &s.streams {
                let out = excluded
                    .get(topic.as_str())
                    .is_some_and(|w| w.iter().any(|(a, b)| *a <= s.unix_ms && s.unix_ms <= *b));
                if out || !topics.contains(topic) {
                    continue;
                }
                considered += 1;
                up += u64::from(phase == "open");
            }
        }
    }
    let uptime = up as f64 / considered.max(1) as f64;
    gates.push(gate(
        "upstream connection uptime outside injected outages",
        format!("{:.3} % of {considered} topic-seconds", uptime * 100.0),
        ">= 99.9 %",
        uptime >= 0.999 && considered > 0,
    ));

    // 7. Latency (live events at the long-lived checkers).
    let hist = checker_latency(reports);
    let catch_up: u64 = sum(reports, "checker", |r| r.catch_up_events);
    match hist.filter(|h| !h.is_empty()) {
        Some(h) => {
            gates.push(gate(
                "upstream-to-subscriber latency, average",
                format!("{:.1} ms over {} events", h.mean(), h.len()),
                "< 100 ms",
                h.mean() < 100.0,
            ));
            figures.push(figure(
                "latency p50 / p99 / max",
                format!(
                    "{} / {} / {} ms ({catch_up} events delayed by injected outages excluded)",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max()
                ),
            ));
        }
        None => gates.push(gate(
            "upstream-to-subscriber latency, average",
            "no events",
            "< 100 ms",
            false,
        )),
    }
    // The gateway's own measure (each quote's `t` by `health.event_time`):
    // upstream to the gateway, where the checkers' is upstream to client.
    figures.push(figure(
        "upstream-to-gateway latency measured by the gateway (health.event_time), average",
        record.gateway.map_or("not read".to_string(), |g| {
            format!("{:.1} ms over {:.0} events", g.latency.1, g.latency.0)
        }),
    ));
    // The packed route: its group re-packed all through the run (churn
    // takes its other topics), and the checkers' two topics on it saw no
    // gap and no duplicate: the re-packs' overlaps were hidden.
    let packed = plan.packed_names();
    let (missing, duplicated) = reports
        .iter()
        .filter(|r| r.role == "checker")
        .flat_map(|r| &r.by_topic)
        .filter(|(topic, _)| packed.contains(topic))
        .fold((0, 0), |(m, d), (_, (dm, dd))| (m + dm, d + dd));
    let repacks = record.gateway.map_or(0.0, |g| g.repacks);
    gates.push(gate(
        "packed route re-packed without a gap or a duplicate (checked topics)",
        format!(
            "{repacks:.0} re-packs ({:.0} duplicates hidden); {missing} missing, {duplicated} duplicated",
            record.gateway.map_or(0.0, |g| g.packed_duplicates)
        ),
        ">= 1 re-pack, 0 missing, 0 duplicated",
        repacks >= 1.0 && missing == 0 && duplicated == 0,
    ));

    // 8. Reconnection and recovery after each injected fault.
    let gaps: Vec<(String, u64, u64)> = reports
        .iter()
        .filter(|r| r.role == "checker")
        .flat_map(|r| r.delivery_gaps.iter().cloned())
        .collect();
    let mut reconnect: Vec<u64> = Vec::new();
    let mut returned: Vec<u64> = Vec::new();
    let mut recovery: Vec<u64> = Vec::new();
    let mut slowest: Vec<Outage> = Vec::new();
    for (topic, injected, fault_end, back, kind) in &windows {
        let delivered = first_delivery(&gaps, topic, *back);
        // Reconnection, measured directly: from the upstream's close to the
        // next event a subscriber got (the upstream answers again at once).
        // After a restart, from the moment the upstream accepted again: its
        // downtime is long in production time (1 s x the time scale), so
        // the stream's backoff has grown to its cap meanwhile, and the
        // cap bounds the return. Other faults keep the upstream faulty for
        // a while (bursts of errors, stalls): recovery covers them, and so
        // does a fault injected before the upstream served the topic again
        // (a burst of errors scripted during a restart's downtime, say).
        let overlapped = record.sim.iter().any(|e| {
            e.ev == "inject"
                && *injected < e.t
                && e.t <= *back
                && e.topic.as_ref().is_none_or(|t| t == topic)
        });
        if !overlapped {
            match kind.as_str() {
                "close" | "close-mid-event" => {
                    reconnect.push(reconnection(&gaps, topic, *fault_end));
                }
                "restart" => returned.push(reconnection(&gaps, topic, *fault_end)),
                _ => {}
            }
        }
        recovery.push(delivered.saturating_sub(*fault_end));
        slowest.push(Outage {
            topic: topic.clone(),
            kind: kind.clone(),
            injected: *injected,
            fault_end: *fault_end,
            back: *back,
            delivered,
        });
    }
    slowest.sort_by_key(|o| std::cmp::Reverse(o.delivered.saturating_sub(o.fault_end)));
    slowest.truncate(10);
    reconnect.sort_unstable();
    returned.sort_unstable();
    recovery.sort_unstable();
    // The `p`-th percentile (nearest rank below) of sorted values.
    let pct = |v: &[u64], p: usize| -> u64 {
        if v.is_empty() {
            0
        } else {
            v[(v.len() - 1) * p / 100]
        }
    };
    let goal = u64::try_from(plan.reconnect_goal().as_millis()).unwrap_or(u64::MAX);
    gates.push(gate(
        "reconnection, upstream close to the next delivered event (p99)",
        format!(
            "{} ms (p50 {} ms, max {} ms, {} closes; {} ms resolution)",
            pct(&reconnect, 99),
            pct(&reconnect, 50),
            reconnect.last().copied().unwrap_or(0),
            reconnect.len(),
            report::GAP_MS
        ),
        format!(
            "< {goal} ms (1 s / {} + {} ms that does not scale)",
            plan.time_scale,
            crate::plan::RECONNECT_ALLOWANCE.as_millis()
        ),
        !reconnect.is_empty() && pct(&reconnect, 99) < goal,
    ));
    let cap = u64::try_from(plan.restart_goal().as_millis()).unwrap_or(u64::MAX);
    gates.push(gate(
        "after a restart, the upstream's return to the next delivered event (p99)",
        format!(
            "{} ms (p50 {} ms, max {} ms, {} topic restarts; {} ms resolution)",
            pct(&returned, 99),
            pct(&returned, 50),
            returned.last().copied().unwrap_or(0),
            returned.len(),
            report::GAP_MS
        ),
        format!(
            "< {cap} ms (the backoff cap, 30 s / {} + {} ms that does not scale)",
            plan.time_scale,
            crate::plan::RECONNECT_ALLOWANCE.as_millis()
        ),
        !returned.is_empty() && pct(&returned, 99) < cap,
    ));
    gates.push(gate(
        "recovery after each injected fault (max)",
        format!(
            "{} ms (p50 {} ms, {} faults)",
            recovery.last().copied().unwrap_or(0),
            pct(&recovery, 50),
            recovery.len()
        ),
        "< 5000 ms",
        !recovery.is_empty() && recovery.last().copied().unwrap_or(0) < 5000,
    ));
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for e in record.sim.iter().filter(|e| e.ev == "inject") {
        *kinds.entry(e.kind.as_deref().unwrap_or("?")).or_default() += 1;
    }
    let mut kinds: Vec<String> = kinds.iter().map(|(k, v)| format!("{k} {v}")).collect();
    kinds.sort();
    figures.push(figure("faults injected", kinds.join(", ")));

    // 9. Peak upstream connections, slow consumers, interventions, shutdown.
    let peak = samples
        .iter()
        .map(|s| s.vars.upstream_sockets)
        .max()
        .unwrap_or(0);
    gates.push(gate(
        "peak concurrent upstream connections",
        peak.to_string(),
        "< 40 (cap 50)",
        peak < 40,
    ));
    let cut = sum(reports, "slow", |r| r.slow_cut);
    let not_cut = sum(reports, "slow", |r| r.slow_not_cut);
    gates.push(gate(
        "slow consumers handled by their policy",
        format!("{cut} cut, {not_cut} kept (drop-oldest/conflate topics)"),
        "> 0 cut",
        cut > 0,
    ));
    gates.push(gate(
        "manual interventions (gateway restarts)",
        if record.gateway_died {
            "the gateway exited during the run".to_string()
        } else {
            "0".to_string()
        },
        "0",
        !record.gateway_died,
    ));
    let drain_limit = plan.drain_deadline().as_secs_f64() + 5.0;
    gates.push(gate(
        "graceful shutdown on SIGTERM",
        format!(
            "exit {:?} after {:.1} s",
            record.gateway_exit, record.shutdown_secs
        ),
        format!("exit 0 within {drain_limit:.0} s"),
        record.gateway_exit == Some(0) && record.shutdown_secs <= drain_limit,
    ));

    // Figures: CPU, memory, rates.
    if let (Some(first), Some(last)) = (samples.first(), last) {
        let wall = (last.t - first.t).max(1.0);
        figures.push(figure(
            "gateway CPU",
            format!(
                "{:.1} % of one core on average",
                (last.cpu_secs - first.cpu_secs) / wall * 100.0
            ),
        ));
        let rss_max = samples.iter().map(|s| s.vars.rss_bytes).max().unwrap_or(0);
        figures.push(figure(
            "gateway RSS first / last / max (not a gate: allocators keep pages)",
            format!(
                "{} / {} / {}",
                mib(first.vars.rss_bytes as f64),
                mib(last.vars.rss_bytes as f64),
                mib(rss_max as f64)
            ),
        ));
        let heap_max = samples.iter().map(|s| s.vars.heap_bytes).max().unwrap_or(0);
        figures.push(figure(
            "gateway live heap first / last / max",
            format!(
                "{} / {} / {}",
                mib(first.vars.heap_bytes as f64),
                mib(last.vars.heap_bytes as f64),
                mib(heap_max as f64)
            ),
        ));
        figures.push(figure(
            "events delivered to subscribers",
            format!(
                "{} ({:.0}/s)",
                last.vars.events_sent,
                last.vars.events_sent as f64 / wall
            ),
        ));
        figures.push(figure(
            "upstream connection attempts / opened / rotations",
            format!(
                "{} / {} / {}",
                last.vars.upstream_attempts,
                last.vars.upstream_connections_opened,
                last.vars.upstream_rotations
            ),
        ));
        // RSS is not a gate (allocators keep pages) but must plateau: its
        // value at each quiet checkpoint.
        let rss: Vec<String> = record
            .checkpoints
            .iter()
            .map(|c| format!("{:.1}", c.vars.rss_bytes as f64 / 1_048_576.0))
            .collect();
        figures.push(figure(
            "gateway RSS at the checkpoints (MiB)",
            rss.join(" "),
        ));
    }
    figures.push(figure(
        "operations between checkpoints",
        format!(
            "{} client sessions and {} resumes per round",
            plan.sessions_per_round, plan.resumes_per_round
        ),
    ));
    figures.push(figure(
        "run",
        format!(
            "{:.0} s, time scale {}, {} rounds + warm-up, seed {}",
            record.duration_secs, plan.time_scale, plan.rounds, plan.seed
        ),
    ));
    if leak_injected {
        figures.push(figure("leak injection", "on: this run is expected to fail"));
    }
    if matches!(plan.mode, Mode::Wall(_)) {
        figures.push(figure("mode", "wall clock, production durations"));
    }

    let passed = gates.iter().all(|g| g.passed);
    Verdict {
        passed,
        gates,
        figures,
        growth,
        slowest_recoveries: slowest,
        assumed_production: serde_json::json!({
            "client_sessions_per_sec": production::SESSIONS_PER_SEC,
            "resumes_per_sec": production::RESUMES_PER_SEC,
            "upstream_events_per_sec": production::EVENTS_PER_SEC,
            "upstream_connections_per_hour": production::UPSTREAM_CONNECTS_PER_HOUR,
            "heap_budget_bytes_72h": production::BUDGET_BYTES,
        }),
    }
}

/// The console summary: a table of gates, the figures, and the final line.
pub(crate) fn summary(verdict: &Verdict) -> String {
    let mut out = String::new();
    let width = verdict
        .gates
        .iter()
        .map(|g| g.name.len())
        .max()
        .unwrap_or(10);
    let _ = writeln!(
        out,
        "{:<width$}  {:<6}  {:<28}  value",
        "gate", "result", "limit"
    );
    for g in &verdict.gates {
        let _ = writeln!(
            out,
            "{:<width$}  {:<6}  {:<28}  {}",
            g.name,
            if g.passed { "pass" } else { "FAIL" },
            g.limit,
            g.value
        );
    }
    let _ = writeln!(out);
    for f in &verdict.figures {
        let _ = writeln!(out, "{}: {}", f.name, f.value);
    }
    let passed = verdict.gates.iter().filter(|g| g.passed).count();
    let failed = verdict.gates.len() - passed;
    // The failed gates again, last: a CI log often keeps only the tail.
    for g in verdict.gates.iter().filter(|g| !g.passed) {
        let _ = write!(out, "\nFAILED: {}: {} (limit {})", g.name, g.value, g.limit);
    }
    let _ = write!(out, "\n{passed} passed, {failed} failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_series_has_no_growth_and_a_leak_is_found() {
        // Quiet checkpoints: a few kB of noise, no trend.
        let flat: Vec<(f64, f64)> = (0..11)
            .map(|i| {
                (
                    f64::from(i) * 3000.0,
                    4.0e6 + f64::from((i * 7919) % 13) * 300.0,
                )
            })
            .collect();
        let (slope, upper) = fit(&flat).unwrap();
        assert!(slope.abs() < 0.5, "{slope}");
        let ops = production::SECONDS * 1.1;
        assert!(upper * ops < production::BUDGET_BYTES, "{}", upper * ops);
        // One 48-byte entry per operation: over budget in 72 h.
        let leak: Vec<(f64, f64)> = flat.iter().map(|(x, y)| (*x, y + 48.0 * x)).collect();
        let (slope, upper) = fit(&leak).unwrap();
        assert!((slope - 48.0).abs() < 1.0, "{slope}");
        assert!(upper * ops > production::BUDGET_BYTES);
    }

    #[test]
    fn fits_need_three_points_and_spread() {
        assert!(fit(&[(0.0, 1.0), (1.0, 2.0)]).is_none());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }

    #[test]
    fn the_summary_ends_with_the_counts() {
        let verdict = Verdict {
            passed: false,
            gates: vec![gate("a", "1", "1", true), gate("b", "2", "1", false)],
            figures: vec![],
            growth: Growth::default(),
            assumed_production: serde_json::Value::Null,
            slowest_recoveries: Vec::new(),
        };
        assert!(summary(&verdict).ends_with("1 passed, 1 failed"));
    }
}

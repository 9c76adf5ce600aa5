//! The verdict of a cluster soak: the single-process soak's gates, per
//! instance where they are about a process (baselines, growth, invariants),
//! for the whole cluster where they are about the service (events lost or
//! repeated, sessions, latency, upstream connections), and the cluster's
//! own: take-over after each kill, one upstream per topic, and the return
//! to it after NATS's restart.

use std::collections::HashMap;

use crate::cluster::{ClusterRecord, LEASE_TTL};
use crate::plan::{Plan, production};
use crate::verdict::{Growth, Verdict, checker_latency, figure, fit, gate, mib, sum};

/// Reconciliation after NATS returns: the bound.
const RECONCILE_MS: u64 = 10_000;

pub(crate) fn judge(
    plan: &Plan,
    record: &ClusterRecord,
    kills_planned: usize,
    nats_round: usize,
) -> Verdict {
    let mut gates = Vec::new();
    let mut figures = Vec::new();
    let reports = &record.reports;
    let topics = plan.topic_names().len() as u64;

    // The last reading of every process (instance, incarnation).
    let mut last: HashMap<(usize, usize), &crate::sample::Vars> = HashMap::new();
    for s in record.samples.iter().filter(|s| s.vars.tasks > 0) {
        last.insert((s.instance, s.incarnation), &s.vars);
    }

    // 1. Operation counts against 72 production hours.
    let sessions = sum(reports, "churn", |r| r.sessions);
    let resumes = sum(reports, "resume", |r| r.resumes);
    let events: u64 = last.values().map(|v| v.upstream_events).sum();
    let connects: u64 = last.values().map(|v| v.upstream_connections_opened).sum();
    for ((name, per72), got) in Plan::production_counts()
        .into_iter()
        .zip([sessions, resumes, events, connects])
    {
        let fraction = got as f64 / per72;
        if plan.min_fraction > 0.0 {
            gates.push(gate(
                format!("{name} reached"),
                format!("{got} ({:.1} % of 72 h)", fraction * 100.0),
                format!(">= {:.0} % of {per72:.0}", plan.min_fraction * 100.0),
                fraction >= plan.min_fraction,
            ));
        } else {
            figures.push(figure(
                name.to_string(),
                format!("{got} ({:.1} % of 72 h)", fraction * 100.0),
            ));
        }
    }

    // 2. Invariants at every sample of every instance.
    let violations: Vec<String> = record
        .samples
        .iter()
        .flat_map(|s| {
            s.violations
                .iter()
                .map(move |v| format!("{} at {:.0} s: {v}", record.names[s.instance], s.t))
        })
        .collect();
    gates.push(gate(
        "conservation invariants at every sample of every instance",
        format!(
            "{} violations in {} samples{}",
            violations.len(),
            record.samples.len(),
            violations
                .first()
                .map_or(String::new(), |v| format!(" (first: {v})"))
        ),
        "0",
        violations.is_empty() && !record.samples.is_empty(),
    ));

    // 3. Checkpoints: every instance back to the baseline of its process.
    for round in 1..=plan.rounds {
        let cps: Vec<_> = record
            .checkpoints
            .iter()
            .filter(|c| c.checkpoint.index == round)
            .collect();
        if cps.is_empty() {
            continue;
        }
        let mut parts = Vec::new();
        let mut passed = cps.len() == record.names.len();
        for c in &cps {
            passed &= c.checkpoint.differences.is_empty();
            parts.push(
                match (c.baseline_heap, c.checkpoint.differences.is_empty()) {
                    (_, false) => {
                        format!("{}: {}", c.instance, c.checkpoint.differences.join("; "))
                    }
                    (Some(heap), true) => format!(
                        "{} equal, heap {:+} B",
                        c.instance,
                        c.checkpoint.vars.heap_bytes.cast_signed() - heap.cast_signed()
                    ),
                    (None, true) => format!("{}: {}", c.instance, c.role),
                },
            );
        }
        gates.push(gate(
            format!("checkpoint {round}: every instance back to its baseline"),
            parts.join("; "),
            "resources equal, heap within 64 KiB + 1 %, no topic or lease left",
            passed,
        ));
    }
    let baselines_quiet = record
        .checkpoints
        .iter()
        .filter(|c| c.baseline_heap.is_none())
        .all(|c| c.checkpoint.differences.is_empty());
    gates.push(gate(
        "baselines taken at a quiet moment, checkpoints held",
        format!(
            "{} checkpoints{}",
            record.checkpoints.len(),
            if baselines_quiet {
                ""
            } else {
                "; a baseline was not quiet"
            }
        ),
        format!(
            "{} (3 instances x {} rounds)",
            3 * (plan.rounds + 1),
            plan.rounds + 1
        ),
        baselines_quiet && record.checkpoints.len() == 3 * (plan.rounds + 1),
    ));

    // 4. Heap growth of the instance that lives through the run (a).
    let points: Vec<(f64, f64)> = record
        .checkpoints
        .iter()
        // From the NATS restart on: its new connection is a step, not a
        // trend (the baselines are taken again there too).
        .filter(|c| c.instance == record.names[0] && c.checkpoint.index >= nats_round.max(1))
        .map(|c| {
            (
                c.checkpoint.vars.admitted as f64,
                c.checkpoint.vars.heap_bytes as f64,
            )
        })
        .collect();
    // Every production session and resume of 72 h on this one instance.
    let ops_72h =
        (production::SESSIONS_PER_SEC + production::RESUMES_PER_SEC) * production::SECONDS;
    let growth = match fit(&points) {
        Some((slope, upper)) => Growth {
            points: points.len(),
            slope,
            slope_upper: upper,
            extrapolated_72h_bytes: upper.max(0.0) * ops_72h,
            ops_72h,
            compression_adjustment: 1.0,
        },
        None => Growth::default(),
    };
    gates.push(gate(
        format!(
            "heap growth of instance {} extrapolated to 72 h",
            record.names[0]
        ),
        if growth.points >= 3 {
            format!(
                "{} ({:.3} B/session, upper {:.3}, {} points)",
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

    // 5. Events: nothing lost, nothing twice, across kills and the restart.
    let quotes: u64 = reports.iter().map(|r| r.quotes).sum();
    let missing: u64 = reports.iter().map(|r| r.missing).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let malformed: u64 = reports.iter().map(|r| r.malformed).sum();
    gates.push(gate(
        "events lost, duplicated or malformed (across kills and the NATS restart)",
        format!("{missing} missing, {duplicates} duplicated, {malformed} malformed of {quotes}"),
        "0",
        missing + duplicates + malformed == 0 && quotes > 0,
    ));
    let client_sessions: u64 = ["churn", "resume"]
        .iter()
        .map(|role| sum(reports, role, |r| r.sessions))
        .sum();
    let mut failures: HashMap<String, u64> = HashMap::new();
    for r in reports
        .iter()
        .filter(|r| r.role == "churn" || r.role == "resume")
    {
        for (k, v) in &r.failures {
            *failures.entry(format!("{}:{k}", r.role)).or_default() += v;
        }
    }
    let failed: u64 = failures.values().sum();
    let mut failure_list: Vec<String> = failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
    failure_list.sort();
    let rate = failed as f64 / client_sessions.max(1) as f64;
    gates.push(gate(
        "client sessions failed (the killed instances' included)",
        format!(
            "{:.3} % of {client_sessions}{}",
            rate * 100.0,
            if failure_list.is_empty() {
                String::new()
            } else {
                format!(" ({})", failure_list.join(", "))
            }
        ),
        "< 1 %",
        rate < 0.01 && client_sessions > 0,
    ));
    figures.push(figure(
        "resumes with Last-Event-ID, each on another instance",
        format!(
            "{resumes}: {} continued exactly, {} reset (events seen only during the NATS outage are not resumable elsewhere)",
            sum(reports, "resume", |r| r.resumes_exact),
            sum(reports, "resume", |r| r.resumes_reset)
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

    // 6. Latency at the long-lived checkers.
    match checker_latency(reports).filter(|h| !h.is_empty()) {
        Some(h) => {
            gates.push(gate(
                "upstream-to-subscriber latency, average",
                format!("{:.1} ms over {} events", h.mean(), h.len()),
                "< 100 ms",
                h.mean() < 100.0,
            ));
            let catch_up: u64 = sum(reports, "checker", |r| r.catch_up_events);
            figures.push(figure(
                "latency p50 / p99 / max",
                format!(
                    "{} / {} / {} ms ({catch_up} events excluded: delayed by an outage, \
                     or stamped before their checker started)",
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

    // 7. Kills: a new owner within the lease and a second, and back.
    let bound =
        u64::try_from((LEASE_TTL.as_millis() + 1000).min(u128::from(u64::MAX))).unwrap_or(u64::MAX);
    let takeovers: Vec<u64> = record.kills.iter().filter_map(|k| k.takeover_ms).collect();
    let worst = takeovers.iter().copied().max();
    let all_taken = takeovers.len() == record.kills.len();
    gates.push(gate(
        "owner killed (SIGKILL): a new owner within lease_ttl + 1 s",
        format!(
            "{} of {} kills taken over, max {} ms ({})",
            takeovers.len(),
            kills_planned,
            worst.map_or("-".to_string(), |w| w.to_string()),
            record
                .kills
                .iter()
                .map(|k| format!(
                    "{} of {}: {}",
                    k.topic,
                    k.victim,
                    k.takeover_ms
                        .map_or("never".to_string(), |t| format!("{t} ms"))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("{kills_planned} kills, each <= {bound} ms"),
        record.kills.len() == kills_planned && all_taken && worst.is_some_and(|w| w <= bound)
            || kills_planned == 0,
    ));
    let back = record
        .kills
        .iter()
        .filter(|k| k.restarted_ms.is_some())
        .count();
    let reconnects = sum(reports, "checker", |r| r.reconnects);
    gates.push(gate(
        "killed instances started again; their checkers resumed on another instance",
        format!(
            "{back} of {} back; {reconnects} checker resumptions",
            record.kills.len()
        ),
        "all back, at least one resumption per kill",
        back == record.kills.len() && reconnects >= record.kills.len() as u64,
    ));

    // 8. NATS restart: service went on; one upstream per topic within 10 s.
    let outage = record
        .nats_restart
        .as_ref()
        .map(|n| (n.down_ms, n.up_ms + RECONCILE_MS));
    match &record.nats_restart {
        Some(n) => gates.push(gate(
            "NATS restarted: one upstream per topic again",
            format!(
                "{} after NATS returned ({} s down, {} streams at the peak of the fallback)",
                n.reconciled_ms
                    .map_or("never".to_string(), |ms| format!("{ms} ms")),
                (n.up_ms - n.down_ms) / 1000,
                n.peak_streams
            ),
            format!("<= {RECONCILE_MS} ms"),
            n.reconciled_ms.is_some_and(|ms| ms <= RECONCILE_MS),
        )),
        None => gates.push(gate(
            "NATS restarted: one upstream per topic again",
            "no restart was made",
            format!("<= {RECONCILE_MS} ms"),
            false,
        )),
    }
    let in_outage = |ms: u64| outage.is_some_and(|(from, to)| ms >= from && ms <= to);
    let outage_gaps: Vec<u64> = reports
        .iter()
        .filter(|r| r.role == "checker")
        .flat_map(|r| r.delivery_gaps.iter())
        .filter(|(_, from, to)| in_outage(*from) || in_outage(*to))
        .map(|(_, from, to)| to - from)
        .collect();
    let longest = outage_gaps.iter().copied().max().unwrap_or(0);
    let outage_bound = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(0) * 2 + 2000;
    gates.push(gate(
        "service during the NATS outage: the checkers' longest pause",
        format!("{longest} ms"),
        format!(
            "<= {outage_bound} ms (two leases to give up on the owner, then a fallback upstream)"
        ),
        record.nats_restart.is_some() && longest <= outage_bound,
    ));

    // 9. Upstream connections: one per topic cluster-wide, within the cap.
    let ticks: Vec<_> = record
        .ticks
        .iter()
        .filter(|t| t.complete && !in_outage(t.unix_ms))
        .collect();
    let over = ticks.iter().filter(|t| t.pool_streams > topics).count();
    let most = ticks.iter().map(|t| t.pool_streams).max().unwrap_or(0);
    gates.push(gate(
        "upstream streams cluster-wide: one per topic (outside the NATS outage)",
        format!(
            "{over} of {} seconds over {topics}; at most {most}",
            ticks.len()
        ),
        "0 seconds over",
        over == 0 && !ticks.is_empty(),
    ));
    let peak = ticks.iter().map(|t| t.upstream_sockets).max().unwrap_or(0);
    gates.push(gate(
        "peak concurrent upstream connections cluster-wide (outside the outage)",
        peak.to_string(),
        "< 40 (cap 50)",
        peak < 40,
    ));
    let cut = sum(reports, "slow", |r| r.slow_cut);
    gates.push(gate(
        "slow consumers handled by their policy",
        format!(
            "{cut} cut, {} kept",
            sum(reports, "slow", |r| r.slow_not_cut)
        ),
        "> 0 cut",
        cut > 0,
    ));

    // 10. No unplanned exits; a graceful shutdown of every instance.
    gates.push(gate(
        "manual interventions (instances that exited unplanned)",
        if record.died.is_empty() {
            "0".to_string()
        } else {
            record.died.join(", ")
        },
        "0",
        record.died.is_empty(),
    ));
    gates.push(gate(
        "graceful shutdown of every instance on SIGTERM",
        format!(
            "{} after {:.1} s",
            record
                .exits
                .iter()
                .map(|(n, e)| format!("{n} exit {e:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            record.shutdown_secs
        ),
        "exit 0",
        record.exits.len() == record.names.len() && record.exits.iter().all(|(_, e)| *e == Some(0)),
    ));

    // Figures.
    let mut cpu = Vec::new();
    for (index, name) in record.names.iter().enumerate() {
        let of: Vec<_> = record
            .samples
            .iter()
            .filter(|s| s.instance == index)
            .collect();
        let busy: f64 = of
            .windows(2)
            .filter(|w| w[0].incarnation == w[1].incarnation)
            .map(|w| (w[1].cpu_secs - w[0].cpu_secs).max(0.0))
            .sum();
        let span: f64 = of
            .windows(2)
            .filter(|w| w[0].incarnation == w[1].incarnation)
            .map(|w| w[1].t - w[0].t)
            .sum();
        let heap = of.iter().map(|s| s.vars.heap_bytes).max().unwrap_or(0);
        cpu.push(format!(
            "{name} {:.1} % (live heap max {})",
            100.0 * busy / span.max(1.0),
            mib(heap as f64)
        ));
    }
    figures.push(figure(
        "instance CPU, of one core on average",
        cpu.join(", "),
    ));
    let delivered: u64 = last.values().map(|v| v.events_sent).sum();
    figures.push(figure(
        "events delivered to subscribers",
        format!(
            "{delivered} ({:.0}/s)",
            delivered as f64 / record.duration_secs.max(1.0)
        ),
    ));
    figures.push(figure(
        "run",
        format!(
            "{:.0} s, 3 instances, time scale {}, {} rounds + warm-up, {} kills, seed {}",
            record.duration_secs,
            plan.time_scale,
            plan.rounds,
            record.kills.len(),
            plan.seed
        ),
    ));

    let passed = gates.iter().all(|g| g.passed);
    Verdict {
        passed,
        gates,
        figures,
        growth,
        assumed_production: serde_json::json!({
            "client_sessions_per_sec": production::SESSIONS_PER_SEC,
            "resumes_per_sec": production::RESUMES_PER_SEC,
            "upstream_events_per_sec": production::EVENTS_PER_SEC,
            "heap_budget_bytes_72h": production::BUDGET_BYTES,
        }),
        slowest_recoveries: Vec::new(),
    }
}

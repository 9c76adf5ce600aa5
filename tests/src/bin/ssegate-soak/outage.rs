//! Injected faults seen from both ends: when the upstream was faulty and
//! when it served a topic again (the simulator's log), and when the
//! checkers got events again (their delivery gaps).

use serde::Serialize;

use crate::harness::Record;
use crate::report;

/// The first delivery at or after `t` on `topic`, from the checkers' gaps:
/// inside a gap, its end; otherwise `t` (events were flowing, within the
/// gap threshold).
pub(crate) fn first_delivery(gaps: &[(String, u64, u64)], topic: &str, t: u64) -> u64 {
    gaps.iter()
        .filter(|(g, from, to)| g == topic && *from <= t && t < *to)
        .map(|(_, _, to)| *to)
        .min()
        .unwrap_or(t)
}

/// Milliseconds from `t` (an upstream close) to the next delivery of
/// `topic`: the end of the delivery gap around `t`. A pause shorter than
/// the gaps' resolution was not recorded: then the resolution, an upper
/// bound.
pub(crate) fn reconnection(gaps: &[(String, u64, u64)], topic: &str, t: u64) -> u64 {
    gaps.iter()
        .filter(|(g, from, to)| g == topic && *from <= t && t < *to)
        .map(|(_, _, to)| to - t)
        .min()
        .unwrap_or(report::GAP_MS)
}

/// One injected fault on one topic, during a load phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outage {
    pub(crate) topic: String,
    pub(crate) kind: String,
    /// Unix ms: injected; the upstream's last faulty response ended; a
    /// normal stream was served again; the checkers got events again.
    pub(crate) injected: u64,
    pub(crate) fault_end: u64,
    pub(crate) back: u64,
    pub(crate) delivered: u64,
}

/// Per injected fault: (topic, inject, fault end, back, kind) during load
/// phases.
pub(crate) fn outages(record: &Record, topics: &[String]) -> Vec<(String, u64, u64, u64, String)> {
    let mut out = Vec::new();
    let in_load = |t: u64| {
        record
            .load_phases
            .iter()
            .any(|(_, from, to)| *from <= t && t <= *to)
    };
    for inject in record.sim.iter().filter(|e| e.ev == "inject") {
        let hit: Vec<&String> = match &inject.topic {
            Some(t) => topics.iter().filter(|x| *x == t).collect(),
            None => topics.iter().collect(),
        };
        for topic in hit {
            let after = record
                .sim
                .iter()
                .filter(|e| e.t >= inject.t && e.topic.as_deref() == Some(topic.as_str()));
            let mut fault_end = inject.t;
            if inject.kind.as_deref() == Some("restart") {
                fault_end = inject.t + record.restart_downtime_ms;
            }
            let mut back = None;
            for e in after {
                // A garbage stream delivers events around its garbage: it
                // is a working stream.
                let working = matches!(e.fault.as_deref(), Some("normal" | "garbage"));
                if e.ev == "start" && working && e.t >= fault_end {
                    back = Some(e.t);
                    break;
                }
                if e.ev == "end" {
                    fault_end = fault_end.max(e.t);
                }
            }
            if let Some(back) = back
                && in_load(inject.t)
                && in_load(back)
            {
                out.push((
                    topic.clone(),
                    inject.t,
                    fault_end,
                    back,
                    inject.kind.clone().unwrap_or_default(),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnection_runs_to_the_end_of_its_gap_or_is_under_the_resolution() {
        let gaps = vec![("A".to_string(), 1000, 3000), ("A".to_string(), 5000, 5040)];
        assert_eq!(reconnection(&gaps, "A", 2000), 1000);
        assert_eq!(reconnection(&gaps, "A", 5010), 30);
        assert_eq!(reconnection(&gaps, "A", 4000), report::GAP_MS);
        assert_eq!(reconnection(&gaps, "B", 2000), report::GAP_MS);
    }

    #[test]
    fn first_delivery_is_the_end_of_the_gap_containing_the_time() {
        let gaps = vec![("A".to_string(), 1000, 3000), ("B".to_string(), 0, 9000)];
        assert_eq!(first_delivery(&gaps, "A", 2000), 3000);
        assert_eq!(first_delivery(&gaps, "A", 4000), 4000);
        assert_eq!(first_delivery(&gaps, "C", 10), 10);
    }
}

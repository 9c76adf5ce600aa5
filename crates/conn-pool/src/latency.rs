//! An event's latency from its own time (`health.event_time`), on the
//! clocks a stream keeps.

use std::time::{Duration, SystemTime};

use sse_health::EventTime;

/// The latency of an event whose data carries its time where `time` says
/// (a JSON number, or a string of one). `None` when the data is not JSON
/// or the pointer names no number (such an event is simply not measured),
/// and for an event stamped before its connection was `asked` for: a
/// replay after a reconnect is late by nature, and would turn every
/// reconnect into a latency alarm.
pub(crate) fn latency_of(
    time: &EventTime,
    data: &str,
    (asked, asked_at): (SystemTime, tokio::time::Instant),
) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    let stamp = match value.pointer(&time.pointer)? {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    let connected_for = asked_at.elapsed();
    let latency = time.latency(stamp, asked.checked_add(connected_for)?)?;
    (latency <= connected_for).then_some(latency)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use sse_health::TimeUnit;

    use super::*;

    fn stamped(at: SystemTime) -> String {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        format!("{{\"s\":\"X\",\"t\":{ms}}}")
    }

    #[tokio::test(start_paused = true)]
    async fn live_events_are_measured_and_replayed_history_is_not() {
        let time = EventTime {
            pointer: "/t".into(),
            unit: TimeUnit::Ms,
        };
        let asked = (SystemTime::now(), tokio::time::Instant::now());
        // Paused time: the connection has been up ten seconds.
        tokio::time::advance(Duration::from_secs(10)).await;
        let live = stamped(asked.0 + Duration::from_secs(7));
        let latency = latency_of(&time, &live, asked).expect("measured");
        assert!(
            latency.abs_diff(Duration::from_secs(3)) < Duration::from_millis(2),
            "{latency:?}"
        );
        let replayed = stamped(asked.0 - Duration::from_secs(2));
        assert_eq!(latency_of(&time, &replayed, asked), None, "history");
        assert_eq!(latency_of(&time, "tick", asked), None, "not JSON");
        assert_eq!(
            latency_of(&time, "{\"t\":\"soon\"}", asked),
            None,
            "no number"
        );
        let as_text = live.replace("\"t\":", "\"t\":\"").replace('}', "\"}");
        assert!(
            latency_of(&time, &as_text, asked).is_some(),
            "a string of a number: {as_text}"
        );
    }
}

//! One upstream event, encoded once for every subscriber: the bytes of a
//! single-topic stream (its `id:` line included) and of a multi-topic stream
//! (without the `id:` line, which each stream writes for itself). Ids are
//! `<run>:<seq>`: the run token tells this run's ids from an earlier run's.

use bytes::Bytes;
use sse_parser::{Event, encode_event};
use tokio::time::Instant;

/// One upstream event, encoded once.
#[derive(Debug)]
pub(crate) struct HubEvent {
    /// Its gateway sequence number.
    pub(crate) seq: u64,
    /// The whole block for single-topic streams, `id:` included.
    pub(crate) single: Bytes,
    /// The block for multi-topic streams without its `id:` line and final
    /// blank line (`event:` is the topic): each stream appends its own id.
    pub(crate) multi: Bytes,
    /// When it arrived (the replay buffer expires by age).
    pub(crate) at: Instant,
    /// Whether `seq` is a position a client may resume from: false for an
    /// event a cluster's source could not place in its log (a fallback
    /// upstream during a NATS outage), whose id carries the run token and
    /// [`UNPOSITIONED`], which no instance resumes from.
    pub(crate) positioned: bool,
}

/// Marks the run token of an id that is not a resumable position (`<run>~`).
pub(crate) const UNPOSITIONED: u8 = b'~';

/// The token of ids that are not positions, for run `run`.
pub(crate) fn unpositioned(run: &str) -> String {
    let mut token = String::with_capacity(run.len() + 1);
    token.push_str(run);
    token.push(char::from(UNPOSITIONED));
    token
}

impl HubEvent {
    /// Encodes `event` of `topic` as sequence number `seq` of run `run`, or
    /// `None` if it cannot be encoded (an upstream type with CR, LF or NUL,
    /// which the parser never yields).
    pub(crate) fn encode(run: &str, topic: &str, seq: u64, event: &Event) -> Option<Self> {
        let mut single = event.clone();
        single.id = format!("{run}:{seq}").into();
        let single = encode_event(&single).ok()?;
        let mut multi = event.clone();
        multi.id = "".into();
        multi.event_type = if &*event.event_type == "message" || event.event_type.is_empty() {
            topic.into()
        } else {
            format!("{topic}:{}", &*event.event_type).into()
        };
        let multi = encode_event(&multi).ok()?;
        // Without the final blank line: each stream appends `id: ...\n\n`.
        let multi = multi.slice(..multi.len() - 1);
        Some(Self {
            seq,
            single,
            multi,
            at: Instant::now(),
            positioned: true,
        })
    }

    /// As [`encode`](Self::encode), for an event without a position, with
    /// the token [`unpositioned`] made of the run's: its id is
    /// `<run>~:<seq>`, which a resume treats as unknown (a reset).
    pub(crate) fn encode_unpositioned(
        token: &str,
        topic: &str,
        seq: u64,
        event: &Event,
    ) -> Option<Self> {
        Self::encode(token, topic, seq, event).map(|e| Self {
            positioned: false,
            ..e
        })
    }

    /// Its size as queues and the replay buffer count it.
    pub(crate) fn len(&self) -> usize {
        self.single.len()
    }

    #[cfg(test)]
    pub(crate) fn for_test(seq: u64, single: Bytes) -> Self {
        Self {
            seq,
            multi: single.clone(),
            single,
            at: Instant::now(),
            positioned: true,
        }
    }
}

/// A token distinguishing this run's ids from an earlier run's (and from
/// another gateway's in the same process).
pub(crate) fn run_token() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // The low 64 bits of the clock are what varies between runs.
    let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mixed = low ^ (u64::from(std::process::id()) << 32) ^ made.rotate_right(16);
    let mut n = mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 24;
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut token = String::new();
    for _ in 0..8 {
        token.push(char::from(alphabet[(n % 36) as usize]));
        n /= 36;
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_blocks_carry_the_id_and_multi_blocks_name_the_topic() {
        let mut event = Event::new("x");
        let e = HubEvent::encode("run", "AAPL", 7, &event).expect("encodable");
        assert_eq!(&e.single[..], b"id: run:7\ndata: x\n\n");
        assert_eq!(&e.multi[..], b"event: AAPL\ndata: x\n");
        event.event_type = "quote".into();
        let e = HubEvent::encode("run", "AAPL", 8, &event).expect("encodable");
        assert!(e.multi.starts_with(b"event: AAPL:quote\n"), "{:?}", e.multi);
    }

    #[test]
    fn unpositioned_events_carry_a_token_no_resume_accepts() {
        let e = HubEvent::encode_unpositioned(&unpositioned("run"), "AAPL", 7, &Event::new("x"))
            .expect("ok");
        assert_eq!(&e.single[..], b"id: run~:7\ndata: x\n\n");
        assert!(!e.positioned);
        assert!(
            HubEvent::encode("run", "AAPL", 7, &Event::new("x"))
                .expect("ok")
                .positioned
        );
    }

    #[test]
    fn run_tokens_differ_between_runs() {
        let a = run_token();
        assert_ne!(a, run_token(), "even within the clock's resolution");
        assert_eq!(a.len(), 8);
    }
}

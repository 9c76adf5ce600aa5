//! Per-topic de-duplication across the connections of a packed group.
//!
//! While a group is re-packed make-before-break, its old and new
//! connections both carry the topics they share, and a re-opened
//! connection replays from its `Last-Event-ID`: the same event can come
//! twice. Each topic remembers the position of the last event it
//! delivered, and an event at or before it is a duplicate.
//!
//! A position is the number an id ends with (`1234`, `AAPL:1234`,
//! `evt-1234`): upstreams that pack topics number their events in one
//! increasing sequence per connection or per topic, and either way the
//! events of one topic increase. An id with no number is compared by
//! equality with the last few ids of the topic instead.

use std::collections::VecDeque;

/// How many recent unnumbered ids a topic remembers.
const RECENT: usize = 16;

/// One topic's memory of what it delivered.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    last: Option<u64>,
    recent: VecDeque<Box<str>>,
}

impl Dedup {
    /// Whether an event with `id` is new for this topic (and remembers it).
    pub(crate) fn admit(&mut self, id: &str) -> bool {
        if id.is_empty() {
            // No id, no way to tell: delivered.
            return true;
        }
        match position(id) {
            Some(n) => {
                if self.last.is_some_and(|last| n <= last) {
                    return false;
                }
                self.last = Some(n);
                true
            }
            None => {
                if self.recent.iter().any(|seen| &**seen == id) {
                    return false;
                }
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(id.into());
                true
            }
        }
    }
}

/// The number an upstream event id ends with (`1234`, `AAPL:1234`,
/// `evt-1234`), if it ends with one that fits in a `u64`: the order of a
/// topic's events where its upstream numbers them, which is what packed
/// routes de-duplicate by and what a cluster's fallback hand-over skips by.
pub fn position(id: &str) -> Option<u64> {
    let digits = id.bytes().rev().take_while(u8::is_ascii_digit).count();
    id[id.len() - digits..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_ids_pass_once_and_in_order() {
        let mut d = Dedup::default();
        assert!(d.admit("AAPL:10"));
        assert!(!d.admit("AAPL:10"), "the same event twice");
        assert!(!d.admit("AAPL:9"), "replayed history");
        assert!(d.admit("AAPL:12"));
        assert!(d.admit("13"));
        assert_eq!(position("evt-0042"), Some(42));
        assert_eq!(position("x"), None);
        assert_eq!(
            position("99999999999999999999999"),
            None,
            "too long: unnumbered"
        );
    }

    #[test]
    fn unnumbered_ids_are_remembered_a_while() {
        let mut d = Dedup::default();
        assert!(d.admit("a") && d.admit("b"));
        assert!(!d.admit("a"));
        for i in 0..RECENT {
            assert!(d.admit(&format!(
                "x{}",
                char::from(b'a' + u8::try_from(i).expect("small"))
            )));
        }
        assert!(d.admit("a"), "forgotten after {RECENT} others");
        assert!(d.admit(""), "no id: always delivered");
        assert!(d.admit(""));
    }
}

//! Packed streams: many topics on one SSE connection, as providers serve
//! them to stay within a connection cap.
//!
//! Two styles, as real providers write them:
//! - `GET /v1/stream?symbols=A,B,C`: each event's data is the topic's quote
//!   as on its own stream (`{"s":"A","n":17,...}`): the topic is `/s`.
//! - `GET /v2/stream/A,B,C`: each event's data wraps it,
//!   `{"meta":{"stream":"A"},"data":{...}}`: the topic is `/meta/stream`.
//!
//! Every event of every topic gets a number from one sequence (the
//! [`Firehose`]), which is the packed event's `id`: `Last-Event-ID: g`
//! resumes a packed connection after `g`, whatever its set, with no gap
//! and no duplicate while `g` is in the history. Each quote keeps its own
//! topic's `n`, so a client can check each topic for gaps.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};

use crate::feed::FeedEvent;

/// One event of one topic, numbered in the firehose's sequence.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub(crate) seq: u64,
    pub(crate) topic: Arc<str>,
    pub(crate) data: Bytes,
}

/// Every topic's events in one order: a bounded history and a broadcast.
#[derive(Debug)]
pub(crate) struct Firehose {
    /// The last number given, and the history (oldest first).
    state: Mutex<(u64, VecDeque<Packed>)>,
    capacity: usize,
    live: broadcast::Sender<Packed>,
}

impl Firehose {
    /// Keeps the last `capacity` events of all topics together.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new((0, VecDeque::new())),
            capacity: capacity.max(1),
            live: broadcast::channel(4096).0,
        }
    }

    /// Numbers `event` of `topic` and sends it to packed subscribers. The
    /// number is given and the event sent under one lock, so the wire
    /// order is the number order.
    pub(crate) fn publish(&self, topic: &Arc<str>, event: &FeedEvent) {
        let mut state = self.state.lock();
        state.0 += 1;
        let packed = Packed {
            seq: state.0,
            topic: topic.clone(),
            data: event.data.clone(),
        };
        if state.1.len() == self.capacity {
            state.1.pop_front();
        }
        state.1.push_back(packed.clone());
        // No packed subscriber is fine.
        let _ = self.live.send(packed);
    }

    /// Subscribes to live events, and returns the events of `set` after
    /// `after` still in the history (none for `None`).
    pub(crate) fn subscribe(
        &self,
        after: Option<u64>,
        set: &HashSet<Arc<str>>,
    ) -> (Vec<Packed>, broadcast::Receiver<Packed>) {
        let state = self.state.lock();
        let rx = self.live.subscribe();
        let replay = match after {
            None => Vec::new(),
            Some(after) => state
                .1
                .iter()
                .filter(|p| p.seq > after && set.contains(&p.topic))
                .cloned()
                .collect(),
        };
        (replay, rx)
    }
}

/// How a packed stream writes its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `/v1/stream?symbols=`: the quote as is.
    Symbols,
    /// `/v2/stream/a,b`: the quote under `data`, its topic in `meta.stream`.
    MetaStream,
}

/// The packed request `path` and `query` make, if it is one: its style
/// and its topics (in order, without repeats). `Err` names what is wrong.
pub(crate) fn parse(
    path: &str,
    query: Option<&str>,
) -> Option<Result<(Style, Vec<String>), String>> {
    let (style, list) = if path == "/v1/stream" {
        let symbols = query
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("symbols="));
        match symbols {
            Some(list) => (Style::Symbols, list.to_string()),
            None => return Some(Err("no symbols= in the query".into())),
        }
    } else if let Some(list) = path.strip_prefix("/v2/stream/") {
        (Style::MetaStream, list.to_string())
    } else {
        return None;
    };
    // A comma may come percent-encoded.
    let list = list.replace("%2C", ",").replace("%2c", ",");
    let mut topics: Vec<String> = Vec::new();
    for topic in list.split(',') {
        if topic.is_empty() {
            return Some(Err("an empty topic in the list".into()));
        }
        if !topics.iter().any(|t| t == topic) {
            topics.push(topic.to_string());
        }
    }
    Some(Ok((style, topics)))
}

/// `packed` as its style writes it, its `id` the firehose number.
pub(crate) fn encode(style: Style, packed: &Packed) -> Bytes {
    let data = String::from_utf8_lossy(&packed.data);
    let wire = match style {
        Style::Symbols => format!("id: {}\nevent: quote\ndata: {data}\n\n", packed.seq),
        Style::MetaStream => format!(
            "id: {}\nevent: quote\ndata: {{\"meta\":{{\"stream\":\"{}\"}},\"data\":{data}}}\n\n",
            packed.seq, packed.topic
        ),
    };
    Bytes::from(wire)
}

/// Plays one packed stream: the replay after `after`, then the live events
/// of `set`, with heartbeats. Ends when the client goes (`tx` fails), it
/// falls behind the firehose (it resumes with `Last-Event-ID`), or `stop`.
/// `_active` is held for as long as the stream lives (the server's count).
#[allow(
    clippy::too_many_arguments,
    reason = "one stream's whole context, spawned once"
)]
pub(crate) async fn play<G: Send>(
    firehose: Arc<Firehose>,
    style: Style,
    set: HashSet<Arc<str>>,
    after: Option<u64>,
    heartbeat: Duration,
    tx: mpsc::Sender<Bytes>,
    mut stop: watch::Receiver<bool>,
    _active: G,
) {
    let run = async {
        let _ = tx
            .send(Bytes::from_static(
                b": ssegate upstream simulator, packed\n\n",
            ))
            .await;
        let (replay, mut live) = firehose.subscribe(after, &set);
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.tick().await;
        let mut pending: VecDeque<Packed> = replay.into();
        loop {
            let packed = match pending.pop_front() {
                Some(packed) => packed,
                None => tokio::select! {
                    received = live.recv() => match received {
                        Ok(packed) if set.contains(&packed.topic) => packed,
                        Ok(_) => continue,
                        // Too slow for the firehose: end the stream; the
                        // client resumes with Last-Event-ID.
                        Err(_) => return,
                    },
                    _ = ticker.tick() => {
                        if tx.send(Bytes::from_static(b": heartbeat\n")).await.is_err() {
                            return;
                        }
                        continue;
                    }
                },
            };
            if tx.send(encode(style, &packed)).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = run => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> FeedEvent {
        FeedEvent {
            id: 1,
            wire: Bytes::new(),
            data: Bytes::from(data.to_string()),
        }
    }

    #[test]
    fn both_styles_parse_and_repeats_collapse() {
        assert_eq!(
            parse("/v1/stream", Some("x=1&symbols=A,B,A")),
            Some(Ok((Style::Symbols, vec!["A".into(), "B".into()])))
        );
        assert_eq!(
            parse("/v2/stream/A%2CB", None),
            Some(Ok((Style::MetaStream, vec!["A".into(), "B".into()])))
        );
        assert!(matches!(parse("/v1/stream", None), Some(Err(_))));
        assert!(matches!(parse("/v2/stream/A,,B", None), Some(Err(_))));
        assert_eq!(parse("/v1/quotes/A/stream", None), None);
    }

    #[test]
    fn one_sequence_over_all_topics_and_replay_by_set() {
        let hose = Firehose::new(3);
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        for topic in [&a, &b, &a, &b] {
            hose.publish(topic, &event("{}"));
        }
        let set: HashSet<Arc<str>> = [a.clone()].into();
        let (replay, _) = hose.subscribe(Some(0), &set);
        assert_eq!(
            replay.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [3],
            "A's events still in the last three: seq 3 (seq 1 fell out)"
        );
        let wrapped = encode(Style::MetaStream, &replay[0]);
        assert_eq!(
            &wrapped[..],
            b"id: 3\nevent: quote\ndata: {\"meta\":{\"stream\":\"A\"},\"data\":{}}\n\n"
        );
    }
}

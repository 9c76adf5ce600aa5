//! A topic's events through JetStream: the owner publishes each upstream
//! event once; every instance with local subscribers follows the topic's
//! subject with one ordered consumer.
//!
//! The stream `<cluster>-events` takes the subjects `<cluster>.ev.>`, one
//! subject per topic (`<cluster>.ev.<token>`). Retention is per subject
//! (`max_messages_per_subject`, the replay window's event count), by age
//! (`max_age`) and in total (`max_bytes`), oldest first.
//!
//! A message is `id LF type LF data`: an SSE id and type hold no LF (the
//! parser ends a field at one), so the frame is exact for any event, where
//! NATS headers would trim spaces. Its `Nats-Msg-Id` is the topic's token
//! and the upstream id, so an event published twice within the duplicate
//! window (an old owner and a new one around a hand-over, both having read
//! it from the upstream) is stored once. An event without an upstream id
//! cannot be told from another and is never dropped as a duplicate.
//!
//! The stream's sequence orders the events of all topics. A position in a
//! topic is the stream sequence of its last event seen; following from a
//! position gives every retained event after it, in order, once.
//!
//! Each message names the sequence of the topic's event before it (the
//! header `Ssegate-Previous`), as its owner knew it: a chain. A follower
//! that starts after position `p` and whose first event names another
//! predecessor knows that events between were lost (aged out, or never
//! stored while the owner could not reach NATS), and says so instead of
//! crossing the hole silently.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sse_parser::{Event, Utf8Bytes};

use crate::key::topic_token;
use crate::metrics;

/// What a stream keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events kept per topic (the replay window). Default 1,000.
    pub events_per_topic: i64,
    /// The oldest event kept. Default 5 min.
    pub max_age: Duration,
    /// Bytes kept over all topics. Default 256 MiB.
    pub max_bytes: i64,
    /// How long a `Nats-Msg-Id` is remembered to drop duplicates.
    /// Default 2 min: far longer than a hand-over.
    /// At most `max_age` (JetStream's rule).
    pub duplicate_window: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events_per_topic: 1_000,
            max_age: Duration::from_secs(300),
            max_bytes: 256 * 1024 * 1024,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// What can go wrong with the event stream.
#[derive(Debug)]
pub enum EventError {
    /// NATS did not answer, or answered with an error.
    Nats(String),
    /// A stored message is not an event frame (something else publishes
    /// on the cluster's subjects).
    Malformed {
        /// Its stream sequence.
        sequence: u64,
    },
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nats(e) => write!(f, "NATS: {e}"),
            Self::Malformed { sequence } => {
                write!(f, "message {sequence} of the event stream is not an event")
            }
        }
    }
}

impl std::error::Error for EventError {}

fn nats(e: impl std::fmt::Display) -> EventError {
    EventError::Nats(e.to_string())
}

/// The header that names the topic's previous event's sequence.
pub const PREVIOUS_HEADER: &str = "Ssegate-Previous";

/// An event as the stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its stream sequence: a position, cluster-wide.
    pub sequence: u64,
    /// The sequence of the topic's event before it, as its publisher knew
    /// it (0: none); `None` if the publisher did not say.
    pub previous: Option<u64>,
    /// For an event read by a follower: how many of the topic's events the
    /// log holds after it (the follower's lag). 0 otherwise.
    pub pending: u64,
    /// The upstream event.
    pub event: Event,
}

/// The answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The event's stream sequence (the first copy's, for a duplicate).
    pub sequence: u64,
    /// Whether the stream already had it (same topic and upstream id).
    pub duplicate: bool,
}

/// The cluster's event stream.
#[derive(Debug, Clone)]
pub struct EventLog {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
}

impl EventLog {
    /// Opens (creating or updating) the stream of `cluster`.
    pub async fn open(
        jetstream: &jetstream::Context,
        cluster: &str,
        retention: Retention,
    ) -> Result<Self, EventError> {
        let name = format!("{cluster}-events");
        jetstream
            .create_or_update_stream(stream::Config {
                name: name.clone(),
                description: Some("ssegate: upstream events, one subject per topic".to_string()),
                subjects: vec![format!("{cluster}.ev.>")],
                max_messages_per_subject: retention.events_per_topic,
                max_age: retention.max_age,
                max_bytes: retention.max_bytes,
                discard: stream::DiscardPolicy::Old,
                // JetStream refuses a window longer than the age (a short
                // `replay_age` would stop the gateway from starting): an
                // event older than the age is gone anyway, and with it
                // whatever a duplicate could repeat.
                duplicate_window: retention.duplicate_window.min(retention.max_age),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let stream = jetstream.get_stream(&name).await.map_err(nats)?;
        Ok(Self {
            jetstream: jetstream.clone(),
            stream,
            prefix: format!("{cluster}.ev."),
        })
    }

    /// The token of this stream's positions: made from the stream's
    /// creation time, so every instance computes the same one, and a
    /// stream deleted and made again (its sequences start over) has
    /// another. Event ids carry it: an id from another stream is not
    /// mistaken for a position in this one.
    pub fn epoch(&self) -> String {
        let nanos = self.stream.cached_info().created.unix_timestamp_nanos();
        // The low 64 bits vary; base 36 keeps ids short.
        let mut n = u64::try_from(nanos.rem_euclid(1 << 64)).unwrap_or(0);
        let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut token = String::from("c");
        while n > 0 {
            token.push(char::from(alphabet[(n % 36) as usize]));
            n /= 36;
        }
        token
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}{}", self.prefix, topic_token(topic))
    }

    /// Stores `event` of `topic` and waits for the stream's answer.
    /// `previous` is the sequence of the topic's event before it (0 for
    /// none), for the followers' check that nothing is missing; `None`
    /// leaves the check out.
    pub async fn publish(
        &self,
        topic: &str,
        event: &Event,
        previous: Option<u64>,
    ) -> Result<Published, EventError> {
        let mut headers = HeaderMap::new();
        if let Some(previous) = previous {
            headers.insert(PREVIOUS_HEADER, previous.to_string());
        }
        if !event.id.is_empty() {
            headers.insert(
                "Nats-Msg-Id",
                format!("{}:{}", topic_token(topic), event.id.as_str()),
            );
        }
        let ack = self
            .jetstream
            .publish_with_headers(self.subject(topic), headers, frame(event))
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        metrics::record_published(ack.duplicate);
        Ok(Published {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// The last event of `topic` still kept, if any: where a new owner
    /// resumes the upstream from (its id becomes `Last-Event-ID`).
    pub async fn last(&self, topic: &str) -> Result<Option<Stored>, EventError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject(topic))
            .await
        {
            Ok(message) => Ok(Some(Stored {
                sequence: message.sequence,
                pending: 0,
                previous: previous_of(Some(&message.headers)),
                event: unframe(message.payload).ok_or(EventError::Malformed {
                    sequence: message.sequence,
                })?,
            })),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(nats(e)),
        }
    }

    /// The events of `topic` from `start` (a resume gets every kept event
    /// after its position), then each new one as it is stored, in order,
    /// each once: an ordered consumer, which the client re-creates from the
    /// last sequence it delivered when it sees a gap or loses the server.
    pub async fn follow(
        &self,
        topic: &str,
        start: Start,
    ) -> Result<impl Stream<Item = Result<Stored, EventError>> + Send + use<>, EventError> {
        let deliver_policy = match start {
            Start::After(sequence) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sequence.saturating_add(1),
            },
            Start::Now => consumer::DeliverPolicy::New,
            Start::Oldest => consumer::DeliverPolicy::All,
        };
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.subject(topic),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let messages = consumer.messages().await.map_err(nats)?;
        Ok(messages.map(|message| {
            let message = message.map_err(nats)?;
            let info = message.info().map_err(nats)?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let event = unframe(message.message.payload.clone())
                .ok_or(EventError::Malformed { sequence })?;
            let previous = previous_of(message.message.headers.as_ref());
            Ok(Stored {
                sequence,
                previous,
                pending,
                event,
            })
        }))
    }
}

impl EventLog {
    /// The events of `topic` after `after` up to `until` (inclusive), if
    /// the log still has every one of them and none is missing between
    /// (the chain of predecessors is unbroken from `after`); `None`
    /// otherwise, or if NATS does not answer within `wait`.
    pub async fn history(
        &self,
        topic: &str,
        after: u64,
        until: u64,
        wait: Duration,
    ) -> Option<Vec<Stored>> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.subject(topic),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .ok()?;
        // Nothing kept after `after`: nothing to continue with.
        if consumer.cached_info().num_pending == 0 {
            return None;
        }
        let read = async {
            let mut messages = consumer.messages().await.ok()?;
            let mut out: Vec<Stored> = Vec::new();
            let mut last = after;
            while let Some(message) = messages.next().await {
                let message = message.ok()?;
                let info = message.info().ok()?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                if sequence > until {
                    break;
                }
                let previous = previous_of(message.headers.as_ref());
                if previous.is_some_and(|p| p != last) {
                    return None;
                }
                let event = unframe(message.message.payload.clone())?;
                last = sequence;
                out.push(Stored {
                    sequence,
                    previous,
                    pending,
                    event,
                });
                if sequence == until || pending == 0 {
                    break;
                }
            }
            Some(out)
        };
        tokio::time::timeout(wait, read).await.ok().flatten()
    }
}

/// Where [`EventLog::follow`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this stream sequence (a resume).
    After(u64),
    /// With the next event stored.
    Now,
    /// With the oldest event kept.
    Oldest,
}

/// The predecessor a message names (`Ssegate-Previous`), if it names one.
fn previous_of(headers: Option<&HeaderMap>) -> Option<u64> {
    headers?.get(PREVIOUS_HEADER)?.as_str().parse().ok()
}

/// `id LF type LF data`.
fn frame(event: &Event) -> Bytes {
    let mut out =
        BytesMut::with_capacity(event.id.len() + event.event_type.len() + event.data.len() + 2);
    out.put_slice(event.id.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(event.event_type.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(event.data.as_bytes());
    out.freeze()
}

fn unframe(mut payload: Bytes) -> Option<Event> {
    let id_end = payload.iter().position(|&b| b == b'\n')?;
    let id = payload.split_to(id_end);
    let _ = payload.split_to(1);
    let type_end = payload.iter().position(|&b| b == b'\n')?;
    let event_type = payload.split_to(type_end);
    let _ = payload.split_to(1);
    Some(
        Event::new(Utf8Bytes::try_from_bytes(payload).ok()?)
            .with_type(Utf8Bytes::try_from_bytes(event_type).ok()?)
            .with_id(Utf8Bytes::try_from_bytes(id).ok()?),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_exact() {
        for event in [
            Event::new(""),
            Event::new("a\nb\n\nc").with_type("quote"),
            Event::new("\n").with_type(" spaced ").with_id("  7 "),
        ] {
            assert_eq!(unframe(frame(&event)), Some(event));
        }
    }

    #[test]
    fn foreign_payloads_are_refused() {
        assert_eq!(unframe(Bytes::from_static(b"no frame")), None);
        assert_eq!(unframe(Bytes::from_static(b"id\n")), None);
        assert_eq!(unframe(Bytes::from_static(b"\xff\nmessage\ndata")), None);
    }
}

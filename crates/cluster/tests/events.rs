//! The event stream against a real `nats-server -js`: exact round trips,
//! order, resume from a position without gap or duplicate, duplicates of
//! an upstream id dropped, the newest event for a new owner, retention.

mod common;

use std::time::Duration;

use common::NatsServer;
use futures_util::StreamExt;
use sse_cluster::{EventLog, Retention, Start, Stored};
use sse_parser::Event;

/// The longest wait for an event that was published.
const WAIT: Duration = Duration::from_secs(5);

async fn log(nats: &NatsServer, retention: Retention) -> EventLog {
    EventLog::open(&common::jetstream(nats).await, "test", retention)
        .await
        .expect("open the event stream")
}

fn quote(n: u32) -> Event {
    Event::new(format!("{{\"price\":{n}}}"))
        .with_type("quote")
        .with_id(n.to_string())
}

async fn next<S>(follow: &mut S) -> Stored
where
    S: futures_util::Stream<Item = Result<Stored, sse_cluster::EventError>> + Unpin,
{
    tokio::time::timeout(WAIT, follow.next())
        .await
        .expect("an event within the wait")
        .expect("the consumer goes on")
        .expect("a well-formed event")
}

#[tokio::test]
async fn a_topics_events_come_back_exact_and_in_order() {
    let nats = NatsServer::start().await;
    let log = log(&nats, Retention::default()).await;

    let odd = Event::new("line 1\n line 2\n")
        .with_type(" spaced ")
        .with_id(" 1 ");
    let mut sequences = Vec::new();
    for event in [odd.clone(), quote(2), quote(3)] {
        sequences.push(
            log.publish("a.b*", &event, None)
                .await
                .expect("publish")
                .sequence,
        );
    }
    // Another topic's events interleave in the stream, not in the topic.
    log.publish("MSFT", &quote(9), None).await.expect("publish");
    log.publish("a.b*", &quote(4), None).await.expect("publish");

    let mut follow = Box::pin(log.follow("a.b*", Start::Oldest).await.expect("follow"));
    let got: Vec<Stored> = [
        next(&mut follow).await,
        next(&mut follow).await,
        next(&mut follow).await,
        next(&mut follow).await,
    ]
    .into();
    assert_eq!(got[0].event, odd);
    assert_eq!(got[1].event, quote(2));
    assert_eq!(got[3].event, quote(4));
    assert_eq!(
        got[..3].iter().map(|s| s.sequence).collect::<Vec<_>>(),
        sequences
    );
    assert!(got.windows(2).all(|w| w[0].sequence < w[1].sequence));
}

#[tokio::test]
async fn a_resume_from_a_position_has_no_gap_and_no_duplicate() {
    let nats = NatsServer::start().await;
    let log = log(&nats, Retention::default()).await;
    let mut positions = Vec::new();
    for n in 1..=10 {
        positions.push(
            log.publish("AAPL", &quote(n), None)
                .await
                .expect("publish")
                .sequence,
        );
    }
    let mut follow = Box::pin(
        log.follow("AAPL", Start::After(positions[3]))
            .await
            .expect("follow"),
    );
    for n in 5..=10 {
        assert_eq!(next(&mut follow).await.event, quote(n));
    }
    // Then live.
    log.publish("AAPL", &quote(11), None)
        .await
        .expect("publish");
    assert_eq!(next(&mut follow).await.event, quote(11));

    // From now: only what comes after.
    let mut live = Box::pin(log.follow("AAPL", Start::Now).await.expect("follow"));
    log.publish("AAPL", &quote(12), None)
        .await
        .expect("publish");
    assert_eq!(next(&mut live).await.event, quote(12));
}

/// An old owner and a new one both publish what they read from the
/// upstream around a hand-over: the stream keeps one copy.
#[tokio::test]
async fn an_upstream_id_published_twice_is_stored_once() {
    let nats = NatsServer::start().await;
    let log = log(&nats, Retention::default()).await;
    let first = log.publish("AAPL", &quote(1), None).await.expect("publish");
    let again = log.publish("AAPL", &quote(1), None).await.expect("publish");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    // The same id on another topic is another event.
    assert!(
        !log.publish("MSFT", &quote(1), None)
            .await
            .expect("publish")
            .duplicate
    );
    // Without an id nothing tells two events apart: both are kept.
    let plain = Event::new("tick");
    let a = log.publish("AAPL", &plain, None).await.expect("publish");
    let b = log.publish("AAPL", &plain, None).await.expect("publish");
    assert!(!a.duplicate && !b.duplicate && a.sequence != b.sequence);

    let mut follow = Box::pin(log.follow("AAPL", Start::Oldest).await.expect("follow"));
    assert_eq!(next(&mut follow).await.event, quote(1));
    assert_eq!(next(&mut follow).await.event, plain);
    assert_eq!(next(&mut follow).await.event, plain);
}

#[tokio::test]
async fn the_newest_event_is_where_a_new_owner_resumes() {
    let nats = NatsServer::start().await;
    let log = log(&nats, Retention::default()).await;
    assert_eq!(log.last("AAPL").await.expect("last"), None);
    log.publish("AAPL", &quote(1), None).await.expect("publish");
    let newest = log.publish("AAPL", &quote(2), None).await.expect("publish");
    log.publish("MSFT", &quote(3), None).await.expect("publish");
    let last = log.last("AAPL").await.expect("last").expect("an event");
    assert_eq!(last.sequence, newest.sequence);
    assert_eq!(last.event.id.as_str(), "2");
}

#[tokio::test]
async fn each_topic_keeps_its_window() {
    let nats = NatsServer::start().await;
    let log = log(
        &nats,
        Retention {
            events_per_topic: 5,
            ..Retention::default()
        },
    )
    .await;
    for n in 1..=8 {
        log.publish("AAPL", &quote(n), None).await.expect("publish");
    }
    log.publish("MSFT", &quote(100), None)
        .await
        .expect("publish");
    let mut follow = Box::pin(log.follow("AAPL", Start::Oldest).await.expect("follow"));
    for n in 4..=8 {
        assert_eq!(next(&mut follow).await.event, quote(n));
    }
    // The other topic's one event was not pushed out by AAPL's eight.
    let mut other = Box::pin(log.follow("MSFT", Start::Oldest).await.expect("follow"));
    assert_eq!(next(&mut other).await.event, quote(100));
}

#[tokio::test]
async fn a_replay_age_shorter_than_the_duplicate_window_opens() {
    // JetStream refuses a duplicate window longer than the stream's max
    // age; `bridge.replay_age = "5s"` (shorter than the 2 min window) must
    // still start, with the window cut to the age. Found by the cluster
    // soak, whose scaled replay_age is 5 s.
    let nats = NatsServer::start().await;
    let log = log(
        &nats,
        Retention {
            max_age: Duration::from_secs(5),
            ..Retention::default()
        },
    )
    .await;
    let first = log.publish("AAPL", &quote(1), None).await.expect("publish");
    let again = log.publish("AAPL", &quote(1), None).await.expect("publish");
    assert!(
        again.duplicate,
        "a repeat within the (shortened) window is dropped"
    );
    assert_eq!(again.sequence, first.sequence);
}

//! Cluster metrics, through a global debugging recorder (this file holds a
//! single test: the recorder is per process), against a real nats-server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::NatsServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sse_cluster::{Acquired, EventLog, Keeper, Leases, Retention, metrics as m};
use sse_parser::Event;

#[test]
fn acquisitions_lease_ends_and_publishes_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder in this process");
    m::describe_metrics();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let nats = NatsServer::start().await;
        let jetstream = common::jetstream(&nats).await;
        let ttl = Duration::from_secs(1);
        let a = Arc::new(
            Leases::open(&jetstream, "test", "gw-a", ttl, 1)
                .await
                .expect("open"),
        );
        let b = Arc::new(
            Leases::open(&jetstream, "test", "gw-b", ttl, 1)
                .await
                .expect("open"),
        );

        let Acquired::Owned(lease) = a.acquire("AAPL").await.expect("acquire") else {
            panic!("A owns AAPL");
        };
        assert!(matches!(
            b.acquire("AAPL").await.expect("acquire"),
            Acquired::Taken { .. }
        ));
        assert!(matches!(
            b.acquire("MSFT").await.expect("acquire"),
            Acquired::AtCapacity
        ));
        let keeper = Keeper::spawn(a.clone(), lease);
        // The keeper's task counts itself when it starts.
        tokio::task::yield_now().await;
        keeper.release().await;

        let log = EventLog::open(&jetstream, "test", Retention::default())
            .await
            .expect("open");
        let event = Event::new("x").with_id("1");
        log.publish("AAPL", &event, None).await.expect("publish");
        log.publish("AAPL", &event, None).await.expect("publish");
    });

    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, label: Option<(&str, &str)>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && label.is_none_or(|(k, v)| {
                        key.key().labels().any(|l| l.key() == k && l.value() == v)
                    })
            })
            .map(|(_, _, _, value)| value)
    };
    for (result, count) in [("owned", 1), ("taken", 1), ("at_capacity", 1)] {
        assert_eq!(
            value(m::ACQUIRES, Some(("result", result))),
            Some(&DebugValue::Counter(count)),
            "{result}"
        );
    }
    assert_eq!(
        value(m::ENDS, Some(("reason", "released"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(value(m::HELD, None), Some(&DebugValue::Gauge(0.0.into())));
    assert_eq!(value(m::PUBLISHED, None), Some(&DebugValue::Counter(1)));
    assert_eq!(value(m::DUPLICATES, None), Some(&DebugValue::Counter(1)));
}

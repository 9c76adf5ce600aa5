//! The client's and the pool's metrics, through a global debugging recorder
//! (this file holds a single test: the recorder is per process).

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sse_conn_pool::{Pool, PoolConfig, PoolError, TcpConnector, metrics as m};
use sse_upstream_sim::{Fault, Sim};

#[test]
fn attempts_failures_events_and_pool_size_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder in this process");
    m::describe_metrics();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = Sim::builder()
            .topics(["T"])
            .events_per_sec(200.0)
            .script("T", [Fault::status(503)])
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let mut config = PoolConfig::new(format!("{}/v1/quotes/{{topic}}/stream", sim.url()));
        config.max_streams = 1;
        config.stream.machine.backoff.initial = Duration::from_millis(10);
        config.stream.machine.backoff.reconnect_spread = Duration::ZERO;
        let pool = Pool::new(config, TcpConnector).unwrap();
        let mut sub = pool.subscribe("T").unwrap();
        let mut events = 0;
        while events < 3 {
            if let sse_conn_pool::StreamItem::Event(_) =
                tokio::time::timeout(Duration::from_secs(10), sub.recv())
                    .await
                    .unwrap()
                    .unwrap()
            {
                events += 1;
            }
        }
        assert!(matches!(
            pool.subscribe("U"),
            Err(PoolError::AtCapacity { .. })
        ));
        assert!(matches!(
            pool.subscribe("../x"),
            Err(PoolError::InvalidTopic(_))
        ));
        drop(sub);
        pool.close().await;

        sim.shutdown().await;
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
    assert_eq!(
        value(m::ATTEMPTS, None),
        Some(&DebugValue::Counter(2)),
        "a 503, then the feed"
    );
    assert_eq!(value(m::OPENED, None), Some(&DebugValue::Counter(1)));
    assert_eq!(
        value(m::FAILURES, Some(("reason", "status_5xx"))),
        Some(&DebugValue::Counter(1))
    );
    assert!(matches!(value(m::EVENTS, None), Some(DebugValue::Counter(n)) if *n >= 3));
    assert_eq!(
        value(m::REFUSED, Some(("reason", "at_capacity"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(m::REFUSED, Some(("reason", "invalid_topic"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(m::STOPPED, Some(("reason", "requested"))),
        Some(&DebugValue::Counter(1))
    );
    assert!(
        matches!(value(m::STREAMS, None), Some(DebugValue::Gauge(g)) if g.into_inner() == 0.0),
        "closed: no stream"
    );
    assert!(matches!(value(m::BYTES, None), Some(DebugValue::Counter(n)) if *n > 0));
    for phase in ["idle", "connecting", "open", "backing_off", "stopped"] {
        let gauge = value(m::PHASES, Some(("phase", phase)));
        assert!(
            gauge.is_none_or(|g| matches!(g, DebugValue::Gauge(g) if g.into_inner() == 0.0)),
            "no stream left in phase {phase}: {gauge:?}"
        );
    }
    assert!(
        value(m::PHASES, Some(("phase", "open"))).is_some(),
        "the stream was counted while open"
    );
    // A route's streams are counted under its name (after the snapshot
    // above: a snapshot takes the counters).
    runtime.block_on(async {
        let sim = Sim::builder()
            .topics(["T"])
            .start("127.0.0.1:0")
            .await
            .unwrap();
        // A route's streams are counted under its name.
        let mut config = PoolConfig::new("");
        config.routes = vec![sse_conn_pool::Route::new(
            "feed",
            sse_conn_pool::TopicMatch::Patterns(vec!["*".into()]),
            format!("{}/v1/quotes/{{topic}}/stream", sim.url()),
        )];
        let pool = Pool::new(config, TcpConnector).unwrap();
        let route_streams = || {
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .find(|(key, _, _, _)| {
                    key.key().name() == m::ROUTE_STREAMS
                        && key
                            .key()
                            .labels()
                            .any(|l| l.key() == "route" && l.value() == "feed")
                })
                .map(|(_, _, _, value)| value)
        };
        assert_eq!(
            route_streams(),
            Some(DebugValue::Gauge(0.0.into())),
            "registered at start"
        );
        let held = pool.subscribe("T").unwrap();
        assert_eq!(route_streams(), Some(DebugValue::Gauge(1.0.into())));
        drop(held);
        pool.close().await;
        assert_eq!(route_streams(), Some(DebugValue::Gauge(0.0.into())));
        sim.shutdown().await;
    });
}

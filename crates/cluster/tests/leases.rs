//! Leases against a real `nats-server -js` on loopback: one owner per
//! topic, the cluster-wide cap under racing instances, release, renewal,
//! take-over after an owner's death, and fencing of an owner cut off from
//! NATS.
//!
//! Instances are separate clients of one server (as separate processes
//! would be), each with its own instance name. Waits are bounded; the only
//! durations asserted are the lease's own bounds, which are the contract.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{NatsServer, Proxy, jetstream_at};
use sse_cluster::{Acquired, Holding, Keeper, Lease, Leases, Lost};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);

async fn instance(url: &str, name: &str, max_streams: usize) -> Arc<Leases> {
    let jetstream = jetstream_at(url).await;
    Arc::new(
        Leases::open(&jetstream, "test", name, TTL, max_streams)
            .await
            .expect("open the lease bucket"),
    )
}

fn owned(acquired: Acquired) -> Lease {
    match acquired {
        Acquired::Owned(lease) => lease,
        other => panic!("expected to own the topic, got {other:?}"),
    }
}

#[tokio::test]
async fn a_topic_has_one_owner_across_instances() {
    let nats = NatsServer::start().await;
    let a = instance(&nats.url(), "gw-a", 50).await;
    let b = instance(&nats.url(), "gw-b", 50).await;

    let lease = owned(a.acquire("AAPL").await.expect("acquire"));
    match b.acquire("AAPL").await.expect("acquire") {
        Acquired::Taken { owner, .. } => assert_eq!(owner, "gw-a"),
        other => panic!("B must see A's ownership, got {other:?}"),
    }
    // A topic with NATS's separator and wildcards is its own key.
    owned(b.acquire("a.b.*").await.expect("acquire"));

    let owners = b.owners().await.expect("owners");
    let seen: Vec<(&str, &str)> = owners
        .iter()
        .map(|o| (o.topic.as_str(), o.owner.as_str()))
        .collect();
    assert_eq!(seen, [("AAPL", "gw-a"), ("a.b.*", "gw-b")]);
    assert_eq!(a.slots_held().await.expect("slots"), 2);
    drop(lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_cluster_wide_however_instances_race() {
    let nats = NatsServer::start().await;
    let mut instances = Vec::new();
    for name in ["gw-a", "gw-b", "gw-c"] {
        instances.push(instance(&nats.url(), name, 5).await);
    }
    // Twelve topics asked for at once, four on each instance.
    let mut asks = tokio::task::JoinSet::new();
    for (i, leases) in instances.iter().enumerate() {
        for t in 0..4 {
            let leases = leases.clone();
            asks.spawn(async move {
                let topic = format!("T{i}{t}");
                (
                    topic.clone(),
                    leases.acquire(&topic).await.expect("acquire"),
                )
            });
        }
    }
    let mut held = Vec::new();
    let mut refused = Vec::new();
    while let Some(answer) = asks.join_next().await {
        match answer.expect("task") {
            (_, Acquired::Owned(lease)) => held.push(lease),
            (topic, Acquired::AtCapacity) => refused.push(topic),
            (topic, other) => panic!("{topic}: {other:?}"),
        }
    }
    assert_eq!(held.len(), 5, "exactly the cap's worth of topics is owned");
    assert_eq!(refused.len(), 7);
    let mut slots: Vec<usize> = held.iter().map(Lease::slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2, 3, 4], "each owner holds its own slot");
    assert_eq!(instances[0].slots_held().await.expect("slots"), 5);
    // A refused topic left no owner key behind.
    assert_eq!(instances[0].owners().await.expect("owners").len(), 5);

    // One released: a refused topic gets its slot, on any instance.
    let released = held.pop().expect("one");
    instances[0].release(released).await.expect("release");
    let topic = &refused[0];
    owned(instances[2].acquire(topic).await.expect("acquire"));
    assert!(matches!(
        instances[1].acquire(&refused[1]).await.expect("acquire"),
        Acquired::AtCapacity
    ));
}

#[tokio::test]
async fn a_released_topic_is_free_at_once() {
    let nats = NatsServer::start().await;
    let a = instance(&nats.url(), "gw-a", 1).await;
    let b = instance(&nats.url(), "gw-b", 1).await;

    let keeper = Keeper::spawn(a.clone(), owned(a.acquire("AAPL").await.expect("acquire")));
    assert!(keeper.holding());
    keeper.release().await;
    // No waiting for the ttl: the keys are gone.
    owned(b.acquire("AAPL").await.expect("acquire"));
}

#[tokio::test]
async fn a_kept_lease_outlives_its_ttl() {
    let nats = NatsServer::start().await;
    let a = instance(&nats.url(), "gw-a", 50).await;
    let b = instance(&nats.url(), "gw-b", 50).await;

    let keeper = Keeper::spawn(a.clone(), owned(a.acquire("AAPL").await.expect("acquire")));
    let first = keeper.state();
    // Three lifetimes: without renewal the keys would be gone twice over.
    let end = Instant::now() + 3 * TTL;
    while Instant::now() < end {
        assert!(
            matches!(
                b.acquire("AAPL").await.expect("acquire"),
                Acquired::Taken { .. }
            ),
            "B took a topic A keeps"
        );
        // Wall clock: the real server ages keys out; a bounded poll.
        tokio::time::sleep(TTL / 4).await;
    }
    assert!(keeper.holding());
    match (first, keeper.state()) {
        (Holding::Until(before), Holding::Until(now)) => {
            assert!(now > before, "renewals move the fence on")
        }
        other => panic!("{other:?}"),
    }
}

/// An owner that dies (nothing renews, nothing releases) loses its topics
/// to another instance once the lease runs out, and not before.
#[tokio::test]
async fn a_dead_owners_topic_is_taken_over_after_the_ttl() {
    let nats = NatsServer::start().await;
    let a = instance(&nats.url(), "gw-a", 50).await;
    let b = instance(&nats.url(), "gw-b", 50).await;

    let lease = owned(a.acquire("AAPL").await.expect("acquire"));
    let expires = lease.expires();
    drop(lease); // the owner's process is gone

    // The bound: a new owner within lease_ttl + 1 s of the death.
    let deadline = expires + Duration::from_secs(1);
    let taken_at = loop {
        if let Acquired::Owned(_) = b.acquire("AAPL").await.expect("acquire") {
            // Read after the answer: the server granted it before this.
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no take-over within lease_ttl + 1 s"
        );
        // Wall clock: the real server ages keys out; a bounded poll.
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        taken_at >= expires,
        "B acquired {:?} before A's lease ran out",
        expires - taken_at
    );
}

/// Test 6 of the issue at the lease level: an owner whose NATS connection
/// stalls (a partition: nothing closes) gives the topic up at its fence,
/// before the server lets another instance take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_gives_up_before_anyone_takes_over() {
    let nats = NatsServer::start().await;
    let proxy = Proxy::start(&nats.url()).await;
    let a = instance(&proxy.url(), "gw-a", 50).await;
    let b = instance(&nats.url(), "gw-b", 50).await;

    let keeper = Keeper::spawn(a.clone(), owned(a.acquire("AAPL").await.expect("acquire")));
    // Let one renewal through, then cut A off (wall clock: the keeper
    // renews on the real server).
    tokio::time::sleep(TTL / 2).await;
    proxy.stall(true);
    let stalled_at = Instant::now();

    let lost = tokio::time::timeout(2 * TTL, keeper.lost())
        .await
        .expect("A gives the topic up within a lease's life");
    let lost_at = Instant::now();
    assert_eq!(lost, Lost::Expired);
    assert!(!keeper.holding());
    assert!(
        lost_at - stalled_at <= TTL,
        "A held on {:?} after the partition",
        lost_at - stalled_at
    );

    let deadline = lost_at + TTL + Duration::from_secs(1);
    let taken_at = loop {
        if let Acquired::Owned(_) = b.acquire("AAPL").await.expect("acquire") {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "B never took the topic over");
        // Wall clock: the real server ages keys out; a bounded poll.
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        taken_at > lost_at,
        "two owners at once: B took over {:?} before A gave up",
        lost_at - taken_at
    );

    // Healed, A's old lease stays lost: its renewal cannot succeed.
    proxy.stall(false);
    assert!(matches!(
        a.acquire("AAPL").await.expect("acquire"),
        Acquired::Taken { owner, .. } if owner == "gw-b"
    ));
}

/// NATS down: the owner fences itself; NATS back: leases work again
/// through the same clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_work_again_after_nats_restarts() {
    let mut nats = NatsServer::start().await;
    let a = instance(&nats.url(), "gw-a", 50).await;

    let keeper = Keeper::spawn(a.clone(), owned(a.acquire("AAPL").await.expect("acquire")));
    nats.stop().await;
    let lost = tokio::time::timeout(2 * TTL, keeper.lost())
        .await
        .expect("the owner gives up while NATS is away");
    assert_eq!(lost, Lost::Expired);

    nats.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match a.acquire("AAPL").await {
            Ok(Acquired::Owned(_)) => break,
            Ok(Acquired::Taken { owner, .. }) if owner == "gw-a" => break,
            // Wall clock: the client reconnects to the real server.
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("leases did not recover after NATS came back: {other:?}"),
        }
    }
}

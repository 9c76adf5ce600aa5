//! Members and their interest against a real `nats-server -js`.

mod common;

use std::time::Duration;

use common::NatsServer;
use sse_cluster::Members;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);

async fn member(nats: &NatsServer, name: &str) -> Members {
    Members::open(&common::jetstream(nats).await, "test", name, "0.1.0", TTL)
        .await
        .expect("open the members bucket")
}

fn topics(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn members_announce_their_interest_and_leave() {
    let nats = NatsServer::start().await;
    let a = member(&nats, "gw-a").await;
    let b = member(&nats, "gw-b").await;
    a.announce(&topics(&["MSFT", "AAPL", "AAPL"]))
        .await
        .expect("announce");
    b.announce(&topics(&["AAPL", "a.b"]))
        .await
        .expect("announce");

    let list = a.list().await.expect("list");
    let seen: Vec<(&str, &[String])> = list
        .iter()
        .map(|m| (m.instance.as_str(), m.topics.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            ("gw-a", topics(&["AAPL", "MSFT"]).as_slice()),
            ("gw-b", topics(&["AAPL", "a.b"]).as_slice()),
        ]
    );
    assert_eq!(list[0].version, "0.1.0");
    assert!(a.others_want(&list, "AAPL"));
    assert!(
        !a.others_want(&list, "MSFT"),
        "A's own interest is not another's"
    );
    assert!(b.others_want(&list, "MSFT"));

    // Interest changes with the next announcement.
    b.announce(&topics(&[])).await.expect("announce");
    assert!(!a.others_want(&a.list().await.expect("list"), "AAPL"));

    // A clean shutdown leaves at once.
    b.leave().await.expect("leave");
    let names: Vec<String> = a
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.instance)
        .collect();
    assert_eq!(names, ["gw-a"]);
}

/// An instance that stops announcing (killed, partitioned) leaves the list
/// by itself once its announcement ages out.
#[tokio::test]
async fn a_silent_member_ages_out() {
    let nats = NatsServer::start().await;
    let a = member(&nats, "gw-a").await;
    let b = member(&nats, "gw-b").await;
    // Sent before the server stored it: it cannot age out before this + TTL.
    let announced = Instant::now();
    b.announce(&topics(&["AAPL"])).await.expect("announce");
    drop(b);

    let deadline = announced + TTL + Duration::from_secs(1);
    loop {
        a.announce(&topics(&[])).await.expect("announce");
        let list = a.list().await.expect("list");
        if !list.iter().any(|m| m.instance == "gw-b") {
            assert!(
                Instant::now() >= announced + TTL,
                "gone before its announcement aged out"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a silent member stayed past its ttl + 1 s"
        );
        // Wall clock: the real server ages keys out; a bounded poll.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

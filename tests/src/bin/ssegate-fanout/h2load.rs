//! HTTP/2 subscribers for the fan-out benchmark (`load --tls <ca>
//! --h2-streams <k>`): streams `k` to a connection, each read with the same
//! cheap counting as the HTTP/1.1 ones. The h2 crate's client, so that the
//! load generator holds a stream for a few hundred bytes and releases each
//! DATA frame's window as soon as it is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::load::{Marks, Shared, dial, received};

/// Opens `n` streams over `ceil(n / k)` connections (at most 64 handshakes
/// at once); answers when each stream has its head.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    streams: &mut JoinSet<()>,
    n: u64,
) -> serde_json::Value {
    let per = shared.args.h2_streams.max(1);
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(64));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Notify::new());
    let count = |c: u64| per.min(n - c * per);
    for c in 0..n.div_ceil(per) {
        let closed = shared.close.subscribe();
        let (shared, gate, done, failed, all) = (
            shared.clone(),
            gate.clone(),
            done.clone(),
            failed.clone(),
            all.clone(),
        );
        let k = count(c);
        streams.spawn(async move {
            let report = |ok: u64, bad: u64| {
                failed.fetch_add(bad, Ordering::SeqCst);
                if done.fetch_add(ok + bad, Ordering::SeqCst) + ok + bad == n {
                    all.notify_one();
                }
            };
            let permit = gate.acquire_owned().await;
            let source =
                shared.args.sources[usize::try_from(c).unwrap_or(0) % shared.args.sources.len()];
            let opened = open(&shared, source, k).await;
            drop(permit);
            let bodies = match opened {
                Ok(bodies) => bodies,
                Err(_) => {
                    report(0, k);
                    return;
                }
            };
            report(bodies.len() as u64, k - bodies.len() as u64);
            let mut readers = JoinSet::new();
            for (i, body) in bodies.into_iter().enumerate() {
                let (shared, closed) = (shared.clone(), closed.clone());
                let shard = usize::try_from(c).unwrap_or(0) * 131 + i;
                readers.spawn(async move { read(&shared, shard, body, closed).await });
            }
            while readers.join_next().await.is_some() {}
        });
    }
    if n > 0 {
        all.notified().await;
    }
    serde_json::json!({
        "connected": n - failed.load(Ordering::SeqCst),
        "failed": failed.load(Ordering::SeqCst),
        "secs": started.elapsed().as_secs_f64(),
    })
}

/// One connection with `k` streams whose heads said 200.
async fn open(shared: &Shared, source: std::net::IpAddr, k: u64) -> Result<Vec<h2::RecvStream>> {
    let io = dial(shared, source).await?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, bytes::Bytes>(io)
        .await
        .context("HTTP/2 handshake")?;
    // Ends once every stream and the sender are gone.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let uri = format!("https://{}{}", shared.args.server, shared.args.path);
    let mut responses = Vec::new();
    for _ in 0..k {
        let mut ready = sender.clone().ready().await?;
        let request = http::Request::get(uri.as_str()).body(())?;
        let (response, _) = ready.send_request(request, true)?;
        responses.push(response);
    }
    let mut bodies = Vec::new();
    for response in responses {
        let response = tokio::time::timeout(Duration::from_secs(30), response)
            .await
            .context("response timeout")??;
        if response.status() == 200 {
            bodies.push(response.into_body());
        }
    }
    Ok(bodies)
}

async fn read(
    shared: &Shared,
    shard: usize,
    mut body: h2::RecvStream,
    mut closed: watch::Receiver<u64>,
) {
    let c = &shared.counters;
    c.open.fetch_add(1, Ordering::SeqCst);
    let mut marks = Marks::default();
    loop {
        let chunk = tokio::select! {
            chunk = body.data() => chunk,
            _ = closed.changed() => break,
        };
        match chunk {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                received(shared, shard, &mut marks, &data);
            }
            _ => {
                c.errors.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
    }
    c.open.fetch_sub(1, Ordering::SeqCst);
}

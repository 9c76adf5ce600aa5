//! `ssegate-cluster-bench`: what cluster mode costs (`cargo xtask bench
//! cluster`). Everything on loopback: a `nats-server -js` of its own, the
//! upstream simulator and two release `ssegate` instances, A (the owner of
//! the topic) and B.
//!
//! - **Added latency**: subscribers split between A and B, the topic at 20
//!   events/s. Each event's arrival at every subscriber is measured against
//!   its first arrival at any of A's subscribers (one clock, this process):
//!   A's figures are its own fan-out spread, B's add the way through the
//!   event log. p50 and p99 of each, and B minus A.
//! - **Throughput through NATS**: one topic at `--fast-rate` events/s from
//!   the simulator, one subscriber on each instance: events/s
//!   received on B (through the log) and on A.
//! - **Failover**: the owner SIGKILLed `--kills` times (restarted after each
//!   take-over); the time from the kill to the next event at B's subscriber,
//!   and every upstream sequence number counted once: lost and duplicated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use serde::Serialize;
use ssegate_tests::nats::{NatsServer, free_port};
use ssegate_tests::procs::{self, Proc};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Each step's bound.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Parser)]
#[command(
    name = "ssegate-cluster-bench",
    about = "What ssegate's cluster mode costs"
)]
struct Args {
    #[command(flatten)]
    bins: procs::Binaries,
    /// Subscribers in the latency phase, half on each instance.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Owner kills in the failover phase.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Events/s of the throughput phase's topic.
    #[arg(long, default_value_t = 2000.0)]
    fast_rate: f64,
    /// Where the results go.
    #[arg(long, default_value = "target/bench/cluster")]
    out: PathBuf,
}

fn spawn_sim(bin: &Path, port: u16, rate: f64, topic: &str) -> Result<Proc> {
    let rate = rate.to_string();
    let listen = format!("127.0.0.1:{port}");
    procs::spawn(
        bin,
        &["--listen", &listen, "--topics", topic, "--rate", &rate],
    )
}

async fn listening(port: u16) -> Result<()> {
    procs::listening(port, WAIT).await
}

/// One `ssegate run` in cluster mode.
struct Gateway {
    proc: Option<Proc>,
    listen: u16,
    admin: u16,
    file: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Gateway {
    async fn start(bin: &Path, nats: &str, sim_port: u16, cluster: &str) -> Result<Self> {
        let (listen, admin) = (free_port(), free_port());
        let file = std::env::temp_dir().join(format!(
            "ssegate-cluster-bench-{}-{listen}.toml",
            std::process::id()
        ));
        std::fs::write(
            &file,
            format!(
                "[upstream]\nurl_template = \"http://127.0.0.1:{sim_port}/v1/quotes/{{topic}}/stream\"\n\
                 [bridge]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
                 max_per_ip = 100000\nnew_streams_per_sec = 100000\nnew_streams_per_ip_per_sec = 100000\n\
                 [cluster]\nenabled = true\nname = \"{cluster}\"\ninstance = \"bench-{listen}\"\n\
                 nats_urls = [\"{nats}\"]\n"
            ),
        )?;
        let mut gateway = Self {
            proc: None,
            listen,
            admin,
            file,
        };
        gateway.spawn(bin).await?;
        Ok(gateway)
    }

    async fn spawn(&mut self, bin: &Path) -> Result<()> {
        let file = self.file.to_string_lossy().into_owned();
        self.proc = Some(procs::spawn(bin, &["run", "--config", &file])?);
        listening(self.listen).await
    }

    async fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            let _ = proc.0.start_kill();
            let _ = proc.0.wait().await;
        }
    }

    async fn subscribe(&self, topic: &str) -> Result<ssegate_tests::client::Client> {
        let io = TcpStream::connect(("127.0.0.1", self.listen)).await?;
        let client = ssegate_tests::client::get(
            io,
            &format!("127.0.0.1:{}", self.listen),
            &format!("/v1/stream/{topic}"),
            WAIT,
        )
        .await;
        if client.status != 200 {
            bail!("subscribe: {}", client.status);
        }
        Ok(client)
    }

    async fn owns(&self, topic: &str) -> Result<bool> {
        let io = TcpStream::connect(("127.0.0.1", self.admin)).await?;
        let reply = ssegate_tests::client::get(
            io,
            &format!("127.0.0.1:{}", self.admin),
            "/admin/streams",
            WAIT,
        )
        .await;
        let streams: serde_json::Value = serde_json::from_str(&reply.text().await)?;
        Ok(streams["streams"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["topic"] == topic)))
    }
}

/// The upstream sequence number of a quote.
fn n_of(data: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(data).ok()?["n"].as_u64()
}

/// The `p`th percentile (nearest rank) of `sorted`.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) * p + 50) / 100;
    sorted[rank.min(sorted.len() - 1)]
}

#[derive(Debug, Default, Serialize)]
struct Results {
    subscribers: usize,
    latency_samples_owner: usize,
    latency_samples_other: usize,
    owner_p50_ms: f64,
    owner_p99_ms: f64,
    other_p50_ms: f64,
    other_p99_ms: f64,
    added_p50_ms: f64,
    added_p99_ms: f64,
    fast_rate: f64,
    throughput_owner_per_sec: f64,
    throughput_other_per_sec: f64,
    kills: usize,
    failover_p50_ms: f64,
    failover_p99_ms: f64,
    failover_max_ms: f64,
    failover_lost: u64,
    failover_duplicated: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut results = Results {
        subscribers: args.subscribers,
        kills: args.kills,
        fast_rate: args.fast_rate,
        ..Results::default()
    };
    let nats = NatsServer::start().await;
    latency(&args, &nats, &mut results).await?;
    throughput(&args, &nats, &mut results).await?;
    failover(&args, &nats, &mut results).await?;
    let table = table(&results);
    procs::write_results(&args.out, &results, &table)?;
    Ok(())
}

async fn latency(args: &Args, nats: &NatsServer, results: &mut Results) -> Result<()> {
    let sim_port = free_port();
    let _sim = spawn_sim(&args.bins.sim, sim_port, 20.0, "AAPL")?;
    listening(sim_port).await?;
    let a = Gateway::start(&args.bins.ssegate, &nats.url(), sim_port, "lat").await?;
    let b = Gateway::start(&args.bins.ssegate, &nats.url(), sim_port, "lat").await?;
    // A's first subscriber makes A the owner.
    let mut first = a.subscribe("AAPL").await?;
    first.next_event().await;
    if !a.owns("AAPL").await? {
        bail!("A should own the topic");
    }
    // Each side's subscribers are read by a thread and a runtime of their
    // own, as two sets of clients on two machines would be: with one
    // reactor for both, the sockets that became readable first (A's, the
    // owner's fan-out starts a moment earlier) are read first, and B's
    // wait behind them in the measuring process's own queue.
    let secs = Duration::from_secs(args.secs);
    let both = std::sync::Arc::new(std::sync::Barrier::new(2));
    let half = args.subscribers / 2;
    let readers: Vec<_> = [(a.listen, half), (b.listen, args.subscribers - half)]
        .into_iter()
        .map(|(port, count)| {
            let both = both.clone();
            std::thread::spawn(move || -> Result<Vec<(String, Instant)>> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(read_side(port, count, &both, secs))
            })
        })
        .collect();
    let mut arrivals: [Vec<(String, Instant)>; 2] = [Vec::new(), Vec::new()];
    for (side, reader) in readers.into_iter().enumerate() {
        arrivals[side] = tokio::task::spawn_blocking(move || reader.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
    }
    let mut first_at: HashMap<&str, Instant> = HashMap::new();
    for (id, at) in &arrivals[0] {
        let entry = first_at.entry(id.as_str()).or_insert(*at);
        if *at < *entry {
            *entry = *at;
        }
    }
    let mut deltas: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for side in 0..2 {
        for (id, at) in &arrivals[side] {
            if let Some(first) = first_at.get(id.as_str()) {
                deltas[side].push(at.saturating_duration_since(*first).as_secs_f64() * 1e3);
            }
        }
        deltas[side].sort_by(f64::total_cmp);
    }
    results.latency_samples_owner = deltas[0].len();
    results.latency_samples_other = deltas[1].len();
    results.owner_p50_ms = percentile(&deltas[0], 50);
    results.owner_p99_ms = percentile(&deltas[0], 99);
    results.other_p50_ms = percentile(&deltas[1], 50);
    results.other_p99_ms = percentile(&deltas[1], 99);
    results.added_p50_ms = results.other_p50_ms - results.owner_p50_ms;
    results.added_p99_ms = results.other_p99_ms - results.owner_p99_ms;
    drop(first);
    Ok(())
}

/// `count` subscribers of AAPL on the instance at `port`; once both sides
/// are subscribed (`both`) and a 2 s warm-up later, every event's id and
/// arrival for `secs`.
async fn read_side(
    port: u16,
    count: usize,
    both: &std::sync::Barrier,
    secs: Duration,
) -> Result<Vec<(String, Instant)>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let io = TcpStream::connect(("127.0.0.1", port)).await?;
        let client =
            ssegate_tests::client::get(io, &format!("127.0.0.1:{port}"), "/v1/stream/AAPL", WAIT)
                .await;
        if client.status != 200 {
            bail!("subscribe: {}", client.status);
        }
        clients.push(client);
    }
    // A moment's block of this side's thread: its clients' connections
    // wait in the kernel meanwhile.
    both.wait();
    let start = Instant::now() + Duration::from_secs(2);
    let stop_at = start + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        tasks.spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < stop_at {
                let event = client.next_event().await;
                let at = Instant::now();
                if at > start {
                    seen.push((event.id.to_string(), at));
                }
            }
            seen
        });
    }
    let mut all = Vec::new();
    while let Some(seen) = tasks.join_next().await {
        all.extend(seen?);
    }
    Ok(all)
}

async fn throughput(args: &Args, nats: &NatsServer, results: &mut Results) -> Result<()> {
    let sim_port = free_port();
    let _sim = spawn_sim(&args.bins.sim, sim_port, args.fast_rate, "FAST")?;
    listening(sim_port).await?;
    let a = Gateway::start(&args.bins.ssegate, &nats.url(), sim_port, "fast").await?;
    let b = Gateway::start(&args.bins.ssegate, &nats.url(), sim_port, "fast").await?;
    let mut on_a = a.subscribe("FAST").await?;
    on_a.next_event().await;
    let mut on_b = b.subscribe("FAST").await?;
    on_b.next_event().await;
    let count = |mut client: ssegate_tests::client::Client| async move {
        // Warm: a second, then five measured.
        let warm = Instant::now() + Duration::from_secs(1);
        while Instant::now() < warm {
            client.next_event().await;
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(5) {
            client.next_event().await;
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let (on_a, on_b) = tokio::join!(count(on_a), count(on_b));
    results.throughput_owner_per_sec = on_a;
    results.throughput_other_per_sec = on_b;
    Ok(())
}

async fn failover(args: &Args, nats: &NatsServer, results: &mut Results) -> Result<()> {
    let sim_port = free_port();
    let _sim = spawn_sim(&args.bins.sim, sim_port, 20.0, "AAPL")?;
    listening(sim_port).await?;
    let mut gateways = [
        Gateway::start(&args.bins.ssegate, &nats.url(), sim_port, "kill").await?,
        Gateway::start(&args.bins.ssegate, &nats.url(), sim_port, "kill").await?,
    ];
    let mut clients = [
        Some(gateways[0].subscribe("AAPL").await?),
        Some(gateways[1].subscribe("AAPL").await?),
    ];
    let mut times = Vec::new();
    let (mut lost, mut duplicated) = (0u64, 0u64);
    for _ in 0..args.kills {
        let mut owner = None;
        for (i, gateway) in gateways.iter().enumerate() {
            if gateway.owns("AAPL").await? {
                owner = Some(i);
            }
        }
        let owner = owner.context("no owner")?;
        let survivor = 1 - owner;
        clients[owner] = None;
        let client = clients[survivor].as_mut().context("a survivor's client")?;
        let mut last = n_of(&client.next_event().await.data).context("a quote")?;
        let killed = Instant::now();
        gateways[owner].kill().await;
        // Every event after the kill, until well past the take-over.
        let mut first_after = None;
        while killed.elapsed() < Duration::from_secs(6) {
            let event = client.next_event().await;
            let at = killed.elapsed();
            let n = n_of(&event.data).context("a quote")?;
            if first_after.is_none() && n > last {
                // The last event before the kill may still arrive after it.
                if at > Duration::from_millis(100) {
                    first_after = Some(at);
                }
            }
            if n <= last {
                duplicated += 1;
            } else {
                lost += n - last - 1;
                last = n;
            }
        }
        times.push(
            first_after
                .context("no event after the kill")?
                .as_secs_f64()
                * 1e3,
        );
        gateways[owner].spawn(&args.bins.ssegate).await?;
        clients[owner] = Some(gateways[owner].subscribe("AAPL").await?);
    }
    times.sort_by(f64::total_cmp);
    results.failover_p50_ms = percentile(&times, 50);
    results.failover_p99_ms = percentile(&times, 99);
    results.failover_max_ms = times.last().copied().unwrap_or(f64::NAN);
    results.failover_lost = lost;
    results.failover_duplicated = duplicated;
    Ok(())
}

fn table(r: &Results) -> String {
    format!(
        "| measure | owner (A) | other (B) | B - A | goal |\n|---|---|---|---|---|\n\
         | latency p50, {} subscribers at 20 events/s | {:.2} ms | {:.2} ms | {:.2} ms | added <= 1 ms |\n\
         | latency p99 | {:.2} ms | {:.2} ms | {:.2} ms | |\n\
         | one topic's events/s (sent: {:.0}/s) | {:.0} | {:.0} | | |\n\
         | failover over {} kills: kill to next event, p50 / p99 / max | | {:.0} / {:.0} / {:.0} ms | | p99 <= lease_ttl + 1 s (4,000 ms) |\n\
         | events lost / duplicated across the kills | | {} / {} | | 0 / 0 |\n\
         \nLatency is measured from each event's first arrival at any of A's subscribers (one clock).\n",
        r.subscribers,
        r.owner_p50_ms,
        r.other_p50_ms,
        r.added_p50_ms,
        r.owner_p99_ms,
        r.other_p99_ms,
        r.added_p99_ms,
        r.fast_rate,
        r.throughput_owner_per_sec,
        r.throughput_other_per_sec,
        r.kills,
        r.failover_p50_ms,
        r.failover_p99_ms,
        r.failover_max_ms,
        r.failover_lost,
        r.failover_duplicated,
    )
}

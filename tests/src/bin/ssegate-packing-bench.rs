//! `ssegate-packing-bench`: many topics packed into few upstream
//! connections (`cargo xtask bench packing`). Everything on loopback: the
//! upstream simulator (its packed `/v1/stream?symbols=` streams) and a
//! release `ssegate` with one packed route.
//!
//! - **Packed, with churn**: `--topics` topics (1,000) with subscribers,
//!   within `--max-streams` upstream connections (50, the old plan's cap),
//!   `--max-topics` to a connection. Most topics are held by steady
//!   subscribers for the whole run; the rest churn: every second a client
//!   takes ten of them and the oldest churning client leaves, so groups
//!   gain and lose topics (re-packs) every second. Every event's topic
//!   sequence number (`n`) is checked: gaps and duplicates, per topic.
//!   Reported: upstream connections at most (sockets, re-packs' overlaps
//!   included), connections opened and re-packs per minute, and the
//!   gateway's CPU per 1,000 events delivered.
//! - **Reference, one connection per topic**: `--max-streams` topics (all
//!   the cap allows) from the simulator's single-topic streams, the same
//!   rate: the gateway's CPU per 1,000 events the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use parking_lot::Mutex;
use serde::Serialize;
use ssegate_tests::nats::free_port;
use ssegate_tests::procfs::cpu_secs;
use ssegate_tests::procs::{self, Proc};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Each step's bound.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Parser)]
#[command(
    name = "ssegate-packing-bench",
    about = "Many topics packed into few upstream connections"
)]
struct Args {
    #[command(flatten)]
    bins: procs::Binaries,
    /// Topics with subscribers.
    #[arg(long, default_value_t = 1000)]
    topics: usize,
    /// Of them, the ones that churn (the rest are held throughout).
    #[arg(long, default_value_t = 100)]
    churn_topics: usize,
    /// Events per second per topic.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds of the packed phase (the reference runs a fifth of it).
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// The gateway's cap on upstream connections.
    #[arg(long, default_value_t = 50)]
    max_streams: usize,
    /// Topics on one packed connection.
    #[arg(long, default_value_t = 25)]
    max_topics: usize,
    /// Where the results go.
    #[arg(long, default_value = "target/bench/packing")]
    out: PathBuf,
    /// Also write the table into this README, between its packing markers.
    #[arg(long)]
    update_readme: Option<PathBuf>,
}

/// One topic's numbers as a subscriber sees them.
#[derive(Default)]
struct Seen {
    last: HashMap<String, u64>,
    events: u64,
    gaps: u64,
    duplicates: u64,
    notices: u64,
}

impl Seen {
    fn take(&mut self, event: &sse_parser::Event) -> Result<()> {
        if event.event_type.as_str() == "ssegate-gap" {
            self.notices += 1;
            return Ok(());
        }
        let value: serde_json::Value =
            serde_json::from_str(&event.data).context("a quote is JSON")?;
        let topic = value["s"].as_str().context("a symbol")?;
        let n = value["n"].as_u64().context("a sequence number")?;
        self.events += 1;
        match self.last.get_mut(topic) {
            Some(last) if n <= *last => self.duplicates += 1,
            Some(last) => {
                self.gaps += n - *last - 1;
                *last = n;
            }
            None => {
                self.last.insert(topic.to_string(), n);
            }
        }
        Ok(())
    }
}

/// The gateway under test.
struct Gateway {
    proc: Proc,
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
    async fn start(bin: &Path, upstream: &str) -> Result<Self> {
        let (listen, admin) = (free_port(), free_port());
        let file = std::env::temp_dir().join(format!(
            "ssegate-packing-bench-{}-{listen}.toml",
            std::process::id()
        ));
        std::fs::write(
            &file,
            format!(
                "{upstream}\n[bridge]\nlisten = \"127.0.0.1:{listen}\"\n\
                 admin_listen = \"127.0.0.1:{admin}\"\nmax_per_ip = 100000\n\
                 new_streams_per_sec = 100000\nnew_streams_per_ip_per_sec = 100000\n\
                 max_topics_per_connection = 100\nmax_unproven_topics_per_ip = 100000\n"
            ),
        )?;
        let config = file.to_string_lossy().into_owned();
        let proc = procs::spawn(bin, &["run", "--config", &config])?;
        procs::listening(listen, WAIT).await?;
        Ok(Self {
            proc,
            listen,
            admin,
            file,
        })
    }

    fn cpu(&self) -> f64 {
        self.proc.pid().map_or(0.0, cpu_secs)
    }

    async fn subscribe(&self, topics: &[String]) -> Result<ssegate_tests::client::Client> {
        let query: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
        let io = TcpStream::connect(("127.0.0.1", self.listen)).await?;
        let client = ssegate_tests::client::get(
            io,
            &format!("127.0.0.1:{}", self.listen),
            &format!("/v1/stream?{}", query.join("&")),
            WAIT,
        )
        .await;
        if client.status != 200 {
            bail!("subscribe: {}", client.status);
        }
        Ok(client)
    }

    /// The gateway's metrics, by series (name and labels as written).
    async fn metrics(&self) -> Result<HashMap<String, f64>> {
        let io = TcpStream::connect(("127.0.0.1", self.admin)).await?;
        let reply =
            ssegate_tests::client::get(io, &format!("127.0.0.1:{}", self.admin), "/metrics", WAIT)
                .await;
        Ok(reply
            .text()
            .await
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect())
    }
}

fn spawn_sim(bin: &Path, port: u16, topics: &[String], rate: f64) -> Result<Proc> {
    let listen = format!("127.0.0.1:{port}");
    let list = topics.join(",");
    let rate = rate.to_string();
    procs::spawn(
        bin,
        &["--listen", &listen, "--topics", &list, "--rate", &rate],
    )
}

/// Reads `client` until `stop`, into `seen`.
fn read(
    mut client: ssegate_tests::client::Client,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let next = tokio::time::timeout(Duration::from_secs(1), client.next_item()).await;
            match next {
                Ok(Some(sse_parser::Item::Event(event))) => {
                    if seen.lock().take(&event).is_err() {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    })
}

/// A churning client: its own checks, its reader, its stop.
struct Churner {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Churner {
    fn start(client: ssegate_tests::client::Client, failures: &Arc<AtomicU64>) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = read(client, seen.clone(), stop.clone(), failures.clone());
        Self { seen, task, stop }
    }

    /// Leaves (the stream closes), its counts added to `total`.
    fn finish(self, total: &mut Seen) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
        let s = self.seen.lock();
        total.events += s.events;
        total.gaps += s.gaps;
        total.duplicates += s.duplicates;
    }
}

#[derive(Debug, Default, Serialize)]
struct Phase {
    topics: usize,
    secs: f64,
    max_connections: f64,
    connections_opened_per_min: f64,
    repacks_per_min: f64,
    events: u64,
    gaps: u64,
    duplicates: u64,
    gap_notices: u64,
    cpu_ms_per_1000_events: f64,
    stream_failures: u64,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    rate: f64,
    max_streams: usize,
    max_topics: usize,
    churn_topics: usize,
    packed: Phase,
    reference: Phase,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.churn_topics >= args.topics {
        bail!("--churn-topics must be fewer than --topics");
    }
    let topics: Vec<String> = (0..args.topics).map(|i| format!("T{i:04}")).collect();
    let sim_port = free_port();
    let _sim = spawn_sim(&args.bins.sim, sim_port, &topics, args.rate)?;
    procs::listening(sim_port, WAIT).await?;
    let mut results = Results {
        rate: args.rate,
        max_streams: args.max_streams,
        max_topics: args.max_topics,
        churn_topics: args.churn_topics,
        ..Results::default()
    };
    results.packed = packed(&args, sim_port, &topics).await?;
    results.reference = reference(&args, sim_port, &topics).await?;
    let table = table(&results);
    procs::write_results(&args.out, &results, &table)?;
    if let Some(readme) = &args.update_readme {
        write_table(readme, &table)?;
    }
    let p = &results.packed;
    if p.gaps + p.duplicates > 0 || p.stream_failures > 0 {
        bail!(
            "packed: {} gaps, {} duplicates, {} failed streams",
            p.gaps,
            p.duplicates,
            p.stream_failures
        );
    }
    if p.max_connections > args.max_streams as f64 * 1.2 {
        bail!("packed: {} upstream connections at most", p.max_connections);
    }
    Ok(())
}

async fn packed(args: &Args, sim_port: u16, topics: &[String]) -> Result<Phase> {
    let upstream = format!(
        "[upstream]\nmax_streams = {}\nidle_linger = \"1s\"\n\
         [[upstream.routes]]\nname = \"packed\"\ntopics = \"*\"\n\
         pack = {{ url_template = \"http://127.0.0.1:{sim_port}/v1/stream?symbols={{topics}}\", \
         max_topics = {}, demux = {{ json_pointer = \"/s\" }} }}\n",
        args.max_streams, args.max_topics
    );
    let gateway = Gateway::start(&args.bins.ssegate, &upstream).await?;
    let (steady, churn) = topics.split_at(args.topics - args.churn_topics);
    phase(&gateway, steady, churn, Duration::from_secs(args.secs)).await
}

async fn reference(args: &Args, sim_port: u16, topics: &[String]) -> Result<Phase> {
    let upstream = format!(
        "[upstream]\nmax_streams = {}\nurl_template = \"http://127.0.0.1:{sim_port}/v1/quotes/{{topic}}/stream\"\n",
        args.max_streams
    );
    let gateway = Gateway::start(&args.bins.ssegate, &upstream).await?;
    let chosen = &topics[..args.max_streams.min(topics.len())];
    let secs = Duration::from_secs((args.secs / 5).max(20));
    phase(&gateway, chosen, &[], secs).await
}

/// One measured phase: `steady` held by clients of 100 topics each for the
/// whole phase; with `churn`, every second a client takes ten of them and
/// the oldest of five churning clients leaves (each client's topics are
/// checked within its own life). Measured for `secs` after a 5 s warm-up.
async fn phase(
    gateway: &Gateway,
    steady: &[String],
    churn: &[String],
    secs: Duration,
) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut readers = Vec::new();
    for chunk in steady.chunks(100) {
        let client = gateway.subscribe(chunk).await?;
        readers.push(read(client, seen.clone(), stop.clone(), failures.clone()));
    }
    // Wall clock: the gateway opens (packs) its connections meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = gateway.metrics().await?;
    let cpu_before = gateway.cpu();
    let (events_before, gaps_before, dups_before) = {
        let s = seen.lock();
        (s.events, s.gaps, s.duplicates)
    };
    let start = Instant::now();
    let mut churners: std::collections::VecDeque<Churner> = std::collections::VecDeque::new();
    let mut churned = Seen::default();
    let mut max_connections = 0f64;
    let mut k = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while start.elapsed() < secs {
        tick.tick().await;
        if !churn.is_empty() {
            let chosen: Vec<String> = (0..10)
                .map(|i| churn[(k * 37 + i * 11) % churn.len()].clone())
                .collect();
            k += 1;
            let client = gateway.subscribe(&chosen).await?;
            churners.push_back(Churner::start(client, &failures));
            if churners.len() > 5
                && let Some(oldest) = churners.pop_front()
            {
                oldest.finish(&mut churned);
            }
        }
        let m = gateway.metrics().await?;
        max_connections =
            max_connections.max(m.get("ssegate_upstream_sockets").copied().unwrap_or(0.0));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = gateway.metrics().await?;
    let cpu = gateway.cpu() - cpu_before;
    stop.store(true, Ordering::SeqCst);
    for churner in churners {
        churner.finish(&mut churned);
    }
    for reader in readers {
        let _ = reader.await;
    }
    let s = seen.lock();
    let events = s.events - events_before + churned.events;
    let per_min = |name: &str| {
        (after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)) * 60.0
            / elapsed
    };
    Ok(Phase {
        topics: steady.len() + churn.len(),
        secs: elapsed,
        max_connections,
        connections_opened_per_min: per_min("ssegate_upstream_connections_opened_total"),
        repacks_per_min: per_min("ssegate_pool_repacks_total{route=\"packed\"}"),
        events,
        gaps: s.gaps - gaps_before + churned.gaps,
        duplicates: s.duplicates - dups_before + churned.duplicates,
        gap_notices: s.notices,
        cpu_ms_per_1000_events: cpu * 1e3 / (events as f64 / 1e3),
        stream_failures: failures.load(Ordering::SeqCst),
    })
}

fn table(r: &Results) -> String {
    let (p, q) = (&r.packed, &r.reference);
    format!(
        "| measure | packed, with churn | one connection per topic (reference) |\n|---|---|---|\n\
         | topics with subscribers | {} ({} churning) | {} (the cap) |\n\
         | upstream connections at most (cap {}) | {:.0} | {:.0} |\n\
         | upstream connections opened per minute | {:.1} | {:.1} |\n\
         | re-packs per minute | {:.1} | - |\n\
         | events delivered (measured {:.0} s / {:.0} s) | {} | {} |\n\
         | gaps / duplicates, per topic | {} / {} | {} / {} |\n\
         | gateway CPU per 1,000 events | {:.2} ms | {:.2} ms |\n\
         | ratio, packed / reference | {:.2}x | 1.00x |\n\
         \n{} events/s per topic, {} topics to a packed connection, a re-pack at most every 2 s per connection.\n",
        p.topics,
        r.churn_topics,
        q.topics,
        r.max_streams,
        p.max_connections,
        q.max_connections,
        p.connections_opened_per_min,
        q.connections_opened_per_min,
        p.repacks_per_min,
        p.secs,
        q.secs,
        p.events,
        q.events,
        p.gaps,
        p.duplicates,
        q.gaps,
        q.duplicates,
        p.cpu_ms_per_1000_events,
        q.cpu_ms_per_1000_events,
        p.cpu_ms_per_1000_events / q.cpu_ms_per_1000_events,
        r.rate,
        r.max_topics,
    )
}

/// Replaces what is between `<!-- packing-bench -->` and
/// `<!-- /packing-bench -->` in `readme` with `table`.
fn write_table(readme: &Path, table: &str) -> Result<()> {
    let text = std::fs::read_to_string(readme)?;
    let (open, close) = ("<!-- packing-bench -->", "<!-- /packing-bench -->");
    let start = text.find(open).context("no packing-bench marker")? + open.len();
    let end = text
        .find(close)
        .context("no closing packing-bench marker")?;
    let updated = format!("{}\n{}{}", &text[..start], table, &text[end..]);
    std::fs::write(readme, updated)?;
    Ok(())
}

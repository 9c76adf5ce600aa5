//! The load generators: `ssegate-soak load --role ...`, each role in its own
//! process (open files are capped per process), over its own 127.x.y.z
//! source addresses (ephemeral ports are per source address).
//!
//! - `churn`: connect, read a few events, disconnect (some abruptly, with a
//!   TCP reset); some sessions are multi-topic.
//! - `resume`: read a few events, disconnect, come back with
//!   `Last-Event-ID`; the next event must follow the last one seen.
//! - `checker`: long-lived subscribers to every topic that check order and
//!   gaps, measure latency, and record delivery gaps.
//! - `slow`: subscribers that stop reading; the gateway's policy must act.
//!
//! Each stops when its operation quota is reached or its stdin closes, then
//! writes a JSON report.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sse_parser::Event;
use tokio::io::AsyncReadExt;

use crate::report::{GAP_MS, Report};
use crate::wire::{Stream, TOKEN, open};

/// Locks, ignoring poisoning (a panicking thread fails the run anyway).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a load process is told.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// churn, resume, checker or slow.
    #[arg(long)]
    pub(crate) role: String,
    /// The gateways' stream listeners, comma-separated: one, or a
    /// cluster's instances (a session goes to one of them, and moves on to
    /// the next when it cannot connect, as a load balancer would).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) gateway: Vec<SocketAddr>,
    /// Source addresses (loopback), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sources: Vec<IpAddr>,
    /// The topics, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) topics: Vec<String>,
    /// Topics of a packed route, comma-separated (may be empty): a checker
    /// holds the first two on one stream; churn sessions take the others
    /// now and then, so that group is re-packed while it is checked.
    #[arg(long, value_delimiter = ',')]
    pub(crate) packed_topics: Vec<String>,
    /// Sessions to run (churn), or resumes (resume: its fresh sessions
    /// come on top); 0: until stdin closes.
    #[arg(long, default_value_t = 0)]
    pub(crate) ops: u64,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// Seed of the choices (topics, resets, pauses).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Percent of churn sessions that end with a TCP reset.
    #[arg(long, default_value_t = 20)]
    pub(crate) reset_percent: u64,
    /// A pause between sessions (churn, resume), in milliseconds: 0 runs
    /// them back to back; `--wall` paces them like production.
    #[arg(long, default_value_t = 0)]
    pub(crate) pause_ms: u64,
    /// How long a slow consumer stops reading, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub(crate) stall_ms: u64,
    /// Where to write the JSON report.
    #[arg(long)]
    pub(crate) report: PathBuf,
    /// The bearer token every request carries (the soak's gateway requires
    /// one per role, so its token registry is exercised too).
    #[arg(long)]
    pub(crate) token: Option<String>,
}

/// A gap longer than this is an outage: the events right after it are
/// catching up, not live, and stay out of the latency.
const OUTAGE_MS: u64 = 500;

/// Kept per load process at most: delivery gaps, order anomalies (counted on).
const MAX_GAPS: usize = 300_000;
const MAX_ANOMALIES: usize = 20;

pub(crate) fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// SplitMix64, for reproducible choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// Per-topic order and delivery checks, shared by every role.
struct Checks {
    report: Report,
    latency: Histogram<u64>,
    /// When this process started (unix ms). An event stamped before it is
    /// history (a topic re-opened by a cluster's owner resumes from the
    /// last id JetStream holds, and the upstream replays what it missed),
    /// not a live delivery, and stays out of the latency like catch-up.
    started_ms: u64,
    /// Per (stream, topic): each stream is checked on its own.
    topics: HashMap<(u64, String), TopicCheck>,
}

#[derive(Default)]
struct TopicCheck {
    /// The `n` expected next, if known.
    next: Option<u64>,
    last_arrival: u64,
    /// Events stamped before this were delayed by an outage.
    catch_up_until: u64,
}

/// What an event was, for the session logic.
enum Seen {
    Quote { topic: String, n: u64 },
    Reset,
    Other,
}

impl Checks {
    fn new(role: &str) -> Result<Self> {
        Ok(Self {
            report: Report {
                role: role.to_string(),
                ..Report::default()
            },
            latency: Histogram::new_with_bounds(1, 3_600_000, 2)?,
            started_ms: now_ms(),
            topics: HashMap::new(),
        })
    }

    fn failure(&mut self, kind: impl Into<String>) {
        *self.report.failures.entry(kind.into()).or_default() += 1;
    }

    /// Checks one event; `measure` records latency and delivery gaps
    /// (long-lived subscribers only: short sessions start mid-stream).
    /// Forgets a stream's state (its session is over).
    fn end_stream(&mut self, stream: u64) {
        self.topics.retain(|(s, _), _| *s != stream);
    }

    fn event(&mut self, stream: u64, event: &Event, measure: bool) -> Seen {
        self.report.events += 1;
        let kind = event.event_type.as_str();
        let kind = kind.rsplit(':').next().unwrap_or(kind);
        match kind {
            "quote" => {}
            "ssegate-gap" | "ssegate-reset" => {
                let topic = serde_json::from_str::<serde_json::Value>(event.data.as_str())
                    .ok()
                    .and_then(|v| v.get("topic").and_then(|t| t.as_str()).map(str::to_string));
                if kind == "ssegate-gap" {
                    self.report.gap_notices += 1;
                } else {
                    self.report.reset_notices += 1;
                }
                // What comes next on that topic starts a new run.
                match &topic {
                    Some(t) => {
                        if let Some(check) = self.topics.get_mut(&(stream, t.clone())) {
                            check.next = None;
                        }
                    }
                    None => self
                        .topics
                        .iter_mut()
                        .filter(|((s, _), _)| *s == stream)
                        .for_each(|(_, c)| c.next = None),
                }
                return Seen::Reset;
            }
            "garbage" => {
                self.report.garbage += 1;
                return Seen::Other;
            }
            _ => return Seen::Other,
        }
        let Ok(quote) = serde_json::from_str::<serde_json::Value>(event.data.as_str()) else {
            self.report.malformed += 1;
            return Seen::Other;
        };
        let (Some(topic), Some(n), Some(t)) = (
            quote.get("s").and_then(|v| v.as_str()),
            quote.get("n").and_then(serde_json::Value::as_u64),
            quote.get("t").and_then(serde_json::Value::as_u64),
        ) else {
            self.report.malformed += 1;
            return Seen::Other;
        };
        self.report.quotes += 1;
        let now = now_ms();
        let started = self.started_ms;
        let check = self
            .topics
            .entry((stream, topic.to_string()))
            .or_insert_with(|| TopicCheck {
                catch_up_until: started,
                ..TopicCheck::default()
            });
        if let Some(expected) = check.next.filter(|e| *e != n) {
            let errors = self.report.by_topic.entry(topic.to_string()).or_default();
            if n > expected {
                self.report.missing += n - expected;
                errors.0 += n - expected;
            } else {
                self.report.duplicates += 1;
                errors.1 += 1;
            }
            let list = &mut self.report.anomalies;
            if list.len() < MAX_ANOMALIES {
                list.push((topic.to_string(), expected, n, now));
            }
        }
        check.next = Some(check.next.map_or(n + 1, |e| e.max(n + 1)));
        if measure {
            let entry = self
                .report
                .first_last
                .entry(topic.to_string())
                .or_insert((now, now));
            entry.1 = now;
            let gap = now - check.last_arrival.min(now);
            if check.last_arrival > 0 && gap > GAP_MS {
                if self.report.delivery_gaps.len() < MAX_GAPS {
                    self.report
                        .delivery_gaps
                        .push((topic.to_string(), check.last_arrival, now));
                }
                if gap > OUTAGE_MS {
                    check.catch_up_until = now.saturating_sub(100);
                }
            }
            check.last_arrival = now;
            if t < check.catch_up_until {
                self.report.catch_up_events += 1;
            } else {
                let _ = self.latency.record(now.saturating_sub(t).max(1));
            }
        }
        Seen::Quote {
            topic: topic.to_string(),
            n,
        }
    }

    fn finish(mut self) -> Report {
        let h = &self.latency;
        self.report.latency_count = h.len();
        if !h.is_empty() {
            self.report.latency_mean_ms = h.mean();
            self.report.latency_p50_ms = h.value_at_quantile(0.5);
            self.report.latency_p99_ms = h.value_at_quantile(0.99);
            self.report.latency_max_ms = h.max();
            self.report.latency_buckets = h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect();
        }
        self.report
    }
}

/// Runs one load process to the end and writes its report.
pub(crate) fn main(args: LoadArgs) -> Result<()> {
    if args.sources.is_empty() || args.topics.is_empty() {
        bail!("--sources and --topics must not be empty");
    }
    if let Some(bad) = args.sources.iter().find(|ip| !ip.is_loopback()) {
        bail!("source {bad} is not a loopback address");
    }
    if let Some(bad) = args.gateway.iter().find(|g| !g.ip().is_loopback()) {
        bail!("the gateway {bad} is not on loopback");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(run(args.clone()));
    // The stdin reader sits on a blocking thread: do not wait for it.
    runtime.shutdown_background();
    let report = report?;
    let text = serde_json::to_vec_pretty(&report)?;
    std::fs::write(&args.report, text)
        .with_context(|| format!("writing {}", args.report.display()))?;
    Ok(())
}

struct Ctx {
    args: LoadArgs,
    stop: AtomicBool,
    started: AtomicU64,
    /// Fresh (non-resume) sessions of the resume role, which claim no quota.
    fresh: AtomicU64,
    checks: Mutex<Option<Checks>>,
}

/// Where the resume role's fresh sessions number from (quota sessions
/// number from 0).
const FRESH_IDS: u64 = 1 << 40;

impl Ctx {
    /// Claims the next session, or `None` when done.
    fn next_session(&self) -> Option<u64> {
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        let k = self.started.fetch_add(1, Ordering::SeqCst);
        if self.args.ops > 0 && k >= self.args.ops {
            self.stop.store(true, Ordering::SeqCst);
            return None;
        }
        Some(k)
    }

    fn source(&self, k: u64) -> IpAddr {
        let n = self.args.sources.len() as u64;
        self.args.sources[usize::try_from(k % n).unwrap_or(0)]
    }

    /// Opens `path` on gateway `k` (modulo their number) or, when it does
    /// not accept connections (a cluster instance being restarted), on the
    /// next ones; returns the response and which gateway gave it.
    async fn open(
        &self,
        k: u64,
        source: IpAddr,
        path: &str,
        last_id: Option<&str>,
        reset: bool,
    ) -> Result<(hyper::Response<Incoming>, usize), String> {
        let n = self.args.gateway.len();
        let first = usize::try_from(k % n as u64).unwrap_or(0);
        let mut last = Err("no gateway".to_string());
        for i in 0..n {
            let index = (first + i) % n;
            last = open(self.args.gateway[index], source, path, last_id, reset)
                .await
                .map(|r| (r, index));
            if !matches!(&last, Err(e) if e.starts_with("connect")) {
                break;
            }
        }
        last
    }

    fn with<R>(&self, f: impl FnOnce(&mut Checks) -> R) -> Option<R> {
        lock(&self.checks).as_mut().map(f)
    }
}

async fn run(args: LoadArgs) -> Result<Report> {
    let _ = TOKEN.set(args.token.clone());
    let ctx = Arc::new(Ctx {
        checks: Mutex::new(Some(Checks::new(&args.role)?)),
        args,
        stop: AtomicBool::new(false),
        started: AtomicU64::new(0),
        fresh: AtomicU64::new(0),
    });
    // Stdin closing (the harness's signal) stops every worker.
    let watcher = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            ctx.stop.store(true, Ordering::SeqCst);
        })
    };
    let role = ctx.args.role.clone();
    let workers = match role.as_str() {
        "checker" => ctx.args.topics.len() + 2 + usize::from(ctx.args.packed_topics.len() >= 2),
        "churn" | "resume" | "slow" => ctx.args.concurrency.max(1),
        other => bail!("unknown role {other:?}: churn, resume, checker or slow"),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let ctx = ctx.clone();
        let role = role.clone();
        tasks.spawn(async move {
            let mut rng = Rng(ctx.args.seed ^ (worker as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
            match role.as_str() {
                "churn" => churn(&ctx, &mut rng).await,
                "resume" => resume(&ctx, &mut rng).await,
                "checker" => checker(&ctx, worker).await,
                _ => slow(&ctx).await,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    watcher.abort();
    let checks = lock(&ctx.checks).take();
    Ok(checks.map(Checks::finish).unwrap_or_default())
}

/// Reads events until `want` quotes, the end, or a timeout.
async fn read_quotes(
    ctx: &Ctx,
    id: u64,
    stream: &mut Stream,
    want: u64,
    deadline: Duration,
    mut on_quote: impl FnMut(&str, u64),
) -> Result<(), String> {
    let mut got = 0;
    let read = async {
        while got < want {
            let Some(event) = stream.next_event().await? else {
                return Err("ended".to_string());
            };
            if let Some(Seen::Quote { topic, n }) = ctx.with(|c| c.event(id, &event, false)) {
                on_quote(&topic, n);
                got += 1;
            }
        }
        Ok(())
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| "timeout".to_string())?
}

async fn churn(ctx: &Ctx, rng: &mut Rng) {
    let topics = &ctx.args.topics;
    while let Some(k) = ctx.next_session() {
        let reset = rng.below(100) < ctx.args.reset_percent;
        let packed = &ctx.args.packed_topics;
        let path = if packed.len() > 2 && rng.below(100) < 10 {
            // A packed topic the checkers do not hold: its group (with
            // theirs) re-packs as it comes and goes.
            let others = packed.len() as u64 - 2;
            let index = 2 + usize::try_from(rng.below(others)).unwrap_or(0);
            format!("/v1/stream/{}", packed[index])
        } else if rng.below(100) < 20 {
            // Multi-topic: two or three topics on one stream.
            // Two or three distinct topics on one stream.
            let n = (2 + rng.below(2)).min(topics.len() as u64);
            let start = rng.below(topics.len() as u64);
            let chosen: Vec<String> = (0..n)
                .map(|i| {
                    let index = usize::try_from((start + i * 7) % topics.len() as u64).unwrap_or(0);
                    format!("topic={}", topics[index])
                })
                .collect();
            format!("/v1/stream?{}", chosen.join("&"))
        } else {
            let t = &topics[usize::try_from(rng.below(topics.len() as u64)).unwrap_or(0)];
            format!("/v1/stream/{t}")
        };
        let outcome = match ctx.open(k, ctx.source(k), &path, None, reset).await {
            Ok((response, _)) => {
                let mut stream = Stream::new(response);
                let want = 1 + rng.below(4);
                let outcome =
                    read_quotes(ctx, k, &mut stream, want, Duration::from_secs(5), |_, _| {}).await;
                ctx.with(|c| c.end_stream(k));
                outcome
            }
            Err(e) => Err(e),
        };
        pause(ctx).await;
        ctx.with(|c| {
            c.report.sessions += 1;
            c.report.resets_sent += u64::from(reset);
            match outcome {
                Ok(()) => c.report.sessions_ok += 1,
                Err(e) => c.failure(e),
            }
        });
    }
}

async fn resume(ctx: &Ctx, rng: &mut Rng) {
    let topics = &ctx.args.topics;
    // A chain: a fresh session, then resumes of it, each going on with
    // probability 3/4 (4 sessions a chain on average). The quota (`--ops`)
    // counts resumes, not sessions: a fresh session claims no quota, so a
    // round's resume count is its plan, whatever the chains' lengths.
    // (topic, id, last n, the gateway that served it)
    let mut chain: Option<(String, String, u64, usize)> = None;
    loop {
        // A resume goes to the next gateway: with a cluster, every resume
        // crosses instances.
        let (k, gateway, topic, last_id, last_n) = match chain.take() {
            Some((t, id, n, g)) => {
                let Some(k) = ctx.next_session() else { break };
                (k, g as u64 + 1, t, Some(id), Some(n))
            }
            None => {
                if ctx.stop.load(Ordering::SeqCst) {
                    break;
                }
                // Ids of fresh sessions live above every quota's.
                let k = FRESH_IDS + ctx.fresh.fetch_add(1, Ordering::SeqCst);
                let t = &topics[usize::try_from(rng.below(topics.len() as u64)).unwrap_or(0)];
                (k, k, t.clone(), None, None)
            }
        };
        let path = format!("/v1/stream/{topic}");
        let mut first: Option<u64> = None;
        let mut reset_seen = false;
        let mut last = last_n.unwrap_or(0);
        let outcome = match ctx
            .open(gateway, ctx.source(k), &path, last_id.as_deref(), false)
            .await
        {
            Ok((response, served_by)) => {
                let mut stream = Stream::new(response);
                let want = 1 + rng.below(5);
                let read = async {
                    let mut got = 0;
                    while got < want {
                        let Some(event) = stream.next_event().await? else {
                            return Err("ended".to_string());
                        };
                        match ctx.with(|c| c.event(k, &event, false)) {
                            Some(Seen::Quote { n, .. }) => {
                                first.get_or_insert(n);
                                last = n;
                                got += 1;
                            }
                            Some(Seen::Reset) => reset_seen = true,
                            _ => {}
                        }
                    }
                    Ok(())
                };
                let outcome = tokio::time::timeout(Duration::from_secs(5), read)
                    .await
                    .map_err(|_| "timeout".to_string())
                    .and_then(|r| r);
                ctx.with(|c| c.end_stream(k));
                if outcome.is_ok() && rng.below(4) != 0 {
                    chain = Some((topic.clone(), stream.last_id(), last, served_by));
                }
                outcome
            }
            Err(e) => Err(e),
        };
        ctx.with(|c| {
            c.report.sessions += 1;
            if let Some(previous) = last_n {
                c.report.resumes += 1;
                if reset_seen {
                    c.report.resumes_reset += 1;
                } else if first == Some(previous + 1) {
                    c.report.resumes_exact += 1;
                } else if let Some(f) = first {
                    // The session checks only within itself: account the
                    // break at the resume here.
                    if f > previous + 1 {
                        c.report.missing += f - previous - 1;
                    } else {
                        c.report.duplicates += 1;
                    }
                }
            }
            match outcome {
                Ok(()) => c.report.sessions_ok += 1,
                Err(e) => c.failure(e),
            }
        });
        // A short absence before coming back.
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        pause(ctx).await;
    }
}

/// One long-lived subscriber: worker `w` < topics holds topic `w`; the last
/// two hold half the topics each on one multi-topic stream.
async fn checker(ctx: &Ctx, w: usize) {
    let topics = &ctx.args.topics;
    let path = if w < topics.len() {
        format!("/v1/stream/{}", topics[w])
    } else if w == topics.len() + 2 {
        // The packed route's held topics, on one stream.
        let packed = &ctx.args.packed_topics;
        format!("/v1/stream?topic={}&topic={}", packed[0], packed[1])
    } else {
        let half = topics.len().div_ceil(2);
        let part: Vec<&String> = if w == topics.len() {
            topics.iter().take(half).collect()
        } else {
            topics.iter().skip(half).collect()
        };
        let query: Vec<String> = part.iter().map(|t| format!("topic={t}")).collect();
        format!("/v1/stream?{}", query.join("&"))
    };
    let source = ctx.source(w as u64);
    let mut last_id: Option<String> = None;
    let mut first = true;
    while !ctx.stop.load(Ordering::SeqCst) {
        if !first {
            ctx.with(|c| c.report.reconnects += 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first = false;
        // Each reconnection goes to the next gateway: with a cluster, the
        // checker resumes on another instance every time.
        let attempt = w as u64 + ctx.with(|c| c.report.reconnects).unwrap_or(0);
        let response = match ctx
            .open(attempt, source, &path, last_id.as_deref(), false)
            .await
        {
            Ok((response, _)) => response,
            Err(e) => {
                ctx.with(|c| c.failure(e));
                continue;
            }
        };
        ctx.with(|c| c.report.sessions += 1);
        let mut stream = Stream::new(response);
        loop {
            let next = tokio::select! {
                next = stream.next_event() => next,
                () = wait_stop(ctx) => {
                    ctx.with(|c| c.report.sessions_ok += 1);
                    return;
                }
            };
            match next {
                Ok(Some(event)) => {
                    ctx.with(|c| c.event(w as u64 | 1 << 63, &event, true));
                    last_id = Some(stream.last_id());
                }
                Ok(None) => {
                    ctx.with(|c| c.failure("ended"));
                    break;
                }
                Err(e) => {
                    ctx.with(|c| c.failure(e));
                    break;
                }
            }
        }
    }
}

/// The configured pause between sessions, cut short by a stop.
async fn pause(ctx: &Ctx) {
    if ctx.args.pause_ms > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ctx.args.pause_ms)) => {}
            () = wait_stop(ctx) => {}
        }
    }
}

async fn wait_stop(ctx: &Ctx) {
    while !ctx.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn slow(ctx: &Ctx) {
    let topics = &ctx.args.topics;
    while let Some(k) = ctx.next_session() {
        // Many topics on one stream: the queue fills fast. Even sessions
        // take topics from the fourth on (the `disconnect` policy: the
        // gateway must cut them); odd ones start at the first (the
        // soak's drop-oldest and conflate topics: they are kept).
        let (first, count) = if k % 2 == 0 {
            (3.min(topics.len() - 1), 12)
        } else {
            (0, 8)
        };
        let query: Vec<String> = topics
            .iter()
            .skip(first)
            .take(count)
            .map(|t| format!("topic={t}"))
            .collect();
        let path = format!("/v1/stream?{}", query.join("&"));
        let response = match ctx.open(k, ctx.source(k), &path, None, false).await {
            Ok((response, _)) => response,
            Err(e) => {
                ctx.with(|c| c.failure(e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        ctx.with(|c| c.report.sessions += 1);
        // Stop reading (the body is not polled, so nothing is read).
        let stall = Duration::from_millis(ctx.args.stall_ms);
        tokio::select! {
            () = tokio::time::sleep(stall) => {}
            () = wait_stop(ctx) => {}
        }
        // Then read on: a stream the gateway cut ends within a few seconds.
        let mut body = response.into_body();
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        })
        .await;
        ctx.with(|c| {
            if drained.is_ok() {
                c.report.slow_cut += 1;
                c.report.sessions_ok += 1;
            } else {
                c.report.slow_not_cut += 1;
            }
        });
    }
}

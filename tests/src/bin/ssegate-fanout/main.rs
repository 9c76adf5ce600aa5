//! `ssegate-fanout`: the fan-out benchmark (`cargo xtask bench fanout`).
//!
//! One upstream topic fanned out to 100, 1,000 and 10,000 subscribers held
//! by a separate load process (`ssegate-fanout load`), for ssegate and, with
//! `--peer nchan`, for nginx with nchan in the same run, each upstream event
//! published to nchan over HTTP. For each server and subscriber count:
//!
//! - **accept**: the time until every subscriber has its response head;
//! - **memory per idle subscriber**: the server's proportional set size
//!   (PSS, summed over nginx's processes) with the subscribers connected and
//!   idle, minus before, divided by the count;
//! - **delivered events/s**: bursts of events published back to back; the
//!   deliveries (events x subscribers) over the time from the first publish
//!   to the last delivery, with the server's CPU over the bursts;
//! - **latency**: at a fixed rate (20 events/s), from the publish time in
//!   each event (microseconds) to its arrival, p50 and p99.
//!
//! Then, with 10,000 subscribers: the server's CPU when idle (15 s
//! heartbeats), and its memory over four cycles of 10,000 connects and
//! disconnects. Results go to `target/bench/fanout/` (JSON and Markdown);
//! `--update-readme` writes the table into the README.

mod load;
mod servers;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

use crate::servers::{Publisher, Server};

#[derive(Parser)]
#[command(
    name = "ssegate-fanout",
    version,
    about = "The ssegate fan-out benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the benchmark.
    Run(RunArgs),
    /// The subscriber process (started by `run`).
    Load(load::LoadArgs),
}

#[derive(clap::Args, Clone)]
pub(crate) struct RunArgs {
    /// The ssegate binary (a release build).
    #[arg(long)]
    ssegate: PathBuf,
    /// Also measure this peer in the same run (`nchan`: nginx-light with
    /// libnginx-mod-nchan).
    #[arg(long)]
    peer: Option<String>,
    /// Also measure this other ssegate binary in the same run (an earlier
    /// build, say), as `baseline`: a change's before and after side by
    /// side, the ratio column ssegate / baseline.
    #[arg(long, conflicts_with = "peer")]
    baseline: Option<PathBuf>,
    /// Also measure ssegate over TLS in the same run: HTTP/1.1
    /// (`ssegate-tls`) and HTTP/2 (`ssegate-h2`, 20 streams a connection,
    /// like a dashboard), each next to cleartext HTTP/1.1.
    #[arg(long)]
    tls: bool,
    /// Only 100 subscribers, short phases (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Only these subscriber counts (comma-separated), e.g. `1000`.
    #[arg(long, value_delimiter = ',')]
    counts: Vec<u64>,
    /// Skip the idle-CPU and connect/disconnect-cycle phases.
    #[arg(long)]
    no_long: bool,
    /// Where the results go.
    #[arg(long, default_value = "target/bench/fanout")]
    out: PathBuf,
    /// Write the table between the fanout markers of this README.
    #[arg(long)]
    update_readme: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(&args),
        Cmd::Load(args) => load::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssegate-fanout: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long memory may take to be returned after subscribers leave.
const SETTLE: Duration = Duration::from_secs(3);

/// The figures of one server at one subscriber count.
#[derive(Debug, Clone, Default, Serialize)]
struct Step {
    subscribers: u64,
    accept_secs: f64,
    failed: u64,
    idle_bytes_per_subscriber: f64,
    delivered_per_sec: f64,
    burst_cpu_percent: f64,
    lost: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_samples: u64,
}

/// Everything measured for one server.
#[derive(Debug, Clone, Default, Serialize)]
struct Outcome {
    server: String,
    steps: Vec<Step>,
    idle_cpu_percent: Option<f64>,
    /// PSS (MiB) before the cycles, then after each connect and disconnect.
    cycles_mib: Vec<(f64, f64)>,
    baseline_mib: f64,
}

/// The subscriber process.
struct Load {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// HTTP/2 streams per connection in the `ssegate-h2` runs.
const H2_STREAMS: u64 = 20;

impl Load {
    fn spawn(server: &Server, name: &str) -> Result<Self> {
        // Eight source addresses: room for ephemeral ports over the cycles.
        let sources: Vec<String> = (2..10).map(|i| format!("127.0.0.{i}")).collect();
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "load",
                "--server",
                &server.addr.to_string(),
                "--path",
                &server.path,
            ])
            .arg("--sources")
            .arg(sources.join(","));
        if let Some(ca) = &server.ca {
            command.arg("--tls").arg(ca);
        }
        if name == "ssegate-h2" {
            command.args(["--h2-streams", &H2_STREAMS.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the load process")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    fn ask(&mut self, command: &str) -> Result<Value> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the load process ended (command {command:?})");
        }
        serde_json::from_str(&line).with_context(|| format!("answer to {command:?}: {line}"))
    }

    fn events(&mut self) -> Result<u64> {
        Ok(self.ask("stats")?["events"].as_u64().unwrap_or(0))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &RunArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut outcomes = Vec::new();
    let mut servers = vec!["ssegate".to_string()];
    if let Some(peer) = &args.peer {
        if peer != "nchan" {
            bail!("--peer: only nchan is known");
        }
        servers.push(peer.clone());
    }
    if args.baseline.is_some() {
        servers.push("baseline".into());
    }
    if args.tls {
        servers.push("ssegate-tls".into());
        servers.push("ssegate-h2".into());
    }
    for name in &servers {
        println!("== {name}");
        let outcome = runtime.block_on(measure(args, name))?;
        outcomes.push(outcome);
    }
    let table = table(&outcomes, args.quick);
    println!("\n{table}");
    std::fs::write(args.out.join("fanout.md"), &table)?;
    std::fs::write(
        args.out.join("fanout.json"),
        serde_json::to_string_pretty(&outcomes)?,
    )?;
    if let Some(readme) = &args.update_readme {
        write_readme(readme, &table)?;
    }
    Ok(())
}

/// Every phase against one server.
async fn measure(args: &RunArgs, name: &str) -> Result<Outcome> {
    let dir = args.out.join(name);
    std::fs::create_dir_all(&dir)?;
    let server = Server::start(name, &args.ssegate, args.baseline.as_deref(), &dir).await?;
    let mut publisher = Publisher::connect(&server).await?;
    let mut load = Load::spawn(&server, name)?;
    let counts: &[u64] = if !args.counts.is_empty() {
        &args.counts
    } else if args.quick {
        &[100]
    } else {
        &[100, 1000, 10_000]
    };
    let mut outcome = Outcome {
        server: name.to_string(),
        ..Outcome::default()
    };
    // The stream exists upstream before anyone measures (ssegate opens it
    // with the first subscriber and keeps it for its linger).
    load.ask("connect 1")?;
    publisher.publish_burst(5).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.ask("close")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for &n in counts {
        let step = measure_step(args, &server, &mut publisher, &mut load, n).await?;
        println!(
            "  {n:>6} subscribers: accept {:.2} s, {:.0} B/idle subscriber, {:.0} events/s delivered (CPU {:.0} %), latency p50 {:.2} ms p99 {:.2} ms",
            step.accept_secs,
            step.idle_bytes_per_subscriber,
            step.delivered_per_sec,
            step.burst_cpu_percent,
            step.latency_p50_ms,
            step.latency_p99_ms
        );
        outcome.steps.push(step);
    }
    if !args.quick && !args.no_long {
        // Idle CPU with 10,000 subscribers and 15 s heartbeats.
        load.ask("connect 10000")?;
        // Past the connections' setup and the allocator's purge of what
        // the earlier phases freed: only heartbeats from here on.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let window = Duration::from_secs(30);
        let cpu = server.cpu_secs()?;
        tokio::time::sleep(window).await;
        let idle = (server.cpu_secs()? - cpu) / window.as_secs_f64() * 100.0;
        println!("  idle CPU with 10,000 subscribers: {idle:.2} % of a core");
        outcome.idle_cpu_percent = Some(idle);
        load.ask("close")?;
        server.wait_subscribers(0).await?;
        // Four cycles of 10,000 connects and disconnects. Memory is read
        // after a settle time (allocators return freed pages with a delay).
        tokio::time::sleep(SETTLE).await;
        outcome.baseline_mib = mib(server.pss()?);
        for cycle in 0..4 {
            load.ask("connect 10000")?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let connected = mib(server.pss()?);
            load.ask("close")?;
            server.wait_subscribers(0).await?;
            tokio::time::sleep(SETTLE).await;
            let released = mib(server.pss()?);
            println!(
                "  cycle {}: {connected:.1} MiB with 10,000, {released:.1} MiB after",
                cycle + 1
            );
            outcome.cycles_mib.push((connected, released));
        }
    }
    drop(load);
    server.stop()?;
    Ok(outcome)
}

async fn measure_step(
    args: &RunArgs,
    server: &Server,
    publisher: &mut Publisher,
    load: &mut Load,
    n: u64,
) -> Result<Step> {
    server.wait_subscribers(0).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.pss()?;
    let connected = load.ask(&format!("connect {n}"))?;
    let accept_secs = connected["secs"].as_f64().unwrap_or(0.0);
    let failed = connected["failed"].as_u64().unwrap_or(0);
    server.wait_subscribers(n - failed).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.pss()?;
    let per = (idle.saturating_sub(before)) as f64 / n as f64;

    // Bursts: E events back to back, until every subscriber has them all.
    let per_burst: u64 = (400_000 / n).clamp(20, 1000);
    let bursts = if args.quick { 3 } else { 8 };
    let mut delivered = 0u64;
    let mut elapsed = Duration::ZERO;
    let mut lost = 0;
    let cpu = server.cpu_secs()?;
    for _ in 0..bursts {
        load.ask("reset")?;
        let start = Instant::now();
        publisher.publish_burst(per_burst).await?;
        let want = per_burst * (n - failed);
        let deadline = start + Duration::from_secs(60);
        let mut got = load.events()?;
        while got < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
            got = load.events()?;
        }
        elapsed += start.elapsed();
        delivered += got.min(want);
        lost += want.saturating_sub(got);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let burst_cpu = (server.cpu_secs()? - cpu) / elapsed.as_secs_f64() * 100.0;

    // Latency at 20 events/s.
    load.ask("reset")?;
    load.ask("latency on")?;
    let seconds = if args.quick { 2 } else { 5 };
    publisher
        .publish_paced(20, Duration::from_secs(seconds))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = load.ask("stats")?;
    load.ask("latency off")?;
    load.ask("close")?;
    Ok(Step {
        subscribers: n,
        accept_secs,
        failed,
        idle_bytes_per_subscriber: per,
        delivered_per_sec: delivered as f64 / elapsed.as_secs_f64(),
        burst_cpu_percent: burst_cpu,
        lost,
        latency_p50_ms: stats["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        latency_p99_ms: stats["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        latency_samples: stats["samples"].as_u64().unwrap_or(0),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The Markdown table, with ratios ssegate / peer when there is a peer.
fn table(outcomes: &[Outcome], quick: bool) -> String {
    let mut out = String::new();
    let names: Vec<&str> = outcomes.iter().map(|o| o.server.as_str()).collect();
    out.push_str(&format!(
        "Fan-out of one topic ({}; {}subscribers in a separate process on the same 2-core machine).\n\n",
        names.join(" vs "),
        if quick { "quick run, " } else { "" }
    ));
    let by_n = |o: &Outcome, n: u64| o.steps.iter().find(|s| s.subscribers == n).cloned();
    let ours = &outcomes[0];
    let ratios = ratios(&names);
    out.push_str("| subscribers | measure |");
    for name in &names {
        out.push_str(&format!(" {name} |"));
    }
    for (a, b) in &ratios {
        out.push_str(&format!(" {} / {} |", names[*a], names[*b]));
    }
    out.push('\n');
    out.push_str("|---:|---|");
    for _ in names.iter().chain(ratios.iter().map(|_| &"")) {
        out.push_str("---:|");
    }
    out.push('\n');
    type Measure = fn(&Step) -> f64;
    let rows: [(&str, Measure); 7] = [
        ("delivered events/s", |s| s.delivered_per_sec),
        ("latency p50 at 20 events/s, ms", |s| s.latency_p50_ms),
        ("latency p99 at 20 events/s, ms", |s| s.latency_p99_ms),
        ("memory per idle subscriber, KiB", |s| {
            s.idle_bytes_per_subscriber / 1024.0
        }),
        ("time to accept all, s", |s| s.accept_secs),
        ("server CPU during bursts, % of a core", |s| {
            s.burst_cpu_percent
        }),
        ("server CPU per delivery, µs", |s| {
            if s.delivered_per_sec > 0.0 {
                s.burst_cpu_percent / 100.0 / s.delivered_per_sec * 1e6
            } else {
                0.0
            }
        }),
    ];
    for step in &ours.steps {
        for (label, get) in &rows {
            out.push_str(&format!("| {} | {label} |", step.subscribers));
            let mut values = Vec::new();
            for o in outcomes {
                let v = by_n(o, step.subscribers).map(|s| get(&s));
                values.push(v);
                match v {
                    Some(v) => out.push_str(&format!(" {} |", fmt_value(v))),
                    None => out.push_str(" - |"),
                }
            }
            for (a, b) in &ratios {
                match (values[*a], values[*b]) {
                    (Some(a), Some(b)) if b > 0.0 => out.push_str(&format!(" {:.2}x |", a / b)),
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
    }
    for o in outcomes {
        if let Some(idle) = o.idle_cpu_percent {
            out.push_str(&format!(
                "\n{}: idle CPU with 10,000 subscribers and 15 s heartbeats: {idle:.2} % of a core.",
                o.server
            ));
        }
        if !o.cycles_mib.is_empty() {
            let first = o.cycles_mib[0].0;
            let last = o.cycles_mib[o.cycles_mib.len() - 1];
            out.push_str(&format!(
                "\n{}: memory (PSS) over 4 cycles of 10,000 connects and disconnects: {:.1} MiB before; connected {}; after each disconnect {}; growth from the first to the last cycle {:+.1} %, and {:.1} MiB kept after the last.",
                o.server,
                o.baseline_mib,
                o.cycles_mib.iter().map(|c| format!("{:.1}", c.0)).collect::<Vec<_>>().join(", "),
                o.cycles_mib.iter().map(|c| format!("{:.1}", c.1)).collect::<Vec<_>>().join(", "),
                (last.0 - first) / first * 100.0,
                last.1 - o.baseline_mib,
            ));
        }
    }
    out.push('\n');
    out
}

/// The ratio columns, as (numerator, denominator) indexes into `names`:
/// ssegate over a peer or a baseline, each TLS variant over cleartext
/// ssegate.
fn ratios(names: &[&str]) -> Vec<(usize, usize)> {
    let at = |name: &str| names.iter().position(|n| *n == name);
    let mut ratios = Vec::new();
    let Some(ours) = at("ssegate") else {
        return ratios;
    };
    for peer in ["nchan", "baseline"] {
        if let Some(peer) = at(peer) {
            ratios.push((ours, peer));
        }
    }
    for variant in ["ssegate-tls", "ssegate-h2"] {
        if let Some(variant) = at(variant) {
            ratios.push((variant, ours));
        }
    }
    ratios
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

const START: &str = "<!-- fanout-table:start -->";
const END: &str = "<!-- fanout-table:end -->";

fn write_readme(path: &std::path::Path, table: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        bail!("{} has no {START} ... {END} markers", path.display());
    };
    let updated = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    std::fs::write(path, updated)?;
    println!("updated {}", path.display());
    Ok(())
}

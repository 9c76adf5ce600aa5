//! `sse-upstream-sim`: runs the simulated market feed on loopback until
//! Ctrl-C (or SIGTERM), optionally with a seeded fault schedule whose
//! injections and stream log go to stdout as JSON lines (for the soak).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use sse_upstream_sim::{Chaos, Sim, SimHandle};

/// A synthetic SSE market feed on loopback, for trying SSE clients.
#[derive(Parser)]
#[command(name = "sse-upstream-sim", version)]
struct Args {
    /// The loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The topics, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "AAPL,MSFT,GOOG,AMZN,TSLA"
    )]
    topics: Vec<String>,
    /// Events per second per topic.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds between heartbeat comments.
    #[arg(long, default_value_t = 15)]
    heartbeat_secs: u64,
    /// Milliseconds between heartbeat comments (overrides --heartbeat-secs).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Events kept per topic for Last-Event-ID replay.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
    /// The seed of the price walks and of the fault schedule.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inject a fault every this many milliseconds on average (0: never).
    #[arg(long, default_value_t = 0)]
    chaos_every_ms: u64,
    /// How long an injected restart refuses connections, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    restart_downtime_ms: u64,
    /// The time between bytes of an injected drip, in milliseconds.
    #[arg(long, default_value_t = 200)]
    drip_interval_ms: u64,
    /// The length of an injected endless line, in bytes.
    #[arg(long, default_value_t = 2 << 20)]
    endless_bytes: usize,
    /// Print every injection and every stream start and end as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sse-upstream-sim: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sse-upstream-sim: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let heartbeat = args.heartbeat_ms.map_or_else(
        || Duration::from_secs(args.heartbeat_secs.max(1)),
        |ms| Duration::from_millis(ms.max(10)),
    );
    let sim = Sim::builder()
        .topics(args.topics.clone())
        .events_per_sec(args.rate)
        .heartbeat(heartbeat)
        .history(args.history)
        .seed(args.seed)
        .log_streams(args.log_json)
        .start(&args.listen)
        .await
        .with_context(|| format!("cannot start the simulator on {}", args.listen))?;
    println!("sse-upstream-sim listening on {}", sim.url());
    if !args.log_json {
        for topic in &args.topics {
            println!("  curl -N {}", sim.stream_url(topic));
        }
    }
    let chaos = async {
        if args.chaos_every_ms == 0 {
            return std::future::pending().await;
        }
        Chaos::new(args.seed, Duration::from_millis(args.chaos_every_ms))
            .downtime(Duration::from_millis(args.restart_downtime_ms))
            .drip_interval(Duration::from_millis(args.drip_interval_ms.max(1)))
            .endless_bytes(args.endless_bytes)
            .run(&sim, |injection| {
                if args.log_json {
                    let line = json!({
                        "t": unix_ms(injection.at),
                        "ev": "inject",
                        "topic": injection.topic,
                        "kind": injection.kind,
                    });
                    println!("{line}");
                }
            })
            .await;
    };
    let log = async {
        if !args.log_json {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            print_log(&sim);
        }
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    };
    let stopped = tokio::select! {
        r = stop => r,
        () = chaos => Ok(()),
        () = log => Ok(()),
    };
    if args.log_json {
        print_log(&sim);
    }
    sim.shutdown().await;
    stopped
}

fn print_log(sim: &SimHandle) {
    let (entries, dropped) = sim.take_log();
    if dropped > 0 {
        let line = json!({"t": unix_ms(SystemTime::now()), "ev": "log-dropped", "n": dropped});
        println!("{line}");
    }
    for entry in entries {
        let line = json!({
            "t": unix_ms(entry.at),
            "ev": if entry.ended { "end" } else { "start" },
            "topic": entry.topic,
            "fault": entry.fault,
        });
        println!("{line}");
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    u64::try_from(
        at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

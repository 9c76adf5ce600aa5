//! `sse-upstream-sim`: runs the simulated market feed on loopback until
//! Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sse_upstream_sim::Sim;

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
    let sim = Sim::builder()
        .topics(args.topics.clone())
        .events_per_sec(args.rate)
        .heartbeat(Duration::from_secs(args.heartbeat_secs.max(1)))
        .start(&args.listen)
        .await
        .with_context(|| format!("cannot start the simulator on {}", args.listen))?;
    println!("sse-upstream-sim listening on {}", sim.url());
    for topic in &args.topics {
        println!("  curl -N {}", sim.stream_url(topic));
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}

//! `ssegate-soak`: proves that the one-to-three-day failure is gone.
//!
//! `cargo xtask soak` builds the release binaries (the gateway with its
//! `soak` feature: a counting allocator and `/debug/vars`) and runs this.
//! It starts `sse-upstream-sim` with a seeded fault schedule and `ssegate`
//! as child processes, with the gateway's durations compressed by a time
//! scale; runs rounds of load from separate processes (churn, resumes,
//! long-lived order checkers, slow consumers) over several 127.x.y.z source
//! addresses; samples `/debug/vars` at 1 Hz into a CSV and checks the
//! conservation invariants at every sample; after every round holds a quiet
//! checkpoint that must equal the baseline; fits heap growth against
//! operations and extrapolates it to 72 production hours; and writes a
//! verdict (JSON), a chart (SVG) and a summary that ends with
//! `N passed, N failed`. The exit status is non-zero if any gate fails.
//!
//! See "How the soak decides" in the repository's README.

mod chart;
mod cluster;
mod cluster_verdict;
mod harness;
mod load;
mod outage;
mod plan;
mod report;
mod sample;
mod verdict;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::harness::{Binaries, Options};
use crate::plan::{Mode, Plan};

#[derive(Parser)]
#[command(name = "ssegate-soak", version, about = "The ssegate soak harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a soak and judges it.
    Run(RunArgs),
    /// A load generator (started by `run`, one per role).
    Load(load::LoadArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// At most 10 minutes, at least 10 % of the 72-hour counts (CI).
    #[arg(long, conflicts_with_all = ["full", "wall", "quick"])]
    ci: bool,
    /// The whole 72-hour counts, about an hour.
    #[arg(long, conflicts_with_all = ["wall", "quick"])]
    full: bool,
    /// Real time at production durations for this long (e.g. `6h`).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "quick")]
    wall: Option<Duration>,
    /// A short run of three rounds (the leak-injection check).
    #[arg(long)]
    quick: bool,
    /// Overrides the mode's time scale.
    #[arg(long)]
    time_scale: Option<f64>,
    /// Seed of the fault schedule and the load's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Switches on the gateway's deliberate leak (one entry per released
    /// subscriber): the run must fail.
    #[arg(long)]
    inject_leak: bool,
    /// Three gateways in cluster mode on one NATS (`nats-server` from
    /// `NATS_SERVER` or the `PATH`), with scheduled owner kills and one
    /// NATS restart.
    #[arg(long)]
    cluster: bool,
    /// Where `ssegate` and `sse-upstream-sim` are (default: next to this
    /// program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The output directory (default: `target/soak/<timestamp>`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => load::main(args).map(|()| true),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("ssegate-soak: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> Result<bool> {
    let mode = match (args.ci, args.full, args.wall, args.quick) {
        (_, true, _, _) => Mode::Full,
        (_, _, Some(d), _) => {
            if d < Duration::from_secs(600) {
                bail!("--wall needs at least 10m");
            }
            Mode::Wall(d)
        }
        (_, _, _, true) => Mode::Quick,
        _ => Mode::Ci,
    };
    let mut plan = Plan::new(mode, args.seed);
    if args.cluster && mode == Mode::Quick {
        // The cluster's short form (in CI): seven rounds, so that the growth
        // fit of the instance that is never killed has seven points (with
        // three, its 95 % bound is too wide to mean anything), and a killed
        // process gets a warm-up round, a baseline and comparisons.
        plan.rounds = 7;
    }
    if let Some(scale) = args.time_scale {
        if !(scale.is_finite() && scale >= 1.0) {
            bail!("--time-scale must be at least 1");
        }
        plan.time_scale = scale;
    }
    let exe = std::env::current_exe().context("locating ssegate-soak")?;
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => exe
            .parent()
            .map(PathBuf::from)
            .context("ssegate-soak has no directory")?,
    };
    let out = match args.out {
        Some(out) => out,
        None => {
            let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .replace(':', "-");
            // target/release/ssegate-soak -> target/soak/<stamp>
            let target = bin_dir
                .parent()
                .map_or_else(|| PathBuf::from("target"), PathBuf::from);
            target.join("soak").join(stamp)
        }
    };
    let options = Options {
        plan: plan.clone(),
        out: out.clone(),
        binaries: Binaries::in_dir(&bin_dir)?,
        inject_leak: args.inject_leak,
    };
    eprintln!(
        "soak: {:?}, time scale {}, {} rounds after a warm-up, output in {}",
        plan.mode,
        plan.time_scale,
        plan.rounds,
        out.display()
    );
    if args.cluster {
        return run_cluster(&options, &out);
    }
    let record = harness::run(&options)?;
    let verdict = verdict::judge(&plan, &record, args.inject_leak);
    if let Err(e) = chart::draw(&record, &out) {
        eprintln!("soak: the chart could not be drawn: {e:#}");
    }
    report(&out, &verdict, &record.checkpoints)
}

/// Writes the verdict and the checkpoints to `out`, prints the summary,
/// and says whether every gate passed.
fn report(
    out: &std::path::Path,
    verdict: &verdict::Verdict,
    checkpoints: &impl serde::Serialize,
) -> Result<bool> {
    std::fs::write(
        out.join("verdict.json"),
        serde_json::to_vec_pretty(verdict)?,
    )?;
    std::fs::write(
        out.join("checkpoints.json"),
        serde_json::to_vec_pretty(checkpoints)?,
    )?;
    println!("{}", verdict::summary(verdict));
    println!("(details: {})", out.display());
    Ok(verdict.passed)
}

fn run_cluster(options: &Options, out: &std::path::Path) -> Result<bool> {
    let plan = &options.plan;
    let (kills, nats_round) = cluster::schedule(plan);
    eprintln!(
        "soak --cluster: {} instances, owner kills in rounds {kills:?}, NATS restart in round {nats_round}",
        cluster::INSTANCES
    );
    let record = cluster::run(options)?;
    let verdict = cluster_verdict::judge(plan, &record, kills.len(), nats_round);
    report(out, &verdict, &record.checkpoints)
}

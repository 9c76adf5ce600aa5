//! Repository automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks, with a summary; non-zero exit on any failure.
//! - `bench`: the criterion benchmarks against peer crates, as a ratio table.
//! - `soak`: the soak harness (`--ci`, `--full`, `--wall 6h`), also part of
//!   `ci` with its leak-injection check.
//! - `tidy`: the repository's rules (layering, lints, docs), also part of `ci`.

mod bench;
mod cmd;
mod soak;
mod tidy;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::cmd::{cargo, project_root, run};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ssegate repository automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every check CI runs: fmt, clippy, tests, fuzz corpus replay, docs,
    /// cargo-deny, tidy, the alert rules, a smoke run of the benchmarks, the
    /// leak-injection check, `soak --ci`, the short cluster soak and a quick
    /// fan-out run.
    Ci {
        /// Keep going after a failed step (the default stops at the first).
        #[arg(long)]
        keep_going: bool,
    },
    /// Run the parser benchmarks against the peer crates and print the ratios;
    /// `bench fanout` runs the fan-out benchmark (ssegate, and `--peer nchan`);
    /// `bench cluster` what cluster mode costs (latency added on a
    /// non-owner, one topic's events/s through NATS, failover over 20 kills);
    /// `bench packing` 1,000 topics packed into at most 50 upstream
    /// connections under churn (gaps, duplicates, connections per minute,
    /// CPU per 1,000 events).
    Bench {
        /// `fanout`: the fan-out benchmark instead of the criterion suites;
        /// `cluster`: the cluster benchmark (needs `nats-server`);
        /// `packing`: the packing benchmark.
        suite: Option<String>,
        /// With `fanout`: also measure this peer (`nchan`) in the same run.
        #[arg(long)]
        peer: Option<String>,
        /// With `fanout`: also measure this other ssegate binary (a build
        /// of an earlier commit) in the same run: before and after.
        #[arg(long)]
        baseline: Option<std::path::PathBuf>,
        /// With `fanout`: also ssegate over TLS (HTTP/1.1 and HTTP/2), next
        /// to cleartext, in the same run.
        #[arg(long)]
        tls: bool,
        /// Small inputs, for a quick look (the ratios are less stable).
        #[arg(long)]
        quick: bool,
        /// Write the table into crates/sse-parser/README.md.
        #[arg(long)]
        update_readme: bool,
        /// Do not run the benchmarks: report the last results in target/criterion.
        #[arg(long)]
        report_only: bool,
    },
    /// Build the release binaries and run the soak harness (default `--ci`).
    Soak(soak::SoakArgs),
    /// Check the repository's rules.
    Tidy,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Ci { keep_going } => ci(&root, keep_going),
        Cmd::Bench {
            suite: Some(suite),
            quick,
            ..
        } if suite == "cluster" => bench::cluster(&root, quick),
        Cmd::Bench {
            suite: Some(suite),
            quick,
            update_readme,
            ..
        } if suite == "packing" => bench::packing(&root, quick, update_readme),
        Cmd::Bench {
            suite: Some(suite),
            peer,
            baseline,
            tls,
            quick,
            update_readme,
            ..
        } if suite == "fanout" => bench::fanout(
            &root,
            &bench::Fanout {
                peer: peer.as_deref(),
                baseline: baseline.as_deref(),
                tls,
                quick,
                update_readme,
            },
        ),
        Cmd::Bench {
            suite: Some(suite), ..
        } => {
            bail!("unknown benchmark suite {suite:?} (known: fanout, cluster, packing)")
        }
        Cmd::Bench {
            quick,
            update_readme,
            report_only,
            ..
        } => bench::run(&root, quick, update_readme, report_only),
        Cmd::Soak(args) => soak::soak(&root, &args),
        Cmd::Tidy => {
            tidy::check(&root)?;
            println!("tidy: ok");
            Ok(())
        }
    }
}

struct Step {
    name: &'static str,
    action: Box<dyn Fn() -> Result<()>>,
}

fn step(name: &'static str, action: impl Fn() -> Result<()> + 'static) -> Step {
    Step {
        name,
        action: Box::new(action),
    }
}

fn ci(root: &Path, keep_going: bool) -> Result<()> {
    let (leak_root, soak_root) = (root.to_path_buf(), root.to_path_buf());
    let cluster_root = root.to_path_buf();
    let root = root.to_path_buf();
    let steps = vec![
        step("fmt", || run(cargo(&["fmt", "--all", "--", "--check"]))),
        step("clippy", || {
            run(cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]))?;
            // The soak build's allocator and endpoint are linted too.
            run(cargo(&[
                "clippy",
                "-p",
                "ssegate",
                "--features",
                "soak",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]))
        }),
        step("test", || {
            // The fuzz package is replayed below, without libFuzzer.
            run(cargo(&[
                "test",
                "--workspace",
                "--exclude",
                "sse-fuzz",
                "--locked",
            ]))
        }),
        step("fuzz corpus replay", || {
            run(cargo(&[
                "test",
                "-p",
                "sse-fuzz",
                "--no-default-features",
                "--locked",
            ]))
        }),
        step("doc", || {
            let mut cmd = cargo(&[
                "doc",
                "--workspace",
                "--exclude",
                "sse-fuzz",
                "--no-deps",
                "--locked",
            ]);
            cmd.env("RUSTDOCFLAGS", "-D warnings");
            run(cmd)
        }),
        step("deny", || {
            // The advisories database cannot be reached from these machines;
            // `[advisories]` in deny.toml is for machines that can.
            run(cargo(&[
                "deny", "--locked", "check", "bans", "licenses", "sources",
            ]))
        }),
        step("tidy", move || tidy::check(&root)),
        step("alert rules", || {
            // Syntax, then the unit tests of every alert (promtool comes
            // with Debian's prometheus package; .ci/run installs it).
            let mut check = Command::new("promtool");
            check.args(["check", "rules", "deploy/prometheus/alerts.yml"]);
            run(check)?;
            let mut test = Command::new("promtool");
            test.args(["test", "rules", "deploy/prometheus/alerts_test.yml"]);
            run(test)
        }),
        step("bench smoke", || {
            // Runs every benchmark once on small inputs: the peers' event
            // counts are checked, nothing is timed.
            let mut cmd = cargo(&[
                "bench",
                "-p",
                "sse-parser",
                "--bench",
                "parse",
                "--locked",
                "--",
                "--test",
            ]);
            cmd.env("SSE_BENCH_QUICK", "1");
            run(cmd)?;
            let mut cmd = cargo(&[
                "bench",
                "-p",
                "sse-conn-pool",
                "--bench",
                "pool",
                "--locked",
                "--",
                "--test",
            ]);
            cmd.env("SSE_BENCH_QUICK", "1");
            run(cmd)
        }),
        // The harness must catch a leak before its passing verdict means
        // anything.
        step("soak leak check", move || soak::leak_check(&leak_root)),
        step("soak --ci", move || {
            soak::soak(
                &soak_root,
                &soak::SoakArgs {
                    ci: true,
                    ..soak::SoakArgs::default()
                },
            )
        }),
        // The short form of the cluster soak: three instances on one NATS,
        // two owner kills and a NATS restart (the same build).
        step("soak --cluster --quick", move || {
            soak::soak(
                &cluster_root,
                &soak::SoakArgs {
                    quick: true,
                    cluster: true,
                    ..soak::SoakArgs::default()
                },
            )
        }),
        step("fan-out bench smoke", || {
            // 100 subscribers against ssegate (cleartext, HTTP/1.1 and
            // HTTP/2 over TLS) and nchan: the harness and the peer still
            // work; the full run is `cargo xtask bench fanout`.
            // Last, because it builds the gateway without the soak feature:
            // the two soak steps above then share one build.
            bench::fanout(
                &project_root(),
                &bench::Fanout {
                    peer: Some("nchan"),
                    baseline: None,
                    tls: true,
                    quick: true,
                    update_readme: false,
                },
            )
        }),
    ];

    let mut results: Vec<(&str, Duration, Result<()>)> = Vec::new();
    for step in &steps {
        let start = Instant::now();
        let result = (step.action)();
        let failed = result.is_err();
        results.push((step.name, start.elapsed(), result));
        if failed && !keep_going {
            break;
        }
    }

    println!("\n==== cargo xtask ci summary ====");
    let mut failures = 0;
    for (name, took, result) in &results {
        match result {
            Ok(()) => println!("  ok    {name:<20} {:>6.1}s", took.as_secs_f64()),
            Err(err) => {
                failures += 1;
                println!("  FAIL  {name:<20} {:>6.1}s  {err:#}", took.as_secs_f64());
            }
        }
    }
    for step in steps.iter().skip(results.len()) {
        println!("  skip  {}", step.name);
    }
    if failures > 0 {
        bail!("{failures} step(s) failed");
    }
    println!("all {} steps passed", results.len());
    Ok(())
}

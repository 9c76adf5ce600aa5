//! `cargo xtask soak`: builds the release binaries (the gateway with its
//! `soak` feature) and runs the `ssegate-soak` harness; and the
//! leak-injection check that proves the harness catches a leak.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{cargo, run};

/// How to run the soak (passed through to `ssegate-soak run`).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SoakArgs {
    /// At most 10 minutes, at least 10 % of the 72-hour counts (the default).
    #[arg(long, conflicts_with_all = ["full", "wall", "quick"])]
    pub(crate) ci: bool,
    /// The whole 72-hour counts, about an hour.
    #[arg(long, conflicts_with_all = ["wall", "quick"])]
    pub(crate) full: bool,
    /// Real time at production durations for this long (e.g. `6h`).
    #[arg(long, conflicts_with = "quick")]
    pub(crate) wall: Option<String>,
    /// Three short rounds.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Three gateways in cluster mode on one NATS, with owner kills and a
    /// NATS restart (`soak --cluster`; `--quick` is the short form in CI).
    #[arg(long)]
    pub(crate) cluster: bool,
    /// Switch on the gateway's deliberate leak (the run must then fail).
    #[arg(long)]
    pub(crate) inject_leak: bool,
    /// Seed of the fault schedule and the load.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Overrides the mode's time scale.
    #[arg(long)]
    pub(crate) time_scale: Option<f64>,
    /// Output directory (default: `target/soak/<timestamp>`).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Builds `ssegate` (with `soak`), `sse-upstream-sim` and `ssegate-soak`
/// in release mode.
pub(crate) fn build() -> Result<()> {
    run(cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "ssegate",
        "--features",
        "ssegate/soak",
        "--bin",
        "ssegate",
        "-p",
        "sse-upstream-sim",
        "--bin",
        "sse-upstream-sim",
        "-p",
        "ssegate-tests",
        "--bin",
        "ssegate-soak",
    ]))
}

fn harness(root: &Path, args: &SoakArgs) -> Command {
    let mut cmd = Command::new(root.join("target/release/ssegate-soak"));
    cmd.arg("run");
    if args.full {
        cmd.arg("--full");
    } else if let Some(wall) = &args.wall {
        cmd.args(["--wall", wall]);
    } else if args.quick {
        cmd.arg("--quick");
    } else {
        cmd.arg("--ci");
    }
    if args.inject_leak {
        cmd.arg("--inject-leak");
    }
    if args.cluster {
        cmd.arg("--cluster");
    }
    if let Some(seed) = args.seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    if let Some(scale) = args.time_scale {
        cmd.args(["--time-scale", &scale.to_string()]);
    }
    if let Some(out) = &args.out {
        cmd.arg("--out").arg(out);
    }
    cmd
}

/// Builds, runs the soak, and fails if any gate failed.
pub(crate) fn soak(root: &Path, args: &SoakArgs) -> Result<()> {
    build()?;
    let mut cmd = harness(root, args);
    println!("\n$ {}", shown(&cmd));
    let status = cmd.status().context("cannot start ssegate-soak")?;
    if !status.success() {
        bail!("the soak failed ({status}): see its summary above");
    }
    Ok(())
}

/// The leak-injection check: a short soak against a gateway that keeps one
/// entry per released subscriber must fail, on the heap gates (the leak
/// is invisible to every registry the gateway reports).
pub(crate) fn leak_check(root: &Path) -> Result<()> {
    build()?;
    let out = root.join("target/soak/leak-check");
    let _ = std::fs::remove_dir_all(&out);
    let args = SoakArgs {
        quick: true,
        inject_leak: true,
        out: Some(out.clone()),
        ..SoakArgs::default()
    };
    let mut cmd = harness(root, &args);
    println!("\n$ {}  (must fail)", shown(&cmd));
    let status = cmd.status().context("cannot start ssegate-soak")?;
    if status.success() {
        bail!("the soak passed with a leak injected: it cannot see a leak of this size");
    }
    if status.code() != Some(1) {
        bail!("the leak-injected soak did not complete ({status}): it must fail on its gates");
    }
    let verdict: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("verdict.json")).context("reading the leak check's verdict")?,
    )?;
    let failed: Vec<&str> = verdict["gates"]
        .as_array()
        .map(|gates| {
            gates
                .iter()
                .filter(|g| g["passed"] == false)
                .filter_map(|g| g["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let growth = failed.contains(&"heap growth extrapolated to 72 h");
    let checkpoint = failed.iter().any(|name| name.starts_with("checkpoint "));
    println!(
        "leak check: the soak failed these gates: {}",
        failed.join(", ")
    );
    if !(growth && checkpoint) {
        bail!(
            "the leak must fail both the growth gate and a checkpoint; failed: {}",
            failed.join(", ")
        );
    }
    println!("leak check: caught (growth and checkpoint gates failed, as they must)");
    Ok(())
}

fn shown(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

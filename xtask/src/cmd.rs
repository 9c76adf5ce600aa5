//! Running commands from xtask: cargo (whichever `CARGO` points at) and
//! anything else, each shown as it is run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (xtask's parent directory).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// A cargo command line.
pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    cmd
}

/// Runs `cmd`, showing it first; an error if it fails.
pub(crate) fn run(mut cmd: Command) -> Result<()> {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = cmd.get_program().to_string_lossy().into_owned();
    // `cargo` for cargo (whatever CARGO points at), the program otherwise.
    let program = if program.ends_with("cargo") {
        "cargo".to_string()
    } else {
        program
    };
    let shown = format!("{program} {}", args.join(" "));
    println!("\n$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

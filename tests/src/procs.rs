//! Child processes of the benchmarks (`ssegate-cluster-bench`,
//! `ssegate-packing-bench`): killed when dropped, and waited for until
//! they listen.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

impl Proc {
    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.id()
    }
}

/// Starts `bin` with `args`, its output discarded.
///
/// # Errors
///
/// It cannot be started.
pub fn spawn(bin: &Path, args: &[&str]) -> Result<Proc> {
    let child = Command::new(bin)
        .args(args)
        .env("SSEGATE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(Proc(child))
}

/// Waits until something accepts on 127.0.0.1:`port`, at most `wait`.
///
/// # Errors
///
/// Nothing did within `wait`.
pub async fn listening(port: u16, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        // Wall clock: a process starting; a bounded poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The programs a benchmark runs (`--ssegate`, `--sim`).
#[derive(Debug, clap::Args)]
pub struct Binaries {
    /// The ssegate binary (a release build).
    #[arg(long)]
    pub ssegate: std::path::PathBuf,
    /// The sse-upstream-sim binary.
    #[arg(long)]
    pub sim: std::path::PathBuf,
}

/// Writes a benchmark's results into `out` (the JSON of `results`, and
/// `table` as Markdown) and prints the table.
///
/// # Errors
///
/// `out` cannot be written.
pub fn write_results(out: &Path, results: &impl serde::Serialize, table: &str) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join("results.md"), table)?;
    println!("{table}");
    Ok(())
}

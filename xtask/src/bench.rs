//! `cargo xtask bench`: runs the parser benchmarks and turns criterion's
//! results into a table of throughputs and ratios against the fastest peer;
//! then the pool's benchmarks, as costs per operation beside the least the
//! same job costs (see `crates/conn-pool/benches/pool.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::{cargo, run as run_cmd};

/// Our crate's name in the benchmark ids.
const OURS: &str = "sse-parser";
/// The peers, in the order of the table's columns.
const PEERS: [&str; 3] = ["sse-stream", "sse-core", "eventsource-stream"];

const README: &str = "crates/sse-parser/README.md";
const START: &str = "<!-- bench-table:start -->";
const END: &str = "<!-- bench-table:end -->";

pub(crate) fn run(root: &Path, quick: bool, update_readme: bool, report_only: bool) -> Result<()> {
    let started = if report_only {
        SystemTime::UNIX_EPOCH
    } else {
        SystemTime::now()
    };
    if !report_only {
        let mut cmd = cargo(&["bench", "-p", "sse-parser", "--bench", "parse", "--locked"]);
        if quick {
            cmd.env("SSE_BENCH_QUICK", "1");
        }
        run_cmd(cmd)?;
    }

    // The allocation count on the market-data input, from its test.
    let allocations = test_lines("sse-parser", "alloc", "allocations for")?;

    let results = collect(
        &root.join("target/criterion"),
        started,
        "Bytes",
        |bytes, ns| bytes / ns,
    )?;
    let table = table(&results, &allocations, quick);
    println!("\n{table}");
    if update_readme {
        write_table(root, README, &table)?;
    }
    run_pool(root, quick, update_readme, report_only, started)
}

/// Replaces the text between the markers of `readme` with `table`.
fn write_table(root: &Path, readme: &str, table: &str) -> Result<()> {
    let path = root.join(readme);
    let text = fs::read_to_string(&path)?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        bail!("{readme} has no {START} ... {END} markers");
    };
    let updated = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    fs::write(&path, updated)?;
    println!("updated {readme}");
    Ok(())
}

const POOL_README: &str = "crates/conn-pool/README.md";
/// Each pool benchmark group's peer (the least the same job costs).
const POOL_PEERS: [(&str, &str); 2] = [
    ("subscribe", "mutex-hashmap"),
    ("fanout/", "tokio-broadcast"),
];

fn run_pool(
    root: &Path,
    quick: bool,
    update_readme: bool,
    report_only: bool,
    started: SystemTime,
) -> Result<()> {
    if !report_only {
        let mut cmd = cargo(&[
            "bench",
            "-p",
            "sse-conn-pool",
            "--bench",
            "pool",
            "--locked",
        ]);
        if quick {
            cmd.env("SSE_BENCH_QUICK", "1");
        }
        run_cmd(cmd)?;
    }
    let memory = test_lines("sse-conn-pool", "memory", "memory per idle subscriber")?;

    // Nanoseconds per element (per subscribe+unsubscribe, per fanned-out item).
    let per_op = collect(
        &root.join("target/criterion"),
        started,
        "Elements",
        |elements, ns| ns / elements,
    )?;
    let mut table = String::from(
        "| benchmark | sse-conn-pool | the least it costs | peer | ours ÷ peer |\n|---|---:|---:|---|---:|\n",
    );
    for (group, by_fn) in &per_op {
        let Some(peer) = POOL_PEERS
            .iter()
            .find(|(prefix, _)| group.starts_with(prefix))
            .map(|(_, peer)| *peer)
        else {
            continue;
        };
        let (Some(&ours), Some(&theirs)) = (by_fn.get("sse-conn-pool"), by_fn.get(peer)) else {
            continue;
        };
        let what = if group == "subscribe" {
            "subscribe + unsubscribe, open stream".to_string()
        } else {
            format!(
                "fan-out per item, {} subscribers",
                group.trim_start_matches("fanout/")
            )
        };
        table.push_str(&format!(
            "| {what} | {} | {} | {peer} | {:.2}x |\n",
            duration(ours),
            duration(theirs),
            ours / theirs
        ));
    }
    for line in &memory {
        table.push_str(&format!("\n{line}\n"));
    }
    if quick {
        table.push_str("\n(quick run: 10,000 subscribers skipped)\n");
    }
    println!("\n{table}");
    if update_readme {
        write_table(root, POOL_README, &table)?;
    }
    Ok(())
}

fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A figure per group, then per function (parser or pool variant).
type Results = BTreeMap<String, BTreeMap<String, f64>>;

/// Reads every result criterion wrote since `since` whose throughput is in
/// `unit` ("Bytes" or "Elements"), as `figure(amount, median ns)`: the median
/// resists the outliers a shared machine produces.
fn collect(
    dir: &Path,
    since: SystemTime,
    unit: &str,
    figure: fn(f64, f64) -> f64,
) -> Result<Results> {
    let mut results = Results::new();
    for benchmark in find(dir, "benchmark.json")? {
        let new_dir = benchmark.parent().context("no parent")?;
        let estimates = new_dir.join("estimates.json");
        if fs::metadata(&estimates)?.modified()? < since {
            continue;
        }
        let meta: Value = serde_json::from_str(&fs::read_to_string(&benchmark)?)?;
        let est: Value = serde_json::from_str(&fs::read_to_string(&estimates)?)?;
        let (Some(group), Some(function), Some(amount), Some(ns)) = (
            meta["group_id"].as_str(),
            meta["function_id"].as_str(),
            meta["throughput"][unit].as_f64(),
            est["median"]["point_estimate"].as_f64(),
        ) else {
            continue;
        };
        results
            .entry(group.to_string())
            .or_default()
            .insert(function.to_string(), figure(amount, ns));
    }
    if results.is_empty() {
        bail!(
            "no fresh criterion results ({unit}) under {}",
            dir.display()
        );
    }
    Ok(results)
}

/// Runs `package`'s test `test` in release and returns its output lines that
/// contain `needle` (the figures a test prints).
fn test_lines(package: &str, test: &str, needle: &str) -> Result<Vec<String>> {
    let out = cargo(&[
        "test",
        "-q",
        "--release",
        "-p",
        package,
        "--test",
        test,
        "--locked",
        "--",
        "--nocapture",
    ])
    .output()
    .with_context(|| format!("cannot run the {test} test"))?;
    if !out.status.success() {
        bail!(
            "the {test} test failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect())
}

fn find(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name)
                && path.parent().is_some_and(|p| p.ends_with("new"))
            {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// The goal for a group, as a ratio against the fastest peer (issue 2).
fn goal(group: &str) -> f64 {
    match group {
        g if g.ends_with("/1B") => 1.0,
        g if g.starts_with("a_") || g.starts_with("d_") => 1.5,
        g if g.starts_with("c_") => 1.25,
        _ => 1.0,
    }
}

fn speed(gb_per_s: f64) -> String {
    if gb_per_s >= 1.0 {
        format!("{gb_per_s:.2} GB/s")
    } else if gb_per_s >= 0.001 {
        format!("{:.0} MB/s", gb_per_s * 1000.0)
    } else {
        format!("{:.0} kB/s", gb_per_s * 1e6)
    }
}

fn table(results: &Results, allocations: &[String], quick: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| input / chunks | {OURS} | {} | ours ÷ fastest peer | goal |\n",
        PEERS.join(" | ")
    ));
    out.push_str(&format!(
        "|---|---:|{}---:|---:|\n",
        "---:|".repeat(PEERS.len())
    ));
    for (group, by_parser) in results {
        let Some(&ours) = by_parser.get(OURS) else {
            continue;
        };
        let fastest = PEERS
            .iter()
            .filter_map(|p| by_parser.get(*p))
            .fold(0.0f64, |a, &b| a.max(b));
        let peers: Vec<String> = PEERS
            .iter()
            .map(|p| by_parser.get(*p).map_or("-".into(), |&v| speed(v)))
            .collect();
        let ratio = ours / fastest;
        let goal = goal(group);
        let mark = if ratio >= goal { "" } else { " (below)" };
        out.push_str(&format!(
            "| {group} | {} | {} | **{ratio:.2}x**{mark} | {goal:.2}x |\n",
            speed(ours),
            peers.join(" | ")
        ));
    }
    if !allocations.is_empty() {
        out.push_str("\nAllocations, market data (a), counting allocator:\n\n");
        for line in allocations {
            out.push_str(&format!("- {line}\n"));
        }
    }
    if quick {
        out.push_str("\n(quick run: small inputs)\n");
    }
    out
}

/// Builds the release `ssegate`, the simulator and the benchmark binary
/// `bench` (of `ssegate-tests`), and returns the command that runs it
/// with `--ssegate`, `--sim` and `--out target/bench/<out>`.
fn bench_with_sim(root: &Path, bench: &str, out: &str) -> Result<std::process::Command> {
    run_cmd(cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "ssegate",
        "--bin",
        "ssegate",
        "-p",
        "sse-upstream-sim",
        "--bin",
        "sse-upstream-sim",
        "-p",
        "ssegate-tests",
        "--bin",
        bench,
    ]))?;
    let mut cmd = std::process::Command::new(root.join("target/release").join(bench));
    cmd.arg("--ssegate")
        .arg(root.join("target/release/ssegate"))
        .arg("--sim")
        .arg(root.join("target/release/sse-upstream-sim"))
        .arg("--out")
        .arg(root.join("target/bench").join(out));
    Ok(cmd)
}

/// `cargo xtask bench cluster`: builds the release `ssegate`, the simulator
/// and `ssegate-cluster-bench`, then runs it (results in
/// `target/bench/cluster/`). `quick`: 100 subscribers, 3 kills.
pub(crate) fn cluster(root: &Path, quick: bool) -> Result<()> {
    let mut cmd = bench_with_sim(root, "ssegate-cluster-bench", "cluster")?;
    if quick {
        cmd.args(["--subscribers", "100", "--secs", "3", "--kills", "3"]);
    }
    run_cmd(cmd)
}

/// `cargo xtask bench packing`: builds the release `ssegate`, the
/// simulator and `ssegate-packing-bench`, then runs it (results in
/// `target/bench/packing/`; `update_readme`: the table into README.md).
/// `quick`: 200 topics for 30 s.
pub(crate) fn packing(root: &Path, quick: bool, update_readme: bool) -> Result<()> {
    let out = if quick { "packing-quick" } else { "packing" };
    let mut cmd = bench_with_sim(root, "ssegate-packing-bench", out)?;
    if quick {
        cmd.args(["--topics", "200", "--churn-topics", "40", "--secs", "30"]);
    }
    if update_readme {
        cmd.arg("--update-readme").arg(root.join("README.md"));
    }
    run_cmd(cmd)
}

/// `cargo xtask bench fanout`: builds the release `ssegate` (its production
/// allocator, no soak feature) and `ssegate-fanout`, then runs it.
/// What `bench fanout` compares.
pub(crate) struct Fanout<'a> {
    /// A peer measured in the same run (`nchan`).
    pub(crate) peer: Option<&'a str>,
    /// Another ssegate binary measured in the same run (before and after).
    pub(crate) baseline: Option<&'a Path>,
    /// ssegate over TLS too (HTTP/1.1 and HTTP/2).
    pub(crate) tls: bool,
    /// 100 subscribers only.
    pub(crate) quick: bool,
    /// Write the table into the README.
    pub(crate) update_readme: bool,
}

pub(crate) fn fanout(root: &Path, run: &Fanout<'_>) -> Result<()> {
    run_cmd(cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "ssegate",
        "--bin",
        "ssegate",
        "-p",
        "ssegate-tests",
        "--bin",
        "ssegate-fanout",
    ]))?;
    let mut cmd = std::process::Command::new(root.join("target/release/ssegate-fanout"));
    cmd.arg("run")
        .arg("--ssegate")
        .arg(root.join("target/release/ssegate"))
        .arg("--out")
        .arg(root.join(if run.quick {
            "target/bench/fanout-quick"
        } else {
            "target/bench/fanout"
        }));
    if let Some(peer) = run.peer {
        cmd.args(["--peer", peer]);
    }
    if let Some(baseline) = run.baseline {
        cmd.arg("--baseline").arg(baseline);
    }
    if run.tls {
        cmd.arg("--tls");
    }
    if run.quick {
        cmd.arg("--quick");
    }
    if run.update_readme {
        cmd.arg("--update-readme").arg(root.join("README.md"));
    }
    run_cmd(cmd)
}

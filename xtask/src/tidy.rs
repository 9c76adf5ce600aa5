//! `cargo xtask tidy`: the repository's rules, checked like tests
//! (after rust-analyzer's `xtask/src/tidy.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cargo;

/// What each library may depend on at run time (normal dependencies; dev and
/// build dependencies are free). From docs/ARCHITECTURE.md and product.md:
/// the arrows only point down, and the sans-IO core never sees tokio.
const LAYERS: &[(&str, &[&str])] = &[("sse-parser", &["bytes", "memchr"])];

pub(crate) fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let files = source_files(root)?;
    for file in &files {
        check_source(root, file, &mut problems)?;
    }
    check_packages(root, &mut problems)?;
    check_docs(root, &mut problems)?;
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("tidy: {problem}");
        }
        bail!("{} tidy problem(s)", problems.len());
    }
    println!(
        "tidy: {} source files and the workspace follow the rules",
        files.len()
    );
    Ok(())
}

/// Every `.rs` file of the workspace outside `target` directories.
fn source_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = ["crates", "xtask", "tests", "fuzz"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        if !dir.exists() {
            continue;
        }
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !matches!(name, "target" | "corpus" | "artifacts") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn check_source(root: &Path, file: &Path, problems: &mut Vec<String>) -> Result<()> {
    let text = fs::read_to_string(file)?;
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    if !first.starts_with("//!") {
        problems.push(format!(
            "{shown}: the file must open with a `//!` line saying what it is"
        ));
    }
    // Spelled in pieces so that this file does not trip its own rule.
    let banned = [
        (concat!("#[", "ignore"), "an ignored test checks nothing"),
        (concat!("todo", "!("), "a stub is not a feature"),
        (concat!("unimplemented", "!("), "a stub is not a feature"),
        (concat!("dbg", "!("), "debug output left behind"),
    ];
    for (line_no, line) in text.lines().enumerate() {
        for (pattern, why) in banned {
            if line.contains(pattern) {
                problems.push(format!("{shown}:{}: `{pattern}`: {why}", line_no + 1));
            }
        }
    }
    Ok(())
}

fn check_packages(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let out = cargo(&["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    for package in meta["packages"].as_array().context("no packages")? {
        let name = package["name"].as_str().unwrap_or_default();
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let text = fs::read_to_string(&manifest)?;
        if !text.contains("[lints]\nworkspace = true") {
            problems.push(format!(
                "{name}: Cargo.toml must have `[lints] workspace = true`"
            ));
        }
        if let Some((_, allowed)) = LAYERS.iter().find(|(crate_name, _)| *crate_name == name) {
            for dep in package["dependencies"].as_array().into_iter().flatten() {
                let dep_name = dep["name"].as_str().unwrap_or_default();
                let normal = dep["kind"].is_null();
                if normal && !allowed.contains(&dep_name) {
                    problems.push(format!(
                        "{name} may depend only on {allowed:?} (layering), not on {dep_name}"
                    ));
                }
            }
        }
        let dir = manifest.parent().context("manifest has a directory")?;
        if dir.starts_with(root.join("crates")) && !dir.join("README.md").exists() {
            problems.push(format!("{name}: a crate needs a README.md with an example"));
        }
    }
    Ok(())
}

fn check_docs(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let readme = fs::read_to_string(root.join("README.md")).context("README.md")?;
    if !readme.contains("cargo xtask ci") {
        problems.push("README.md must give the test command, `cargo xtask ci`".into());
    }
    let architecture =
        fs::read_to_string(root.join("docs/ARCHITECTURE.md")).context("docs/ARCHITECTURE.md")?;
    for entry in fs::read_dir(root.join("crates"))? {
        let path = entry?.path();
        let dir = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && !architecture.contains(&format!("crates/{dir}")) {
            problems.push(format!(
                "docs/ARCHITECTURE.md has no code-map entry for crates/{dir}"
            ));
        }
    }
    Ok(())
}

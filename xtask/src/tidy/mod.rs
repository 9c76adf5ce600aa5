//! `cargo xtask tidy`: the repository's rules, checked like tests (after
//! rust-analyzer's `xtask/src/tidy.rs`), and run as a `#[test]` too, so a
//! broken rule fails `cargo test` as well as `cargo xtask ci`.
//!
//! The rules:
//! - every `.rs` file opens with a `//!` line saying what it is; no ignored
//!   tests, stubs or debug output;
//! - a file under a `src/` directory longer than [`MAX_LINES`] says at its
//!   top why it is long (the words "long because");
//! - the sans-IO core (parser, state machine, health) never reads the clock
//!   and never touches tokio, sockets or threads;
//! - a test that sleeps says next to it which clock it sleeps on and why
//!   ("paused time", or "wall clock" with the reason a real clock is
//!   needed);
//! - no import circles between the modules of a crate (`modules`);
//! - every package's dependencies are allowed by the layers table of
//!   docs/ARCHITECTURE.md, whose arrows point down (`layers`);
//! - every package uses the workspace lints; every crate has a README and
//!   a code-map entry in docs/ARCHITECTURE.md;
//! - every document link resolves, and every Markdown file mentioned
//!   exists (`docs`).

mod docs;
mod layers;
mod modules;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::cargo;

/// Lines a `src/` file may have without saying why it needs more.
pub(crate) const MAX_LINES: usize = 800;

/// The crates that never read the clock nor touch a runtime, a socket or
/// a thread.
const SANS_IO: &[&str] = &[
    "crates/sse-parser/src",
    "crates/state-machine/src",
    "crates/health/src",
];

pub(crate) fn check(root: &Path) -> Result<()> {
    let problems = problems(root)?;
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("tidy: {problem}");
        }
        bail!("{} tidy problem(s)", problems.len());
    }
    println!("tidy: the workspace follows its rules");
    Ok(())
}

/// Every rule broken, in words.
fn problems(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let files = source_files(root)?;
    for file in &files {
        check_source(root, file, &mut problems)?;
    }
    check_modules(root, &mut problems);
    check_packages(root, &mut problems)?;
    check_docs(root, &files, &mut problems)?;
    Ok(problems)
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

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn check_source(root: &Path, file: &Path, problems: &mut Vec<String>) -> Result<()> {
    let text = fs::read_to_string(file)?;
    let shown = relative(root, file);
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
    let in_src = shown.split('/').any(|part| part == "src");
    let lines = text.lines().count();
    if in_src && lines > MAX_LINES {
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !header.contains("long because") {
            problems.push(format!(
                "{shown}: {lines} lines, over {MAX_LINES}: split it, or say at its top why it is long (\"long because ...\")"
            ));
        }
    }
    if SANS_IO.iter().any(|dir| shown.starts_with(dir)) {
        let code = modules::strip(&text);
        for (pattern, why) in [
            ("Instant::now", "reads the clock"),
            ("SystemTime::now", "reads the clock"),
            ("tokio", "touches the runtime"),
            ("std::net", "touches sockets"),
            ("std::thread", "touches threads"),
        ] {
            if code.contains(pattern) {
                problems.push(format!(
                    "{shown}: `{pattern}` {why}: the sans-IO core takes `now` and bytes as inputs"
                ));
            }
        }
    }
    check_sleeps(&shown, &text, problems);
    Ok(())
}

/// A sleep in test code says which clock it is on.
fn check_sleeps(shown: &str, text: &str, problems: &mut Vec<String>) {
    // Test code: a package's `tests/` directory (the harnesses under
    // `tests/src` are tools that run on real time by design).
    let parts: Vec<&str> = shown.split('/').collect();
    let test_file = parts.iter().skip(1).any(|p| *p == "tests")
        || parts.first() == Some(&"tests") && parts.get(1) == Some(&"tests");
    let lines: Vec<&str> = text.lines().collect();
    let tests_from = if test_file {
        0
    } else {
        match lines.iter().position(|l| l.trim() == "#[cfg(test)]") {
            Some(at) => at,
            None => return,
        }
    };
    for (i, line) in lines.iter().enumerate().skip(tests_from) {
        let code = line.split("//").next().unwrap_or_default();
        if !(code.contains("sleep(") || code.contains("sleep_until(")) || code.contains("fn ") {
            continue;
        }
        let context = lines[i.saturating_sub(4)..=i].join("\n").to_lowercase();
        if !(context.contains("paused time") || context.contains("wall clock")) {
            problems.push(format!(
                "{shown}:{}: a sleep in a test: say next to it (a comment in the lines above) whether it runs on paused time, or why it needs the wall clock",
                i + 1
            ));
        }
    }
}

/// No import circles in any crate (each library, binary and test harness).
fn check_modules(root: &Path, problems: &mut Vec<String>) {
    let mut roots = Vec::new();
    for pattern in [
        "crates/*/src/lib.rs",
        "crates/*/src/main.rs",
        "xtask/src/main.rs",
        "tests/src/lib.rs",
        "fuzz/src/lib.rs",
    ] {
        let (dir, file) = pattern.split_once("/*/").map_or((pattern, ""), |x| x);
        if file.is_empty() {
            roots.push(root.join(dir));
            continue;
        }
        for entry in fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            roots.push(entry.path().join(file));
        }
    }
    for entry in fs::read_dir(root.join("tests/src/bin"))
        .into_iter()
        .flatten()
        .flatten()
    {
        roots.push(entry.path().join("main.rs"));
    }
    roots.sort();
    for crate_root in roots.into_iter().filter(|r| r.exists()) {
        let graph = modules::dependencies(&modules::crate_modules(&crate_root));
        for circle in modules::circles(&graph) {
            let shown: Vec<String> = circle.iter().map(|m| modules::shown(m)).collect();
            problems.push(format!(
                "{}: an import circle: {}",
                relative(root, &crate_root),
                shown.join(" -> ")
            ));
        }
    }
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
    let architecture =
        fs::read_to_string(root.join("docs/ARCHITECTURE.md")).context("docs/ARCHITECTURE.md")?;
    let layers = match layers::parse(&architecture) {
        Ok(layers) => layers,
        Err(why) => {
            problems.push(format!("docs/ARCHITECTURE.md: {why}"));
            return Ok(());
        }
    };
    let mut packages = Vec::new();
    for package in meta["packages"].as_array().context("no packages")? {
        let name = package["name"].as_str().unwrap_or_default();
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let text = fs::read_to_string(&manifest)?;
        if !text.contains("[lints]\nworkspace = true") {
            problems.push(format!(
                "{name}: Cargo.toml must have `[lints] workspace = true`"
            ));
        }
        let dir = manifest.parent().context("manifest has a directory")?;
        if dir.starts_with(root.join("crates")) && !dir.join("README.md").exists() {
            problems.push(format!("{name}: a crate needs a README.md with an example"));
        }
        packages.push(layers::Package {
            name: name.to_string(),
            dependencies: package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .map(|d| {
                    (
                        d["name"].as_str().unwrap_or_default().to_string(),
                        d["optional"].as_bool().unwrap_or(false),
                    )
                })
                .collect(),
        });
    }
    problems.extend(layers::check(&layers, &packages));
    Ok(())
}

fn check_docs(root: &Path, sources: &[PathBuf], problems: &mut Vec<String>) -> Result<()> {
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
    // The documents, and every Markdown file's name in the repository.
    let mut documents = vec![root.join("README.md")];
    for dir in ["docs", "deploy"] {
        for entry in fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "md") {
                documents.push(path);
            }
        }
    }
    for entry in fs::read_dir(root.join("crates"))? {
        let readme = entry?.path().join("README.md");
        if readme.exists() {
            documents.push(readme);
        }
    }
    documents.sort();
    let names: Vec<String> = documents
        .iter()
        .filter_map(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    for document in &documents {
        let text = fs::read_to_string(document)?;
        let shown = relative(root, document);
        for link in docs::links(&text) {
            if let Some(why) = docs::check_link(root, document, &link) {
                problems.push(format!("{shown}: {why}"));
            }
        }
        check_mentions(&shown, &text, &names, problems);
    }
    for file in sources {
        let text = fs::read_to_string(file)?;
        let comments: String = text
            .lines()
            .filter(|l| l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        check_mentions(&relative(root, file), &comments, &names, problems);
    }
    for manifest in ["ssegate.example.toml", "deny.toml"] {
        let text = fs::read_to_string(root.join(manifest)).unwrap_or_default();
        check_mentions(manifest, &text, &names, problems);
    }
    Ok(())
}

/// Every Markdown file `text` mentions is one of `names`.
fn check_mentions(shown: &str, text: &str, names: &[String], problems: &mut Vec<String>) {
    for mentioned in docs::mentioned_md(text) {
        if !names.contains(&mentioned) {
            problems.push(format!(
                "{shown}: mentions {mentioned}, which is not a document of this repository"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository follows its own rules: `cargo test` fails when one
    /// is broken, not only `cargo xtask ci`.
    #[test]
    fn the_repository_is_tidy() {
        let root = crate::cmd::project_root();
        let problems = problems(&root).expect("tidy runs");
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn a_sleep_in_a_test_must_say_which_clock() {
        let mut problems = Vec::new();
        check_sleeps(
            "crates/x/tests/a.rs",
            "fn t() {\n    tokio::time::sleep(d).await;\n}\n",
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        let mut problems = Vec::new();
        check_sleeps(
            "crates/x/tests/a.rs",
            "fn t() {\n    // Paused time: jumps at once.\n    tokio::time::sleep(d).await;\n}\n",
            &mut problems,
        );
        check_sleeps(
            "crates/x/src/a.rs",
            "fn f() { std::thread::sleep(d) }\n#[cfg(test)]\nmod tests {}\n",
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
}

//! No import circles: within a crate, no two modules depend on each other,
//! directly or around a longer loop. A module (a file) depends on another
//! when its code names it: `use crate::a::b`, `crate::a::f()`,
//! `super::sibling::X`, `self::child`, or a child module by its bare name.
//! Comments, string literals and `#[cfg(test)]` modules do not count (a
//! test may look at anything). A circle means two modules are one in
//! disguise, or that a type lives in the wrong one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One module of a crate: its path (`admin::views`; the root is empty)
/// and its code (comments, strings and tests removed).
#[derive(Debug, Clone)]
pub(crate) struct Module {
    pub(crate) path: String,
    pub(crate) code: String,
    /// The modules it declares (`mod name;`), by name.
    pub(crate) children: Vec<String>,
}

/// The modules of the crate whose root file is `root` (`src/lib.rs`,
/// `src/main.rs`, `src/bin/x/main.rs`), following `mod name;`.
pub(crate) fn crate_modules(root: &Path) -> Vec<Module> {
    let mut modules = Vec::new();
    let mut pending = vec![(String::new(), root.to_path_buf())];
    while let Some((path, file)) = pending.pop() {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let code = strip(&text);
        let children = declared(&code);
        // Children of `lib.rs`, `main.rs` and `x/mod.rs` are beside it; of
        // `x.rs`, in `x/`.
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let dir = match file.parent() {
            Some(parent) if path.is_empty() || name == "mod" => parent.to_path_buf(),
            Some(parent) => parent.join(name),
            None => PathBuf::new(),
        };
        for child in &children {
            let child_path = if path.is_empty() {
                child.clone()
            } else {
                format!("{path}::{child}")
            };
            let flat = dir.join(format!("{child}.rs"));
            let nested = dir.join(child).join("mod.rs");
            let found = if flat.exists() { flat } else { nested };
            pending.push((child_path, found));
        }
        modules.push(Module {
            path,
            code,
            children,
        });
    }
    modules.sort_by(|a, b| a.path.cmp(&b.path));
    modules
}

/// `mod name;` declarations (inline `mod name { .. }` are not files).
fn declared(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.trim();
        let rest = line
            .strip_prefix("pub(crate) mod ")
            .or_else(|| line.strip_prefix("pub mod "))
            .or_else(|| line.strip_prefix("pub(super) mod "))
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = rest.and_then(|r| r.strip_suffix(';')) {
            out.push(name.trim().to_string());
        }
    }
    out
}

/// `text` without comments, string and char literals, and `#[cfg(test)]`
/// modules.
pub(crate) fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            i += end;
        } else if rest.starts_with("r\"")
            || rest.starts_with("r#") && rest[1..].trim_start_matches('#').starts_with('"')
        {
            let hashes = rest[1..].bytes().take_while(|&b| b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 1 + hashes + 1;
            let end = rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if rest.starts_with("'") && char_literal_len(rest).is_some() {
            out.push_str("' '");
            i += char_literal_len(rest).unwrap_or(1);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    remove_test_modules(&out)
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`,
/// `'\u{1F600}'`), or `None` for a lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, first) = chars.next()?;
    if first == '\\' {
        let close = s[2..].find('\'')?;
        return Some(close + 3);
    }
    let (at, next) = chars.next()?;
    (next == '\'').then_some(at + 1)
}

/// Removes every `#[cfg(test)] mod name { ... }` (braces matched; literals
/// are already gone).
fn remove_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_module = ["mod ", "pub(crate) mod ", "pub mod "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        let Some(open) = after.find('{').filter(|_| is_module) else {
            // A test-only item that is not a module: keep it.
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        };
        if after[..open].contains(';') {
            // `#[cfg(test)] mod x;`: a file, not inline.
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, b) in after.bytes().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The module each module depends on (by path), itself excluded.
pub(crate) fn dependencies(modules: &[Module]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<&str> = modules.iter().map(|m| m.path.as_str()).collect();
    let resolve = |segments: &[&str]| -> String {
        for len in (1..=segments.len()).rev() {
            let candidate = segments[..len].join("::");
            if known.contains(candidate.as_str()) {
                return candidate;
            }
        }
        String::new()
    };
    let mut graph = BTreeMap::new();
    for module in modules {
        let own: Vec<&str> = if module.path.is_empty() {
            Vec::new()
        } else {
            module.path.split("::").collect()
        };
        let mut deps = BTreeSet::new();
        for path in paths(&module.code) {
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let absolute: Vec<&str> = match segments.first() {
                Some(&"crate") => segments[1..].to_vec(),
                Some(&"super") => {
                    let ups = segments.iter().take_while(|s| **s == "super").count();
                    let base = own.len().saturating_sub(ups);
                    own[..base]
                        .iter()
                        .copied()
                        .chain(segments[ups..].iter().copied())
                        .collect()
                }
                Some(&"self") => own
                    .iter()
                    .copied()
                    .chain(segments[1..].iter().copied())
                    .collect(),
                Some(first) if module.children.iter().any(|c| c == first) => own
                    .iter()
                    .copied()
                    .chain(segments.iter().copied())
                    .collect(),
                _ => continue,
            };
            let target = resolve(&absolute);
            if target != module.path {
                deps.insert(target);
            }
        }
        graph.insert(module.path.clone(), deps);
    }
    graph
}

/// Every path in `code` that starts with `crate`, `super`, `self` or an
/// identifier followed by `::`, with `use` groups (`a::{b, c::d}`)
/// expanded.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        // The start of a path: an identifier not preceded by `::` or an
        // identifier character.
        if ident(bytes[i])
            && (i == 0 || !(ident(bytes[i - 1]) || (i >= 2 && &code[i - 2..i] == "::")))
        {
            let (path, end) = read_path(code, i);
            if path.contains("::") {
                out.extend(path.split('\n').map(str::to_string));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The path starting at `start` (groups expanded, one path per line), and
/// where it ends.
fn read_path(code: &str, start: usize) -> (String, usize) {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = start;
    let mut prefix = String::new();
    loop {
        let from = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        prefix.push_str(&code[from..i]);
        if code[i..].starts_with("::") {
            prefix.push_str("::");
            i += 2;
            if code[i..].starts_with('{') {
                // A group: each item is a path of its own after the prefix.
                let mut depth = 0usize;
                let mut end = i;
                for (j, b) in code[i..].bytes().enumerate() {
                    match b {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let inner = &code[i + 1..end];
                let mut items = Vec::new();
                let (mut depth, mut item_start) = (0usize, 0usize);
                for (j, b) in inner.bytes().enumerate() {
                    match b {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        b',' if depth == 0 => {
                            items.push(&inner[item_start..j]);
                            item_start = j + 1;
                        }
                        _ => {}
                    }
                }
                items.push(&inner[item_start..]);
                let mut all = Vec::new();
                for item in items {
                    let item = item.trim();
                    if item.is_empty() || item == "self" {
                        all.push(prefix.trim_end_matches("::").to_string());
                        continue;
                    }
                    let (path, _) = read_path(item, 0);
                    for p in path.split('\n') {
                        all.push(format!("{prefix}{p}"));
                    }
                }
                return (all.join("\n"), end + 1);
            }
            continue;
        }
        return (prefix.trim_end_matches("::").to_string(), i);
    }
}

/// The circles of `graph`: each strongly connected set of two or more
/// modules, as one loop through them.
pub(crate) fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut circles = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(start.as_str()) {
            continue;
        }
        // Everything reachable from `start` that also reaches it.
        let forward = reachable(graph, start);
        let members: Vec<&String> = forward
            .iter()
            .filter(|m| reachable(graph, m).contains(start))
            .copied()
            .collect();
        if members.len() < 2 {
            continue;
        }
        seen.extend(members.iter().map(|m| m.as_str()));
        circles.push(loop_through(graph, start, &members));
    }
    circles
}

fn reachable<'a>(
    graph: &'a BTreeMap<String, BTreeSet<String>>,
    from: &str,
) -> BTreeSet<&'a String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&String> = graph.get(from).into_iter().flatten().collect();
    while let Some(next) = stack.pop() {
        if seen.insert(next) {
            stack.extend(graph.get(next.as_str()).into_iter().flatten());
        }
    }
    seen
}

/// A shortest loop from `start` back to it within `members`.
fn loop_through(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    members: &[&String],
) -> Vec<String> {
    let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                let mut path = vec![start.to_string()];
                let mut back = at;
                while back != start {
                    path.push(back.to_string());
                    back = previous[back];
                }
                path.push(start.to_string());
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if members.contains(&next) && !previous.contains_key(next.as_str()) {
                previous.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    vec![start.to_string()]
}

/// Names a module for people: `crate::admin::views`.
pub(crate) fn shown(path: &str) -> String {
    if path.is_empty() {
        "the crate root".into()
    } else {
        format!("crate::{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str, code: &str, children: &[&str]) -> Module {
        Module {
            path: path.into(),
            code: strip(code),
            children: children.iter().map(|c| (*c).into()).collect(),
        }
    }

    #[test]
    fn paths_are_found_in_uses_groups_and_expressions() {
        let found = paths("use crate::{a::{B, c}, d};\nlet x = super::e::f(crate::g::H);");
        assert_eq!(
            found,
            [
                "crate::a::B",
                "crate::a::c",
                "crate::d",
                "super::e::f",
                "crate::g::H"
            ]
        );
    }

    #[test]
    fn comments_strings_and_tests_do_not_count() {
        let code = strip(
            "// crate::a\nlet s = \"crate::b\";\nlet c = '\\'';\nfn f<'a>() {}\n\
             #[cfg(test)]\nmod tests { use crate::c; }\nuse crate::d;",
        );
        assert!(
            !code.contains("crate::a") && !code.contains("crate::b") && !code.contains("crate::c")
        );
        assert!(
            code.contains("crate::d") && code.contains("fn f<'a>"),
            "{code}"
        );
    }

    #[test]
    fn a_circle_is_found_and_shown_as_a_loop() {
        let modules = [
            module(
                "",
                "mod a; mod b; mod c; mod parent; pub use a::X;",
                &["a", "b", "c", "parent"],
            ),
            module("a", "use crate::b::Y;", &[]),
            module("b", "fn f() { crate::c::g() }", &[]),
            module("c", "use super::a::X;", &[]),
            module("parent", "mod kid; fn f() { kid::g() }", &["kid"]),
            module("parent::kid", "use super::Thing;", &[]),
        ];
        let graph = dependencies(&modules);
        assert_eq!(graph["a"], BTreeSet::from(["b".to_string()]));
        let found = circles(&graph);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], ["a", "b", "c", "a"]);
        assert_eq!(found[1], ["parent", "parent::kid", "parent"]);
        // Without the back edges, no circle.
        let modules = [
            module("", "mod a; mod b;", &["a", "b"]),
            module("a", "use crate::b::Y;", &[]),
            module("b", "", &[]),
        ];
        assert!(circles(&dependencies(&modules)).is_empty());
    }
}

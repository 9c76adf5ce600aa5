//! Documents that point somewhere must point somewhere real: every
//! relative Markdown link resolves to a file (and its `#anchor` to a
//! heading of it), and every Markdown file a document or a comment
//! mentions is a file of the repository.

use std::path::{Path, PathBuf};

/// The Markdown links of `text` outside code (inline code and fenced
/// blocks), as written: `(target)` of `[label](target)`.
pub(crate) fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_inline_code(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

fn without_inline_code(line: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    for c in line.chars() {
        if c == '`' {
            code = !code;
        } else if !code {
            out.push(c);
        }
    }
    out
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped,
/// spaces as dashes.
pub(crate) fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings.
pub(crate) fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// What is wrong with the link `target` written in the document `from`.
pub(crate) fn check_link(root: &Path, from: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, anchor) = match target.split_once('#') {
        Some((file, anchor)) => (file, Some(anchor)),
        None => (target, None),
    };
    let resolved: PathBuf = if file.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap_or(root).join(file)
    };
    if !resolved.exists() {
        return Some(format!("links to {target}, which does not exist"));
    }
    let anchor = anchor?;
    if resolved.extension().is_some_and(|e| e == "md") {
        let text = std::fs::read_to_string(&resolved).unwrap_or_default();
        if !anchors(&text).iter().any(|a| a == anchor) {
            return Some(format!("links to {target}: no such heading"));
        }
    }
    None
}

/// The Markdown files `text` mentions (a path's last part).
pub(crate) fn mentioned_md(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || "._-/".contains(c))) {
        let word = word.trim_end_matches('.');
        if let Some(stem) = word.strip_suffix(".md")
            && !stem.is_empty()
            && !word.starts_with("//")
        {
            let name = word.rsplit('/').next().unwrap_or(word);
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_outside_code_are_found() {
        let text =
            "See [a](docs/A.md#top) and `[b](x.md)`.\n```\n[c](y.md)\n```\n[d](https://x.example)";
        assert_eq!(links(text), ["docs/A.md#top", "https://x.example"]);
    }

    #[test]
    fn headings_become_anchors_as_on_github() {
        assert_eq!(
            slug(" The soak: does it survive three days?"),
            "the-soak-does-it-survive-three-days"
        );
        assert_eq!(anchors("# A\ntext\n## B c\n```\n# not\n```"), ["a", "b-c"]);
    }

    #[test]
    fn mentions_of_markdown_files_are_found() {
        assert_eq!(
            mentioned_md("see `docs/RUNBOOK.md` and reliability.md. Not https://x/y"),
            ["RUNBOOK.md", "reliability.md"]
        );
    }
}

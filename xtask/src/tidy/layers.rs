//! The layering rule: each package may depend only on what the layers
//! table of `docs/ARCHITECTURE.md` allows it, and internal arrows only
//! point down that table. The table is read from the document itself, so
//! the document and the check cannot drift apart.
//!
//! Table syntax (between the `<!-- tidy:layers -->` markers): one row per
//! package, `| package | allowed, allowed?, ... |`. A name ending in `?`
//! is allowed only as an optional dependency (behind a feature); `*`
//! allows anything. Only normal dependencies are checked: dev and build
//! dependencies are free.

/// One package's allowed normal dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub(crate) package: String,
    /// `(name, only_optional)`.
    pub(crate) allowed: Vec<(String, bool)>,
    pub(crate) anything: bool,
}

/// A package as `cargo metadata` describes it: its normal dependencies,
/// each with whether it is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) dependencies: Vec<(String, bool)>,
}

const START: &str = "<!-- tidy:layers -->";
const END: &str = "<!-- /tidy:layers -->";

/// The layers table in `architecture` (the text of docs/ARCHITECTURE.md),
/// top to bottom.
pub(crate) fn parse(architecture: &str) -> Result<Vec<Layer>, String> {
    let (Some(start), Some(end)) = (architecture.find(START), architecture.find(END)) else {
        return Err(format!("no {START} ... {END} table"));
    };
    let mut layers = Vec::new();
    for line in architecture[start + START.len()..end].lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [package, allowed] = cells[..] else {
            continue;
        };
        let package = package.trim_matches('`');
        if package.is_empty() || package == "package" || package.starts_with("---") {
            continue;
        }
        let mut layer = Layer {
            package: package.to_string(),
            allowed: Vec::new(),
            anything: false,
        };
        for name in allowed.split(',').map(|n| n.trim().trim_matches('`')) {
            match name {
                "" | "-" => {}
                "*" => layer.anything = true,
                optional if optional.ends_with('?') => layer
                    .allowed
                    .push((optional.trim_end_matches('?').to_string(), true)),
                plain => layer.allowed.push((plain.to_string(), false)),
            }
        }
        layers.push(layer);
    }
    if layers.is_empty() {
        return Err("the layers table has no rows".into());
    }
    Ok(layers)
}

/// Every breach of `layers` by `packages`.
pub(crate) fn check(layers: &[Layer], packages: &[Package]) -> Vec<String> {
    let mut problems = Vec::new();
    let internal: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    for package in packages {
        let Some(index) = layers.iter().position(|l| l.package == package.name) else {
            problems.push(format!(
                "{}: no row in the layers table of docs/ARCHITECTURE.md",
                package.name
            ));
            continue;
        };
        let layer = &layers[index];
        for (dep, optional) in &package.dependencies {
            if layer.anything {
                continue;
            }
            match layer.allowed.iter().find(|(name, _)| name == dep) {
                None => problems.push(format!(
                    "{} may not depend on {dep} (layers table: {})",
                    package.name,
                    describe(layer)
                )),
                Some((_, true)) if !optional => problems.push(format!(
                    "{} may depend on {dep} only as an optional dependency (a feature)",
                    package.name
                )),
                Some(_) => {}
            }
        }
    }
    // The table itself: internal arrows point down, and every row is a
    // package that exists.
    for (index, layer) in layers.iter().enumerate() {
        if !internal.contains(&layer.package.as_str()) {
            problems.push(format!(
                "the layers table names {}, which is not a workspace package",
                layer.package
            ));
        }
        for (dep, _) in &layer.allowed {
            let below = layers[index..].iter().any(|l| &l.package == dep);
            if internal.contains(&dep.as_str()) && below {
                problems.push(format!(
                    "the layers table lets {} depend on {dep}, which is not above it: arrows point down",
                    layer.package
                ));
            }
        }
    }
    problems
}

fn describe(layer: &Layer) -> String {
    let names: Vec<String> = layer
        .allowed
        .iter()
        .map(|(n, optional)| {
            if *optional {
                format!("{n}?")
            } else {
                n.clone()
            }
        })
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "intro\n<!-- tidy:layers -->\n| package | may depend on |\n|---|---|\n\
        | `core` | bytes, serde? |\n| `pool` | core, tokio |\n| `bin` | * |\n<!-- /tidy:layers -->\n";

    fn package(name: &str, deps: &[(&str, bool)]) -> Package {
        Package {
            name: name.into(),
            dependencies: deps.iter().map(|(d, o)| ((*d).into(), *o)).collect(),
        }
    }

    #[test]
    fn a_right_arrow_passes_and_a_wrong_one_fails() {
        let layers = parse(TABLE).expect("a table");
        assert_eq!(layers.len(), 3);
        let good = [
            package("core", &[("bytes", false), ("serde", true)]),
            package("pool", &[("core", false), ("tokio", false)]),
            package("bin", &[("pool", false), ("anything", false)]),
        ];
        assert_eq!(check(&layers, &good), Vec::<String>::new());
        // The core reaching for the runtime, an arrow pointing up, serde
        // without a feature, and a package with no row.
        let bad = [
            package("core", &[("tokio", false), ("serde", false)]),
            package("pool", &[("core", false), ("bin", false)]),
            package("bin", &[]),
            package("stray", &[]),
        ];
        let problems = check(&layers, &bad);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].contains("core may not depend on tokio"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("serde only as an optional"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("pool may not depend on bin"),
            "{problems:?}"
        );
        assert!(problems[3].contains("stray: no row"), "{problems:?}");
    }

    #[test]
    fn the_table_itself_points_down() {
        let upside_down =
            "<!-- tidy:layers -->\n| `core` | pool |\n| `pool` | |\n<!-- /tidy:layers -->";
        let layers = parse(upside_down).expect("a table");
        let packages = [package("core", &[]), package("pool", &[])];
        let problems = check(&layers, &packages);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("arrows point down"), "{problems:?}");
    }
}

//! The layers keep pointing one way: every `crate::` path of every module of `runtime/` (and of
//! the code build.rs generates) is checked against the layer list of docs/ARCHITECTURE.md. A
//! module that imports a layer above its own, a module missing from the list, or modules that
//! import each other in a circle fail, naming the file, the line and the import.

use crate::support::repo_root;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first: each a list of top-level modules.
fn layers(doc: &str) -> Vec<Vec<String>> {
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/ARCHITECTURE.md has a ```layers block");
    block
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(_, modules)| modules.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// One source file: the top-level module it belongs to, a name for messages, its text.
struct Source {
    module: String,
    name: String,
    text: String,
}

/// The top-level modules a line's code names through `crate::` (`crate::a::b`, `crate::{a, b}`).
fn named_modules(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            found.extend(inner.split(',').filter_map(|p| first_segment(p.trim())));
        } else if let Some(name) = first_segment(after) {
            found.push(name);
        }
        rest = after;
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// The code of a line: none for a comment line, and a trailing `// ...` comment cut off.
fn code_of(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    line.split(" // ").next().unwrap_or(line)
}

/// Every broken rule: upward imports, unlisted modules, circles.
fn check(sources: &[Source], layers: &[Vec<String>]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> =
        layers.iter().enumerate().flat_map(|(i, ms)| ms.iter().map(move |m| (m.as_str(), i))).collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let Some(&own) = rank.get(source.module.as_str()) else {
            problems.push(format!(
                "{}: module `{}` is not in the layer list of docs/ARCHITECTURE.md",
                source.name, source.module
            ));
            continue;
        };
        for (n, line) in source.text.lines().enumerate() {
            let justified = line.contains("// upward:");
            for target in named_modules(code_of(line)) {
                if target == source.module {
                    continue;
                }
                match rank.get(target.as_str()) {
                    None => problems.push(format!(
                        "{}:{}: imports `crate::{target}`, which is not in the layer list of docs/ARCHITECTURE.md",
                        source.name,
                        n + 1
                    )),
                    Some(&theirs) if theirs < own && !justified => problems.push(format!(
                        "{}:{}: `{}` ({}) imports `crate::{target}`, a layer above its own ({}): {}",
                        source.name,
                        n + 1,
                        source.module,
                        layers[own].join(" "),
                        layers[theirs].join(" "),
                        line.trim()
                    )),
                    Some(_) => {}
                }
                edges.entry(source.module.clone()).or_default().insert(target);
            }
        }
    }
    problems.extend(circles(&edges));
    problems
}

/// The import circles among top-level modules, each once, as `a -> b -> a`.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            found.push(format!("import circle: {}", circle.join(" -> ")));
            return;
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done, found);
        }
        path.pop();
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for node in edges.keys() {
        visit(node, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("runtime/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every file of `runtime/` but the crate root (which only declares the modules), and the code
/// build.rs generates into the modules that include it.
fn sources() -> Vec<Source> {
    let root = repo_root().join("runtime");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut sources: Vec<Source> = files
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "lib.rs"))
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under runtime/").to_path_buf();
            let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
            let module = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
            let text = std::fs::read_to_string(&path).expect("readable source");
            Source { module, name: format!("runtime/{}", relative.display()), text }
        })
        .collect();
    let generated = Path::new(env!("OUT_DIR"));
    for (file, module) in [("catalogue.rs", "catalogue"), ("providers.rs", "catalogue"), ("http_routes.rs", "http")] {
        let text = std::fs::read_to_string(generated.join(file)).expect("build.rs wrote it");
        sources.push(Source { module: module.to_owned(), name: format!("OUT_DIR/{file}"), text });
    }
    sources
}

#[test]
fn every_import_points_down_the_layers_and_none_goes_round() {
    let doc = std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let layers = layers(&doc);
    assert!(layers.len() >= 5, "{layers:?}");
    let sources = sources();
    assert!(sources.len() > 50, "found only {} files", sources.len());
    let problems = check(&sources, &layers);
    assert!(problems.is_empty(), "{} broken rule(s):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_check_names_an_upward_import_an_unlisted_module_and_a_circle() {
    let layers =
        vec![vec!["http".to_owned()], vec!["router".to_owned()], vec!["exchange".to_owned(), "clock".to_owned()]];
    let source = |module: &str, text: &str| Source {
        module: module.into(),
        name: format!("runtime/{module}/x.rs"),
        text: text.into(),
    };
    let sources = [
        source(
            "router",
            "use crate::exchange::ApiError;\nuse crate::{clock, http::AppState};\nuse crate::http::Limits; // upward: said why",
        ),
        source("exchange", "// a comment naming crate::http is not an import\nfn f() { crate::clock::unix_now(); }"),
        source("clock", "use crate::exchange::Usage;"),
        source("mystery", "use crate::http;"),
        source("http", "use crate::router::Routed;"),
    ];
    let problems = check(&sources, &layers);
    // Line 3's upward import is said why, so only line 2 is reported; both still make a circle.
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "runtime/router/x.rs:2: `router` (router) imports `crate::http`, a layer above its own (http)"
        ),
        "{problems:#?}"
    );
    assert!(problems[1].contains("module `mystery` is not in the layer list"), "{problems:#?}");
    assert!(problems[2].starts_with("import circle: "), "{problems:#?}");
    assert!(
        problems[2].contains("clock -> exchange -> clock") || problems[2].contains("exchange -> clock -> exchange")
    );
    assert!(problems[3].contains("http -> router -> http"), "{problems:#?}");
}

//! `artisync import wso2 DIR`: a WSO2 `synapse-configs/default` tree
//! becomes one `<definitions>` bundle per API, holding the API and every
//! endpoint, sequence and local entry it refers to by key (recursively),
//! applied in one call. Files that cannot be used are listed with the
//! reason; the rest still goes in.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use artisync_synapse::references::{self, ElementKind};
use serde_json::{Value, json};

use super::apply::{Source, Target, apply_sources};
use super::{CommandError, parse_duration};
use crate::connection::Publisher;
use crate::output::{Format, Table};

/// The gateway label WSO2 deploys to by default.
pub const DEFAULT_LABEL: &str = "Production and Sandbox";

/// The directories of a `synapse-configs/default` tree that artisync
/// serves, and the kind of element each holds.
const SERVED: &[(&str, ElementKind)] = &[
    ("api", ElementKind::Api),
    ("endpoints", ElementKind::Endpoint),
    ("sequences", ElementKind::Sequence),
    ("local-entries", ElementKind::LocalEntry),
];

/// Directories of the tree that artisync does not serve.
const NOT_SERVED: &[&str] = &[
    "proxy-services",
    "tasks",
    "templates",
    "message-stores",
    "message-processors",
    "inbound-endpoints",
    "priority-executors",
    "event-sources",
    "imports",
];

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// What to import from.
    #[command(subcommand)]
    pub from: ImportFrom,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImportFrom {
    /// A WSO2 `synapse-configs/default` directory.
    Wso2(Wso2Args),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Wso2Args {
    /// The `synapse-configs/default` directory.
    pub dir: PathBuf,
    /// The gateway label to deploy every API to.
    #[arg(long, short = 'l', default_value = DEFAULT_LABEL)]
    pub label: String,
    /// Show the plan only.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until every live node of the label applied the APIs.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (exit 3 after it).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A usable definition from the tree.
#[derive(Debug, Clone)]
struct Definition {
    kind: ElementKind,
    name: String,
    file: PathBuf,
    /// The element as written, without its XML declaration.
    xml: String,
    references: Vec<String>,
}

/// A file that was left out, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// What the tree holds.
#[derive(Debug, Default)]
struct Tree {
    apis: Vec<Definition>,
    /// Endpoints, sequences and local entries by key.
    named: BTreeMap<String, Definition>,
    skipped: Vec<Skipped>,
}

fn strip_declaration(xml: &str) -> &str {
    let xml = xml.trim_start_matches('\u{feff}').trim_start();
    if xml.starts_with("<?xml")
        && let Some(end) = xml.find("?>")
    {
        return xml[end + 2..].trim_start();
    }
    xml
}

fn read_tree(dir: &Path) -> Result<Tree, CommandError> {
    if !dir.is_dir() {
        return Err(CommandError::file(
            dir,
            "is not a directory (give synapse-configs/default)",
        ));
    }
    let mut tree = Tree::default();
    for sub in NOT_SERVED {
        let path = dir.join(sub);
        if let Ok(entries) = std::fs::read_dir(&path) {
            for entry in entries.flatten() {
                tree.skipped.push(Skipped {
                    file: entry.path().display().to_string(),
                    reason: format!("{sub}: artisync gateways serve APIs only"),
                });
            }
        }
    }
    let mut found_any = false;
    for (sub, kind) in SERVED {
        let path = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        found_any = true;
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let skip = |reason: String| Skipped {
                file: file.display().to_string(),
                reason,
            };
            if !file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
            {
                if file.is_file() {
                    tree.skipped.push(skip("not an .xml file".to_owned()));
                }
                continue;
            }
            let text = match std::fs::read(&file).map(String::from_utf8) {
                Ok(Ok(text)) => text,
                Ok(Err(_)) => {
                    tree.skipped.push(skip("not UTF-8 text".to_owned()));
                    continue;
                }
                Err(e) => {
                    tree.skipped.push(skip(format!("cannot read: {e}")));
                    continue;
                }
            };
            let described = match references::describe(text.as_bytes()) {
                Ok(d) => d,
                Err(e) => {
                    tree.skipped.push(skip(e.to_string()));
                    continue;
                }
            };
            if described.kind != *kind {
                tree.skipped.push(skip(format!(
                    "a <{}> in {sub}/: expected <{}>",
                    described.root,
                    kind.as_str()
                )));
                continue;
            }
            let Some(name) = described.name.clone().filter(|n| !n.is_empty()) else {
                tree.skipped
                    .push(skip(format!("the <{}> has no name", described.root)));
                continue;
            };
            let definition = Definition {
                kind: *kind,
                name: name.clone(),
                file: file.clone(),
                xml: strip_declaration(&text).trim_end().to_owned(),
                references: described.references,
            };
            if *kind == ElementKind::Api {
                tree.apis.push(definition);
            } else if let Some(first) = tree.named.get(&name) {
                tree.skipped.push(skip(format!(
                    "the key {name:?} is also defined in {}",
                    first.file.display()
                )));
            } else {
                tree.named.insert(name, definition);
            }
        }
    }
    if !found_any {
        return Err(CommandError::file(
            dir,
            "holds none of api/, endpoints/, sequences/, local-entries/: is it synapse-configs/default?",
        ));
    }
    Ok(tree)
}

/// One API with everything it refers to, breadth first; keys the tree
/// does not define are left to the gateway's built-ins or the
/// publisher's validation.
fn bundle(api: &Definition, named: &BTreeMap<String, Definition>) -> (String, Vec<String>) {
    let mut included: Vec<&Definition> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = api.references.iter().map(String::as_str).collect();
    while let Some(key) = queue.pop_front() {
        if !seen.insert(key) {
            continue;
        }
        if let Some(definition) = named.get(key) {
            included.push(definition);
            queue.extend(definition.references.iter().map(String::as_str));
        }
    }
    // Definitions first in the order a reader expects: local entries,
    // endpoints, sequences, then the API.
    included.sort_by_key(|d| match d.kind {
        ElementKind::LocalEntry => 0,
        ElementKind::Endpoint => 1,
        _ => 2,
    });
    let mut xml = String::from("<definitions xmlns=\"http://ws.apache.org/ns/synapse\">\n");
    for d in &included {
        xml.push_str(&d.xml);
        xml.push('\n');
    }
    xml.push_str(&api.xml);
    xml.push_str("\n</definitions>\n");
    (xml, included.iter().map(|d| d.name.clone()).collect())
}

pub async fn wso2(
    publisher: &Publisher,
    args: Wso2Args,
    format: Format,
) -> Result<(), CommandError> {
    let tree = read_tree(&args.dir)?;
    let mut sources = Vec::new();
    let mut bundles = Vec::new();
    for api in &tree.apis {
        let (xml, included) = bundle(api, &tree.named);
        bundles.push(
            json!({"api": api.name, "file": api.file.display().to_string(), "includes": included}),
        );
        sources.push(Source::Inline {
            origin: api.file.display().to_string(),
            xml,
        });
    }
    let skipped: Vec<Value> = tree
        .skipped
        .iter()
        .map(|s| json!({"file": s.file, "reason": s.reason}))
        .collect();
    let extra = json!({"bundles": bundles, "notImported": skipped});
    match format {
        Format::Json => {}
        Format::Table => {
            let mut table = Table::new(&["API", "FILE", "BUNDLED WITH"]);
            for b in &bundles {
                table.row(vec![
                    crate::output::cell(&b["api"]),
                    crate::output::cell(&b["file"]),
                    crate::output::cell(&b["includes"]),
                ]);
            }
            println!("{} API(s) found in {}:", bundles.len(), args.dir.display());
            table.print();
            if !tree.skipped.is_empty() {
                println!("not imported:");
                let mut table = Table::new(&["FILE", "REASON"]);
                for s in &tree.skipped {
                    table.row(vec![s.file.clone(), s.reason.clone()]);
                }
                table.print();
            }
        }
    }
    for s in &tree.skipped {
        if format == Format::Json {
            eprintln!("not imported: {}: {}", s.file, s.reason);
        }
    }
    if sources.is_empty() {
        return Err(CommandError::Failed(format!(
            "no usable API in {}/api",
            args.dir.display()
        )));
    }
    let sources: Arc<[Source]> = sources.into();
    let target = Target {
        label: args.label,
        prune: false,
        dry_run: args.dry_run,
        wait_for: args.wait.then_some(args.timeout),
    };
    apply_sources(
        publisher,
        &sources,
        &target,
        format,
        (format == Format::Json).then_some(extra),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn an_api_is_bundled_with_what_it_refers_to_recursively_and_bad_files_are_listed() {
        let dir = std::env::temp_dir().join(format!("artisync-import-{}", uuid::Uuid::new_v4()));
        write(
            &dir,
            "api/A.xml",
            r#"<?xml version="1.0"?><api xmlns="http://ws.apache.org/ns/synapse" name="A" context="/a"><resource methods="GET"><inSequence><sequence key="S"/></inSequence></resource></api>"#,
        );
        write(
            &dir,
            "sequences/S.xml",
            r#"<sequence xmlns="http://ws.apache.org/ns/synapse" name="S"><send><endpoint key="E"/></send></sequence>"#,
        );
        write(
            &dir,
            "endpoints/E.xml",
            r#"<endpoint xmlns="http://ws.apache.org/ns/synapse" name="E"><address uri="http://x"/></endpoint>"#,
        );
        write(
            &dir,
            "endpoints/Unused.xml",
            r#"<endpoint xmlns="http://ws.apache.org/ns/synapse" name="Unused"><address uri="http://y"/></endpoint>"#,
        );
        write(&dir, "endpoints/broken.xml", "<endpoint name=");
        write(&dir, "proxy-services/P.xml", "<proxy name=\"P\"/>");
        let tree = read_tree(&dir).unwrap();
        assert_eq!(tree.apis.len(), 1);
        let (xml, included) = bundle(&tree.apis[0], &tree.named);
        assert_eq!(included, ["E", "S"]);
        assert!(xml.starts_with("<definitions"));
        assert!(!xml.contains("<?xml"));
        assert!(!xml.contains("Unused"));
        let reasons: Vec<&str> = tree.skipped.iter().map(|s| s.file.as_str()).collect();
        assert!(
            reasons.iter().any(|f| f.ends_with("broken.xml")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|f| f.ends_with("P.xml")), "{reasons:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

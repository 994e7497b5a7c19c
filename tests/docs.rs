//! The documentation holds together: every relative link in README.md and docs/ names a file of
//! the repository, every `#anchor` a heading of that file (as GitHub slugs it), and the code
//! cites the docs rather than a specification outside the repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a readable entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// README.md and every Markdown file under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    pages.extend(
        files_under(&root().join("docs"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    pages.sort();
    pages
}

/// The lines outside fenced code blocks (the fences themselves left out).
fn unfenced(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        let fence = line.trim_start().starts_with("```");
        fenced ^= fence;
        !fence && !fenced
    })
}

/// The text outside fenced code blocks and inline code spans.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for line in unfenced(text) {
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        found.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces
/// as hyphens; a repeated heading gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in unfenced(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        seen.insert(unique);
    }
    seen
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a directory").join(path)
            };
            let name = page.strip_prefix(root()).unwrap_or(&page).display();
            if !file.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if !anchor.is_empty()
                && file.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&file)).contains(anchor)
            {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser blind?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_what_github_sees() {
    let page = "# The node view\n## Two commands\n## Two commands\n```\n# not a heading\n```\n\
                ### `kubectl stowage`: a plugin!\nSee [a](docs/x.md#y) and `[b](c)`.\n";
    let found = anchors(page);
    for slug in [
        "the-node-view",
        "two-commands",
        "two-commands-1",
        "kubectl-stowage-a-plugin",
    ] {
        assert!(found.contains(slug), "{slug} missing from {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
    assert_eq!(links(page), ["docs/x.md#y"]);
}

#[test]
fn the_readme_is_a_front_page_and_the_code_cites_the_docs() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 150,
        "README.md has {lines} lines; details go to docs/"
    );
    let mut outside = Vec::new();
    for path in ["src", "tests", "charts"]
        .iter()
        .flat_map(|d| files_under(&root().join(d)))
    {
        if path.ends_with("tests/docs.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let section_sign = line.find('§').is_some_and(|i| {
                line[i + '§'.len_utf8()..].starts_with(|c: char| c.is_ascii_digit())
            });
            if line.contains("DESIGN.md") || line.contains("../shared/") || section_sign {
                outside.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "cite docs/ instead of a file outside the repository:\n{}",
        outside.join("\n")
    );
}

#[test]
fn troubleshooting_explains_every_reason_a_node_is_kept() {
    let page = read(&root().join("docs/troubleshooting.md"));
    let headings = anchors(&page);
    for reason in stowage::plan::Reason::ALL {
        let slug = reason.as_str().to_lowercase();
        assert!(
            headings.contains(&slug),
            "docs/troubleshooting.md has no section `{}`",
            reason.as_str()
        );
    }
    // In the order the plan checks them, as the page says.
    let order: Vec<usize> = stowage::plan::Reason::ALL
        .iter()
        .map(|r| {
            page.find(&format!("## `{}`", r.as_str()))
                .expect("a section")
        })
        .collect();
    assert!(order.is_sorted(), "sections out of the plan's order");
}

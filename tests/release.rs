//! What a release ships, checked without a forge: the krew manifest that makes
//! `kubectl krew install stowage` work.

use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.krew.yaml` as krew-release-bot renders it for `tag`: each `addURIAndSha` becomes the
/// archive's `uri` and `sha256` (here a made-up checksum).
fn render_krew(tag: &str) -> String {
    let template = std::fs::read_to_string(root().join(".krew.yaml")).expect(".krew.yaml");
    let mut out = String::new();
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some(call) = trimmed.strip_prefix("{{addURIAndSha \"") {
            let indent = &line[..line.len() - trimmed.len()];
            let uri = call
                .split('"')
                .next()
                .expect("a quoted URI")
                .replace("{{ .TagName }}", tag);
            out.push_str(&format!(
                "{indent}uri: {uri}\n{indent}sha256: {}\n",
                "9f".repeat(32)
            ));
        } else {
            out.push_str(&line.replace("{{ .TagName }}", tag));
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_krew_manifest_installs_the_binary_as_kubectl_stowage_on_every_platform() {
    let rendered = render_krew("v0.1.0");
    let manifest: Value = serde_saphyr::from_str(&rendered).expect("the rendered manifest is YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    // krew links `kubectl-<name>` to `bin`: the name kubectl looks for, and the one stowage
    // recognises to act as a plugin.
    assert_eq!(manifest["metadata"]["name"], "stowage");
    let spec = &manifest["spec"];
    assert_eq!(spec["version"], "v0.1.0");
    let short = spec["shortDescription"]
        .as_str()
        .expect("a short description");
    assert!(short.len() <= 60, "krew-index wants a short one: {short}");
    let platforms = spec["platforms"].as_array().expect("platforms");
    let mut seen = Vec::new();
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        let (os, arch) = (
            labels["os"].as_str().expect("os"),
            labels["arch"].as_str().expect("arch"),
        );
        let uri = p["uri"].as_str().expect("uri");
        assert!(
            uri.starts_with("https://") && uri.ends_with(&format!("-{os}-{arch}.tar.gz")),
            "{uri} is not the {os}/{arch} archive"
        );
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64));
        let bin = p["bin"].as_str().expect("bin");
        let files: Vec<&str> = p["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["from"].as_str())
            .collect();
        assert!(
            files.contains(&bin),
            "{os}/{arch}: bin {bin} is not unpacked"
        );
        seen.push(format!("{os}/{arch}"));
    }
    assert_eq!(seen, ["linux/amd64", "linux/arm64", "darwin/arm64"]);
}

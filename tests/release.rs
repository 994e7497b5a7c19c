//! What a release ships, checked without a forge or a container engine: the container image
//! (built by `examples/oci_image.rs`, as the release workflow builds it) and the krew manifest
//! that makes `kubectl krew install stowage` work.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A YAML file of the repository, as JSON values.
fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `os/arch` of an object with `os` and `arch` (a krew selector's labels, a matrix entry).
fn platform(of: &Value) -> String {
    format!(
        "{}/{}",
        of["os"].as_str().expect("os"),
        of["arch"].as_str().expect("arch")
    )
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
        let os_arch = platform(&p["selector"]["matchLabels"]);
        let uri = p["uri"].as_str().expect("uri");
        assert!(
            uri.starts_with("https://")
                && uri.ends_with(&format!("-{}.tar.gz", os_arch.replace('/', "-"))),
            "{uri} is not the {os_arch} archive"
        );
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64));
        let bin = p["bin"].as_str().expect("bin");
        let files: Vec<&str> = p["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["from"].as_str())
            .collect();
        assert!(files.contains(&bin), "{os_arch}: bin {bin} is not unpacked");
        seen.push(os_arch);
    }
    assert_eq!(seen, ["linux/amd64", "linux/arm64", "darwin/arm64"]);
}

/// The image builder, as the release workflow runs it (`cargo run --example oci_image`).
#[path = "../examples/oci_image.rs"]
mod oci_image;

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The blob a descriptor names, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("the blob");
    assert_eq!(
        oci_image::sha256(&bytes),
        hex,
        "blob {digest} does not hash to its name"
    );
    assert_eq!(descriptor["size"].as_u64(), Some(bytes.len() as u64));
    bytes
}

/// The image a cluster pulls: built here without a container engine, named as the chart's
/// defaults pull it, running as user 65532, and its binary runs from what the layer holds.
#[test]
fn the_image_is_what_the_chart_pulls_and_its_binary_runs_as_nonroot() {
    let work = std::env::temp_dir().join(format!("stowage-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let layout = work.join("oci");
    let argv = [
        "--binary",
        env!("CARGO_BIN_EXE_stowage"),
        "--revision",
        "test",
        "--out",
        layout.to_str().expect("a UTF-8 temp dir"),
    ];
    let named = oci_image::run(argv.map(String::from)).expect("the image builds");
    assert!(named.starts_with("ghcr.io/stowage-dev/stowage:"), "{named}");

    // The chart pulls `image.repository:image.tag`, the tag defaulting to its appVersion.
    let values = yaml_file("charts/stowage/values.yaml");
    let chart = yaml_file("charts/stowage/Chart.yaml");
    assert_eq!(
        values["image"]["tag"], "",
        "the tag follows the chart's appVersion"
    );
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let pulled = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        chart["appVersion"].as_str().unwrap()
    );

    assert_eq!(
        json_file(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json_file(&layout.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        pulled.as_str()
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION")
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, entry)).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], entry["platform"]["architecture"]);
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/stowage"])
    );
    assert_eq!(
        c["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(c["Labels"]["org.opencontainers.image.revision"], "test");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.source"],
        "https://github.com/stowage-dev/stowage"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = blob(&layout, &layers[0]);
    assert_eq!(
        config["rootfs"]["diff_ids"][0], layers[0]["digest"],
        "an uncompressed layer is its own diff"
    );

    // Unpacked, the layer is a root filesystem the binary runs from: its own loader and
    // libraries, the CA bundle, the passwd entry of the user it runs as.
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(work.join("layer.tar"), &layer).unwrap();
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(work.join("layer.tar"))
        .arg("-C")
        .arg(&rootfs)
        .status()
        .expect("tar");
    assert!(untar.success());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").exists());
    let loader = ["lib64/ld-linux-x86-64.so.2", "lib/ld-linux-aarch64.so.1"]
        .iter()
        .map(|l| rootfs.join(l))
        .find(|l| l.exists())
        .expect("the dynamic loader in the layer");
    let libs = std::fs::read_dir(rootfs.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let says_its_version = |run: &mut Command| {
        let out = run.output().expect("run the image's binary");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("stowage {}", env!("CARGO_PKG_VERSION")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    says_its_version(
        Command::new(&loader)
            .arg("--library-path")
            .arg(&libs)
            .arg(rootfs.join("usr/local/bin/stowage"))
            .arg("version")
            .env_clear(),
    );
    // As root (CI here), the image's own root and user: nothing from the host.
    let root_user = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root_user.stdout).trim() == "0" {
        says_its_version(
            Command::new("chroot")
                .arg("--userspec=65532:65532")
                .arg(&rootfs)
                .args(["/usr/local/bin/stowage", "version"]),
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// The release workflow cannot run here (no forge): actionlint checks it, and it builds the
/// archives the krew manifest downloads and pushes the image where the chart pulls from.
#[test]
fn the_release_workflow_lints_and_ships_what_krew_and_the_chart_name() {
    let workflow_path = ".github/workflows/release.yml";
    let actionlint = support::bin_dir().join("actionlint");
    let lint = Command::new(&actionlint)
        .arg(root().join(workflow_path))
        .output()
        .expect("run actionlint (built by tests/harness/build.sh)");
    assert!(
        lint.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let workflow = yaml_file(workflow_path);
    let built: Vec<String> = workflow["jobs"]["binaries"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("the binaries' matrix")
        .iter()
        .map(platform)
        .collect();
    let krew: Value = serde_saphyr::from_str(&render_krew("v1.2.3")).unwrap();
    let downloaded: Vec<String> = krew["spec"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| platform(&p["selector"]["matchLabels"]))
        .collect();
    assert_eq!(built, downloaded, "every platform krew offers is built");
    let text = std::fs::read_to_string(root().join(workflow_path)).unwrap();
    assert!(
        text.contains(
            r#"archive="stowage-${GITHUB_REF_NAME}-${{ matrix.os }}-${{ matrix.arch }}.tar.gz""#
        ),
        "the archives are named as .krew.yaml downloads them"
    );
    let values = yaml_file("charts/stowage/values.yaml");
    assert_eq!(workflow["env"]["IMAGE"], values["image"]["repository"]);
}

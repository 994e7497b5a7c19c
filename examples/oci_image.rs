//! Builds stowage's container image without a container engine: an OCI image layout (a
//! directory `skopeo copy oci:DIR docker://…`, `crane push` or `oras cp` pushes as is) whose one
//! layer holds the binary, the shared libraries it links (found with `ldd`), the CA
//! certificates rustls reads and a passwd entry for the non-root user 65532.
//!
//! `cargo run --release --example oci_image -- --binary target/release/stowage --out DIR`
//! (`--repository`, `--tag`, `--arch`, `--revision` override what it names). The binary is
//! copied without its debug information (`--strip PROGRAM`, default `strip` from binutils;
//! `aarch64-linux-gnu-strip` for an arm64 build on amd64, `none` to keep it). The layer is
//! uncompressed and every entry dated `SOURCE_DATE_EPOCH` (0 without it), so the same inputs
//! give the same digests.

use clap::Parser;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository the chart's `values.yaml` pulls from by default.
const REPOSITORY: &str = "ghcr.io/stowage-dev/stowage";
const NONROOT: u32 = 65532;
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(clap::Parser)]
struct Args {
    /// The binary to ship (build it with `--features aws`).
    #[arg(long)]
    binary: PathBuf,
    /// The OCI image layout directory to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = REPOSITORY)]
    repository: String,
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
    /// The image's architecture, as OCI names it (default: this machine's).
    #[arg(long, default_value_t = host_arch())]
    arch: String,
    /// The source revision, for the `org.opencontainers.image.revision` label.
    #[arg(long, default_value = "")]
    revision: String,
    /// The program that strips the binary's debug information, or `none`.
    #[arg(long, default_value = "strip")]
    strip: String,
}

fn host_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
    .into()
}

/// One file of the layer.
struct Entry {
    path: String,
    mode: u32,
    data: Vec<u8>,
}

/// A ustar header block for a regular file (or a directory when `dir`).
fn header(path: &str, mode: u32, size: usize, mtime: u64, dir: bool) -> Result<[u8; 512], String> {
    let mut h = [0u8; 512];
    let (prefix, name) = match path.len() {
        0..=100 => ("", path),
        _ => path
            .rsplit_once('/')
            .filter(|(p, n)| p.len() <= 155 && n.len() <= 100)
            .ok_or_else(|| format!("{path}: too long for a ustar header"))?,
    };
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, name.as_bytes());
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, format!("{mtime:011o}\0").as_bytes());
    put(156, if dir { b"5" } else { b"0" });
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    put(345, prefix.as_bytes());
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// The layer: every parent directory, then each file, sorted, as one tar stream.
fn layer(entries: &[Entry], mtime: u64) -> Result<Vec<u8>, String> {
    // Every parent directory of every file, each once, sorted.
    let dirs: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.path.match_indices('/').map(|(i, _)| &e.path[..=i]))
        .collect();
    let mut tar = Vec::new();
    for d in dirs {
        let mode = if d == "tmp/" { 0o1777 } else { 0o755 };
        tar.extend_from_slice(&header(d, mode, 0, mtime, true)?);
    }
    let mut files: Vec<&Entry> = entries.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for e in files {
        tar.extend_from_slice(&header(&e.path, e.mode, e.data.len(), mtime, false)?);
        tar.extend_from_slice(&e.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    // Two empty blocks end the archive.
    tar.resize(tar.len() + 1024, 0);
    Ok(tar)
}

/// The shared libraries `binary` loads, and its loader, as absolute paths.
fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(format!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Lower-case hex SHA-256, as OCI digests spell it.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` as a blob; returns its descriptor's digest and size.
fn blob(out: &Path, bytes: &[u8]) -> Result<(String, usize), String> {
    let digest = sha256(bytes);
    let path = out.join("blobs/sha256").join(&digest);
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((format!("sha256:{digest}"), bytes.len()))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The binary as it goes into the image: without debug information unless `strip` is `none`.
fn binary(a: &Args) -> Result<Vec<u8>, String> {
    if a.strip == "none" {
        return read(&a.binary);
    }
    let stripped = a.out.join("stowage.stripped");
    let status = Command::new(&a.strip)
        .arg("-o")
        .arg(&stripped)
        .arg(&a.binary)
        .status()
        .map_err(|e| {
            format!(
                "--strip {}: {e} (install binutils, or pass --strip none)",
                a.strip
            )
        })?;
    if !status.success() {
        return Err(format!(
            "--strip {}: {status} on {}",
            a.strip,
            a.binary.display()
        ));
    }
    let bytes = read(&stripped)?;
    std::fs::remove_file(&stripped).map_err(|e| format!("{}: {e}", stripped.display()))?;
    Ok(bytes)
}

fn build(a: &Args) -> Result<String, String> {
    let mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    std::fs::create_dir_all(a.out.join("blobs/sha256"))
        .map_err(|e| format!("{}: {e}", a.out.display()))?;
    let mut entries = vec![Entry {
        path: "usr/local/bin/stowage".into(),
        mode: 0o755,
        data: binary(a)?,
    }];
    for lib in linked_libraries(&a.binary)? {
        // Each under the path the binary asks for; a symlink's target's contents.
        entries.push(Entry {
            path: lib.to_string_lossy().trim_start_matches('/').into(),
            mode: 0o755,
            data: read(
                &std::fs::canonicalize(&lib).map_err(|e| format!("{}: {e}", lib.display()))?,
            )?,
        });
    }
    entries.push(Entry {
        path: CA_BUNDLE.trim_start_matches('/').into(),
        mode: 0o644,
        data: read(Path::new(CA_BUNDLE))?,
    });
    entries.push(Entry {
        path: "etc/passwd".into(),
        mode: 0o644,
        data: format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n").into_bytes(),
    });
    entries.push(Entry {
        path: "etc/group".into(),
        mode: 0o644,
        data: format!("root:x:0:\nnonroot:x:{NONROOT}:\n").into_bytes(),
    });
    entries.push(Entry {
        path: "tmp/.keep".into(),
        mode: 0o644,
        data: Vec::new(),
    });
    let tar = layer(&entries, mtime)?;

    let (layer_digest, layer_size) = blob(&a.out, &tar)?;
    let created = jiff::Timestamp::from_second(mtime as i64)
        .map_err(|e| format!("SOURCE_DATE_EPOCH: {e}"))?
        .to_string();
    let mut labels = serde_json::json!({
        "org.opencontainers.image.title": "stowage",
        "org.opencontainers.image.description": "Consolidates batch Kubernetes clusters next to Karpenter or Cluster Autoscaler",
        "org.opencontainers.image.source": "https://github.com/stowage-dev/stowage",
        "org.opencontainers.image.version": a.tag,
        "org.opencontainers.image.licenses": env!("CARGO_PKG_LICENSE"),
        "org.opencontainers.image.created": created,
    });
    if !a.revision.is_empty() {
        labels["org.opencontainers.image.revision"] = a.revision.clone().into();
    }
    let config = serde_json::json!({
        "created": created,
        "architecture": a.arch,
        "os": "linux",
        "config": {
            "User": format!("{NONROOT}:{NONROOT}"),
            "Entrypoint": ["/usr/local/bin/stowage"],
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                format!("SSL_CERT_FILE={CA_BUNDLE}"),
            ],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "examples/oci_image.rs"}],
    });
    let (config_digest, config_size) = blob(&a.out, &serde_json::to_vec(&config).expect("JSON"))?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
        "annotations": labels,
    });
    let (manifest_digest, manifest_size) =
        blob(&a.out, &serde_json::to_vec(&manifest).expect("JSON"))?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": a.arch, "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": a.tag,
                "io.containerd.image.name": format!("{}:{}", a.repository, a.tag),
            },
        }],
    });
    let write = |name: &str, value: &serde_json::Value| {
        let path = a.out.join(name);
        std::fs::write(&path, serde_json::to_vec(value).expect("JSON"))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    write("index.json", &index)?;
    write(
        "oci-layout",
        &serde_json::json!({"imageLayoutVersion": "1.0.0"}),
    )?;
    Ok(format!("{}:{} {manifest_digest}", a.repository, a.tag))
}

/// Builds the image `argv` (the options above, without the program name) describes; returns
/// `repository:tag digest`. `tests/release.rs` calls it as the command line does.
pub fn run(argv: impl IntoIterator<Item = String>) -> Result<String, String> {
    let args = Args::try_parse_from(std::iter::once("oci_image".to_string()).chain(argv))
        .map_err(|e| e.to_string())?;
    build(&args)
}

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    match build(&Args::parse()) {
        Ok(named) => {
            println!("{named}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

//! `kubectl stowage …`: the binary as a kubectl plugin, found by the real kubectl on PATH and
//! run against a real API server (its own, so its nodes are not another test's).

mod support;

use std::process::Command;
use support::ControlPlane;

/// `kubectl stowage …`: kubectl finds `kubectl-stowage` on PATH and hands it the rest of the
/// command line with the user's kubeconfig in the environment; as a plugin, `plan` plans that
/// cluster (not the embedded demo) and help names the command as the user typed it.
#[test]
fn kubectl_runs_stowage_as_a_plugin_against_the_current_context() {
    let cp = ControlPlane::shared();
    let _ns = support::workload::fragmented(cp, "plugin");
    let dir = std::env::temp_dir().join(format!("stowage-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-stowage");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_stowage"), &plugin).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        let out = Command::new(cp.bin.join("kubectl"))
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", &cp.kubeconfig)
            .output()
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, _) = kubectl(&["plugin", "list"]);
    assert!(ok && listed.contains("kubectl-stowage"), "{listed}");
    let (ok, help, err) = kubectl(&["stowage", "--help"]);
    assert!(ok, "{err}");
    assert!(help.contains("Usage: kubectl stowage <COMMAND>"), "{help}");
    let (ok, plan, err) = kubectl(&["stowage", "plan", "-o", "json"]);
    assert!(ok, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("the plan as JSON");
    let names = plan.to_string();
    assert!(
        names.contains("plugin-1") && !names.contains("ip-10-0-"),
        "the live cluster, not the demo: {names}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Workloads the controller tests share: a fragmented pool of kwok nodes whose thin nodes run
//! one `my-scheduler` web replica each, and where those replicas run.

use super::ControlPlane;
use serde_json::Value;
use std::time::Duration;
use stowage::demo::{NodeJson, PodJson};
use stowage::keys;

/// A busy node (`<p>-0`, 75 % requested) and two thin ones with one web replica each, all of
/// pool `<p>`; the web Deployment is scheduled by `my-scheduler`. Returns the namespace.
pub fn fragmented(cp: &ControlPlane, p: &str) -> String {
    let ns = cp.namespace(p);
    pool_nodes(cp, p, 3);
    cp.apply_objects(vec![
        PodJson::new(&ns, "busy")
            .on(&format!("{p}-0"))
            .annotate(keys::KARPENTER_DO_NOT_DISRUPT, "true")
            .grace(0)
            .requests(6000, 24 * 1024)
            .build(),
    ]);
    // One replica on each thin node: the others cordoned while it schedules.
    for (i, target) in [1, 2].iter().enumerate() {
        for other in (0..3).filter(|n| n != target) {
            cp.kubectl(&["cordon", &format!("{p}-{other}")]);
        }
        if i == 0 {
            cp.apply(&format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      schedulerName: my-scheduler\n      nodeSelector: {{pool: {p}}}\n      terminationGracePeriodSeconds: 0\n      containers: [{{name: c, image: fake, resources: {{requests: {{cpu: 500m, memory: 1Gi}}}}}}]\n"
            ));
        } else {
            cp.kubectl(&["scale", "deployment", "web", "-n", &ns, "--replicas=2"]);
        }
        super::wait_until(
            &format!("web on {p}-{target}"),
            Duration::from_secs(30),
            || web_nodes(cp, &ns).contains(&format!("{p}-{target}")),
        );
        for n in 0..3 {
            cp.kubectl(&["uncordon", &format!("{p}-{n}")]);
        }
    }
    ns
}

/// `count` kwok nodes `<p>-0`… of 8 cpu and 32 GiB, labelled `pool: <p>`.
pub fn pool_nodes(cp: &ControlPlane, p: &str, count: usize) {
    let nodes: Vec<Value> = (0..count)
        .map(|i| {
            NodeJson::new(&format!("{p}-{i}"))
                .kwok()
                .label("pool", p)
                .resources("8", "32Gi", "110")
                .build()
        })
        .collect();
    cp.apply_objects(nodes);
}

/// What `jsonpath` says of the web replicas of `ns` that `fields` selects ("" when the
/// API server answers nothing).
fn web_pods(cp: &ControlPlane, ns: &str, fields: &str, jsonpath: &str) -> String {
    cp.kubectl_output(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app=web",
        "--field-selector",
        fields,
        "-o",
        &format!("jsonpath={jsonpath}"),
    ])
    .unwrap_or_default()
}

/// The nodes of the running web replicas, sorted.
pub fn web_nodes(cp: &ControlPlane, ns: &str) -> Vec<String> {
    let out = web_pods(cp, ns, "status.phase=Running", "{.items[*].spec.nodeName}");
    let mut nodes: Vec<String> = out.split_whitespace().map(String::from).collect();
    nodes.sort();
    nodes
}

/// The name of the web replica running on `node`.
pub fn web_pod_on(cp: &ControlPlane, ns: &str, node: &str) -> String {
    web_pods(
        cp,
        ns,
        &format!("spec.nodeName={node}"),
        "{.items[0].metadata.name}",
    )
}

/// A PodDisruptionBudget that allows no disruption of the web replicas, once the disruption
/// controller has counted them.
pub fn forbid_web_disruption(cp: &ControlPlane, ns: &str) {
    cp.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  maxUnavailable: 0\n  selector: {{matchLabels: {{app: web}}}}\n"
    ));
    super::wait_until("the PDB computed", Duration::from_secs(30), || {
        cp.kubectl_output(&[
            "get",
            "pdb",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.expectedPods}",
        ])
        .is_some_and(|s| s == "2")
    });
}

/// A Spark app: a bare driver pod `driver` on `driver_node` (app id `app`) and executor `i`
/// (`spark-exec-id: i`) on `<p>-i` for each of `executors`, owned by the driver pod (the
/// garbage collector removes them when it goes), each requesting `(milli-cpu, MiB)`. Returns the
/// driver's UID.
pub fn spark_app(
    cp: &ControlPlane,
    ns: &str,
    app: &str,
    driver_node: &str,
    p: &str,
    executors: &[usize],
    (cpu, memory_mib): (i64, i64),
) -> String {
    cp.apply_objects(vec![
        PodJson::new(ns, "driver")
            .on(driver_node)
            .grace(0)
            .label("spark-role", "driver")
            .label("spark-app-selector", app)
            .requests(500, 1024)
            .build(),
    ]);
    let uid = cp.kubectl(&[
        "get",
        "pod",
        "driver",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    cp.apply_objects(
        executors
            .iter()
            .map(|i| {
                PodJson::new(ns, &format!("exec-{i}"))
                    .on(&format!("{p}-{i}"))
                    .grace(0)
                    .owner_uid("Pod", "driver", &uid)
                    .label("spark-role", "executor")
                    .label("spark-app-selector", app)
                    .label("spark-exec-id", &i.to_string())
                    .requests(cpu, memory_mib)
                    .build()
            })
            .collect(),
    );
    uid
}

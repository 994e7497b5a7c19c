//! The chart's alerts and dashboard against a real Prometheus (built by the harness from its Go
//! module): `promtool check rules` on the alerts, `promtool check metrics` on a live `/metrics`,
//! and Prometheus scraping `stowage controller` while it drains nodes, handles a spot warning
//! from the queue and tags an Auto Scaling group; then every query of the dashboard returns
//! series over the run, every metric an alert reads was exported, and every alert expression
//! evaluates.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stowage::demo::NodeJson;
use support::moto::{Moto, spot_warning};
use support::{ControlPlane, Supervised, curl, free_port, wait_until};

fn promtool(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(cp.bin.join("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `GET` of Prometheus's HTTP API; the `data` of a successful answer.
fn api(base: &str, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut args: Vec<String> = vec!["-sfG".into(), format!("{base}{path}")];
    for (k, v) in params {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let body = curl(&refs).unwrap_or_else(|| panic!("Prometheus refused {path} {params:?}"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v["data"].clone()
}

/// The metric names a PromQL expression reads (stowage's only).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("stowage_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_alerts_query_what_the_controller_exports() {
    let cp = ControlPlane::shared();
    cp.install_crd();
    let (ok, out) = promtool(
        cp,
        &["check", "rules", "charts/stowage/files/alerts.yaml"],
        None,
    );
    assert!(ok && out.contains("SUCCESS: 6 rules found"), "{out}");

    // Work for every panel: a fragmented pool to drain (a budget of one node, so the second
    // candidate waits on it), a spot warning from the queue, a group to tag.
    let moto = Moto::session();
    let _ns = support::workload::fragmented(cp, "prom");
    cp.apply_objects(vec![
        NodeJson::new("prom-spot")
            .kwok()
            .label("pool", "prom-spot")
            .resources("8", "32Gi", "110")
            .provider_id("aws:///us-east-1a/i-0promspot")
            .build(),
    ]);
    moto.group(
        "prom-group",
        1,
        &[
            ("k8s.io/cluster-autoscaler/enabled", "true"),
            ("k8s.io/cluster-autoscaler/test-cluster", "owned"),
        ],
    )
    .await;
    let queue = moto.queue("prom-interruptions").await;
    cp.apply(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: prom}\nspec:\n  nodeSelector: {matchLabels: {pool: prom}}\n  idle: {for: 0s}\n  disruption: {budgets: [{nodes: \"1\"}]}\n",
    );
    let kubeconfig = cp.service_account_kubeconfig("prom", true);
    let namespace = kubeconfig
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // The bin-packing scheduler's profiles, which the web replicas name.
    let scheduler_config = cp.dir.0.join("prom-scheduler-config.yaml");
    std::fs::write(&scheduler_config, support::scheduler_config(&cp.kubeconfig)).unwrap();
    let port = free_port();
    let args: &[&str] = &[
        "controller",
        &format!("--scheduler-config={}", scheduler_config.display()),
        "--interval=2s",
        &format!("--admin-address=127.0.0.1:{port}"),
        &format!("--lease-namespace={namespace}"),
        "--lease-duration=6",
        "--cluster-name=test-cluster",
        "--asg-tags-interval=2s",
        &format!("--interruption-queue={queue}"),
        "--queue-visibility-timeout=5s",
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
    ];
    let controller = support::stowage_process(cp, "prom-controller", args, &moto.env());
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    wait_until("the controller leads", Duration::from_secs(60), || {
        curl(&["-sf", &metrics_url]).is_some_and(|m| m.contains("stowage_leader 1"))
    });

    // Prometheus scrapes it every second and evaluates the alerts.
    let prom_port = free_port();
    let dir = cp.dir.0.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = std::fs::canonicalize("charts/stowage/files/alerts.yaml").unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n  - job_name: stowage\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let started = jiff::Timestamp::now();
    let _prometheus = Supervised::spawn(
        "prometheus",
        &dir,
        &cp.bin.join("prometheus"),
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
    );
    let base = format!("http://127.0.0.1:{prom_port}");
    wait_until("Prometheus ready", Duration::from_secs(60), || {
        curl(&["-sf", &format!("{base}/-/ready")]).is_some()
    });

    // The spot warning.
    moto.send(&queue, spot_warning("i-0promspot", jiff::Timestamp::now()))
        .await;
    // One thin node drained, the other kept by the budget, the warning handled, the tags
    // reconciled.
    let start = Instant::now();
    loop {
        let m = curl(&["-sf", &metrics_url]).unwrap_or_default();
        let drained = m
            .lines()
            .find(|l| {
                l.starts_with(
                    "stowage_decisions_total{policy=\"prom\",action=\"drained\",result=\"done\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if drained >= 1.0
            && m.contains("stowage_blocked_nodes{policy=\"prom\",reason=\"Budget\"}")
            && m.contains("stowage_interruption_cordon_latency_seconds_count 1")
            && m.contains("stowage_asg_tag_updates_total")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the work did not happen:\n{}\n{m}",
            controller.tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few more scrapes, then the checks.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let live = curl(&["-sf", &metrics_url]).unwrap();
    let (ok, out) = promtool(cp, &["check", "metrics"], Some(&live));
    assert!(ok, "promtool check metrics:\n{out}");
    // docs/metrics.md names every series the live endpoint serves, and only those.
    let reference = std::fs::read_to_string("docs/metrics.md").unwrap();
    let documented: std::collections::BTreeSet<&str> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `stowage_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let served: std::collections::BTreeSet<String> = live
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("stowage_"))
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default())
        .map(|n| {
            ["_bucket", "_sum", "_count", "_created"]
                .iter()
                .fold(n, |n, suffix| n.strip_suffix(suffix).unwrap_or(n))
                .to_string()
        })
        .collect();
    for name in &served {
        assert!(
            documented.contains(name.as_str()),
            "/metrics serves stowage_{name}, which docs/metrics.md does not list"
        );
    }
    assert!(
        served.len() * 2 > documented.len(),
        "the run exported few of the documented metrics: {served:?}"
    );
    let now = jiff::Timestamp::now();
    let (from, to) = (started.to_string(), now.to_string());

    // Every dashboard query returns series over the run.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("charts/stowage/files/dashboard.json").unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$policy", ".*")
                .replace("$__rate_interval", "30s");
            let data = api(
                &base,
                "/api/v1/query_range",
                &[
                    ("query", &expr),
                    ("start", &from),
                    ("end", &to),
                    ("step", "1s"),
                ],
            );
            let series = data["result"].as_array().map_or(0, Vec::len);
            assert!(
                series > 0,
                "panel {:?}: {expr} returns no series",
                panel["title"]
            );
            queried += 1;
        }
    }
    // The policy variable lists the policy.
    let policies = api(
        &base,
        "/api/v1/label/policy/values",
        &[("start", &from), ("end", &to)],
    );
    assert!(
        policies.as_array().unwrap().iter().any(|p| p == "prom"),
        "{policies}"
    );

    // Every metric an alert reads was exported, and every alert expression evaluates.
    let alerts: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string("charts/stowage/files/alerts.yaml").unwrap(),
    )
    .unwrap();
    let mut selectors = 0;
    for rule in alerts["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        api(&base, "/api/v1/query", &[("query", expr)]);
        for name in metric_names(expr) {
            let data = api(
                &base,
                "/api/v1/series",
                &[("match[]", &name), ("start", &from), ("end", &to)],
            );
            assert!(
                !data.as_array().unwrap().is_empty(),
                "alert {}: {name} was never exported",
                rule["alert"]
            );
            selectors += 1;
        }
    }
    // The budget kept the second candidate waiting while the first drained.
    let budget = api(
        &base,
        "/api/v1/series",
        &[
            ("match[]", "stowage_blocked_nodes{reason=\"Budget\"}"),
            ("start", &from),
            ("end", &to),
        ],
    );
    assert!(
        !budget.as_array().unwrap().is_empty(),
        "no Budget-blocked node was ever exported"
    );
    // Prometheus loaded the rules and evaluates them (no alert fires on a healthy run).
    let rules = api(&base, "/api/v1/rules", &[]);
    let loaded = rules["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(loaded.len(), 6);
    assert!(loaded.iter().all(|r| r["health"] == "ok"), "{rules}");
    let firing: Vec<&serde_json::Value> =
        loaded.iter().filter(|r| r["state"] == "firing").collect();
    assert!(firing.is_empty(), "{firing:?}");
    println!(
        "{queried} dashboard queries and {selectors} alert metric selectors checked against Prometheus"
    );
}

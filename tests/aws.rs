//! The AWS side against moto and the real control plane: the scale-from-zero tags read back
//! and parsed as Cluster Autoscaler parses them; spot interruption warnings from an SQS queue
//! handled by `stowage controller` (taint + cordon latency, grace, messages deleted only once
//! handled, 500 at once, a controller killed mid-way, malformed messages); lifecycle hooks
//! completed and heartbeated (the two calls moto does not implement, through the SDK's own
//! mocks); `DrainAndTerminate` through the Auto Scaling group.

mod support;

use aws_sdk_autoscaling::types::Filter as AsgFilter;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stowage::controller::interrupt;
use stowage::demo::{NodeJson, PodJson};
use stowage::keys;
use support::moto::{Moto, ec2_event, send_all, spot_warning};
use support::{ControlPlane, Supervised, curl, free_port, percentile, wait_until};

const CLUSTER: &str = "test-cluster";
const TEMPLATE: &str = "k8s.io/cluster-autoscaler/node-template/";

fn discovery() -> [(&'static str, &'static str); 2] {
    [
        ("k8s.io/cluster-autoscaler/enabled", "true"),
        ("k8s.io/cluster-autoscaler/test-cluster", "owned"),
    ]
}

fn stowage_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

/// Runs `stowage` with moto's environment; (success, stdout, stderr).
fn run(moto: &Moto, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(stowage_bin())
        .args(args)
        .envs(moto.env())
        .output()
        .expect("run stowage");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn group_tags(moto: &Moto, group: &str) -> BTreeMap<String, String> {
    let asg = aws_sdk_autoscaling::Client::new(&moto.sdk_config().await);
    let out = asg
        .describe_tags()
        .filters(
            AsgFilter::builder()
                .name("auto-scaling-group")
                .values(group)
                .build(),
        )
        .send()
        .await
        .expect("describe tags");
    out.tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

async fn group_instances(moto: &Moto, group: &str) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(&moto.sdk_config().await);
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe group");
    out.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(String::from))
        .collect()
}

/// What Cluster Autoscaler's AWS provider builds a template node from: labels, taints (only
/// values matching `(.*):(NoSchedule|NoExecute|PreferNoSchedule)`) and resources (quantities).
#[derive(Debug, Default, PartialEq, Eq)]
struct CaTemplate {
    labels: BTreeMap<String, String>,
    taints: Vec<(String, String, String)>,
    resources: BTreeMap<String, String>,
}

fn ca_parse(tags: &BTreeMap<String, String>) -> CaTemplate {
    let mut t = CaTemplate::default();
    for (k, v) in tags {
        let Some(rest) = k.strip_prefix(TEMPLATE) else {
            continue;
        };
        if let Some(label) = rest.strip_prefix("label/") {
            t.labels.insert(label.into(), v.clone());
        } else if let Some(taint) = rest.strip_prefix("taint/") {
            let (value, effect) = v.rsplit_once(':').expect("a taint value has an effect");
            assert!(
                ["NoSchedule", "NoExecute", "PreferNoSchedule"].contains(&effect),
                "{k}={v}: CA ignores this taint"
            );
            t.taints.push((taint.into(), value.into(), effect.into()));
        } else if let Some(resource) = rest.strip_prefix("resources/") {
            assert!(
                v.chars().all(|c| c.is_ascii_digit()),
                "{k}={v}: not a quantity"
            );
            t.resources.insert(resource.into(), v.clone());
        } else {
            panic!("{k}: CA reads no such node-template tag");
        }
    }
    t
}

fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_from_zero_tags_are_what_cluster_autoscaler_parses() {
    let cp = ControlPlane::shared();
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    let users_label = format!("{TEMPLATE}label/team");
    let mut spot_tags: Vec<(&str, &str)> = discovery().to_vec();
    spot_tags.push(("owner-team", "data"));
    spot_tags.push((&users_label, "users-value"));
    moto.group("spark-spot", 2, &spot_tags).await;
    let mut zero_tags: Vec<(&str, &str)> = discovery().to_vec();
    zero_tags.push(("eks:nodegroup-name", "spark-zero"));
    moto.group("spark-zero", 0, &zero_tags).await;
    moto.group(
        "other-cluster",
        1,
        &[
            ("k8s.io/cluster-autoscaler/enabled", "true"),
            ("k8s.io/cluster-autoscaler/someone-else", "owned"),
        ],
    )
    .await;
    // The managed node group behind the group at zero.
    let eks = aws_sdk_eks::Client::new(&config);
    eks.create_cluster()
        .name(CLUSTER)
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .expect("create EKS cluster");
    eks.create_nodegroup()
        .cluster_name(CLUSTER)
        .nodegroup_name("spark-zero")
        .node_role("arn:aws:iam::123456789012:role/node")
        .subnets("subnet-0a")
        .labels("pool", "spark-zero")
        .taints(
            aws_sdk_eks::types::Taint::builder()
                .key("spot")
                .value("")
                .effect(aws_sdk_eks::types::TaintEffect::NoSchedule)
                .build(),
        )
        .send()
        .await
        .expect("create node group");

    // The group's instances as kwok nodes: named by their private DNS name, with the
    // provider id the kubelet sets on EKS.
    let dns = moto.private_dns_names();
    let instances = group_instances(&moto, "spark-spot").await;
    assert_eq!(instances.len(), 2);
    let nodes: Vec<serde_json::Value> = instances
        .iter()
        .map(|id| {
            let name = &dns[id];
            NodeJson::new(name)
                .kwok()
                .label("pool", "spark")
                .label("karpenter.sh/capacity-type", "spot")
                .label("team", "node-value")
                .label(keys::HOSTNAME, name)
                .label(keys::ZONE, "us-east-1a")
                .taint("dedicated", "spark", "NoSchedule")
                .resources("16", "128Gi", "110")
                .allocatable("ephemeral-storage", "100Gi")
                .capacity("ephemeral-storage", "100Gi")
                .provider_id(&format!("aws:///us-east-1a/{id}"))
                .build()
        })
        .collect();
    cp.apply_objects(nodes);
    let kubeconfig = cp.service_account_kubeconfig("asg-tags", true);
    let namespace = kubeconfig
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let asg_tags = |extra: &[&str]| {
        let mut args = vec![
            "asg-tags",
            "--kubeconfig",
            &kubeconfig,
            "--cluster-name",
            CLUSTER,
            "--namespace",
            &namespace,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = run(&moto, &args);
        assert!(ok, "asg-tags failed:\n{err}\n{out}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["group"].as_str().unwrap().to_string(), g.clone()))
            .collect::<BTreeMap<_, _>>()
    };

    let untouched = group_tags(&moto, "spark-spot").await;
    let dry = asg_tags(&["--dry-run"]);
    // Only the groups CA discovers for this cluster.
    assert_eq!(dry.keys().collect::<Vec<_>>(), ["spark-spot", "spark-zero"]);
    assert_eq!(dry["spark-spot"]["source"], "nodes");
    assert!(
        dry["spark-spot"]["write"]
            .as_object()
            .is_some_and(|w| w.contains_key(&format!("{TEMPLATE}label/pool")))
    );
    assert_eq!(
        group_tags(&moto, "spark-spot").await,
        untouched,
        "a dry run writes nothing"
    );

    let first = asg_tags(&[]);
    assert_eq!(first["spark-zero"]["source"], "nodegroup");
    let spot = group_tags(&moto, "spark-spot").await;
    // The user's own tags are as they were, their node-template label included.
    assert_eq!(spot["owner-team"], "data");
    assert_eq!(spot[&users_label], "users-value");
    assert_eq!(spot["stowage.io/node-template-owner"], CLUSTER);
    assert_eq!(
        ca_parse(&spot),
        CaTemplate {
            labels: string_map(&[
                ("karpenter.sh/capacity-type", "spot"),
                ("pool", "spark"),
                ("team", "users-value"),
            ]),
            taints: vec![("dedicated".into(), "spark".into(), "NoSchedule".into())],
            resources: string_map(&[("ephemeral-storage", &(100u64 << 30).to_string())]),
        }
    );
    let zero = group_tags(&moto, "spark-zero").await;
    assert_eq!(
        ca_parse(&zero),
        CaTemplate {
            labels: string_map(&[("pool", "spark-zero")]),
            taints: vec![("spot".into(), String::new(), "NoSchedule".into())],
            resources: BTreeMap::new(),
        }
    );
    assert!(
        group_tags(&moto, "other-cluster")
            .await
            .keys()
            .all(|k| !k.starts_with(TEMPLATE) && !k.starts_with("stowage.io/")),
        "another cluster's group is not touched"
    );
    // The record of what stowage wrote.
    let record = cp.kubectl(&[
        "get",
        "configmap",
        "stowage-asg-tags",
        "-n",
        &namespace,
        "-o",
        "jsonpath={.data.state\\.json}",
    ]);
    assert!(
        record.contains(&format!("{TEMPLATE}label/pool")),
        "{record}"
    );
    assert!(!record.contains(&users_label), "{record}");

    // Nothing changed: nothing written.
    let again = asg_tags(&[]);
    for (group, report) in &again {
        assert!(report.get("write").is_none(), "{group} rewritten: {report}");
    }

    // The group scales to zero (its nodes go): it keeps its tags, for CA to scale it up again.
    let asg = aws_sdk_autoscaling::Client::new(&config);
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("spark-spot")
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await
        .expect("scale to zero");
    for id in &instances {
        cp.kubectl(&["delete", "node", &dns[id], "--wait=false"]);
    }
    wait_until("the group's nodes gone", Duration::from_secs(30), || {
        instances.iter().all(|id| {
            cp.kubectl_output(&["get", "node", &dns[id], "-o", "name"])
                .is_none()
        })
    });
    let at_zero = asg_tags(&[]);
    assert_eq!(at_zero["spark-spot"]["source"], "recorded");
    assert!(at_zero["spark-spot"].get("delete").is_none());
    assert_eq!(group_tags(&moto, "spark-spot").await, spot);
}

/// A `stowage controller` reading the interruption queue, as the chart's ServiceAccount.
struct Controller {
    process: Supervised,
    port: u16,
}

impl Controller {
    fn start(
        cp: &ControlPlane,
        moto: &Moto,
        name: &str,
        kubeconfig: &Path,
        queue: &str,
        workers: usize,
    ) -> Self {
        let port = free_port();
        let namespace = kubeconfig
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let args: Vec<String> = [
            "controller",
            "--interval=30s",
            "--log-format=json",
            &format!("--admin-address=127.0.0.1:{port}"),
            &format!("--lease-namespace={namespace}"),
            "--lease-duration=6",
            &format!("--identity={name}"),
            &format!("--interruption-queue={queue}"),
            "--queue-visibility-timeout=5s",
            &format!("--interruption-workers={workers}"),
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = Supervised::spawn_env(name, &cp.dir.0, &stowage_bin(), &args, &moto.env());
        let c = Controller { process, port };
        wait_until(&format!("{name} leads"), Duration::from_secs(60), || {
            c.metrics().is_some_and(|m| m.contains("stowage_leader 1"))
        });
        c
    }

    fn metrics(&self) -> Option<String> {
        curl(&["-sf", &format!("http://127.0.0.1:{}/metrics", self.port)])
    }

    /// Receipt-to-cordon latencies (ms) the controller logged, one per node.
    fn latencies(&self) -> Vec<u64> {
        self.process
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "interruption: node tainted and cordoned")
            .filter_map(|v| v["latency_ms"].as_u64())
            .collect()
    }
}

/// A kwok node of 8 cpu and 32 GiB for the EC2 instance `instance` (its provider id), in a
/// pool of its own name.
fn aws_node(name: &str, instance: &str) -> serde_json::Value {
    NodeJson::new(name)
        .kwok()
        .label("pool", name)
        .resources("8", "32Gi", "110")
        .provider_id(&format!("aws:///us-east-1a/{instance}"))
        .build()
}

/// The grace each pod was evicted with: the first deletionGracePeriodSeconds a watch sees
/// (kwok deletes terminating pods at once afterwards, with 0).
type Graces = std::sync::Arc<std::sync::Mutex<BTreeMap<String, i64>>>;

fn watch_graces(pods: Api<Pod>) -> (Graces, tokio::task::JoinHandle<()>) {
    use futures::TryStreamExt;
    let graces: Graces = Default::default();
    let seen = graces.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(kube::runtime::watcher(pods, Default::default()));
        while let Ok(Some(e)) = events.try_next().await {
            if let kube::runtime::watcher::Event::Apply(p) = e
                && let Some(g) = p.metadata.deletion_grace_period_seconds
            {
                let name = p.metadata.name.unwrap_or_default();
                seen.lock().unwrap().entry(name).or_insert(g);
            }
        }
    });
    (graces, task)
}

/// Waits up to `limit` for the queue to hold no message; how many it holds then.
async fn wait_empty(sqs: &aws_sdk_sqs::Client, queue: &str, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = queued(sqs, queue).await;
        if n == 0 || start.elapsed() > limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Messages in the queue, visible or in flight.
async fn queued(sqs: &aws_sdk_sqs::Client, queue: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes().unwrap();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| attrs[a].parse::<usize>().unwrap())
    .sum()
}

fn interrupted(node: &Node) -> bool {
    let spec = node.spec.as_ref();
    spec.and_then(|s| s.unschedulable) == Some(true)
        && spec.and_then(|s| s.taints.as_ref()).is_some_and(|t| {
            t.iter()
                .any(|t| t.key == keys::INTERRUPTION_TAINT && t.effect == "NoSchedule")
        })
}

/// `count` kwok nodes `<prefix>-<i>` with instance ids `i-<prefix><i>`, one pod each in `ns`.
fn interruptible(cp: &ControlPlane, ns: &str, prefix: &str, count: usize) -> Vec<String> {
    let mut objects = Vec::new();
    let mut instances = Vec::new();
    for i in 0..count {
        let node = format!("{prefix}-{i}");
        let instance = format!("i-{prefix}{i:05}");
        objects.push(
            NodeJson::new(&node)
                .kwok()
                .label("pool", prefix)
                .resources("8", "32Gi", "110")
                .provider_id(&format!("aws:///us-east-1a/{instance}"))
                .build(),
        );
        objects.push(
            PodJson::new(ns, &format!("{prefix}-pod-{i}"))
                .on(&node)
                .requests(100, 128)
                .grace(30)
                .build(),
        );
        instances.push(instance);
    }
    cp.apply_objects(objects);
    instances
}

/// Pods of `ns` whose name contains `part`, in any phase.
fn present(cp: &ControlPlane, ns: &str, part: &str) -> usize {
    cp.kubectl_output(&["get", "pods", "-n", ns, "-o", "name"])
        .map_or(0, |s| s.lines().filter(|l| l.contains(part)).count())
}

#[tokio::test(flavor = "multi_thread")]
async fn spot_interruptions_from_the_queue() {
    let cp = ControlPlane::shared();
    cp.install_crd();
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = moto.queue("stowage-interruptions").await;
    let ns = cp.namespace("spot");
    let client = cp.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // Scene 1: one warning. An executor with a long grace (held by a finalizer so its grace can
    // be read) and a web pod.
    cp.apply_objects(vec![
        aws_node("spot-one", "i-0one"),
        aws_node("bystander", "i-0bystander"),
        aws_node("held", "i-0held"),
    ]);
    cp.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: pinned, namespace: {ns}}}\nspec:\n  maxUnavailable: 0\n  selector: {{matchLabels: {{app: pinned}}}}\n"
    ));
    let mut executor = PodJson::new(&ns, "exec-1")
        .on("spot-one")
        .label(keys::SPARK_ROLE, "executor")
        .label(keys::SPARK_APP_SELECTOR, "spark-app-1")
        .grace(120)
        .build();
    executor["metadata"]["finalizers"] = serde_json::json!(["stowage.test/hold"]);
    cp.apply_objects(vec![
        executor,
        PodJson::new(&ns, "web").on("spot-one").grace(30).build(),
        PodJson::new(&ns, "calm").on("bystander").build(),
        PodJson::new(&ns, "pinned")
            .on("held")
            .label("app", "pinned")
            .build(),
    ]);
    wait_until("pods running", Duration::from_secs(60), || {
        cp.running_pods(&ns) == 4
    });
    let kubeconfig = cp.service_account_kubeconfig("spot", true);
    // One worker: a drain that cannot finish must not keep it from the next warning.
    let mut controller = Controller::start(cp, &moto, "spot-a", &kubeconfig, &queue, 1);

    // An instance stopping whose pod a PDB pins: its handling retries the eviction (for up to
    // ten minutes, there being no deadline) and its message stays in flight.
    moto.send(
        &queue,
        ec2_event(
            "EC2 Instance State-change Notification",
            "i-0held",
            serde_json::json!({"instance-id": "i-0held", "state": "stopping"}),
            jiff::Timestamp::now(),
        ),
    )
    .await;
    wait_cordoned(&nodes, "held", Duration::from_secs(10), || {
        controller.process.tail()
    })
    .await;

    let (graces, watching) = watch_graces(pods.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_at = jiff::Timestamp::now();
    moto.send(&queue, spot_warning("i-0one", sent_at)).await;
    let end_to_end = wait_cordoned(&nodes, "spot-one", Duration::from_secs(10), || {
        controller.process.tail()
    })
    .await;
    // The executor keeps 120 s − 15 s margin less what already passed; web keeps its 30 s.
    wait_until("both pods evicted", Duration::from_secs(20), || {
        graces.lock().unwrap().len() >= 2
    });
    watching.abort();
    let graces = graces.lock().unwrap().clone();
    assert!((100..=105).contains(&graces["exec-1"]), "{graces:?}");
    assert_eq!(graces["web"], 30, "{graces:?}");
    assert!(
        end_to_end < Duration::from_secs(2),
        "a pinned drain delayed the warning: {end_to_end:?}"
    );
    // The pinned pod is let go: its drain ends, and both messages are gone.
    assert!(present(cp, &ns, "pinned") == 1);
    cp.kubectl(&["delete", "pdb", "pinned", "-n", &ns]);
    assert_eq!(
        wait_empty(&sqs, &queue, Duration::from_secs(30)).await,
        0,
        "the handled messages are deleted"
    );
    assert_eq!(present(cp, &ns, "pinned"), 0);
    let events = cp.node_events("spot-one");
    assert!(
        events.contains("SpotInterruption: spot interruption warning for i-0one")
            && events.contains("Evicted: "),
        "{events}"
    );
    pods.patch(
        "exec-1",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    println!(
        "one spot warning: cordoned {} ms after SendMessage; the controller logged {:?} ms from receipt",
        end_to_end.as_millis(),
        controller.latencies()
    );

    // Scene 1b: a warning that reaches the controller before its node reaches the watch (a
    // node that has just joined) is kept and looked at again, not deleted as another
    // cluster's; one for an instance that never joins is deleted after its last look.
    let sent = Instant::now();
    moto.send(&queue, spot_warning("i-0joining", jiff::Timestamp::now()))
        .await;
    moto.send(&queue, spot_warning("i-0elsewhere", jiff::Timestamp::now()))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cp.apply_objects(vec![aws_node("joining", "i-0joining")]);
    wait_cordoned(&nodes, "joining", Duration::from_secs(30), || {
        controller.process.tail()
    })
    .await;
    let joined = sent.elapsed();
    assert_eq!(
        wait_empty(&sqs, &queue, Duration::from_secs(60)).await,
        0,
        "the other cluster's warning is deleted after its last look"
    );
    println!(
        "a warning 2 s ahead of its node: cordoned {} ms after it was sent; the unknown instance's message deleted after {} ms",
        joined.as_millis(),
        sent.elapsed().as_millis()
    );
    assert!(
        sent.elapsed() >= interrupt::LOOK_AGAIN * (interrupt::UNKNOWN_LOOKS - 1),
        "an unknown instance's message deleted before its last look"
    );

    // Scene 2: 100 malformed messages: logged, counted, deleted; nothing acts, nothing crashes.
    let mut junk: Vec<String> = (0..60).map(|i| format!("not json {i}")).collect();
    junk.extend((0..40).map(|i| {
        serde_json::json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "time": format!("bad-time-{i}"), "detail": {}}).to_string()
    }));
    send_all(&sqs, &queue, &junk).await;
    assert_eq!(
        wait_empty(&sqs, &queue, Duration::from_secs(60)).await,
        0,
        "malformed messages are deleted"
    );
    let metrics = controller
        .metrics()
        .expect("controller alive after malformed messages");
    assert!(
        metrics.contains("stowage_interruptions_total{kind=\"malformed\",source=\"sqs\"} 100"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("interruptions"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!interrupted(&nodes.get("bystander").await.unwrap()));

    // Scene 3: 500 warnings at once, every node drained within 120 s.
    let bulk = interruptible(cp, &ns, "bulk", 500);
    wait_until("bulk pods running", Duration::from_secs(180), || {
        cp.running_pods_named(&ns, "bulk-pod-") == 500
    });
    let now = jiff::Timestamp::now();
    let warnings: Vec<String> = bulk.iter().map(|i| spot_warning(i, now)).collect();
    let started = Instant::now();
    send_all(&sqs, &queue, &warnings).await;
    let sending = started.elapsed();
    let list = kube::api::ListParams::default().labels("pool=bulk");
    let mut cordoned_after = None;
    loop {
        let listed = nodes.list(&list).await.unwrap();
        let done = listed.items.iter().filter(|n| interrupted(n)).count();
        if done == 500 && cordoned_after.is_none() {
            cordoned_after = Some(started.elapsed());
        }
        let left = present(cp, &ns, "bulk-pod-");
        if done == 500 && left == 0 {
            break;
        }
        if started.elapsed() >= Duration::from_secs(120) {
            // What the controller said of the nodes it did not cordon, and of leadership.
            let missing: Vec<String> = listed
                .items
                .iter()
                .filter(|n| !interrupted(n))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let log = controller.process.log_text();
            let said: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("lead")
                        || l.contains("not handled")
                        || missing.iter().any(|m| {
                            let i: String = m.trim_start_matches("bulk-").to_string();
                            l.contains(&format!("\"{m}\""))
                                || l.contains(&format!("i-bulk{:0>5}", i))
                        })
                })
                .collect();
            panic!(
                "after 120 s: {done} of 500 cordoned, {left} pods left; not cordoned: {missing:?}\n{}",
                said.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drained_after = started.elapsed();
    let mut latencies = controller.latencies();
    latencies.sort();
    assert!(
        latencies.len() >= 501,
        "{} latencies logged",
        latencies.len()
    );
    println!(
        "500 spot warnings (sent in {} ms, 50 batches): all cordoned {} ms and drained {} ms after the first SendMessage; receipt-to-cordon p50 {} ms, p99 {} ms, max {} ms",
        sending.as_millis(),
        cordoned_after.unwrap().as_millis(),
        drained_after.as_millis(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    assert!(
        percentile(&latencies, 0.99) < 1000,
        "p99 receipt-to-cordon {} ms is above the 1 s floor",
        percentile(&latencies, 0.99)
    );
    assert_eq!(wait_empty(&sqs, &queue, Duration::from_secs(20)).await, 0);

    // Scene 4: the controller dies at a random moment while handling 50 warnings; its
    // successor handles every one (the visibility timeout brings the unfinished back).
    let late = interruptible(cp, &ns, "late", 50);
    wait_until("late pods running", Duration::from_secs(120), || {
        cp.running_pods_named(&ns, "late-pod-") == 50
    });
    let now = jiff::Timestamp::now();
    let warnings: Vec<String> = late.iter().map(|i| spot_warning(i, now)).collect();
    send_all(&sqs, &queue, &warnings).await;
    let delay = Duration::from_millis(u64::from(
        jiff::Timestamp::now().subsec_nanosecond().unsigned_abs() % 400,
    ));
    tokio::time::sleep(delay).await;
    controller.process.kill_hard();
    let list = kube::api::ListParams::default().labels("pool=late");
    let before = nodes
        .list(&list)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|n| interrupted(n))
        .count();
    let successor = Controller::start(cp, &moto, "spot-b", &kubeconfig, &queue, 4);
    let start = Instant::now();
    loop {
        let done = nodes
            .list(&list)
            .await
            .unwrap()
            .items
            .iter()
            .filter(|n| interrupted(n))
            .count();
        let left = present(cp, &ns, "late-pod-");
        if done == 50 && left == 0 && queued(&sqs, &queue).await == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{done} of 50 cordoned, {left} pods left\n{}",
            successor.process.tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "killed {} ms after sending 50 warnings ({before} nodes cordoned by then); the successor finished the rest in {} ms",
        delay.as_millis(),
        start.elapsed().as_millis()
    );
}

/// The queue mode's handler in this process, its index fed by watchers, as admin.
async fn handler(
    client: &kube::Client,
    aws: Option<std::sync::Arc<dyn stowage::aws::clients::Aws>>,
) -> stowage::controller::interrupt::Handler {
    use std::sync::{Arc, Mutex};
    let index = Arc::new(Mutex::new(stowage::k8s::index::ClusterIndex::new()));
    stowage::k8s::watch::watch_all(client.clone(), index.clone(), Arc::new(|| {})).await;
    stowage::controller::interrupt::Handler {
        client: client.clone(),
        evictions: client.clone(),
        events: stowage::k8s::events::Events::new(client.clone(), None),
        metrics: Arc::new(stowage::metrics::Metrics::new()),
        index,
        rebalance: Default::default(),
        aws,
        source: "sqs",
        own_node: None,
        cluster: Some("test-cluster".into()),
    }
}

/// amazon-ec2-metadata-mock on 127.0.0.1, IMDSv2 only, with these arguments.
struct MetadataMock {
    _process: Supervised,
    endpoint: String,
}

impl MetadataMock {
    fn start(cp: &ControlPlane, name: &str, args: &[&str]) -> MetadataMock {
        let port = free_port();
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["-n", "127.0.0.1", "-p", &port.to_string(), "-I"].map(String::from));
        let process = Supervised::spawn(
            name,
            &cp.dir.0,
            &support::bin_dir().join("ec2-metadata-mock"),
            &all,
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        let token_url = format!("{endpoint}/latest/api/token");
        wait_until(&format!("{name} serving"), Duration::from_secs(20), || {
            curl(&[
                "-sf",
                "-X",
                "PUT",
                "-H",
                "X-aws-ec2-metadata-token-ttl-seconds: 60",
                &token_url,
            ])
            .is_some()
        });
        MetadataMock {
            _process: process,
            endpoint,
        }
    }
}

/// `stowage interruption-agent` for `node`, reading `mock`, as the agent's ServiceAccount.
fn agent(
    cp: &ControlPlane,
    node: &str,
    kubeconfig: &Path,
    mock: &MetadataMock,
    extra: &[&str],
) -> Supervised {
    let mut args: Vec<String> = [
        "interruption-agent",
        "--poll-interval=500ms",
        "--admin-address=",
        "--log-format=json",
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Supervised::spawn_env(
        &format!("agent-{node}"),
        &cp.dir.0,
        &stowage_bin(),
        &args,
        &[
            ("NODE_NAME", node.to_string()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", mock.endpoint.clone()),
        ],
    )
}

async fn cordoned(nodes: &Api<Node>, name: &str) -> bool {
    nodes.get(name).await.is_ok_and(|n| interrupted(&n))
}

/// Waits (polling every 5 ms) for `name` to be tainted and cordoned; how long that took.
/// Panics after `limit` with what `log` says.
async fn wait_cordoned(
    nodes: &Api<Node>,
    name: &str,
    limit: Duration,
    log: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    while !cordoned(nodes, name).await {
        assert!(
            start.elapsed() < limit,
            "{name} not cordoned within {limit:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn interruption_agent_reads_instance_metadata() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("imds");
    let client = cp.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // The mock's instance is i-1234567890abcdef0: the spot node carries it as provider id; the
    // others are found by their own name (the agent's NODE_NAME).
    cp.apply_objects(
        ["imds-spot", "imds-rebalance", "imds-scheduled"]
            .iter()
            .map(|n| {
                let node = NodeJson::new(n)
                    .kwok()
                    .label("pool", n)
                    .resources("8", "32Gi", "110");
                let node = if *n == "imds-spot" {
                    node.provider_id("aws:///us-east-1a/i-1234567890abcdef0")
                } else {
                    node
                };
                node.build()
            })
            .collect(),
    );
    cp.apply_objects(vec![
        PodJson::new(&ns, "spot-exec")
            .on("imds-spot")
            .label(keys::SPARK_ROLE, "executor")
            .label(keys::SPARK_APP_SELECTOR, "spark-app-2")
            .grace(300)
            .build(),
        PodJson::new(&ns, "rebalance-stays")
            .on("imds-rebalance")
            .build(),
        PodJson::new(&ns, "retirement-moves")
            .on("imds-scheduled")
            .grace(30)
            .build(),
    ]);
    wait_until("pods running", Duration::from_secs(60), || {
        cp.running_pods(&ns) == 3
    });
    let kubeconfig = cp.service_account_with("agent", Some("agent-clusterrole.yaml"), false);
    let (graces, watching) = watch_graces(pods.clone());

    // A spot notice that the mock serves only 4 s after it starts.
    let spot = MetadataMock::start(
        cp,
        "aemm-spot",
        &[
            "spot",
            "--mock-delay-sec",
            "4",
            "--rebalance-delay-sec",
            "600",
        ],
    );
    let started = Instant::now();
    let _spot_agent = agent(cp, "imds-spot", &kubeconfig, &spot, &[]);
    // Scheduled maintenance: an instance retirement a minute from now.
    let not_before = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let events = MetadataMock::start(
        cp,
        "aemm-events",
        &[
            "events",
            "--code",
            "instance-retirement",
            "--not-before",
            &not_before,
        ],
    );
    let _events_agent = agent(cp, "imds-scheduled", &kubeconfig, &events, &[]);
    // A rebalance recommendation now, the spot notice only in ten minutes.
    let rebalance = MetadataMock::start(
        cp,
        "aemm-rebalance",
        &[
            "spot",
            "--rebalance-delay-sec",
            "1",
            "--mock-delay-sec",
            "600",
        ],
    );
    let rebalance_agent = agent(cp, "imds-rebalance", &kubeconfig, &rebalance, &[]);

    tokio::time::sleep(Duration::from_secs(2)).await;
    if started.elapsed() < Duration::from_secs(4) {
        assert!(
            !cordoned(&nodes, "imds-spot").await,
            "cordoned before the notice"
        );
    }
    wait_cordoned(&nodes, "imds-spot", Duration::from_secs(30), String::new).await;
    println!(
        "IMDS spot notice (the mock serves it 4 s after its start): node cordoned {} ms after the mock first answered",
        started.elapsed().as_millis()
    );
    wait_until(
        "rebalance and retirement handled",
        Duration::from_secs(30),
        || {
            graces.lock().unwrap().contains_key("retirement-moves")
                && graces.lock().unwrap().contains_key("spot-exec")
        },
    );
    wait_cordoned(&nodes, "imds-rebalance", Duration::from_secs(30), || {
        rebalance_agent.tail()
    })
    .await;
    assert!(cordoned(&nodes, "imds-scheduled").await);
    // Spot: 120 s from the notice less the 15 s margin; the retirement a minute away leaves
    // the pod its own 30 s; a rebalance recommendation only cordons (the default action).
    tokio::time::sleep(Duration::from_secs(2)).await;
    watching.abort();
    let graces = graces.lock().unwrap().clone();
    assert!((95..=105).contains(&graces["spot-exec"]), "{graces:?}");
    assert_eq!(graces["retirement-moves"], 30, "{graces:?}");
    assert!(!graces.contains_key("rebalance-stays"), "{graces:?}");
    let stays = pods.get("rebalance-stays").await.unwrap();
    assert!(stays.metadata.deletion_timestamp.is_none());
    let notes = cp.node_events("imds-scheduled");
    assert!(
        notes.contains("ScheduledMaintenance: scheduled maintenance instance-retirement"),
        "{notes}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lifecycle_action_is_heartbeaten_through_the_drain_and_completed_after_it() {
    use aws_sdk_autoscaling::Client as Asg;
    use aws_sdk_autoscaling::operation::complete_lifecycle_action::CompleteLifecycleActionOutput;
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_autoscaling::operation::describe_lifecycle_hooks::DescribeLifecycleHooksOutput;
    use aws_sdk_autoscaling::operation::record_lifecycle_action_heartbeat::RecordLifecycleActionHeartbeatOutput;
    use aws_sdk_autoscaling::types::LifecycleHook;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use interrupt::Outcome;
    use std::sync::Arc;
    use stowage::aws::notice::Notice;

    let cp = ControlPlane::shared();
    let ns = cp.namespace("hook");
    cp.apply_objects(vec![aws_node("hook-0", "i-0hook")]);
    // An executor that takes 4 s to go (its finalizer is removed then): longer than half the
    // hook's 2 s heartbeat timeout.
    let mut held = PodJson::new(&ns, "decommissioning")
        .on("hook-0")
        .grace(60)
        .build();
    held["metadata"]["finalizers"] = serde_json::json!(["stowage.test/hold"]);
    // A pod whose PodDisruptionBudget refuses its eviction for the first 4 s: the hook must
    // be heartbeaten while evictions are refused, not only once they went through.
    cp.apply_objects(vec![
        held,
        PodJson::new(&ns, "quick")
            .on("hook-0")
            .label("app", "quick")
            .build(),
    ]);
    cp.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: quick, namespace: {ns}}}\nspec:\n  maxUnavailable: 0\n  selector: {{matchLabels: {{app: quick}}}}\n"
    ));
    wait_until("pods running", Duration::from_secs(60), || {
        cp.running_pods(&ns) == 2
    });

    let action =
        |group: Option<&str>, hook: Option<&str>, token: Option<&str>, instance: Option<&str>| {
            group == Some("spark-spot")
                && hook == Some("drain")
                && token == Some("token-1")
                && instance == Some("i-0hook")
        };
    let describe = mock!(Asg::describe_lifecycle_hooks)
        .match_requests(|r| r.auto_scaling_group_name() == Some("spark-spot"))
        .then_output(|| {
            DescribeLifecycleHooksOutput::builder()
                .lifecycle_hooks(
                    LifecycleHook::builder()
                        .lifecycle_hook_name("drain")
                        .heartbeat_timeout(2)
                        .build(),
                )
                .build()
        });
    let heartbeat = mock!(Asg::record_lifecycle_action_heartbeat)
        .match_requests(move |r| {
            action(
                r.auto_scaling_group_name(),
                r.lifecycle_hook_name(),
                r.lifecycle_action_token(),
                r.instance_id(),
            )
        })
        .then_output(|| RecordLifecycleActionHeartbeatOutput::builder().build());
    let complete = mock!(Asg::complete_lifecycle_action)
        .match_requests(move |r| {
            r.lifecycle_action_result() == Some("CONTINUE")
                && action(
                    r.auto_scaling_group_name(),
                    r.lifecycle_hook_name(),
                    r.lifecycle_action_token(),
                    r.instance_id(),
                )
        })
        .then_output(|| CompleteLifecycleActionOutput::builder().build());
    // This cluster's groups (spark-spot); an instance of it that is no node has its action
    // completed at once, one of another cluster's group is left to that cluster.
    let groups = mock!(Asg::describe_auto_scaling_groups).then_output(|| {
        use aws_sdk_autoscaling::types::{AutoScalingGroup, TagDescription};
        let tag = |k: &str, v: &str| TagDescription::builder().key(k).value(v).build();
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(
                AutoScalingGroup::builder()
                    .auto_scaling_group_name("spark-spot")
                    .tags(tag("k8s.io/cluster-autoscaler/enabled", "true"))
                    .tags(tag("k8s.io/cluster-autoscaler/test-cluster", "owned"))
                    .build(),
            )
            .build()
    });
    let complete_non_node = mock!(Asg::complete_lifecycle_action)
        .match_requests(|r| r.instance_id() == Some("i-0never"))
        .then_output(|| CompleteLifecycleActionOutput::builder().build());
    let autoscaling = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [
            &describe,
            &heartbeat,
            &complete,
            &groups,
            &complete_non_node
        ]
    );
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    let sdk = stowage::aws::sdk::Sdk {
        autoscaling,
        eks: aws_sdk_eks::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
    };

    let client = cp.client().await;
    let handler = handler(&client, Some(Arc::new(sdk))).await;
    let notice = Notice::LifecycleTerminate {
        instance_id: "i-0hook".into(),
        group: "spark-spot".into(),
        hook: "drain".into(),
        token: "token-1".into(),
    };
    let release = {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
            Api::namespaced(client.clone(), &ns);
        let heartbeat = heartbeat.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            // Still refused: every 1 s (half the 2 s timeout) a heartbeat went out already.
            let during_refusals = heartbeat.num_calls();
            pdbs.delete("quick", &Default::default()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            pods.patch(
                "decommissioning",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
            during_refusals
        })
    };
    let started = Instant::now();
    let outcome = handler
        .handle(&notice, Instant::now())
        .await
        .expect("handled");
    let took = started.elapsed();
    let during_refusals = release.await.unwrap();
    eprintln!(
        "lifecycle hook: {during_refusals} heartbeats in 3.5 s of refused evictions (2 s timeout), {} in all, completed after {took:?}",
        heartbeat.num_calls()
    );
    assert_eq!(outcome, Outcome::Handled(vec!["hook-0".into()]));
    assert!(
        during_refusals >= 2,
        "{during_refusals} heartbeats while the eviction was refused for 3.5 s"
    );
    assert!(
        took >= Duration::from_secs(4),
        "completed before the node was empty: {took:?}"
    );
    assert_eq!(complete.num_calls(), 1);
    assert!(
        heartbeat.num_calls() >= 2,
        "{} heartbeats in {took:?}",
        heartbeat.num_calls()
    );
    assert_eq!(present(cp, &ns, ""), 0);

    // Instances that are no node: one of this cluster's group (it never joined, or is gone)
    // has its action completed, one of another cluster's is left alone.
    for (group, outcome) in [
        ("spark-spot", Outcome::NotANode(vec!["i-0never".into()])),
        (
            "their-group",
            Outcome::NotInCluster(vec!["i-0never".into()]),
        ),
    ] {
        let notice = Notice::LifecycleTerminate {
            instance_id: "i-0never".into(),
            group: group.into(),
            hook: "drain".into(),
            token: "token-2".into(),
        };
        let completed = complete_non_node.num_calls();
        assert_eq!(
            handler.handle(&notice, Instant::now()).await.unwrap(),
            Outcome::Unknown(vec!["i-0never".into()]),
            "an instance the watch does not know is looked at again before it is settled"
        );
        assert_eq!(complete_non_node.num_calls(), completed);
        assert_eq!(handler.settle_unknown(&notice).await.unwrap(), outcome);
    }
    assert_eq!(complete_non_node.num_calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_and_terminate_goes_through_the_group_never_below_its_minimum() {
    use std::sync::{Arc, Mutex};
    use stowage::controller::reconcile::Reconciler;
    use stowage::scoring::{Profiles, SchedulerVersion};

    let cp = ControlPlane::shared();
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    moto.group("asg-thin", 2, &discovery()).await;
    let asg = aws_sdk_autoscaling::Client::new(&config);
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("asg-thin")
        .min_size(1)
        .send()
        .await
        .expect("minimum 1");
    // Three nodes: asgp-0 busy (do-not-disrupt), asgp-1 and asgp-2 thin — the group's two
    // instances.
    let _ns = support::workload::fragmented(cp, "asgp");
    let instances = group_instances(&moto, "asg-thin").await;
    for (i, id) in instances.iter().enumerate() {
        cp.kubectl(&[
            "patch",
            "node",
            &format!("asgp-{}", i + 1),
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"providerID":"aws:///us-east-1a/{id}"}}}}"#),
        ]);
    }
    let kubeconfig = cp.service_account_kubeconfig("asg-term", true);
    let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let kube_config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube_config.clone()).unwrap();
    let index = Arc::new(Mutex::new(stowage::k8s::index::ClusterIndex::new()));
    stowage::k8s::watch::watch_all(client.clone(), index.clone(), Arc::new(|| {})).await;
    let mut ctl = Reconciler::new(
        client,
        stowage::k8s::act::eviction_client(kube_config).unwrap(),
        Profiles::defaults(SchedulerVersion::V1_36),
    )
    .with_asg(
        Arc::new(stowage::aws::sdk::Sdk::new(&config)),
        CLUSTER.to_string(),
    );
    let policy = stowage::policy::ConsolidationPolicy::parse(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: asgp}\nspec:\n  nodeSelector: {matchLabels: {pool: asgp}}\n  idle: {for: 0s}\n  disruption: {action: DrainAndTerminate}\n",
    )
    .unwrap();
    let mut empty = std::collections::BTreeSet::new();
    let mut terminated = Vec::new();
    for _ in 0..60 {
        let report = ctl.cycle(&index, &policy, jiff::Timestamp::now()).await;
        empty.extend(report.empty.iter().cloned());
        terminated.extend(report.terminated.iter().cloned());
        if empty.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        empty.iter().map(String::as_str).collect::<Vec<_>>(),
        ["asgp-1", "asgp-2"]
    );
    // The first emptied node's instance went with the desired capacity; the second would take
    // the group below its minimum and stays, said so in its Drained Event.
    assert_eq!(terminated.len(), 1, "{terminated:?}");
    let group = &asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("asg-thin")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .clone();
    assert_eq!(group.desired_capacity(), Some(1));
    assert_eq!(group.instances().len(), 1);
    let kept = empty.iter().find(|n| !terminated.contains(n)).unwrap();
    let notes = cp.node_events(kept);
    assert!(
        notes.contains("is at its minimum size (1): the instance stays"),
        "{notes}"
    );
    let gone = &terminated[0];
    assert!(
        cp.node_events(gone).contains(
            "terminated through Auto Scaling group asg-thin (desired capacity decremented)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notice_during_a_policys_drain_takes_the_node_over_and_no_release_undoes_it() {
    use interrupt::Outcome;
    use stowage::aws::notice::{Notice, SpotAction};
    use stowage::k8s::act;

    let cp = ControlPlane::shared();
    let ns = cp.namespace("both");
    cp.apply_objects(vec![
        aws_node("both-0", "i-0both"),
        PodJson::new(&ns, "work").on("both-0").grace(30).build(),
    ]);
    wait_until("pod running", Duration::from_secs(60), || {
        cp.running_pods(&ns) == 1
    });
    let client = cp.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    // A policy's drain is under way.
    act::mark_draining(&client, "both-0", "both", jiff::Timestamp::now())
        .await
        .unwrap();
    let handler = handler(&client, None).await;
    let warning = Notice::SpotInterruption {
        instance_id: "i-0both".into(),
        action: SpotAction::Terminate,
        deadline: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120),
    };
    let outcome = handler.handle(&warning, Instant::now()).await.unwrap();
    assert_eq!(outcome, Outcome::Handled(vec!["both-0".into()]));
    let check = |node: &Node| {
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        let taints: Vec<String> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert!(interrupted(node), "{taints:?}");
        assert!(
            !taints.iter().any(|t| t == keys::DISRUPTING_TAINT),
            "{taints:?}"
        );
        assert_eq!(
            annotations.get(keys::STATE).map(String::as_str),
            Some("interrupted")
        );
        assert!(!annotations.contains_key(keys::POLICY), "{annotations:?}");
    };
    check(&nodes.get("both-0").await.unwrap());
    // The policy letting go of its drain (abandoned, or the policy deleted) changes nothing.
    act::release(&client, "both-0").await.unwrap();
    check(&nodes.get("both-0").await.unwrap());
    wait_until("the pod evicted", Duration::from_secs(30), || {
        present(cp, &ns, "work") == 0
    });
}

/// A listener on 127.0.0.1 that accepts connections and never answers (a hung API server);
/// its URL. The connections stay open while the returned task runs.
async fn hung_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_whose_api_server_hangs_ends_each_call_and_tries_again() {
    let cp = ControlPlane::shared();
    let kubeconfig = cp.service_account_with("agent-hung", Some("agent-clusterrole.yaml"), false);
    let (url, _server) = hung_server().await;
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let hung = kubeconfig.with_extension("hung.kubeconfig");
    std::fs::write(&hung, text.replace(&cp.server, &url)).unwrap();
    assert!(std::fs::read_to_string(&hung).unwrap().contains(&url));
    let mock = MetadataMock::start(cp, "aemm-hung", &["spot", "--mock-delay-sec", "0"]);
    let started = Instant::now();
    let agent = agent(cp, "imds-hung", &hung, &mock, &[]);
    // The node's lookup ends in an error within the client's bounds, and is tried again.
    let failed = || {
        agent
            .log_text()
            .matches("interruption not handled yet")
            .count()
    };
    while failed() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the agent's calls to a hung API server never ended:\n{}",
            agent.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "hung API server: the agent's node lookup failed twice within {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warning_for_a_node_the_watch_has_not_seen_cordons_it_from_the_api_and_stays_queued() {
    use std::sync::{Arc, Mutex};
    use stowage::controller::interrupt::{QueueOptions, run_queue};
    let cp = ControlPlane::shared();
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = moto.queue("lagging-watch").await;
    cp.apply_objects(vec![aws_node("lagging", "i-0lagging")]);
    let client = cp.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    // A watch that is far behind: its index has not seen the node (here, it has seen nothing).
    let mut handler = handler(&client, None).await;
    handler.index = Arc::new(Mutex::new(stowage::k8s::index::ClusterIndex::new()));
    let sdk: Arc<dyn stowage::aws::clients::Aws> = Arc::new(stowage::aws::sdk::Sdk {
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        eks: aws_sdk_eks::Client::new(&config),
        sqs: sqs.clone(),
    });
    let reading = tokio::spawn(run_queue(
        Arc::new(handler),
        sdk,
        QueueOptions {
            url: queue.clone(),
            workers: 1,
            visibility: Duration::from_secs(30),
        },
        None,
    ));
    let sent = Instant::now();
    moto.send(&queue, spot_warning("i-0lagging", jiff::Timestamp::now()))
        .await;
    // Looked at again, then found through the API server on the last look: cordoned.
    wait_cordoned(&nodes, "lagging", Duration::from_secs(40), String::new).await;
    let cordoned = sent.elapsed();
    assert!(
        cordoned >= interrupt::LOOK_AGAIN * (interrupt::UNKNOWN_LOOKS - 1),
        "cordoned before the last look: {cordoned:?}"
    );
    // Its pods are drained once the watch has them: the message is kept, not deleted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(queued(&sqs, &queue).await, 1, "the message was deleted");
    reading.abort();
    println!(
        "a warning the watch lags behind: cordoned from the API server after {cordoned:?}, message kept"
    );
}

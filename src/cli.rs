//! The `stowage` command line (docs/design.md, "The command line"): `plan`, `score`, `view`,
//! `controller`, `crd`, `asg-tags`, `interruption-agent`, `cleanup` and `version`.
//!
//! Reads files, calls the pure core, prints a table or stable JSON. Every input error is one
//! line on stderr naming the file and the field, with exit code 2; nothing here panics on bad
//! input.

mod aws;

use crate::demo::demo_cluster;
use crate::model::{Node, Objects, Snapshot, load_pod, load_snapshot};
use crate::plan::{Plan, PlanInput, plan, pool_of};
use crate::policy::ConsolidationPolicy;
use crate::scoring::{ClusterState, Profiles, SchedulerVersion, filter, node_usages};
use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "stowage",
    version,
    about = "Consolidates batch Kubernetes clusters next to Karpenter or Cluster Autoscaler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
    /// `plan`: every node as a cpu and a memory bar, before and after (elsewhere: the table).
    Wide,
}

/// Which cluster to talk to.
#[derive(clap::Args)]
struct ClusterArgs {
    /// The cluster's kubeconfig (without it: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// A context of that kubeconfig.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
}

impl ClusterArgs {
    fn given(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }

    /// What an error about the cluster names.
    fn source(&self) -> &Path {
        self.kubeconfig
            .as_deref()
            .unwrap_or(Path::new("<kubeconfig>"))
    }
}

/// The controller's AWS side (docs/aws.md). Credentials, region and endpoints come from the
/// environment (IRSA, Pod Identity, `AWS_REGION`, `AWS_ENDPOINT_URL`).
#[derive(clap::Args)]
struct AwsArgs {
    /// Read spot interruption, rebalance, state-change, Auto Scaling termination and AWS Health
    /// events from this SQS queue (fed by EventBridge).
    #[arg(long, value_name = "URL")]
    interruption_queue: Option<String>,
    /// Workers reading the queue.
    #[arg(long, default_value_t = 4)]
    interruption_workers: usize,
    /// How long a received message stays invisible while its node is handled (Go duration);
    /// a controller that dies mid-way gets it back after this.
    #[arg(long, default_value = "60s")]
    queue_visibility_timeout: String,
    /// What a rebalance recommendation does to its node.
    #[arg(long, value_enum, default_value = "cordon")]
    rebalance_action: crate::aws::interruption::RebalanceAction,
    /// The cluster's name in Cluster Autoscaler's discovery tag
    /// `k8s.io/cluster-autoscaler/<name>`: enables the scale-from-zero tags of its Auto Scaling
    /// groups and terminating emptied `DrainAndTerminate` nodes through their group.
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// Time between two reconciliations of the groups' node-template tags ("0s": never).
    #[arg(long, default_value = "5m")]
    asg_tags_interval: String,
}

/// What a plan is made with (`plan`, `view`).
#[derive(clap::Args)]
struct PlanningArgs {
    /// A ConsolidationPolicy (YAML or JSON); defaults apply without it.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// A KubeSchedulerConfiguration; without it, `my-scheduler` (MostAllocated) and
    /// `default-scheduler` (LeastAllocated + BalancedAllocation).
    #[arg(long, value_name = "FILE")]
    scheduler_config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Show which nodes stowage would empty, where their pods would go, and why other nodes stay.
    Plan {
        /// `kubectl get nodes,pods,pdb -A -o json` output (JSON or YAML; `-` for stdin).
        /// Without it (and without --kubeconfig/--context), the embedded demo cluster is planned;
        /// run as `kubectl stowage`, the kubeconfig's current context.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["kubeconfig", "context"])]
        snapshot: Option<PathBuf>,
        /// Plan the live cluster, read-only (list and get only).
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        planning: PlanningArgs,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
        /// Evaluate budget schedules and idle times at this RFC 3339 time instead of now.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// kube-scheduler version whose BalancedAllocation formula to use (1.35 or 1.36).
        #[arg(long, default_value = "1.36")]
        scheduler_version: SchedulerVersion,
        /// Print on stderr where the time went: reading the snapshot, planning,
        /// writing the answer.
        #[arg(long)]
        timings: bool,
    },
    /// Score one incoming pod against every node of a snapshot as kube-scheduler would.
    Score {
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
        /// The incoming Pod (YAML or JSON).
        #[arg(long, value_name = "FILE")]
        pod: PathBuf,
        #[arg(long, value_name = "FILE")]
        scheduler_config: Option<PathBuf>,
        /// Scheduler profile; default: the pod's schedulerName, else `my-scheduler`.
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        #[arg(long, default_value = "1.36")]
        scheduler_version: SchedulerVersion,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Watch the live cluster as the node view of `plan -o wide`, redrawn every --interval.
    View {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        planning: PlanningArgs,
        /// Time between two frames (Go duration).
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Draw one frame and exit.
        #[arg(long)]
        once: bool,
    },
    /// Print the version.
    Version,
    /// Print the ConsolidationPolicy CustomResourceDefinition (YAML), for `kubectl apply -f -`.
    Crd {
        /// Print the policy reference (Markdown, every field of the schema) instead.
        #[arg(long)]
        reference: bool,
    },
    /// Run the controller against a cluster: watch it, and each round follow the drains in
    /// progress and start new ones as the policies say. Prints one JSON line per round.
    Controller {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Run this ConsolidationPolicy (YAML or JSON) instead of the cluster's.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The bin-packing scheduler's KubeSchedulerConfiguration.
        #[arg(long, value_name = "FILE")]
        scheduler_config: Option<PathBuf>,
        /// Time between rounds when nothing changes (Go duration).
        #[arg(long, default_value = "30s")]
        interval: String,
        /// Run one round and exit.
        #[arg(long)]
        once: bool,
        /// Serve /healthz, /readyz and /metrics here ("" to serve nothing).
        #[arg(long, default_value = "0.0.0.0:8080")]
        admin_address: String,
        /// Compete for the leader Lease; only the leader acts.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        leader_elect: bool,
        /// Namespace of the Lease; default: $POD_NAMESPACE, else the kubeconfig's namespace.
        #[arg(long)]
        lease_namespace: Option<String>,
        #[arg(long, default_value = "stowage")]
        lease_name: String,
        /// Seconds a leader keeps the Lease without renewing it.
        #[arg(long, default_value_t = 15)]
        lease_duration: u64,
        /// This replica's identity; default: $POD_NAME, else hostname and process id.
        #[arg(long)]
        identity: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Write the Cluster Autoscaler node-template tags (labels, taints, resources) on the
    /// cluster's Auto Scaling groups once, so CA can scale them up from zero. AWS credentials,
    /// region and endpoints come from the environment.
    AsgTags {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The cluster's name in Cluster Autoscaler's discovery tag
        /// `k8s.io/cluster-autoscaler/<name>`.
        #[arg(long, value_name = "NAME")]
        cluster_name: String,
        /// Namespace of the ConfigMap recording the tags stowage wrote; default:
        /// $POD_NAMESPACE, else the kubeconfig's namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Print what would be written, write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Handle this node's spot interruption notices, rebalance recommendations, scheduled
    /// maintenance and Auto Scaling termination from the instance metadata service (IMDS
    /// mode, one per node as a DaemonSet): taint and cordon at once, then drain.
    InterruptionAgent {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The node this agent runs on (the downward API's spec.nodeName).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// Time between two reads of the metadata (Go duration).
        #[arg(long, default_value = "2s")]
        poll_interval: String,
        /// What a rebalance recommendation does to the node.
        #[arg(long, value_enum, default_value = "cordon")]
        rebalance_action: crate::aws::interruption::RebalanceAction,
        /// Serve /healthz and /metrics here ("" to serve nothing).
        #[arg(long, default_value = "0.0.0.0:8080")]
        admin_address: String,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Undo everything stowage put on the cluster, for uninstalling it (the chart's pre-delete
    /// hook): stop the controller (scale its Deployment to zero and wait for its pods), release
    /// every drain and wait, remove stowage's annotations and the shuffle protection it added.
    /// Nodes whose instance is going away stay cordoned. Prints what it did as JSON.
    Cleanup {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The controller Deployment's namespace; default: $POD_NAMESPACE, else the
        /// kubeconfig's namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// The controller's Deployment.
        #[arg(long, default_value = "stowage")]
        deployment: String,
        /// How long to wait for the controller's pods to go (Go duration).
        #[arg(long, default_value = "2m")]
        timeout: String,
    },
    /// Print the embedded demo cluster (or, with --nodes, a synthetic one) as a snapshot file.
    #[command(hide = true)]
    Demo {
        /// Generate a synthetic Spark cluster of this many nodes instead.
        #[arg(long)]
        nodes: Option<usize>,
        /// Pods of the synthetic cluster.
        #[arg(long, default_value_t = 150_000)]
        pods: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// An input problem, reported as one line: the file, then what is wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
struct InputError {
    file: String,
    message: String,
}

fn input_error(file: &Path, message: impl ToString) -> InputError {
    InputError {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| input_error(path, e))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| input_error(path, e))
}

/// Reads a snapshot file (`-`: standard input) as it streams in, or the demo cluster.
fn read_snapshot(path: Option<&Path>) -> Result<Snapshot, InputError> {
    match path {
        Some(p) if p.as_os_str() == "-" => {
            crate::model::load::read_snapshot(std::io::stdin().lock())
                .map_err(|e| input_error(p, e))
        }
        Some(p) => {
            let file = std::fs::File::open(p).map_err(|e| input_error(p, e))?;
            crate::model::load::read_snapshot(file).map_err(|e| input_error(p, e))
        }
        None => {
            let text = serde_json::to_vec(&demo_cluster()).expect("demo cluster serialises");
            Ok(load_snapshot(&text).expect("the demo cluster is valid"))
        }
    }
}

fn read_profiles(path: Option<&Path>, version: SchedulerVersion) -> Result<Profiles, InputError> {
    match path {
        Some(p) => {
            let bytes = read(p)?;
            let text = String::from_utf8(bytes).map_err(|e| input_error(p, e))?;
            Profiles::parse(&text, version)
                .map(|profiles| profiles.with_default_scheduler(version))
                .map_err(|e| input_error(p, e))
        }
        None => Ok(Profiles::defaults(version)),
    }
}

/// Runs the command line and returns the process exit code.
/// True when run as `kubectl-stowage`, the name kubectl looks for on PATH to run `kubectl
/// stowage …`: help then says `kubectl stowage`, and `plan` plans the current context of the
/// kubeconfig (as every kubectl command does) rather than the embedded demo.
fn invoked_as_kubectl_plugin(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_stem())
        .is_some_and(|stem| stem == "kubectl-stowage")
}

pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let plugin = invoked_as_kubectl_plugin(std::env::args_os().next().as_deref());
    let command = if plugin {
        Cli::command().bin_name("kubectl stowage")
    } else {
        Cli::command()
    };
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut out = std::io::stdout().lock();
    let result = match cli.command {
        Command::Plan {
            snapshot,
            cluster,
            planning,
            output,
            now,
            scheduler_version,
            timings,
        } => run_plan(
            if cluster.given() || (plugin && snapshot.is_none()) {
                Source::Live(cluster)
            } else {
                Source::File(snapshot)
            },
            &planning,
            output,
            now.as_deref(),
            scheduler_version,
            Timings::start(timings),
            &mut out,
        ),
        Command::Score {
            snapshot,
            pod,
            scheduler_config,
            profile,
            scheduler_version,
            output,
        } => run_score(
            &snapshot,
            &pod,
            scheduler_config.as_deref(),
            profile.as_deref(),
            scheduler_version,
            output,
            &mut out,
        ),
        Command::View {
            cluster,
            planning,
            interval,
            once,
        } => run_view(&cluster, &planning, &interval, once, &mut out),
        Command::Version => print(
            &mut out,
            &format!("stowage {}\n", env!("CARGO_PKG_VERSION")),
        ),
        Command::Crd { reference: false } => print(&mut out, &crate::k8s::crd::definition_yaml()),
        Command::Crd { reference: true } => print(&mut out, &crate::k8s::crd::reference_markdown()),
        Command::Controller {
            cluster,
            policy,
            scheduler_config,
            interval,
            once,
            admin_address,
            leader_elect,
            lease_namespace,
            lease_name,
            lease_duration,
            identity,
            log_format,
            aws,
        } => {
            init_logs(log_format);
            let lease = leader_elect.then_some((lease_namespace, lease_name, lease_duration));
            run_controller(
                &cluster,
                ControllerArgs {
                    policy: policy.as_deref(),
                    scheduler_config: scheduler_config.as_deref(),
                    interval: &interval,
                    once,
                    admin_address: &admin_address,
                    lease,
                    identity,
                    aws,
                },
                &mut out,
            )
        }
        Command::AsgTags {
            cluster,
            cluster_name,
            namespace,
            dry_run,
            output,
        } => aws::asg_tags(
            &cluster,
            &cluster_name,
            namespace,
            dry_run,
            output,
            &mut out,
        ),
        Command::InterruptionAgent {
            cluster,
            node_name,
            poll_interval,
            rebalance_action,
            admin_address,
            log_format,
        } => {
            init_logs(log_format);
            aws::interruption_agent(
                &cluster,
                node_name,
                &poll_interval,
                rebalance_action,
                &admin_address,
            )
        }
        Command::Cleanup {
            cluster,
            namespace,
            deployment,
            timeout,
        } => run_cleanup(&cluster, namespace, &deployment, &timeout, &mut out),
        Command::Demo { nodes, pods, seed } => match nodes {
            Some(n) => {
                let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut out);
                crate::demo::write_synthetic_cluster(&mut buffered, n, pods, seed)
                    .and_then(|()| buffered.flush())
                    .map_err(|e| input_error(Path::new("<stdout>"), e))
            }
            None => print(&mut out, &format!("{}\n", demo_cluster())),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where `plan` reads the cluster from.
enum Source {
    /// A snapshot file, or the demo cluster.
    File(Option<PathBuf>),
    /// The API server of a kubeconfig (context).
    Live(ClusterArgs),
}

/// The client configuration of a kubeconfig (context); without a file, kube's inference
/// ($KUBECONFIG, ~/.kube/config, in-cluster).
async fn kube_config(cluster: &ClusterArgs) -> Result<kube::Config, InputError> {
    let fail = |e: &dyn std::fmt::Display| input_error(cluster.source(), e);
    let options = kube::config::KubeConfigOptions {
        context: cluster.context.clone(),
        ..Default::default()
    };
    match &cluster.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(&e))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| fail(&e))
        }
        None if cluster.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail(&e)),
        None => kube::Config::infer().await.map_err(|e| fail(&e)),
    }
}

fn runtime(source: &Path) -> Result<tokio::runtime::Runtime, InputError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| input_error(source, e))
}

fn read_policy(path: Option<&Path>) -> Result<ConsolidationPolicy, InputError> {
    match path {
        Some(p) => {
            let text = String::from_utf8(read(p)?).map_err(|e| input_error(p, e))?;
            ConsolidationPolicy::parse(&text).map_err(|e| input_error(p, e))
        }
        None => Ok(ConsolidationPolicy::default_policy()),
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The flags of `stowage controller` beyond the cluster's.
struct ControllerArgs<'a> {
    policy: Option<&'a Path>,
    scheduler_config: Option<&'a Path>,
    interval: &'a str,
    once: bool,
    admin_address: &'a str,
    /// Lease namespace (if given), name and duration; `None`: no election.
    lease: Option<(Option<String>, String, u64)>,
    identity: Option<String>,
    aws: AwsArgs,
}

/// `stowage view`: watches the cluster into the index and draws the plan's node view every
/// `interval` (clearing the screen first on a terminal).
fn run_view(
    cluster: &ClusterArgs,
    planning: &PlanningArgs,
    interval: &str,
    once: bool,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    use std::io::IsTerminal;
    let source = cluster.source();
    let every = crate::policy::schedule::parse_duration(interval)
        .map_err(|e| input_error(Path::new("--interval"), e))?;
    let (policy, profiles) = read_planning(planning, SchedulerVersion::V1_36)?;
    let terminal = std::io::stdout().is_terminal();
    runtime(source)?.block_on(async {
        let config = kube_config(cluster).await?;
        let client = kube::Client::try_from(config).map_err(|e| input_error(source, e))?;
        let index =
            std::sync::Arc::new(std::sync::Mutex::new(crate::k8s::index::ClusterIndex::new()));
        crate::k8s::watch::watch_all(client, index.clone(), std::sync::Arc::new(|| {})).await;
        loop {
            let now = Timestamp::now();
            let frame = {
                let mut index = index.lock().expect("index lock");
                let snapshot = index.snapshot();
                let result = plan(&PlanInput::new(snapshot, &policy, &profiles, now));
                crate::view::render(snapshot, &result, terminal)
            };
            let clear = if terminal && !once {
                "\x1b[H\x1b[2J"
            } else {
                ""
            };
            let title = format!(
                "stowage view · {} · every {interval}",
                now.strftime("%H:%M:%S")
            );
            print(out, &format!("{clear}{title}\n\n{frame}"))?;
            let _ = out.flush();
            if once {
                return Ok(());
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// `stowage cleanup`.
fn run_cleanup(
    cluster: &ClusterArgs,
    namespace: Option<String>,
    deployment: &str,
    timeout: &str,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    let source = cluster.source();
    let timeout = crate::policy::schedule::parse_duration(timeout)
        .map_err(|e| input_error(Path::new("--timeout"), e))?;
    let report = runtime(source)?.block_on(async {
        let config = kube_config(cluster).await?;
        let namespace = namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| input_error(source, e))?;
        crate::k8s::cleanup::cleanup(&client, &namespace, deployment, timeout)
            .await
            .map_err(|e| input_error(source, e))
    })?;
    let line = serde_json::to_string(&report).expect("a report serialises");
    print(out, &format!("{line}\n"))
}

/// `--admin-address`: "" serves nothing.
fn admin_address(text: &str) -> Result<Option<std::net::SocketAddr>, InputError> {
    match text {
        "" => Ok(None),
        a => a.parse().map(Some).map_err(|e| {
            input_error(
                Path::new("--admin-address"),
                format!("{a:?} is not an address like 0.0.0.0:8080: {e}"),
            )
        }),
    }
}

/// `stowage controller`: watch, then a round every `interval` (or once).
fn run_controller(
    cluster: &ClusterArgs,
    args: ControllerArgs,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    use crate::controller::run;
    let source = cluster.source();
    let policy = args.policy.map(|p| read_policy(Some(p))).transpose()?;
    let profiles = read_profiles(args.scheduler_config, SchedulerVersion::V1_36)?;
    let interval = crate::policy::schedule::parse_duration(args.interval)
        .map_err(|e| input_error(Path::new("--interval"), e))?;
    let admin = admin_address(args.admin_address)?;
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "stowage".into());
            format!("{host}-{}", std::process::id())
        });
    let aws = args.aws;
    let duration = |flag: &str, text: &str| {
        crate::policy::schedule::parse_duration(text).map_err(|e| input_error(Path::new(flag), e))
    };
    let visibility = duration("--queue-visibility-timeout", &aws.queue_visibility_timeout)?;
    let tags_every = duration("--asg-tags-interval", &aws.asg_tags_interval)?;
    if visibility < std::time::Duration::from_secs(2) {
        return Err(input_error(
            Path::new("--queue-visibility-timeout"),
            "must be at least 2s (the handler extends it every half)",
        ));
    }
    let lease_namespace = args.lease.as_ref().and_then(|l| l.0.clone());
    runtime(source)?.block_on(async {
        let config = kube_config(cluster).await?;
        let namespace = lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| config.default_namespace.clone());
        let aws = (aws.interruption_queue.is_some() || aws.cluster_name.is_some()).then(|| {
            run::AwsOptions {
                tags_every: (aws.cluster_name.is_some() && !tags_every.is_zero())
                    .then_some(tags_every),
                cluster: aws.cluster_name,
                namespace: namespace.clone(),
                queue: aws.interruption_queue.map(|url| {
                    crate::controller::interrupt::QueueOptions {
                        url,
                        workers: aws.interruption_workers.max(1),
                        visibility,
                    }
                }),
                rebalance: aws.rebalance_action,
            }
        });
        let lease = args.lease.map(
            |(namespace, name, duration)| crate::k8s::lease::LeaseOptions {
                namespace: namespace
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| config.default_namespace.clone()),
                name,
                identity: identity.clone(),
                duration,
            },
        );
        let options = run::Options {
            policy,
            profiles,
            scheduler_version: SchedulerVersion::V1_36,
            interval,
            once: args.once,
            admin,
            lease,
            instance: identity,
            aws,
        };
        let mut failed = None;
        let result = run::run(config, options, |round| {
            let line = serde_json::to_string(round).expect("a round serialises");
            if let Err(e) = print(out, &format!("{line}\n")) {
                failed = Some(e);
            }
            let _ = out.flush();
        })
        .await
        .map_err(|e| input_error(source, e));
        match failed {
            Some(e) => Err(e),
            None => result,
        }
    })
}

/// Lists the live cluster into a snapshot, read-only, as the controller's index sees it.
fn read_live(cluster: &ClusterArgs) -> Result<Snapshot, InputError> {
    runtime(cluster.source())?.block_on(async { Ok(live_snapshot(cluster).await?.0) })
}

/// Lists the live cluster into a snapshot, with the client it used.
async fn live_snapshot(cluster: &ClusterArgs) -> Result<(Snapshot, kube::Client), InputError> {
    let fail = |e: &dyn std::fmt::Display| input_error(cluster.source(), e);
    let config = kube_config(cluster).await?;
    let client = kube::Client::try_from(config).map_err(|e| fail(&e))?;
    let index = std::sync::Mutex::new(crate::k8s::index::ClusterIndex::new());
    let refused = crate::k8s::watch::list_all(&client, &index)
        .await
        .map_err(|e| fail(&e))?;
    let mut snapshot = index.into_inner().expect("index lock").into_snapshot();
    snapshot.warnings.extend(refused);
    Ok((snapshot, client))
}

/// The policy and the scheduler profiles of `planning`; a policy's `schedulerConfigRef`
/// profile must be in the given scheduler configuration.
fn read_planning(
    planning: &PlanningArgs,
    version: SchedulerVersion,
) -> Result<(ConsolidationPolicy, Profiles), InputError> {
    let policy_path = planning.policy.as_deref();
    let policy = read_policy(policy_path)?;
    let profiles = read_profiles(planning.scheduler_config.as_deref(), version)?;
    if let (Some(r), Some(_)) = (
        &policy.spec.scoring.scheduler_config_ref,
        &planning.scheduler_config,
    ) && profiles.get(&r.profile).is_none()
    {
        return Err(input_error(
            policy_path.unwrap_or(Path::new("<policy>")),
            format!(
                "spec.scoring.schedulerConfigRef.profile: no profile {:?} in the scheduler config (have: {})",
                r.profile,
                profiles.names().join(", ")
            ),
        ));
    }
    Ok((policy, profiles))
}

fn run_plan(
    source: Source,
    planning: &PlanningArgs,
    output: Output,
    now: Option<&str>,
    version: SchedulerVersion,
    mut timings: Timings,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    let snapshot = match source {
        Source::File(path) => {
            let snapshot = read_snapshot(path.as_deref())?;
            timings.lap("read");
            snapshot
        }
        Source::Live(cluster) => {
            let snapshot = read_live(&cluster)?;
            timings.lap("list");
            snapshot
        }
    };
    let (policy, profiles) = read_planning(planning, version)?;
    let now = match now {
        Some(t) => t.parse::<Timestamp>().map_err(|e| {
            input_error(
                Path::new("--now"),
                format!("{t:?} is not an RFC 3339 time: {e}"),
            )
        })?,
        None => Timestamp::now(),
    };
    timings.lap("setup");
    let result = plan(&PlanInput::new(&snapshot, &policy, &profiles, now));
    timings.lap("plan");
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    let written = match output {
        Output::Json => print(out, &to_json(&result)),
        Output::Table => print(out, &plan_table(&result, &snapshot.nodes)),
        Output::Wide => {
            use std::io::IsTerminal;
            let color = std::io::stdout().is_terminal();
            print(out, &crate::view::render(&snapshot, &result, color))
        }
    };
    timings.lap("output");
    if timings.shown {
        eprintln!("{timings}");
    }
    written
}

/// Wall time per phase of a command (`stowage plan --timings`).
struct Timings {
    shown: bool,
    start: std::time::Instant,
    last: std::time::Instant,
    /// Each phase, how long it took, and the peak memory at its end.
    laps: Vec<(&'static str, std::time::Duration, Option<u64>)>,
}

impl Timings {
    fn start(shown: bool) -> Timings {
        let now = std::time::Instant::now();
        Timings {
            shown,
            start: now,
            last: now,
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        if !self.shown {
            return;
        }
        let now = std::time::Instant::now();
        self.laps.push((phase, now - self.last, peak_rss_kib()));
        self.last = now;
    }
}

/// The process's peak resident memory so far (Linux's `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timings:")?;
        for (phase, took, peak) in &self.laps {
            write!(f, " {phase} {:.3} s", took.as_secs_f64())?;
            if let Some(kib) = peak {
                write!(f, " (peak {} MiB)", kib / 1024)?;
            }
            write!(f, ",")?;
        }
        write!(f, " total {:.3} s", self.start.elapsed().as_secs_f64())
    }
}

fn to_json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("plain data serialises");
    text.push('\n');
    text
}

fn print(out: &mut dyn Write, text: &str) -> Result<(), InputError> {
    out.write_all(text.as_bytes())
        .map_err(|e| input_error(Path::new("<stdout>"), e))
}

/// Renders rows as aligned columns, like `kubectl get`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    s
}

fn plan_table(plan: &Plan, nodes: &Objects<Node>) -> String {
    let pools: HashMap<&str, String> = nodes
        .iter()
        .map(|n| (n.name.as_str(), pool_of(n)))
        .collect();
    let mut rows = Vec::new();
    for d in &plan.drain {
        let mut targets: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &d.moves {
            *targets.entry(m.to.as_str()).or_default() += 1;
        }
        let mut moves = if d.moves.is_empty() {
            if d.evict.is_empty() { "empty" } else { "" }.to_string()
        } else {
            let to: Vec<String> = targets.iter().map(|(n, c)| format!("{n}×{c}")).collect();
            format!("{} pod(s) → {}", d.moves.len(), to.join(", "))
        };
        if !d.evict.is_empty() {
            if !moves.is_empty() {
                moves.push_str("; ");
            }
            moves.push_str(&format!("{} evicted, not recreated", d.evict.len()));
        }
        rows.push(vec![
            d.node.clone(),
            d.pool.clone(),
            d.score_before.to_string(),
            "drain".into(),
            "-".into(),
            moves,
        ]);
    }
    let mut blocked: Vec<_> = plan.blocked.iter().collect();
    blocked.sort_by(|a, b| (a.reason, &a.node).cmp(&(b.reason, &b.node)));
    for b in blocked {
        rows.push(vec![
            b.node.clone(),
            pools.get(b.node.as_str()).cloned().unwrap_or_default(),
            plan.scores
                .get(&b.node)
                .map_or("-".into(), |s| s.to_string()),
            "keep".into(),
            b.reason.as_str().into(),
            b.detail.clone(),
        ]);
    }
    let mut s = table(
        &["NODE", "POOL", "SCORE", "DECISION", "REASON", "DETAIL"],
        &rows,
    );
    let evictions: usize = plan
        .drain
        .iter()
        .map(|d| d.moves.len() + d.evict.len())
        .sum();
    s.push_str(&format!(
        "\n{} nodes → {} after draining {} ({} pod evictions)\n",
        plan.nodes_before,
        plan.nodes_after,
        plan.drain.len(),
        evictions
    ));
    s
}

#[derive(Serialize)]
struct ScoreOutput<'a> {
    profile: &'a str,
    scores: BTreeMap<String, i64>,
    infeasible: BTreeMap<String, String>,
}

#[allow(clippy::too_many_arguments)]
fn run_score(
    snapshot_path: &Path,
    pod_path: &Path,
    scheduler_config: Option<&Path>,
    profile_name: Option<&str>,
    version: SchedulerVersion,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    let mut snapshot = read_snapshot(Some(snapshot_path))?;
    let (mut pod, pod_scheduler) =
        load_pod(&read(pod_path)?).map_err(|e| input_error(pod_path, e))?;
    // The incoming pod is not placed yet; a nodeName it sets is the NodeName filter's.
    std::sync::Arc::make_mut(&mut pod.placement).node_name = pod.node_name.take();
    let profiles = read_profiles(scheduler_config, version)?;
    let name = profile_name
        .map(String::from)
        .or(pod_scheduler)
        .unwrap_or_else(|| "my-scheduler".into());
    let profile = profiles.get(&name).ok_or_else(|| {
        input_error(
            scheduler_config.unwrap_or(Path::new("--profile")),
            format!(
                "no scheduler profile {name:?} (have: {})",
                profiles.names().join(", ")
            ),
        )
    })?;
    if !profile.unsupported_score_plugins.is_empty() {
        let names: Vec<String> = profile
            .unsupported_score_plugins
            .iter()
            .map(|(n, w)| format!("{n} (weight {w})"))
            .collect();
        eprintln!(
            "warning: profile {name} also scores with {}, which stowage does not reproduce; its scores leave them out",
            names.join(", ")
        );
    }
    let usage = node_usages(&snapshot);
    snapshot.pods.push(pod);
    let incoming = (snapshot.pods.len() - 1) as u32;
    let mut state = ClusterState::new(&snapshot, &snapshot.nodes, &[incoming]);
    let prepared = state.prepare(incoming, &profile.spread_defaults);
    let pod = &snapshot.pods[incoming as usize];
    let ignored = |r: &str| profile.ignores_resource(r);
    let mut result = ScoreOutput {
        profile: &profile.scheduler_name,
        scores: BTreeMap::new(),
        infeasible: BTreeMap::new(),
    };
    for (n, (node, u)) in snapshot.nodes.iter().zip(&usage).enumerate() {
        result
            .scores
            .insert(node.name.clone(), profile.score(u, &pod.requests));
        if let Err(why) = filter(node, u, &pod.placement, &pod.requests, &ignored)
            .and_then(|()| state.check(&prepared, n as u32))
        {
            result.infeasible.insert(node.name.clone(), why.to_string());
        }
    }
    // The preference plugins normalise over the feasible nodes only, as kube-scheduler's
    // prioritizeNodes gives them: an infeasible node's score is its resource score alone
    // (as upstream's NodeResourcesFit tables score nodes whatever the Filter says).
    let feasible: Vec<u32> = (0..snapshot.nodes.len() as u32)
        .filter(|&n| {
            !result
                .infeasible
                .contains_key(&snapshot.nodes[n as usize].name)
        })
        .collect();
    if !profile.preferences.is_empty() && !feasible.is_empty() {
        let preferences = state.preference_scores(profile, incoming, &feasible);
        for (&n, preference) in feasible.iter().zip(preferences) {
            *result
                .scores
                .get_mut(&snapshot.nodes[n as usize].name)
                .expect("every node is scored") += preference;
        }
    }
    match output {
        Output::Json => print(out, &to_json(&result)),
        Output::Table | Output::Wide => {
            // Feasible nodes first, best first: the order kube-scheduler would consider them.
            let mut ranked: Vec<(&String, &i64)> = result.scores.iter().collect();
            ranked.sort_by_key(|(n, s)| (result.infeasible.contains_key(*n), -**s, *n));
            let rows: Vec<Vec<String>> = ranked
                .into_iter()
                .map(|(n, s)| {
                    vec![
                        n.clone(),
                        s.to_string(),
                        result
                            .infeasible
                            .get(n)
                            .cloned()
                            .unwrap_or_else(|| "feasible".into()),
                    ]
                })
                .collect();
            print(out, &table(&["NODE", "SCORE", "FILTER"], &rows))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_plugin_mode_follows_the_name_it_was_run_by() {
        let run_as = |argv0: &str| invoked_as_kubectl_plugin(Some(std::ffi::OsStr::new(argv0)));
        assert!(run_as("/home/me/.krew/bin/kubectl-stowage"));
        assert!(run_as("kubectl-stowage"));
        assert!(run_as("C:\\krew\\bin\\kubectl-stowage.exe") || !cfg!(windows));
        assert!(!run_as("/usr/local/bin/stowage"));
        assert!(!run_as("kubectl-stowage-old/stowage"));
        assert!(!invoked_as_kubectl_plugin(None));
    }
}

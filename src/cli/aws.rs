//! The AWS commands: `stowage asg-tags` (the scale-from-zero tags, once) and
//! `stowage interruption-agent` (IMDS mode).

use super::{ClusterArgs, InputError, Output, input_error};
#[cfg(feature = "aws")]
use crate::aws::groups::GroupReport;
use std::io::Write;
use std::path::Path;

/// The commands of a build without the `aws` feature: they say how to get them.
#[cfg(not(feature = "aws"))]
pub(super) fn asg_tags(
    _: &ClusterArgs,
    _: &str,
    _: Option<String>,
    _: bool,
    _: Output,
    _: &mut dyn Write,
) -> Result<(), InputError> {
    Err(input_error(Path::new("asg-tags"), crate::aws::NO_AWS))
}

#[cfg(not(feature = "aws"))]
pub(super) fn interruption_agent(
    _: &ClusterArgs,
    _: String,
    _: &str,
    _: crate::aws::interruption::RebalanceAction,
    _: &str,
) -> Result<(), InputError> {
    Err(input_error(
        Path::new("interruption-agent"),
        crate::aws::NO_AWS,
    ))
}

/// `stowage asg-tags`: one reconciliation of the node-template tags of the cluster's Auto
/// Scaling groups; with `dry_run`, only what it would write.
#[cfg(feature = "aws")]
pub(super) fn asg_tags(
    cluster: &ClusterArgs,
    cluster_name: &str,
    namespace: Option<String>,
    dry_run: bool,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    use super::{live_snapshot, print, runtime};
    use crate::aws::groups;
    use crate::aws::sdk::Sdk;
    use crate::k8s::record;
    let source = cluster.source();
    let reports = runtime(source)?.block_on(async {
        let (snapshot, client) = live_snapshot(cluster).await?;
        let namespace = namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let mut owned: groups::Owned = record::load(&client, &namespace, record::ASG_TAGS)
            .await
            .map_err(|e| input_error(source, e))?;
        let aws = Sdk::from_env().await;
        let save =
            record::saver::<groups::Owned>(client.clone(), namespace.clone(), record::ASG_TAGS);
        let reports = groups::reconcile(
            &aws,
            &snapshot.nodes,
            &groups::selected_keys(&snapshot),
            cluster_name,
            &mut owned,
            (!dry_run).then_some(&save as groups::Save<'_>),
        )
        .await
        .map_err(|e| input_error(Path::new("<aws>"), e))?;
        Ok::<_, InputError>(reports)
    })?;
    let text = match output {
        Output::Json => {
            serde_json::to_string_pretty(
                &serde_json::json!({ "dryRun": dry_run, "groups": reports }),
            )
            .expect("reports serialise")
                + "\n"
        }
        Output::Table | Output::Wide => tags_table(&reports),
    };
    print(out, &text)?;
    match reports
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| (&r.group, e)))
    {
        Some((group, e)) => Err(input_error(Path::new(group), e)),
        None => Ok(()),
    }
}

#[cfg(feature = "aws")]
fn tags_table(reports: &[GroupReport]) -> String {
    let mut rows = Vec::new();
    for r in reports {
        let source = format!("{:?}", r.source).to_lowercase();
        for (k, v) in &r.tags {
            let change = if r.write.contains_key(k) {
                "write"
            } else if r.kept.contains(k) {
                "kept (user's)"
            } else {
                "unchanged"
            };
            rows.push(vec![
                r.group.clone(),
                source.clone(),
                change.into(),
                k.clone(),
                v.clone(),
            ]);
        }
        for k in &r.delete {
            rows.push(vec![
                r.group.clone(),
                source.clone(),
                "delete".into(),
                k.clone(),
                String::new(),
            ]);
        }
        if r.tags.is_empty() && r.delete.is_empty() {
            rows.push(vec![
                r.group.clone(),
                source,
                "none".into(),
                String::new(),
                String::new(),
            ]);
        }
    }
    if rows.is_empty() {
        return "no Auto Scaling group carries Cluster Autoscaler's discovery tags for this cluster\n".into();
    }
    super::table(&["GROUP", "SOURCE", "CHANGE", "TAG", "VALUE"], &rows)
}

/// `stowage interruption-agent`: polls IMDS and handles this node's notices; never returns but
/// on a startup error.
#[cfg(feature = "aws")]
pub(super) fn interruption_agent(
    cluster: &ClusterArgs,
    node: String,
    poll_interval: &str,
    rebalance: crate::aws::interruption::RebalanceAction,
    admin_address: &str,
) -> Result<(), InputError> {
    use crate::controller::{agent, interrupt::Handler};
    use std::sync::{Arc, Mutex};
    let source = cluster.source();
    let interval = crate::policy::schedule::parse_duration(poll_interval)
        .map_err(|e| input_error(Path::new("--poll-interval"), e))?;
    let admin = super::admin_address(admin_address)?;
    super::runtime(source)?.block_on(async {
        // Every call bounded in the client: a hung API server ends the node's lookup and each
        // eviction in an error (tried again at the next poll), never a hang.
        let config = crate::k8s::act::bounded(super::kube_config(cluster).await?);
        let fail = |e: &dyn std::fmt::Display| input_error(source, e);
        let client = kube::Client::try_from(config.clone()).map_err(|e| fail(&e))?;
        let evictions = crate::k8s::act::eviction_client(config).map_err(|e| fail(&e))?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        if let Some(addr) = admin {
            let bound = crate::metrics::server::serve(addr, metrics.clone())
                .await
                .map_err(|e| input_error(Path::new("--admin-address"), e))?;
            tracing::info!(address = %bound, "admin server listening");
        }
        let handler = Handler {
            events: crate::k8s::events::Events::new(client.clone(), Some(node.clone())),
            client,
            evictions,
            metrics,
            index: Arc::new(Mutex::new(crate::k8s::index::ClusterIndex::new())),
            rebalance,
            aws: None,
            source: "imds",
            own_node: Some(node.clone()),
            cluster: None,
        };
        agent::run(
            handler,
            agent::imds_client(),
            agent::AgentOptions { node, interval },
        )
        .await;
        Ok(())
    })
}

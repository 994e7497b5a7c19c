//! Leader election with a `coordination.k8s.io/v1` Lease (kube-lease-manager): every replica
//! watches and plans, only the holder of the Lease acts. The Lease is renewed `grace` before
//! it expires; a replica that dies is replaced within the Lease's duration.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

/// Where the Lease lives and who asks for it.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name in a Deployment).
    pub identity: String,
    /// Seconds a holder keeps the Lease without renewing it.
    pub duration: u64,
}

/// Starts competing for the Lease on the current runtime. The receiver reads `true` while this
/// replica holds it; the competition runs until the receiver is dropped (then the Lease is
/// released).
pub async fn elect(
    client: Client,
    options: &LeaseOptions,
) -> Result<watch::Receiver<bool>, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &options.name)
        .with_namespace(&options.namespace)
        .with_identity(&options.identity)
        .with_duration(options.duration)
        // Renew a third of the duration before expiry, at least a second.
        .with_grace((options.duration / 3).max(1))
        .with_field_manager(format!("stowage-{}", options.identity))
        .build()
        .await?;
    let (leading, _task) = manager.watch().await;
    Ok(leading)
}

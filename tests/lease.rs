//! Leader election against the real API server, as the chart's ServiceAccount, through a
//! proxy that breaks the connection both ways: every byte held (delivered late), or every
//! connection reset. Cut off, a replica stops leading on its own clock within the renew
//! deadline, before its Lease can expire, and says the API server does not answer (what
//! `/readyz` reports); once the Lease is another replica's, the old leader's held writes —
//! conditional on the version they read — never take it back while that replica renews it;
//! healed in time, it leads again.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use stowage::k8s::lease::{LeaseOptions, elect};
use support::proxy::{HOLD, PASS, RESET, proxy};
use support::{ControlPlane, install_crypto_provider};

/// Another replica's write of the Lease (as the cluster admin: the chart's Role allows no
/// patch).
fn write_as_replica_b(cp: &ControlPlane, namespace: &str, patch: &serde_json::Value) {
    cp.kubectl(&[
        "patch",
        "lease",
        "cut-off",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

/// A replica competing for Lease `name` (a 6 s Lease) through a proxy, as the chart's
/// ServiceAccount; once it leads: its election, the proxy's mode, the Lease as the admin reads
/// it, and its options.
async fn leading_replica(
    cp: &ControlPlane,
    prefix: &str,
    name: &str,
) -> (
    stowage::k8s::lease::Election,
    Arc<AtomicU8>,
    Api<Lease>,
    LeaseOptions,
) {
    install_crypto_provider();
    let path = cp.service_account_kubeconfig(prefix, true);
    let namespace = path.file_stem().unwrap().to_string_lossy().to_string();
    let file = kube::config::Kubeconfig::read_from(&path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let upstream = config.cluster_url.authority().unwrap().to_string();
    let mode = Arc::new(AtomicU8::new(PASS));
    let through = proxy(upstream, mode.clone()).await;
    config.cluster_url = format!("https://{through}").parse().unwrap();
    config.tls_server_name = Some("localhost".into());
    let client = kube::Client::try_from(stowage::k8s::act::bounded(config)).unwrap();
    let options = LeaseOptions {
        namespace: namespace.clone(),
        name: name.into(),
        identity: "replica-a".into(),
        duration: 6,
    };
    let mut election = elect(client, &options);
    tokio::time::timeout(Duration::from_secs(20), election.leading.wait_for(|l| *l))
        .await
        .expect("replica-a leads")
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(cp.client().await, &namespace);
    (election, mode, leases, options)
}

/// Cuts the replica off as `how` says; how long until it stopped leading, which it must do
/// on its own clock within the renew deadline, before its Lease can expire, saying the API
/// server does not answer (what `/readyz` reports).
async fn cut_off(
    election: &mut stowage::k8s::lease::Election,
    mode: &AtomicU8,
    how: u8,
    options: &LeaseOptions,
) -> Duration {
    mode.store(how, Ordering::SeqCst);
    let cut = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), election.leading.wait_for(|l| !*l))
        .await
        .expect("replica-a stops leading")
        .unwrap();
    let stopped = cut.elapsed();
    assert!(
        stopped <= options.renew_deadline() + Duration::from_millis(500),
        "{stopped:?}"
    );
    tokio::time::timeout(Duration::from_secs(2), election.answering.wait_for(|a| !*a))
        .await
        .expect("the unanswered Lease is reported")
        .unwrap();
    stopped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connections_are_reset_stops_in_time_and_leads_again_once_healed() {
    let cp = ControlPlane::shared();
    let (mut election, mode, _, options) = leading_replica(cp, "lease-reset", "reset").await;
    let stopped = cut_off(&mut election, &mode, RESET, &options).await;
    eprintln!(
        "connections reset → stopped leading after {stopped:?} (renew deadline {:?})",
        options.renew_deadline()
    );
    // Healed before the Lease expired: still its own, it is renewed and leads again.
    mode.store(PASS, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), election.leading.wait_for(|l| *l))
        .await
        .expect("replica-a leads again")
        .unwrap();
    assert!(*election.answering.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_stops_before_its_lease_expires_and_never_takes_it_back() {
    let cp = ControlPlane::shared();
    let (mut election, mode, leases, options) = leading_replica(cp, "lease-a", "cut-off").await;
    let namespace = options.namespace.clone();
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());

    // Cut off: every byte held.
    let last = leases.get("cut-off").await.unwrap();
    let stopped = cut_off(&mut election, &mode, HOLD, &options).await;
    eprintln!(
        "cut off → stopped leading after {stopped:?} (renew deadline {:?})",
        options.renew_deadline()
    );

    // Another replica takes the Lease once it expired (here: written as another holder's).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let takeover = serde_json::json!({"spec": {
        "holderIdentity": "replica-b", "renewTime": now, "acquireTime": now,
    }});
    write_as_replica_b(cp, &namespace, &takeover);
    // The network heals: the held writes arrive late. They carried the version they read, so
    // none of them rewinds replica-b's Lease.
    mode.store(PASS, Ordering::SeqCst);
    for _ in 0..20 {
        let lease = leases.get("cut-off").await.unwrap();
        assert_eq!(holder(&lease), "replica-b", "{lease:?}");
        assert!(
            !*election.leading.borrow(),
            "replica-a leads again while replica-b holds the Lease"
        );
        // replica-b renews, as a live holder does.
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        );
        let renew = serde_json::json!({"spec": {"renewTime": now}});
        write_as_replica_b(cp, &namespace, &renew);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_ne!(renewed(&last), None);
    // Healed: the API server answers again, as the standby it now is.
    assert!(*election.answering.borrow(), "the API server answers again");
}

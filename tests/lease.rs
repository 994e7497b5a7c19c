//! Leader election against the real API server, as the chart's ServiceAccount: a replica cut
//! off from the API server (a proxy between them holds every byte) stops leading on its own
//! clock within the renew deadline, before its Lease can expire; and once the Lease is another
//! replica's, the old leader's writes — conditional on the version they read — never take it
//! back while that replica renews it.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use stowage::k8s::lease::{LeaseOptions, elect};
use support::{ControlPlane, install_crypto_provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Copies `from` to `to`; while `held` is set, bytes read wait (delivered late, if ever).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, held: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy to `upstream` (`host:port`) on 127.0.0.1; its address.
async fn proxy(upstream: String, held: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, held.clone()));
            tokio::spawn(pump(sr, cw, held.clone()));
        }
    });
    address
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_stops_before_its_lease_expires_and_never_takes_it_back() {
    install_crypto_provider();
    let cp = ControlPlane::shared();
    let path = cp.service_account_kubeconfig("lease-a", true);
    let namespace = path.file_stem().unwrap().to_string_lossy().to_string();
    let file = kube::config::Kubeconfig::read_from(&path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let direct = kube::Client::try_from(config.clone()).unwrap();
    let upstream = config.cluster_url.authority().unwrap().to_string();
    let held = Arc::new(AtomicBool::new(false));
    let through = proxy(upstream, held.clone()).await;
    config.cluster_url = format!("https://{through}").parse().unwrap();
    config.tls_server_name = Some("localhost".into());
    let client = kube::Client::try_from(stowage::k8s::act::bounded(config)).unwrap();

    let options = LeaseOptions {
        namespace: namespace.clone(),
        name: "cut-off".into(),
        identity: "replica-a".into(),
        duration: 6,
    };
    let election = elect(client, &options);
    let (mut leading, mut answering) = (election.leading, election.answering);
    tokio::time::timeout(Duration::from_secs(20), leading.wait_for(|l| *l))
        .await
        .expect("replica-a leads")
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(direct, &namespace);
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());

    // Cut off: every byte held. It stops leading on its own clock within the renew deadline,
    // before the Lease (6 s after its last renewal) can expire.
    let last = leases.get("cut-off").await.unwrap();
    held.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| !*l))
        .await
        .expect("replica-a stops leading")
        .unwrap();
    let stopped = cut.elapsed();
    eprintln!(
        "cut off → stopped leading after {stopped:?} (renew deadline {:?})",
        options.renew_deadline()
    );
    // Within the renew deadline (plus scheduling jitter), well before the Lease's 6 s.
    assert!(
        stopped <= options.renew_deadline() + Duration::from_millis(500),
        "{stopped:?}"
    );
    // And it says the API server does not answer (what `/readyz` reports as not ready).
    tokio::time::timeout(Duration::from_secs(2), answering.wait_for(|a| !*a))
        .await
        .expect("the unanswered Lease is reported")
        .unwrap();

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
    held.store(false, Ordering::SeqCst);
    for _ in 0..20 {
        let lease = leases.get("cut-off").await.unwrap();
        assert_eq!(holder(&lease), "replica-b", "{lease:?}");
        assert!(
            !*leading.borrow(),
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
    assert!(*answering.borrow(), "the API server answers again");
}

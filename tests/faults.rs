//! `stowage controller` cut off from a hung API server, as it runs in a cluster: the binary,
//! as the chart's ServiceAccount, with leader election and the admin port, its every
//! connection to the API server through a proxy that then holds every byte (accepted, never
//! answered). It must stop leading and turn unready within its renew deadline — before its
//! Lease can expire and another replica take over — and come back once the API server
//! answers again. It runs a policy from a file that selects no node, so it acts on nothing
//! of other tests.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use support::proxy::{HOLD, PASS, proxy};
use support::{ControlPlane, curl, free_port};

/// The admin port's answer to `GET /<path>`: its status code and body.
fn get(port: u16, path: &str) -> (String, String) {
    let url = format!("http://127.0.0.1:{port}/{path}");
    let code = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]).unwrap_or_default();
    let body = curl(&["-s", &url]).unwrap_or_default();
    (code, body)
}

/// Polls every 100 ms until `done` holds; how long that took. Panics after `limit`.
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_api_server_hangs_stops_leading_and_is_unready_within_its_deadline() {
    let cp = ControlPlane::shared();
    let kubeconfig = cp.service_account_kubeconfig("hung", true);
    let namespace = kubeconfig
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Every connection of the controller's goes through the proxy.
    let mode = Arc::new(AtomicU8::new(PASS));
    let upstream = cp.server.trim_start_matches("https://").to_string();
    let through = format!("https://{}", proxy(upstream, mode.clone()).await);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let proxied = cp.dir.0.join(format!("{namespace}-proxied.kubeconfig"));
    std::fs::write(
        &proxied,
        text.replace(
            &format!("server: {}\n", cp.server),
            &format!("server: {through}\n    tls-server-name: localhost\n"),
        ),
    )
    .unwrap();
    let policy = cp.dir.0.join("hung-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: hung}\nspec:\n  nodeSelector: {matchLabels: {pool: nowhere}}\n",
    )
    .unwrap();
    let port = free_port();
    let args: &[&str] = &[
        "controller",
        "--interval=2s",
        "--log-format=json",
        &format!("--admin-address=127.0.0.1:{port}"),
        &format!("--lease-namespace={namespace}"),
        "--lease-name=hung",
        "--lease-duration=6",
        "--identity=hung-a",
        "--policy",
        &policy.to_string_lossy(),
        "--kubeconfig",
        &proxied.to_string_lossy(),
    ];
    let process = support::stowage_process(cp, "hung-a", args, &[]);
    let leads = || {
        get(port, "metrics")
            .1
            .lines()
            .any(|l| l == "stowage_leader 1")
    };
    let ready = || get(port, "readyz").0 == "200";
    until("ready and leading", Duration::from_secs(60), || {
        ready() && leads()
    })
    .await;

    // The API server hangs: every byte held, in both directions.
    mode.store(HOLD, Ordering::SeqCst);
    let cut = Instant::now();
    let (mut stopped, mut unready) = (None, None);
    while stopped.is_none() || unready.is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "still leading or ready 10 s after the API server hung\n{}",
            process.tail()
        );
        if stopped.is_none() && !leads() {
            stopped = Some(cut.elapsed());
        }
        if unready.is_none() && !ready() {
            unready = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stopped, unready) = (stopped.unwrap(), unready.unwrap());
    let (code, why) = get(port, "readyz");
    let metrics = get(port, "metrics").1;
    // Within the renew deadline (4 s of the 6 s Lease), plus the polling and a slow machine's
    // scheduling: before the Lease can expire.
    let deadline = Duration::from_secs(4) + Duration::from_millis(1500);
    assert!(
        stopped <= deadline && unready <= deadline,
        "stopped leading after {stopped:?}, unready after {unready:?}\n{}",
        process.tail()
    );
    assert_eq!(code, "503", "{why}");
    assert!(why.contains("the API server has not answered"), "{why}");
    assert!(
        metrics.lines().any(|l| l == "stowage_api_answering 0"),
        "{metrics}"
    );
    let log = process.log_text();
    assert!(log.contains("leadership lost"), "{}", process.tail());

    // It answers again: the controller leads and is ready again.
    mode.store(PASS, Ordering::SeqCst);
    let healed = Instant::now();
    let back = until("ready and leading again", Duration::from_secs(30), || {
        ready() && leads()
    })
    .await;
    println!(
        "hung API server: stopped leading after {} ms, unready after {} ms (renew deadline 4 s, Lease 6 s); ready and leading again {} ms after it answered; cut off {} ms in all",
        stopped.as_millis(),
        unready.as_millis(),
        back.as_millis(),
        (healed - cut).as_millis()
    );
}

//! Rule 3 of docs/spark.md, when a policy sets
//! `shuffle.driverApi.enabled`: ask the Spark driver's REST API which executors hold data.
//!
//! An executor holds data when it ever wrote shuffle output (`totalShuffleWrite > 0`) or
//! keeps cached RDD blocks (`rddBlocks > 0`), **whether or not a job runs**: a finished map
//! stage's output is reused by the next action that reads the same shuffle (Spark skips the
//! stage), and AQE runs each map stage as a job of its own, so "no running job" says nothing.
//! This is what Spark's own dynamic allocation with `shuffleTracking` keeps.
//!
//! What rule 3 cannot see: whether a shuffle is still referenced (`totalShuffleWrite` is a
//! lifetime total, so an executor that once wrote stays "holding" until it ends — safe, never
//! early), and blocks an executor *received* by decommissioning migration (they are not its
//! writes): apps with `spark.storage.decommission.shuffleBlocks.enabled` are therefore left
//! to rule 4 whatever their driver says (`crate::shuffle`). Each app is asked once per round,
//! every call time-boxed by `driverApi.timeout` (1 s by default) and its answer capped at
//! [`MAX_ANSWER`] bytes; an app whose driver does not answer in time (a fresh driver's first
//! answer takes seconds), or answers something unexpected, is left to rule 4 (its executors
//! are taken to hold data) — a slow answer never counts as "no data".

use crate::keys;
use crate::model::{Snapshot, SparkRole};
use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;
use std::time::Duration;

/// The largest answer read from a driver (an app with thousands of executors answers a few
/// MiB; anything larger is refused, and the app falls to rule 4).
pub const MAX_ANSWER: usize = 16 << 20;

/// Drivers asked per round at most (the rest fall to rule 4 this round).
pub const MAX_APPS: usize = 50;

/// One running app to ask about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `spark-app-selector`: the application id the REST API is keyed by.
    pub app_id: String,
    /// `http://<driver pod IP>:<port>`.
    pub base: String,
    /// The app's executors on nodes stowage may drain: `spark-exec-id` → pod UID.
    pub executors: Vec<(String, String)>,
}

/// The running apps with executors on nodes `wanted` accepts, and their drivers' addresses.
pub fn queries(snapshot: &Snapshot, port: i64, wanted: impl Fn(&str) -> bool) -> Vec<Query> {
    let mut drivers: HashMap<(&str, &str), &str> = HashMap::default();
    for p in &snapshot.pods {
        if let Some(s) = &p.spark
            && s.role == SparkRole::Driver
            && !p.phase.is_finished()
            && !s.app_id.is_empty()
            && let Some(ip) = s.pod_ip.as_deref()
        {
            drivers.insert((p.namespace.as_str(), s.app_id.as_str()), ip);
        }
    }
    let mut by_app: std::collections::BTreeMap<(&str, &str), Query> = Default::default();
    for p in &snapshot.pods {
        let Some(s) = &p.spark else { continue };
        if s.role != SparkRole::Executor || p.phase.is_finished() {
            continue;
        }
        let (Some(node), Some(id)) = (p.node_name.as_deref(), p.labels.get(keys::SPARK_EXEC_ID))
        else {
            continue;
        };
        let key = (p.namespace.as_str(), s.app_id.as_str());
        let Some(ip) = drivers.get(&key) else {
            continue;
        };
        if !wanted(node) {
            continue;
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        by_app
            .entry(key)
            .or_insert_with(|| Query {
                app_id: s.app_id.to_string(),
                base: format!("http://{host}:{port}"),
                executors: Vec::new(),
            })
            .executors
            .push((id.to_string(), p.uid.clone()));
    }
    by_app.into_values().take(MAX_APPS).collect()
}

/// `ExecutorSummary` of Spark's REST API, the fields rule 3 reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutorSummary {
    id: String,
    #[serde(default)]
    total_shuffle_write: i64,
    #[serde(default)]
    rdd_blocks: i64,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> Result<T, String> {
    let call = async {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let response = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url}: no answer within {timeout:?}")),
    }
}

/// Asks one driver; by executor pod UID, whether it holds data.
async fn ask_one(
    client: &HttpClient,
    q: &Query,
    timeout: Duration,
) -> Result<Vec<(String, bool)>, String> {
    let app = format!("{}/api/v1/applications/{}", q.base, q.app_id);
    let executors: Vec<ExecutorSummary> =
        get_json(client, &format!("{app}/executors"), timeout).await?;
    let by_id: HashMap<&str, &ExecutorSummary> =
        executors.iter().map(|e| (e.id.as_str(), e)).collect();
    Ok(q.executors
        .iter()
        .filter_map(|(id, uid)| {
            let e = by_id.get(id.as_str())?;
            let holds = e.total_shuffle_write > 0 || e.rdd_blocks > 0;
            Some((uid.clone(), holds))
        })
        .collect())
}

/// Asks every driver at once. By executor pod UID: true when it holds data. Apps whose driver
/// did not answer are missing (rule 4 applies to them), with why in the second value.
pub async fn ask(queries: &[Query], timeout: Duration) -> (HashMap<String, bool>, Vec<String>) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let answers = join_all(queries.iter().map(|q| ask_one(&client, q, timeout))).await;
    let mut seen = HashMap::default();
    let mut failed = Vec::new();
    for answer in answers {
        match answer {
            Ok(list) => seen.extend(list),
            Err(why) => failed.push(why),
        }
    }
    (seen, failed)
}

/// Rule 3: asks the drivers of running apps with executors on the nodes of policies that
/// enable `shuffle.driverApi`, once per app, outside the index lock.
pub async fn ask_drivers(
    index: &std::sync::Mutex<crate::k8s::index::ClusterIndex>,
    policies: &[&crate::policy::ConsolidationPolicy],
) -> rustc_hash::FxHashMap<String, bool> {
    let enabled: Vec<&&crate::policy::ConsolidationPolicy> = policies
        .iter()
        .filter(|p| p.spec.shuffle.driver_api.enabled)
        .collect();
    if enabled.is_empty() {
        return Default::default();
    }
    let (queries, timeout) = {
        let mut index = index.lock().expect("index lock");
        let snapshot = index.snapshot();
        let labels: rustc_hash::FxHashMap<&str, &crate::model::selector::Labels> = snapshot
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), &n.labels))
            .collect();
        let mut wanted: Vec<Query> = Vec::new();
        for p in &enabled {
            let api = &p.spec.shuffle.driver_api;
            for q in queries(snapshot, api.port, |node| {
                labels
                    .get(node)
                    .is_some_and(|l| p.spec.node_selector.matches(l))
            }) {
                if !wanted.contains(&q) {
                    wanted.push(q);
                }
            }
        }
        let timeout = enabled
            .iter()
            .map(|p| p.spec.shuffle.driver_api.timeout.get())
            .max()
            .unwrap_or(std::time::Duration::from_secs(1));
        (wanted, timeout)
    };
    let (seen, failed) = ask(&queries, timeout).await;
    for why in failed {
        tracing::info!(error = %why, "driver REST API did not answer; its executors are taken to hold shuffle data");
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Pod};
    use crate::plan::{PlanInput, Reason, plan};
    use crate::policy::ConsolidationPolicy;
    use crate::scoring::{Profiles, SchedulerVersion};
    use axum::Router;
    use axum::routing::get;

    /// A driver answering as Spark's REST API documents it: executor 1 wrote no shuffle and
    /// caches nothing, executor 2 wrote shuffle, executor 4 caches RDD blocks.
    async fn driver(delay: Duration) -> String {
        let executors = serde_json::json!([
            {"id": "driver", "totalShuffleWrite": 0, "rddBlocks": 0},
            {"id": "1", "totalShuffleWrite": 0, "rddBlocks": 0, "isActive": true},
            {"id": "2", "totalShuffleWrite": 1048576, "rddBlocks": 0},
            {"id": "4", "totalShuffleWrite": 0, "rddBlocks": 3},
        ]);
        let app = Router::new().route(
            "/api/v1/applications/spark-1/executors",
            get(move || async move {
                tokio::time::sleep(delay).await;
                json(&executors)
            }),
        );
        serve(app).await
    }

    /// Serves `app` on 127.0.0.1; its base URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    fn json(v: &serde_json::Value) -> ([(axum::http::HeaderName, &'static str); 1], String) {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
    }

    fn query(base: String) -> Query {
        Query {
            app_id: "spark-1".into(),
            base,
            executors: ["1", "2", "3", "4"]
                .iter()
                .map(|i| (i.to_string(), format!("uid-{i}")))
                .collect(),
        }
    }

    #[tokio::test]
    async fn the_driver_says_which_executors_hold_data() {
        let q = query(driver(Duration::ZERO).await);
        let (seen, failed) = ask(&[q], Duration::from_secs(1)).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(seen.get("uid-1"), Some(&false));
        assert_eq!(seen.get("uid-2"), Some(&true));
        // Unknown to the driver: left to rule 4.
        assert_eq!(seen.get("uid-3"), None);
        assert_eq!(seen.get("uid-4"), Some(&true), "cached RDD blocks");
    }

    #[tokio::test]
    async fn a_driver_that_does_not_answer_in_time_is_left_to_rule_4() {
        let q = query(driver(Duration::from_secs(3)).await);
        let started = std::time::Instant::now();
        let (seen, failed) = ask(&[q], Duration::from_millis(200)).await;
        assert!(seen.is_empty());
        assert!(failed[0].contains("no answer within"), "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nobody listening: an error, not a hang.
        let (seen, failed) = ask(
            &[query("http://127.0.0.1:9".into())],
            Duration::from_secs(1),
        )
        .await;
        assert!(seen.is_empty() && failed.len() == 1, "{failed:?}");
    }

    /// A captured phase of a real Spark app (tests/data/spark-rest/<version>/<phase>).
    fn captured(version: &str, phase: &str) -> String {
        format!(
            "{}/tests/data/spark-rest/{version}/{phase}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    /// A driver serving a captured phase of a real Spark app.
    async fn captured_driver(version: &str, phase: &str) -> String {
        let dir = captured(version, phase);
        let read = |file: &str| {
            let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        };
        let executors = read("executors.json");
        let app = Router::new().route(
            "/api/v1/applications/spark-1/executors",
            get(move || async move { json(&executors) }),
        );
        serve(app).await
    }

    /// Ground truth from the same driver's stage details and storage endpoints: which executors
    /// held data (cached blocks, or shuffle output a later action reads) in each phase. Between
    /// jobs (`pD*`, `pE2`, `pC2`) no job runs, yet the map output is reused by the next action
    /// (Spark skips the map stage): an executor that wrote shuffle output holds it, whatever runs.
    #[tokio::test]
    async fn rule_3_on_a_real_driver_frees_exactly_the_executors_that_hold_nothing() {
        let truth: [(&str, &[(&str, bool)]); 10] = [
            ("p0_started", &[("0", false), ("1", false), ("2", false)]),
            ("pA_cached_idle", &[("0", true), ("1", false), ("2", false)]),
            (
                "pB_running_shuffle_job",
                &[("0", true), ("1", true), ("2", false)],
            ),
            (
                "pD_idle_shuffle_reusable",
                &[("0", true), ("1", true), ("2", false)],
            ),
            ("pD2_idle_later", &[("0", true), ("1", true), ("2", false)]),
            ("pD3_after_reuse", &[("0", true), ("1", true), ("2", false)]),
            (
                "pE_after_evicting_shuffle_writer",
                &[("0", true), ("2", false), ("3", false)],
            ),
            (
                "pE2_after_reuse_attempt",
                &[("0", true), ("2", true), ("3", false)],
            ),
            (
                "pC_df_aqe_running",
                &[("0", true), ("2", true), ("3", false)],
            ),
            ("pC2_df_idle", &[("0", true), ("2", true), ("3", false)]),
        ];
        for (phase, held) in truth {
            let held = held.iter().map(|(id, h)| (id.to_string(), *h)).collect();
            rule_3_answers("4.0.1", phase, held).await;
        }
    }

    /// Rule 3 on what the driver answered in `phase`: exactly `held` (executor id → holds
    /// data); an executor the driver no longer lists is not answered for (rule 4).
    async fn rule_3_answers(version: &str, phase: &str, held: HashMap<String, bool>) {
        let mut q = query(captured_driver(version, phase).await);
        q.executors = ["0", "1", "2", "3"]
            .iter()
            .map(|i| (i.to_string(), format!("uid-{i}")))
            .collect();
        let (seen, failed) = ask(&[q], Duration::from_secs(5)).await;
        assert!(failed.is_empty(), "{version} {phase}: {failed:?}");
        let mut got: Vec<_> = seen.into_iter().collect();
        got.sort();
        let mut want: Vec<_> = held
            .into_iter()
            .map(|(id, holds)| (format!("uid-{id}"), holds))
            .collect();
        want.sort();
        assert_eq!(got, want, "{version} {phase}");
    }

    /// Spark 3.5.9, captured by `scripts/capture-spark-rest`: each phase's `truth.json` says
    /// which executors held data, from the storage and stage-detail endpoints (the map tasks
    /// of the still-referenced shuffle), not from the executors list rule 3 reads.
    #[tokio::test]
    async fn rule_3_on_a_real_spark_3_5_driver_frees_exactly_the_executors_that_hold_nothing() {
        let phases = [
            "p0_started",
            "pA_cached_idle",
            "pB_running_shuffle_job",
            "pD_idle_shuffle_reusable",
            "pD3_after_reuse",
        ];
        let mut holders = 0;
        for phase in phases {
            let text = std::fs::read_to_string(format!("{}/truth.json", captured("3.5.9", phase)))
                .unwrap();
            let held: HashMap<String, bool> = serde_json::from_str(&text).unwrap();
            holders += held.values().filter(|h| **h).count();
            rule_3_answers("3.5.9", phase, held).await;
        }
        // Caches in four phases, a shuffle's map output in three: the captures have teeth.
        assert_eq!(holders, 7);
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_cap_is_refused_not_read_whole() {
        let huge = format!("[{}]", " ".repeat(MAX_ANSWER));
        let app = Router::new().route(
            "/api/v1/applications/spark-1/executors",
            get(move || async move { huge }),
        );
        let base = serve(app).await;
        let (seen, failed) = ask(&[query(base)], Duration::from_secs(5)).await;
        assert!(seen.is_empty());
        assert!(failed[0].contains("length limit"), "{failed:?}");
    }

    #[test]
    fn an_executor_the_driver_clears_no_longer_keeps_its_node() {
        let mut snapshot = Snapshot {
            nodes: vec![Node::test("busy"), Node::test("thin")].into(),
            pods: vec![
                Pod::test("big").on("busy").req(10_000, 40 << 30),
                Pod::test("driver").on("busy").driver_of("spark-1"),
                Pod::test("exec-1")
                    .on("thin")
                    .executor_of("spark-1", "driver")
                    .label(keys::SPARK_EXEC_ID, "1"),
            ]
            .into(),
            ..Snapshot::default()
        };
        snapshot.pods[1].spark.as_mut().unwrap().pod_ip = Some("10.0.0.7".into());
        let mut policy = ConsolidationPolicy::default_policy();
        policy.spec.shuffle.driver_api.enabled = true;
        let asked = queries(&snapshot, 4040, |n| n == "thin");
        assert_eq!(
            asked,
            [Query {
                app_id: "spark-1".into(),
                base: "http://10.0.0.7:4040".into(),
                executors: vec![("1".into(), "uid-exec-1".into())],
            }]
        );
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let plan_with = |seen: Option<&HashMap<String, bool>>| {
            plan(&PlanInput {
                snapshot: &snapshot,
                policy: &policy,
                profiles: &profiles,
                now: "2026-11-23T22:00:00Z".parse().unwrap(),
                governed_elsewhere: None,
                executors_seen: seen,
            })
        };
        let kept = plan_with(None);
        assert!(
            kept.blocked
                .iter()
                .any(|b| b.node == "thin" && b.reason == Reason::ShuffleData)
        );
        let clear: HashMap<String, bool> =
            [("uid-exec-1".to_string(), false)].into_iter().collect();
        let freed = plan_with(Some(&clear));
        assert_eq!(freed.drain.len(), 1, "{:?}", freed.blocked);
        assert_eq!(freed.drain[0].node, "thin");
        let holds: HashMap<String, bool> = [("uid-exec-1".to_string(), true)].into_iter().collect();
        assert!(plan_with(Some(&holds)).drain.is_empty());
    }
}

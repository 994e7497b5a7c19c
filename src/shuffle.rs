//! Which Spark executors hold shuffle data that a running job still needs.
//!
//! No Spark API says so directly, so detection is layered (docs/spark.md), and when in doubt an
//! executor of a running application is assumed to hold data:
//! 1. `spark-exec-inactive=true`, or a driver that is gone or finished → holds nothing;
//! 2. a remote shuffle manager (Celeborn, Uniffle) in the app's Spark configuration → nothing
//!    on the node;
//! 3. (controller only) the driver's REST API says it wrote no shuffle output and caches
//!    nothing (`controller::spark_api`) — not for apps that migrate shuffle blocks on
//!    decommissioning, whose executors may hold blocks they did not write;
//! 4. otherwise it holds data, unless annotated `stowage.io/shuffle-free: "true"`.
//!
//! Drivers are found through the executor's controller owner reference (Spark makes the driver
//! pod the executors' owner), falling back to the `spark-app-selector` label. Configuration
//! comes from SparkApplication `spec.sparkConf` or the driver's `spark-drv-…-conf-map`.

use crate::keys;
use crate::model::{Pod, Snapshot, SparkApp, SparkRole};
use crate::policy::ShuffleSpec;
use std::collections::HashMap;

/// Whether an executor holds shuffle data, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShuffleState {
    /// Safe to evict; the reason, for logs.
    Free(&'static str),
    /// Holds data a running job needs.
    Holds {
        app_id: String,
        /// The app enables Spark decommissioning with shuffle block migration.
        can_decommission: bool,
    },
}

/// Spark drivers and app configurations of a snapshot, looked up per executor.
pub struct SparkIndex<'a> {
    drivers_by_name: HashMap<(&'a str, &'a str), &'a Pod>,
    drivers_by_app: HashMap<(&'a str, &'a str), &'a Pod>,
    apps_by_id: HashMap<(&'a str, &'a str), Vec<&'a SparkApp>>,
    apps_by_name: HashMap<(&'a str, &'a str), Vec<&'a SparkApp>>,
    apps_by_driver: HashMap<(&'a str, &'a str), Vec<&'a SparkApp>>,
    remote_managers: &'a [String],
    /// Rule 3: what drivers' REST APIs said, by executor pod UID (true: holds data).
    driver_answers: Option<&'a rustc_hash::FxHashMap<String, bool>>,
    server_selector: Option<&'a crate::model::selector::LabelSelector>,
    /// Running apps that keep their shuffle data in a remote shuffle service: the service
    /// and the app id, ordered by driver.
    remote_users: Vec<(Service, &'a str)>,
}

/// The remote shuffle service a `spark.shuffle.manager` class talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Celeborn,
    Uniffle,
    /// A manager the policy added: which servers it uses is unknown, so all of them.
    Other,
}

impl Service {
    fn of_manager(class: &str) -> Service {
        if class.contains(".celeborn.") {
            Service::Celeborn
        } else if class.ends_with(".RssShuffleManager") {
            Service::Uniffle
        } else {
            Service::Other
        }
    }
}

impl<'a> SparkIndex<'a> {
    /// Indexes the drivers and app configurations of `snapshot`.
    pub fn new(snapshot: &'a Snapshot, shuffle: &'a ShuffleSpec) -> SparkIndex<'a> {
        let mut drivers_by_name = HashMap::new();
        let mut drivers_by_app = HashMap::new();
        for pod in &snapshot.pods {
            if let Some(spark) = &pod.spark
                && spark.role == SparkRole::Driver
            {
                drivers_by_name.insert((pod.namespace.as_str(), pod.name.as_str()), pod);
                if !spark.app_id.is_empty() {
                    // Prefer a driver that still runs when a retried app left an old one.
                    let slot = drivers_by_app
                        .entry((pod.namespace.as_str(), spark.app_id.as_str()))
                        .or_insert(pod);
                    if slot.phase.is_finished() && !pod.phase.is_finished() {
                        *slot = pod;
                    }
                }
            }
        }
        let mut apps_by_id: HashMap<_, Vec<_>> = HashMap::new();
        let mut apps_by_name: HashMap<_, Vec<_>> = HashMap::new();
        let mut apps_by_driver: HashMap<_, Vec<_>> = HashMap::new();
        for app in &snapshot.spark_apps {
            let ns = app.namespace.as_str();
            if let Some(id) = &app.app_id {
                apps_by_id.entry((ns, id.as_str())).or_default().push(app);
            }
            if let Some(name) = &app.name {
                apps_by_name
                    .entry((ns, name.as_str()))
                    .or_default()
                    .push(app);
            }
            if let Some(driver) = &app.driver_pod {
                apps_by_driver
                    .entry((ns, driver.as_str()))
                    .or_default()
                    .push(app);
            }
        }
        SparkIndex {
            drivers_by_name,
            drivers_by_app,
            apps_by_id,
            apps_by_name,
            apps_by_driver,
            remote_managers: &shuffle.remote_shuffle_managers,
            driver_answers: None,
            server_selector: shuffle.shuffle_server_selector.as_ref(),
            remote_users: Vec::new(),
        }
        .with_remote_users()
    }

    /// Finds the running apps whose `spark.shuffle.manager` is a remote shuffle service.
    fn with_remote_users(mut self) -> Self {
        let mut running: Vec<&'a Pod> = self
            .drivers_by_name
            .values()
            .copied()
            .filter(|d| !d.phase.is_finished() && !self.app_finished(d))
            .collect();
        running.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.remote_users = running
            .into_iter()
            .filter_map(|d| {
                let manager = self.conf_value(d, Some(d), "spark.shuffle.manager")?.trim();
                self.remote_managers.iter().any(|m| m == manager).then(|| {
                    let app = d.spark.as_ref().map_or("", |s| s.app_id.as_str());
                    (Service::of_manager(manager), app)
                })
            })
            .collect();
        self
    }

    /// A remote shuffle server while an app that uses its service runs: the app id, for the
    /// guard's detail. Celeborn workers (by the Celeborn chart's labels) serve Celeborn's
    /// managers, Uniffle shuffle servers (by the Uniffle operator's label) serve
    /// `RssShuffleManager`s, and a pod the policy's `shuffle.shuffleServerSelector` selects
    /// serves every remote shuffle app.
    pub fn serves_running_app(&self, pod: &Pod) -> Option<&'a str> {
        let label = |k: &str| pod.labels.get(k).map(crate::model::Name::as_str);
        let served = if self.server_selector.is_some_and(|s| s.matches(&pod.labels)) {
            None
        } else if keys::CELEBORN_WORKER
            .iter()
            .all(|(k, v)| label(k) == Some(v))
        {
            Some(Service::Celeborn)
        } else if label(keys::UNIFFLE_SHUFFLE_SERVER) == Some("true") {
            Some(Service::Uniffle)
        } else {
            return None;
        };
        self.remote_users
            .iter()
            .find(|(service, _)| served.is_none_or(|s| *service == s || *service == Service::Other))
            .map(|(_, app)| *app)
    }

    /// The driver pod of an executor, if it still exists.
    pub fn driver_of(&self, executor: &Pod) -> Option<&'a Pod> {
        if let Some(owner) = &executor.controller
            && owner.kind == "Pod"
        {
            return self
                .drivers_by_name
                .get(&(executor.namespace.as_str(), owner.name.as_str()))
                .copied();
        }
        let app_id = executor.spark.as_ref()?.app_id.as_str();
        self.drivers_by_app
            .get(&(executor.namespace.as_str(), app_id))
            .copied()
    }

    /// The Spark configuration entries known for the app of `pod` (driver or executor).
    fn conf<'s>(
        &'s self,
        pod: &'s Pod,
        driver: Option<&'s Pod>,
    ) -> impl Iterator<Item = &'a SparkApp> + 's {
        let ns = pod.namespace.as_str();
        let spark = pod.spark.as_ref();
        let by_id = spark.and_then(|s| self.apps_by_id.get(&(ns, s.app_id.as_str())));
        let by_name = spark
            .and_then(|s| s.app_name.as_deref())
            .and_then(|n| self.apps_by_name.get(&(ns, n)));
        let by_driver = driver.and_then(|d| self.apps_by_driver.get(&(ns, d.name.as_str())));
        [by_id, by_name, by_driver]
            .into_iter()
            .flatten()
            .flat_map(|apps| apps.iter().copied())
    }

    fn conf_value(&self, pod: &Pod, driver: Option<&Pod>, key: &str) -> Option<&'a str> {
        self.conf(pod, driver)
            .find_map(|app| app.conf.get(key).map(String::as_str))
    }

    /// A SparkApplication of this app reports a terminal state.
    fn app_finished(&self, pod: &Pod) -> bool {
        self.conf(pod, None).any(|app| {
            app.state.as_deref().is_some_and(|s| {
                matches!(
                    s,
                    "COMPLETED"
                        | "FAILED"
                        | "SUBMISSION_FAILED"
                        | "FAILING_DONE"
                        | "SUCCEEDING_DONE"
                )
            })
        })
    }

    /// Takes rule 3 into account: what the drivers' REST APIs said this round.
    pub fn with_driver_answers(
        mut self,
        answers: Option<&'a rustc_hash::FxHashMap<String, bool>>,
    ) -> SparkIndex<'a> {
        self.driver_answers = answers;
        self
    }

    /// Rules 1 to 4 of docs/spark.md for an executor pod (rule 3 when the controller asked
    /// the drivers, see [`SparkIndex::with_driver_answers`]).
    pub fn executor_state(&self, executor: &Pod) -> ShuffleState {
        let Some(spark) = &executor.spark else {
            return ShuffleState::Free("not a Spark executor");
        };
        if spark.role != SparkRole::Executor {
            return ShuffleState::Free("not a Spark executor");
        }
        if executor
            .labels
            .get(keys::SPARK_EXEC_INACTIVE)
            .map(crate::model::Name::as_str)
            == Some("true")
        {
            return ShuffleState::Free("executor marked inactive");
        }
        let driver = self.driver_of(executor);
        match driver {
            None => return ShuffleState::Free("driver is gone"),
            Some(d) if d.phase.is_finished() => return ShuffleState::Free("driver finished"),
            Some(_) => {}
        }
        if self.app_finished(executor) {
            return ShuffleState::Free("application finished");
        }
        if let Some(manager) = self.conf_value(executor, driver, "spark.shuffle.manager")
            && self.remote_managers.iter().any(|m| m == manager.trim())
        {
            return ShuffleState::Free("remote shuffle service");
        }
        let enabled = |key| self.conf_value(executor, driver, key) == Some("true");
        // Blocks received by decommissioning migration are not the receiver's writes: the
        // driver's answer cannot clear an executor of such an app.
        let migrates = enabled("spark.storage.decommission.shuffleBlocks.enabled");
        if !migrates
            && let Some(&holds) = self.driver_answers.and_then(|a| a.get(&executor.uid))
            && !holds
        {
            return ShuffleState::Free(
                "the driver's REST API shows no shuffle output written and no cached blocks",
            );
        }
        if executor.shuffle_free {
            return ShuffleState::Free("annotated stowage.io/shuffle-free");
        }
        ShuffleState::Holds {
            app_id: if spark.app_id.is_empty() {
                spark.app_name.as_deref().unwrap_or("unknown").to_string()
            } else {
                spark.app_id.to_string()
            },
            can_decommission: enabled("spark.decommission.enabled") && migrates,
        }
    }

    /// True unless `executor` is a Spark executor nobody will replace once evicted: its
    /// driver is gone or finished, or its application finished. A running driver asks for a
    /// replacement of a lost executor, so that one needs room elsewhere.
    pub fn executor_replaced(&self, executor: &Pod) -> bool {
        if executor
            .spark
            .as_ref()
            .is_none_or(|s| s.role != SparkRole::Executor)
        {
            return true;
        }
        self.driver_of(executor)
            .is_some_and(|d| !d.phase.is_finished())
            && !self.app_finished(executor)
    }

    /// A Spark driver whose application has not finished.
    pub fn is_running_driver(&self, pod: &Pod) -> bool {
        pod.spark
            .as_ref()
            .is_some_and(|s| s.role == SparkRole::Driver)
            && !pod.phase.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OwnerRef, PodPhase, SparkPod};

    fn driver(name: &str, app: &str, phase: PodPhase) -> Pod {
        Pod {
            namespace: "spark".into(),
            name: name.into(),
            phase,
            spark: Some(SparkPod {
                role: SparkRole::Driver,
                app_id: app.into(),
                app_name: None,
                pod_ip: None,
            }),
            ..Pod::default()
        }
    }

    fn executor(name: &str, app: &str, driver: Option<&str>) -> Pod {
        Pod {
            namespace: "spark".into(),
            name: name.into(),
            phase: PodPhase::Running,
            controller: driver.map(|d| OwnerRef {
                kind: "Pod".into(),
                name: d.into(),
            }),
            spark: Some(SparkPod {
                role: SparkRole::Executor,
                app_id: app.into(),
                app_name: None,
                pod_ip: None,
            }),
            ..Pod::default()
        }
    }

    fn state(snapshot: &Snapshot, pod: &Pod) -> ShuffleState {
        let spec = ShuffleSpec::default();
        SparkIndex::new(snapshot, &spec).executor_state(pod)
    }

    #[test]
    fn layered_rules() {
        let mut s = Snapshot::default();
        s.pods.push(driver("run-drv", "app-1", PodPhase::Running));
        s.pods
            .push(driver("done-drv", "app-2", PodPhase::Succeeded));

        let holder = executor("e1", "app-1", Some("run-drv"));
        assert!(
            matches!(state(&s, &holder), ShuffleState::Holds { ref app_id, can_decommission: false } if app_id == "app-1")
        );
        assert_eq!(
            state(&s, &executor("e2", "app-2", Some("done-drv"))),
            ShuffleState::Free("driver finished")
        );
        assert_eq!(
            state(&s, &executor("e3", "app-9", Some("gone"))),
            ShuffleState::Free("driver is gone")
        );
        // Without an owner reference the app label finds the driver.
        assert!(matches!(
            state(&s, &executor("e4", "app-1", None)),
            ShuffleState::Holds { .. }
        ));
        let mut inactive = holder.clone();
        inactive.labels.insert("spark-exec-inactive", "true");
        assert_eq!(
            state(&s, &inactive),
            ShuffleState::Free("executor marked inactive")
        );
        let mut annotated = holder.clone();
        annotated.shuffle_free = true;
        assert_eq!(
            state(&s, &annotated),
            ShuffleState::Free("annotated stowage.io/shuffle-free")
        );

        // Remote shuffle manager read from the driver's ConfigMap (matched by owner).
        let mut remote = s.clone();
        remote.spark_apps.push(SparkApp {
            namespace: "spark".into(),
            driver_pod: Some("run-drv".into()),
            conf: [(
                "spark.shuffle.manager".to_string(),
                "org.apache.spark.shuffle.celeborn.SparkShuffleManager".to_string(),
            )]
            .into(),
            ..SparkApp::default()
        });
        assert_eq!(
            state(&remote, &holder),
            ShuffleState::Free("remote shuffle service")
        );

        // Decommissioning enabled in a SparkApplication's sparkConf (matched by app id).
        let mut decom = s.clone();
        decom.spark_apps.push(SparkApp {
            namespace: "spark".into(),
            app_id: Some("app-1".into()),
            state: Some("RUNNING".into()),
            conf: [
                ("spark.decommission.enabled".to_string(), "true".to_string()),
                (
                    "spark.storage.decommission.shuffleBlocks.enabled".to_string(),
                    "true".to_string(),
                ),
            ]
            .into(),
            ..SparkApp::default()
        });
        assert!(matches!(
            state(&decom, &holder),
            ShuffleState::Holds {
                can_decommission: true,
                ..
            }
        ));
        // Rule 3: the driver says the executor wrote nothing and caches nothing. That frees it,
        // unless the app migrates shuffle blocks (a receiver holds blocks it did not write).
        let answers: rustc_hash::FxHashMap<String, bool> =
            [(holder.uid.clone(), false)].into_iter().collect();
        let spec = ShuffleSpec::default();
        let asked = |snapshot: &Snapshot| {
            SparkIndex::new(snapshot, &spec)
                .with_driver_answers(Some(&answers))
                .executor_state(&holder)
        };
        assert!(matches!(asked(&s), ShuffleState::Free(_)));
        assert!(matches!(
            asked(&decom),
            ShuffleState::Holds {
                can_decommission: true,
                ..
            }
        ));
        decom.spark_apps[0].state = Some("COMPLETED".into());
        assert_eq!(
            state(&decom, &holder),
            ShuffleState::Free("application finished")
        );
    }
}

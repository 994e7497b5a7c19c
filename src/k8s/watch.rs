//! Feeding the [`ClusterIndex`] from the API server: one kube-runtime watcher per kind the
//! planner reads (or one list each, for `stowage plan --kubeconfig`). Objects are turned into
//! the index's compact types as they arrive and dropped; a watcher's relist replaces what the
//! index held of its kind, so a missed delete is repaired by the next relist.

use super::index::ClusterIndex;
use super::wire::Raw;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::{Client, Resource};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Calls `$m!(Type, "Kind")` for every kind the planner reads (the capture command of
/// docs/getting-started.md): the one list both the one-shot list and the watchers go through.
macro_rules! each_kind {
    ($m:ident) => {
        $m!(Node, "Node");
        $m!(Pod, "Pod");
        $m!(PodDisruptionBudget, "PodDisruptionBudget");
        $m!(PersistentVolumeClaim, "PersistentVolumeClaim");
        $m!(PersistentVolume, "PersistentVolume");
        $m!(StorageClass, "StorageClass");
        $m!(CSINode, "CSINode");
        $m!(Namespace, "Namespace");
        $m!(ReplicaSet, "ReplicaSet");
        $m!(StatefulSet, "StatefulSet");
        $m!(Job, "Job");
        $m!(DaemonSet, "DaemonSet");
    };
}

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("listing {kind}: {source}")]
    List {
        kind: &'static str,
        source: kube::Error,
    },
    #[error("listing {kind}: no answer within {0:?}", LIST_TIMEOUT)]
    Timeout { kind: &'static str },
}

/// How long one list call may take.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// Hands the index an object as the API server sent it.
fn apply<K>(
    index: &mut ClusterIndex,
    kind: &str,
    object: &Raw<K>,
) -> Result<(), crate::model::LoadError> {
    index.apply_json(kind, object.namespace(), object.name(), object.json())
}

/// The Spark Operator's SparkApplication, read when its CRD is installed.
fn spark_applications() -> kube::api::GroupVersionKind {
    kube::api::GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication")
}

/// The SparkApplication API, if the cluster serves it.
async fn spark_application_api(client: &Client) -> Option<Api<Raw<kube::api::DynamicObject>>> {
    let gvk = spark_applications();
    let call = kube::discovery::oneshot::pinned_kind(client, &gvk);
    match tokio::time::timeout(LIST_TIMEOUT, call).await {
        Ok(Ok((resource, _))) => Some(Api::all_with(client.clone(), &resource)),
        _ => None,
    }
}

/// Lists every object of a kind, page by page, into the index; the objects refused, with why.
async fn list_kind<K>(
    api: Api<Raw<K>>,
    kind: &'static str,
    index: &Mutex<ClusterIndex>,
) -> Result<Vec<String>, WatchError>
where
    K: Resource,
    K::DynamicType: Clone,
{
    let mut refused = Vec::new();
    let mut params = ListParams::default().limit(500);
    index.lock().expect("index lock").relist_start(kind);
    loop {
        let page = tokio::time::timeout(LIST_TIMEOUT, api.list(&params))
            .await
            .map_err(|_| WatchError::Timeout { kind })?
            .map_err(|source| WatchError::List { kind, source })?;
        let mut index = index.lock().expect("index lock");
        for object in &page.items {
            if let Err(e) = apply(&mut index, kind, object) {
                refused.push(e.to_string());
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    index.lock().expect("index lock").relist_done(kind);
    Ok(refused)
}

/// Lists everything the planner reads into `index` (read-only): what `stowage plan
/// --kubeconfig` plans from. Returns the objects refused, with why.
pub async fn list_all(
    client: &Client,
    index: &Mutex<ClusterIndex>,
) -> Result<Vec<String>, WatchError> {
    let mut refused = Vec::new();
    macro_rules! list {
        ($ty:ty, $kind:literal) => {
            refused.extend(list_kind(Api::<Raw<$ty>>::all(client.clone()), $kind, index).await?);
        };
    }
    each_kind!(list);
    // The drivers' configuration (`spark-drv-…-conf-map`): the index keeps only Spark's.
    refused.extend(
        list_kind(
            Api::<Raw<ConfigMap>>::all(client.clone()),
            "ConfigMap",
            index,
        )
        .await?,
    );
    if let Some(api) = spark_application_api(client).await {
        refused.extend(list_kind(api, "SparkApplication", index).await?);
    }
    Ok(refused)
}

/// Keeps `index` up to date with one kind until the stream ends (it does not: the watcher
/// relists and retries with backoff). Calls `changed` after every event that touched it.
async fn watch_kind<K>(
    api: Api<Raw<K>>,
    kind: &'static str,
    index: Arc<Mutex<ClusterIndex>>,
    synced: Arc<tokio::sync::Semaphore>,
    changed: Arc<dyn Fn() + Send + Sync>,
) where
    K: Resource + 'static,
    K::DynamicType: Clone + Send + Sync,
{
    use kube::runtime::WatchStreamExt;
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let event = match events.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => {
                // The backoff retries; say what failed. Until it recovers the index may be
                // stale: the controller acts on nothing meanwhile.
                tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                index.lock().expect("index lock").set_failing(kind, true);
                changed();
                continue;
            }
        };
        let mut idx = index.lock().expect("index lock");
        if idx.set_failing(kind, false) {
            tracing::info!(kind, "watch recovered");
        }
        match event {
            watcher::Event::Init => {
                tracing::debug!(kind, "listing");
                idx.relist_start(kind);
            }
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                if let Err(e) = apply(&mut idx, kind, &o) {
                    tracing::warn!(kind, error = %e, "object refused by the index");
                }
            }
            watcher::Event::InitDone => {
                idx.relist_done(kind);
                tracing::debug!(kind, "listed");
                synced.add_permits(1);
            }
            watcher::Event::Delete(o) => {
                idx.delete(kind, o.namespace(), o.name());
            }
        }
        drop(idx);
        changed();
    }
}

/// Whether a ConfigMap's name is that of a Spark driver's configuration: `spark-drv-<id>-conf-map`
/// (Spark 3.1 and later, `KubernetesClientUtils.configMapNameDriver`) or
/// `<prefix>-driver-conf-map` (earlier versions).
pub fn is_driver_config(name: &str) -> bool {
    (name.starts_with("spark-drv-") && name.ends_with("-conf-map"))
        || name.ends_with("-driver-conf-map")
}

/// Keeps the drivers' configuration ConfigMaps in `index`. Spark writes them without labels,
/// so no server-side selector finds them: the watch is of metadata only (names, no data), and
/// only the ConfigMaps named as drivers' are read, one GET each, time-boxed, and only when
/// their resourceVersion changed (a relist reads nothing again). A read that fails is retried
/// every [`REREAD`] while what the index had is kept. The index keeps the Spark configuration
/// of each, never the ConfigMap.
async fn watch_driver_configs(
    client: Client,
    index: Arc<Mutex<ClusterIndex>>,
    synced: Arc<tokio::sync::Semaphore>,
    changed: Arc<dyn Fn() + Send + Sync>,
) {
    use kube::core::PartialObjectMeta;
    use kube::runtime::WatchStreamExt;
    let all: Api<PartialObjectMeta<ConfigMap>> = Api::all(client.clone());
    let mut events = watcher(all, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut configs = DriverConfigs {
        client,
        index,
        versions: HashMap::new(),
        unread: HashSet::new(),
    };
    let mut reread = tokio::time::interval(REREAD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.try_next() => event,
            _ = reread.tick(), if !configs.unread.is_empty() => {
                let unread: Vec<_> = configs.unread.drain().collect();
                for (namespace, name) in unread {
                    configs.read(namespace, name, None).await;
                }
                changed();
                continue;
            }
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(kind = CONFIG, error = %e, "watch failed; retrying with backoff");
                configs.index().set_failing(CONFIG, true);
                changed();
                continue;
            }
        };
        if configs.index().set_failing(CONFIG, false) {
            tracing::info!(kind = CONFIG, "watch recovered");
        }
        let (meta, deleted) = match event {
            watcher::Event::Init => {
                tracing::debug!(kind = CONFIG, "listing");
                configs.index().relist_start(CONFIG);
                continue;
            }
            watcher::Event::InitDone => {
                configs.index().relist_done(CONFIG);
                tracing::debug!(kind = CONFIG, "listed");
                synced.add_permits(1);
                changed();
                continue;
            }
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => (o.metadata, false),
            watcher::Event::Delete(o) => (o.metadata, true),
        };
        let (Some(name), namespace) = (meta.name, meta.namespace.unwrap_or_default()) else {
            continue;
        };
        if !is_driver_config(&name) {
            continue;
        }
        if deleted {
            configs.forget(namespace, name);
        } else if !configs.read(namespace, name, meta.resource_version).await {
            continue;
        }
        changed();
    }
}

const CONFIG: &str = "ConfigMap";

/// How often a driver's configuration that could not be read is tried again.
const REREAD: Duration = Duration::from_secs(30);

/// The drivers' configurations the index holds, by resourceVersion, and those not read yet.
struct DriverConfigs {
    client: Client,
    index: Arc<Mutex<ClusterIndex>>,
    versions: HashMap<(String, String), String>,
    unread: HashSet<(String, String)>,
}

impl DriverConfigs {
    fn index(&self) -> std::sync::MutexGuard<'_, ClusterIndex> {
        self.index.lock().expect("index lock")
    }

    fn forget(&mut self, namespace: String, name: String) {
        self.index().delete(CONFIG, &namespace, &name);
        let key = (namespace, name);
        self.versions.remove(&key);
        self.unread.remove(&key);
    }

    /// Reads the configuration into the index unless `version` is the one it holds (then it is
    /// kept as it is). Whether the index changed.
    async fn read(&mut self, namespace: String, name: String, version: Option<String>) -> bool {
        let key = (namespace, name);
        if version.is_some() && self.versions.get(&key) == version.as_ref() {
            self.index().keep(CONFIG, &key.0, &key.1);
            return false;
        }
        let api: Api<Raw<ConfigMap>> = Api::namespaced(self.client.clone(), &key.0);
        let (namespace, name) = (&key.0, &key.1);
        let answer = match tokio::time::timeout(LIST_TIMEOUT, api.get_opt(name)).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {LIST_TIMEOUT:?}")),
        };
        let found = match answer {
            Ok(found) => found,
            Err(error) => {
                // What the index had is kept; read again every REREAD.
                tracing::warn!(
                    namespace,
                    name,
                    error,
                    "driver configuration not read; retried"
                );
                self.unread.insert(key.clone());
                self.index().keep(CONFIG, namespace, name);
                return false;
            }
        };
        let Some(config) = found else {
            self.forget(key.0, key.1);
            return true;
        };
        let version = config.meta().resource_version.clone();
        if let Err(e) = apply(&mut self.index(), CONFIG, &config) {
            tracing::warn!(kind = CONFIG, error = %e, "object refused by the index");
        }
        self.unread.remove(&key);
        match version {
            Some(v) => self.versions.insert(key, v),
            None => self.versions.remove(&key),
        };
        true
    }
}

/// Watches every kind the planner reads into `index`; resolves once each has finished its
/// first list (the index is synced), leaving the watchers running on the current runtime.
/// `changed` is called after every event (the controller debounces it into a plan cycle).
pub async fn watch_all(
    client: Client,
    index: Arc<Mutex<ClusterIndex>>,
    changed: Arc<dyn Fn() + Send + Sync>,
) {
    let synced = Arc::new(tokio::sync::Semaphore::new(0));
    let mut watchers = 0;
    macro_rules! spawn {
        ($ty:ty, $kind:literal) => {
            tokio::spawn(watch_kind(
                Api::<Raw<$ty>>::all(client.clone()),
                $kind,
                index.clone(),
                synced.clone(),
                changed.clone(),
            ));
            watchers += 1;
        };
    }
    each_kind!(spawn);
    tokio::spawn(watch_driver_configs(
        client.clone(),
        index.clone(),
        synced.clone(),
        changed.clone(),
    ));
    watchers += 1;
    // SparkApplications when the Spark Operator's CRD is installed (checked at start).
    if let Some(api) = spark_application_api(&client).await {
        tokio::spawn(watch_kind(
            api,
            "SparkApplication",
            index.clone(),
            synced.clone(),
            changed.clone(),
        ));
        watchers += 1;
    }
    // Each kind adds a permit when its first list is in.
    let _ = synced.acquire_many(watchers).await;
}

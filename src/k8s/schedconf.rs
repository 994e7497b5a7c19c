//! The bin-packing scheduler's configuration a policy references
//! (`spec.scoring.schedulerConfigRef`): the KubeSchedulerConfiguration under `key` of a
//! ConfigMap, read each round (one GET per distinct reference) and parsed again only when the
//! ConfigMap's `resourceVersion` changed. Any problem — the ConfigMap or key missing, a
//! configuration that does not parse, the named profile absent — is an error naming what to
//! fix; the controller then does not run the policy (it never plans with scores the scheduler
//! would not give).

use crate::policy::SchedulerConfigRef;
use crate::scoring::{Profiles, SchedulerVersion};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use std::collections::HashMap;
use std::sync::Arc;

/// The namespace of a reference that names none.
pub const DEFAULT_NAMESPACE: &str = "kube-system";

type Key = (String, String, String);

/// Parsed configurations by reference, with the `resourceVersion` they were parsed from.
#[derive(Default)]
pub struct SchedulerConfigs {
    cache: HashMap<Key, (String, Result<Arc<Profiles>, String>)>,
}

impl SchedulerConfigs {
    /// The profiles `reference` names, for a policy run against scheduler `version`.
    pub async fn resolve(
        &mut self,
        client: &Client,
        reference: &SchedulerConfigRef,
        version: SchedulerVersion,
    ) -> Result<Arc<Profiles>, String> {
        let namespace = match reference.namespace.as_str() {
            "" => DEFAULT_NAMESPACE,
            ns => ns,
        };
        let at = format!(
            "spec.scoring.schedulerConfigRef: ConfigMap {namespace}/{} key {:?}",
            reference.name, reference.key
        );
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let call = api.get_opt(&reference.name);
        let map = match tokio::time::timeout(super::act::API_TIMEOUT, call).await {
            Err(_) => {
                return Err(format!(
                    "{at}: no answer within {:?}",
                    super::act::API_TIMEOUT
                ));
            }
            Ok(Err(e)) => return Err(format!("{at}: {e}")),
            Ok(Ok(None)) => return Err(format!("{at}: no such ConfigMap")),
            Ok(Ok(Some(map))) => map,
        };
        let key: Key = (
            namespace.to_string(),
            reference.name.clone(),
            reference.key.clone(),
        );
        let version_seen = map.metadata.resource_version.clone().unwrap_or_default();
        let parsed = match self.cache.get(&key) {
            Some((seen, parsed)) if *seen == version_seen => parsed.clone(),
            _ => {
                let parsed = match map.data.as_ref().and_then(|d| d.get(&reference.key)) {
                    None => Err(format!(
                        "{at}: the ConfigMap has no such key (has: {})",
                        map.data
                            .as_ref()
                            .map(|d| d.keys().cloned().collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    )),
                    Some(text) => Profiles::parse(text, version)
                        .map(Arc::new)
                        .map_err(|e| format!("{at}: {e}")),
                };
                self.cache.insert(key, (version_seen, parsed.clone()));
                parsed
            }
        };
        let profiles = parsed?;
        if profiles.get(&reference.profile).is_none() {
            return Err(format!(
                "{at}: no profile {:?} in the configuration (have: {}); set schedulerConfigRef.profile",
                reference.profile,
                profiles.names().join(", ")
            ));
        }
        Ok(profiles)
    }
}

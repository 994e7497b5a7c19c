//! State stowage keeps in a ConfigMap of its own namespace, as JSON under one key: which
//! Auto Scaling group tags it wrote ([`crate::aws::groups::Owned`]). Written with server-side
//! apply (created on first write); a missing ConfigMap reads as empty.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The ConfigMap holding the group tags stowage wrote.
pub const ASG_TAGS: &str = "stowage-asg-tags";
const KEY: &str = "state.json";

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("ConfigMap {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "ConfigMap {namespace}/{name}: key {KEY} is not what stowage writes ({source}); delete the ConfigMap to start over"
    )]
    Malformed {
        namespace: String,
        name: String,
        source: serde_json::Error,
    },
}

/// Reads the record (the default when the ConfigMap or its key is missing).
pub async fn load<T: DeserializeOwned + Default>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<T, RecordError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|source| RecordError::Api {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })?;
    let Some(text) = found.and_then(|c| c.data).and_then(|mut d| d.remove(KEY)) else {
        return Ok(T::default());
    };
    serde_json::from_str(&text).map_err(|source| RecordError::Malformed {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })
}

/// Writes the record.
pub async fn save<T: Serialize>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    value: &T,
) -> Result<(), RecordError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let text = serde_json::to_string(value).expect("the record serialises");
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "stowage"}},
        "data": {KEY: text},
    });
    api.patch(
        name,
        &PatchParams::apply(super::status::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| RecordError::Api {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })
}

/// [`save`] as a function of the value, for code that saves as it goes.
pub fn saver<T: Serialize + Clone + Send + Sync + 'static>(
    client: kube::Client,
    namespace: String,
    name: &'static str,
) -> impl Fn(&T) -> futures::future::BoxFuture<'static, Result<(), String>> + Sync {
    move |value: &T| {
        let (client, namespace, value) = (client.clone(), namespace.clone(), value.clone());
        Box::pin(async move {
            save(&client, &namespace, name, &value)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

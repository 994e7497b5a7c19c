//! [`Raw`]: a watched object kept as the JSON text the API server sent, so the watchers hand
//! the index the same text a snapshot file holds and one loader reads both
//! ([`crate::model::load::load_kind`]): no typed `k8s-openapi` object is built, serialised to
//! a value and printed again. Only the metadata the watcher itself tracks (name, namespace,
//! resourceVersion, uid) is read out of the text beside it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::marker::PhantomData;

/// An object of kind `K` as its JSON text.
pub struct Raw<K> {
    meta: ObjectMeta,
    json: Box<RawValue>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Raw<K> {
    /// The object's JSON, as the API server wrote it.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }
}

impl<K> Clone for Raw<K> {
    fn clone(&self) -> Self {
        Raw {
            meta: self.meta.clone(),
            json: self.json.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Raw<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw({}/{})", self.namespace(), self.name())
    }
}

impl<'de, K> Deserialize<'de> for Raw<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            name: Option<String>,
            namespace: Option<String>,
            resource_version: Option<String>,
            uid: Option<String>,
        }
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            metadata: Meta,
        }
        let json = Box::<RawValue>::deserialize(d)?;
        let head: Head = serde_json::from_str(json.get()).map_err(serde::de::Error::custom)?;
        let Meta {
            name,
            namespace,
            resource_version,
            uid,
        } = head.metadata;
        Ok(Raw {
            meta: ObjectMeta {
                name,
                namespace,
                resource_version,
                uid,
                ..ObjectMeta::default()
            },
            json,
            kind: PhantomData,
        })
    }
}

/// The API of `K`, its objects read as text.
impl<K: Resource> Resource for Raw<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn the_text_is_kept_and_the_tracked_metadata_read_beside_it() {
        let text = r#"{"metadata":{"name":"p","namespace":"ns","resourceVersion":"42","uid":"u","managedFields":[{"manager":"x"}]},"spec":{"nodeName":"n"}}"#;
        let raw: Raw<Pod> = serde_json::from_str(text).unwrap();
        assert_eq!(raw.json(), text);
        assert_eq!((raw.namespace(), raw.name()), ("ns", "p"));
        assert_eq!(raw.meta().resource_version.as_deref(), Some("42"));
        assert_eq!(Raw::<Pod>::plural(&()), "pods");
        // Inside a watch event, as kube's watcher reads it.
        let event = format!(r#"{{"type":"ADDED","object":{text}}}"#);
        let event: kube::core::WatchEvent<Raw<Pod>> = serde_json::from_str(&event).unwrap();
        let kube::core::WatchEvent::Added(raw) = event else {
            panic!("not an ADDED event")
        };
        assert_eq!(raw.json(), text);
    }
}

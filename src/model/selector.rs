//! Label selectors, node selector terms, taints and tolerations, with the matching rules of
//! `k8s.io/apimachinery/pkg/labels`, `k8s.io/component-helpers/scheduling/corev1` and
//! `k8s.io/api/core/v1/toleration.go`.

use super::Name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels of an object: pairs sorted by key, so output and hashing are deterministic. A sorted
/// vector rather than a `BTreeMap`, whose first leaf alone allocates room for eleven entries:
/// the controller keeps the labels of every pod. Keys and values are shared [`Name`]s: the
/// same few keys and values repeat on every pod of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(Name, Name)>);

impl Labels {
    pub fn new() -> Labels {
        Labels::default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Name> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`; the value it had, if any.
    pub fn insert(&mut self, key: impl Into<Name>, value: impl Into<Name>) -> Option<Name> {
        let (key, value) = (key.into(), value.into());
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Name> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Name)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Name> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl<K: Into<Name>, V: Into<Name>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Labels {
        // Later pairs win, as in a map.
        let map: BTreeMap<Name, Name> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Labels(map.into_iter().collect())
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = Name;

    /// The value of `key`; panics when absent, like a map's index.
    fn index(&self, key: &str) -> &Name {
        self.get(key).unwrap_or_else(|| panic!("no label {key:?}"))
    }
}

impl<K: Into<Name>, V: Into<Name>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Labels {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a Name, &'a Name);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Name, Name)>,
        fn(&'a (Name, Name)) -> (&'a Name, &'a Name),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        let map = BTreeMap::<Name, Name>::deserialize(d)?;
        Ok(Labels(map.into_iter().collect()))
    }
}

impl schemars::JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Labels".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, String> as schemars::JsonSchema>::json_schema(generator)
    }
}

/// A `metav1.LabelSelector` (PDBs, policies).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all be present, with these values.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub match_labels: Labels,
    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist']", "message": "operator must be In, NotIn, Exists or DoesNotExist", "fieldPath": ".operator"},
    {"rule": "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)", "message": "values must be non-empty for operators In and NotIn", "fieldPath": ".values"},
    {"rule": "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0", "message": "values must be empty for operators Exists and DoesNotExist", "fieldPath": ".values"}
]))]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[schemars(length(max = 317))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[schemars(length(max = 16))]
    pub operator: String,
    /// The values for `In` and `NotIn`; none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// No requirement at all (`labelSelector: {}`): it matches every pod, and
    /// `labels.Selector.Empty()` is true of it.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// True when every requirement holds. An empty selector matches everything
    /// (`metav1.LabelSelectorAsSelector`); unknown operators match nothing (safe side).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                    "NotIn" => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// Checks the operators and values, so a bad policy is refused instead of matching nothing.
    pub fn validate(&self, path: &str) -> Result<(), crate::field::FieldError> {
        use crate::field::FieldError;
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            match r.operator.as_str() {
                "In" | "NotIn" if r.values.is_empty() => {
                    return Err(FieldError::new(
                        format!("{at}.values"),
                        format!("must be non-empty for operator {}", r.operator),
                    ));
                }
                "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                    return Err(FieldError::new(
                        format!("{at}.values"),
                        format!("must be empty for operator {}", r.operator),
                    ));
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => {
                    return Err(FieldError::new(
                        format!("{at}.operator"),
                        format!(
                            "unsupported value {other:?} (use In, NotIn, Exists or DoesNotExist)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A node selector requirement (`matchExpressions` / `matchFields` of a node selector term).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A term of `requiredDuringSchedulingIgnoredDuringExecution`: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

impl NodeSelectorRequirement {
    fn matches_value(&self, value: Option<&str>) -> bool {
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            "NotIn" => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // Gt/Lt compare integers; a value that is not one does not match.
            "Gt" | "Lt" => {
                let (Some(v), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) if self.operator == "Gt" => v > b,
                    (Ok(v), Ok(b)) => v < b,
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

impl NodeSelectorTerm {
    /// A term with no requirements matches no node (`nodeaffinity.NewNodeSelector`).
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions
            .iter()
            .all(|r| r.matches_value(labels.get(&r.key).map(Name::as_str)))
            && self
                .match_fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches_value(Some(node_name)))
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: String,
}

/// A pod toleration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub effect: String,
}

impl Toleration {
    /// `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key with
    /// `Exists` matches every key, the default operator is `Equal`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => self.key == taint.key && self.value == taint.value,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let sel = |labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: self::labels(labels),
            match_expressions: exprs,
        };
        let e = |k: &str, op: &str, v: &[&str]| LabelSelectorRequirement {
            key: k.into(),
            operator: op.into(),
            values: v.iter().map(|x| x.to_string()).collect(),
        };
        assert!(sel(&[], vec![]).matches(&l));
        assert!(sel(&[("app", "web")], vec![]).matches(&l));
        assert!(!sel(&[("app", "db")], vec![]).matches(&l));
        assert!(sel(&[], vec![e("tier", "In", &["front", "back"])]).matches(&l));
        assert!(!sel(&[], vec![e("tier", "NotIn", &["front"])]).matches(&l));
        assert!(sel(&[], vec![e("zone", "NotIn", &["a"])]).matches(&l));
        assert!(sel(&[], vec![e("app", "Exists", &[])]).matches(&l));
        assert!(!sel(&[], vec![e("app", "DoesNotExist", &[])]).matches(&l));
        assert!(!sel(&[], vec![e("app", "Bogus", &[])]).matches(&l));
        assert!(
            sel(&[], vec![e("app", "Bogus", &[])])
                .validate("spec.nodeSelector")
                .is_err()
        );
    }

    #[test]
    fn node_selector_terms() {
        let l = labels(&[("gen", "5"), ("pool", "spark")]);
        let term = |exprs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: exprs,
            match_fields: vec![],
        };
        assert!(
            !term(vec![]).matches("n1", &l),
            "empty term matches nothing"
        );
        assert!(term(vec![req("gen", "Gt", &["4"])]).matches("n1", &l));
        assert!(!term(vec![req("gen", "Lt", &["4"])]).matches("n1", &l));
        assert!(!term(vec![req("pool", "Gt", &["4"])]).matches("n1", &l));
        assert!(
            term(vec![
                req("pool", "In", &["spark"]),
                req("x", "DoesNotExist", &[])
            ])
            .matches("n1", &l)
        );
        let by_name = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", "In", &["n1"])],
        };
        assert!(by_name.matches("n1", &l));
        assert!(!by_name.matches("n2", &l));
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "spot".into(),
            value: "true".into(),
            effect: "NoSchedule".into(),
        };
        let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
        };
        assert!(t("spot", "", "true", "NoSchedule").tolerates(&taint));
        assert!(t("spot", "Equal", "true", "").tolerates(&taint));
        assert!(!t("spot", "Equal", "false", "").tolerates(&taint));
        assert!(t("spot", "Exists", "", "").tolerates(&taint));
        assert!(t("", "Exists", "", "").tolerates(&taint));
        assert!(!t("", "Exists", "", "NoExecute").tolerates(&taint));
        assert!(!t("other", "Exists", "", "").tolerates(&taint));
    }
}

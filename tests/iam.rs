//! The IAM policy in `charts/stowage/files/iam-policy.json` allows exactly the AWS calls the
//! code makes: every SDK call in `src/` (a `.autoscaling`, `.eks` or `.sqs` client's operation)
//! is in the policy and in `stowage::aws::clients::CALLS`, and the policy allows nothing else.

use std::collections::BTreeSet;
use std::path::Path;

/// `describe_auto_scaling_groups` → `DescribeAutoScalingGroups`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `service:Operation` of every `.autoscaling` / `.eks` / `.sqs` client call in `dir`.
fn calls_in(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            calls_in(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Whitespace removed, so a call split over lines reads `self.sqs.receive_message()`.
        let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for (client, service) in [
            ("autoscaling", "autoscaling"),
            ("eks", "eks"),
            ("sqs", "sqs"),
        ] {
            let needle = format!("self.{client}.");
            let mut rest = flat.as_str();
            while let Some(at) = rest.find(&needle) {
                rest = &rest[at + needle.len()..];
                let op: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if rest[op.len()..].starts_with("()") {
                    out.insert(format!("{service}:{}", pascal(&op)));
                }
            }
        }
    }
}

#[test]
fn the_iam_policy_allows_exactly_the_calls_the_code_makes() {
    let mut in_code = BTreeSet::new();
    calls_in(Path::new("src"), &mut in_code);
    assert!(
        in_code.len() >= 10,
        "the scan found too few calls: {in_code:?}"
    );
    let listed: BTreeSet<String> = stowage::aws::clients::CALLS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(in_code, listed, "clients::CALLS is not what the code calls");

    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("charts/stowage/files/iam-policy.json").unwrap(),
    )
    .expect("the IAM policy is JSON");
    let mut allowed = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        for action in statement["Action"].as_array().unwrap() {
            let action = action.as_str().unwrap();
            assert!(!action.contains('*'), "{action}: no wildcards");
            assert!(allowed.insert(action.to_string()), "{action} listed twice");
        }
    }
    assert_eq!(
        allowed, in_code,
        "the IAM policy differs from the calls the code makes"
    );
    // No EC2 call: Auto Scaling, EKS and the nodes' provider ids answer everything.
    assert!(in_code.iter().all(|c| !c.starts_with("ec2:")));
}

/// Every Auto Scaling write is limited to this cluster's groups (the discovery tag
/// `k8s.io/cluster-autoscaler/<cluster>` present, and CA enabled on the group), and tag writes
/// to the keys stowage writes: another cluster's groups in the account, and other tags of
/// this one's, stay out of reach of a stolen credential.
#[test]
fn auto_scaling_writes_are_limited_to_this_clusters_groups_and_stowages_tag_keys() {
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("charts/stowage/files/iam-policy.json").unwrap(),
    )
    .unwrap();
    let writes = [
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ];
    let mut seen = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        let actions: Vec<&str> = statement["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let condition = &statement["Condition"];
        for action in actions.iter().filter(|a| writes.contains(a)) {
            seen.insert(*action);
            assert_eq!(
                condition["Null"]["autoscaling:ResourceTag/k8s.io/cluster-autoscaler/${CLUSTER_NAME}"],
                "false",
                "{action}: not limited to groups carrying this cluster's discovery tag"
            );
            assert_eq!(
                condition["StringEquals"]["autoscaling:ResourceTag/k8s.io/cluster-autoscaler/enabled"],
                "true",
                "{action}: not limited to CA-enabled groups"
            );
            if action.ends_with("Tags") {
                let keys: Vec<&str> = condition["ForAllValues:StringLike"]["aws:TagKeys"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{action}: tag keys not limited"))
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                assert_eq!(
                    keys,
                    [
                        format!("{}*", stowage::aws::template::PREFIX),
                        stowage::aws::groups::OWNER_TAG.to_string()
                    ],
                    "{action}: the tag keys allowed are the ones stowage writes"
                );
            }
        }
    }
    assert_eq!(
        seen.len(),
        writes.len(),
        "every write is in the policy: {seen:?}"
    );
}

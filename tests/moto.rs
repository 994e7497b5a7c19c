//! moto answers the AWS calls stowage makes, through the same Rust SDK crates the product uses:
//! a launch configuration and an Auto Scaling group with instances and Cluster Autoscaler tags, tag
//! updates read back, and an SQS queue round trip. State does not leak between tests.

mod support;

use aws_sdk_autoscaling::types::{Filter as AsgFilter, Tag};
use support::moto::Moto;

fn asg_tag(asg: &str, key: &str, value: &str) -> Tag {
    Tag::builder()
        .resource_id(asg)
        .resource_type("auto-scaling-group")
        .key(key)
        .value(value)
        .propagate_at_launch(false)
        .build()
}

#[tokio::test]
async fn auto_scaling_group_with_instances_and_tags() {
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    let asg = aws_sdk_autoscaling::Client::new(&config);
    moto.group(
        "eks-spark-spot",
        2,
        &[
            ("k8s.io/cluster-autoscaler/enabled", "true"),
            ("k8s.io/cluster-autoscaler/test-cluster", "owned"),
            ("eks:nodegroup-name", "spark-spot"),
        ],
    )
    .await;

    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("eks-spark-spot")
        .send()
        .await
        .expect("describe groups");
    let group = &groups.auto_scaling_groups()[0];
    assert_eq!(group.instances().len(), 2);
    assert_eq!(group.tags().len(), 3);

    // The group lists its instances, which is how stowage maps a node (its providerID) to
    // its group; EC2 knows their private DNS names, which are node names on EKS.
    let instance_id = group.instances()[0].instance_id().unwrap().to_string();
    let names = moto.private_dns_names();
    assert!(
        names
            .get(&instance_id)
            .is_some_and(|n| n.ends_with(".ec2.internal")),
        "{names:?}"
    );

    // Scale-from-zero tags are written with CreateOrUpdateTags and read back by key.
    asg.create_or_update_tags()
        .tags(asg_tag(
            "eks-spark-spot",
            "k8s.io/cluster-autoscaler/node-template/label/nodegroup-type",
            "spot",
        ))
        .tags(asg_tag(
            "eks-spark-spot",
            "k8s.io/cluster-autoscaler/node-template/taint/spot",
            "true:NoSchedule",
        ))
        .send()
        .await
        .expect("create or update tags");
    let tags = asg
        .describe_tags()
        .filters(
            AsgFilter::builder()
                .name("auto-scaling-group")
                .values("eks-spark-spot")
                .build(),
        )
        .send()
        .await
        .expect("describe tags");
    let template: Vec<(&str, &str)> = tags
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .filter(|(k, _)| k.starts_with("k8s.io/cluster-autoscaler/node-template/"))
        .collect();
    assert_eq!(
        template,
        [
            (
                "k8s.io/cluster-autoscaler/node-template/label/nodegroup-type",
                "spot"
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/taint/spot",
                "true:NoSchedule"
            ),
        ]
    );
}

#[tokio::test]
async fn sqs_queue_round_trip_and_reset_between_tests() {
    let moto = Moto::session();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    // Whatever the other test made is gone.
    let asg = aws_sdk_autoscaling::Client::new(&config);
    let groups = asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .expect("describe groups");
    assert!(groups.auto_scaling_groups().is_empty());

    let queue = moto.queue("stowage-interruptions").await;
    let body = r#"{"source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"i-0abc","instance-action":"terminate"}}"#;
    sqs.send_message()
        .queue_url(&queue)
        .message_body(body)
        .send()
        .await
        .expect("send");
    let received = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body(), Some(body));
    sqs.delete_message()
        .queue_url(&queue)
        .receipt_handle(messages[0].receipt_handle().unwrap())
        .send()
        .await
        .expect("delete");
    let again = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .expect("receive again");
    assert!(again.messages().is_empty());
}

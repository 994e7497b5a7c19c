//! moto answers the AWS calls stowage makes, through the same Rust SDK crates the product uses:
//! a launch template and an Auto Scaling group with instances and Cluster Autoscaler tags, tag
//! updates read back, and an SQS queue round trip. State does not leak between tests.

mod support;

use aws_sdk_autoscaling::types::{Filter as AsgFilter, LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::{Filter, RequestLaunchTemplateData};
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
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let asg = aws_sdk_autoscaling::Client::new(&config);

    let image = ec2
        .describe_images()
        .send()
        .await
        .expect("describe images")
        .images()
        .first()
        .and_then(|i| i.image_id().map(String::from))
        .expect("moto serves default images");
    ec2.create_launch_template()
        .launch_template_name("spark-spot")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(&image)
                .instance_type(aws_sdk_ec2::types::InstanceType::M54xlarge)
                .build(),
        )
        .send()
        .await
        .expect("create launch template");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("eks-spark-spot")
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("spark-spot")
                .version("$Latest")
                .build(),
        )
        .min_size(0)
        .max_size(10)
        .desired_capacity(2)
        .availability_zones("us-east-1a")
        .tags(asg_tag(
            "eks-spark-spot",
            "k8s.io/cluster-autoscaler/enabled",
            "true",
        ))
        .tags(asg_tag(
            "eks-spark-spot",
            "k8s.io/cluster-autoscaler/test-cluster",
            "owned",
        ))
        .tags(asg_tag(
            "eks-spark-spot",
            "eks:nodegroup-name",
            "spark-spot",
        ))
        .send()
        .await
        .expect("create auto scaling group");

    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("eks-spark-spot")
        .send()
        .await
        .expect("describe groups");
    let group = &groups.auto_scaling_groups()[0];
    assert_eq!(group.instances().len(), 2);
    assert_eq!(group.tags().len(), 3);

    // The instances carry the group's name, which is how stowage maps a node to its ASG.
    let instance_id = group.instances()[0].instance_id().unwrap().to_string();
    let reservations = ec2
        .describe_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .expect("describe instances");
    let instance = &reservations.reservations()[0].instances()[0];
    assert!(instance.private_dns_name().is_some_and(|n| !n.is_empty()));
    let group_tag = instance
        .tags()
        .iter()
        .find(|t| t.key() == Some("aws:autoscaling:groupName"))
        .and_then(|t| t.value());
    assert_eq!(group_tag, Some("eks-spark-spot"));

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
    let by_group = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:aws:autoscaling:groupName")
                .values("eks-spark-spot")
                .build(),
        )
        .send()
        .await
        .expect("filter instances by group");
    let count: usize = by_group
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(count, 2);
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

    let queue = sqs
        .create_queue()
        .queue_name("stowage-interruptions")
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
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

//! moto, the AWS emulator, for tests of the AWS code: one `moto_server` per test binary on a
//! free port of 127.0.0.1 (installed by `tests/harness/moto.sh`), fake credentials, a region, and
//! a fresh state for each test (`POST /moto-api/reset`) — tests that use it take turns.

use super::{Supervised, TempDir, curl, free_port};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The region tests use.
pub const REGION: &str = "us-east-1";

/// A running moto server.
pub struct Moto {
    /// `http://127.0.0.1:<port>`, what `AWS_ENDPOINT_URL` points at.
    pub endpoint: String,
    _process: Supervised,
    _dir: TempDir,
}

/// Exclusive use of the shared moto server, with state reset at the start.
pub struct MotoSession {
    pub moto: &'static Moto,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for MotoSession {
    type Target = Moto;
    fn deref(&self) -> &Moto {
        self.moto
    }
}

fn moto_server() -> PathBuf {
    let venv = std::env::var_os("STOWAGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/stowage/venv")
        });
    let server = venv.join("bin/moto_server");
    if !server.exists() {
        panic!(
            "moto is not installed; run `tests/harness/moto.sh` (it installs moto[server] into {})",
            venv.display()
        );
    }
    server
}

impl Moto {
    /// Starts a moto server.
    pub fn start() -> Moto {
        let server = moto_server();
        let dir = TempDir::new("stowage-moto");
        let port = free_port();
        let mut process = Supervised::spawn_owning(
            "moto",
            &dir.0,
            &server,
            &[
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            true,
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(&["-sf", &format!("{endpoint}/moto-api/data.json")]).is_none() {
            if process.exited() || Instant::now() > deadline {
                panic!("moto_server did not start:\n{}", process.tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint,
            _process: process,
            _dir: dir,
        }
    }

    /// The shared server of this test binary, for exclusive use, reset.
    pub fn session() -> MotoSession {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let moto = SHARED.get_or_init(Moto::start);
        moto.reset();
        MotoSession { moto, _turn: turn }
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        curl(&[
            "-sf",
            "-X",
            "POST",
            &format!("{}/moto-api/reset", self.endpoint),
        ])
        .expect("reset moto");
    }

    /// The environment a stowage process needs to use this server: the standard variables the
    /// AWS SDK reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// An SDK configuration for this server, for in-process clients.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(stowage::aws::sdk::http_client())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }
}

/// An `aws.ec2` EventBridge event about `instance` at `at`, as the interruption queue
/// receives it.
pub fn ec2_event(
    detail_type: &str,
    instance: &str,
    detail: serde_json::Value,
    at: jiff::Timestamp,
) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("{}-{instance}", detail_type.to_lowercase().replace(' ', "-")),
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": REGION,
        "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance}")],
        "detail": detail,
    })
    .to_string()
}

/// A spot interruption warning (terminate) for `instance`, sent at `at`.
pub fn spot_warning(instance: &str, at: jiff::Timestamp) -> String {
    ec2_event(
        "EC2 Spot Instance Interruption Warning",
        instance,
        serde_json::json!({"instance-id": instance, "instance-action": "terminate"}),
        at,
    )
}

/// Sends `bodies` to the SQS queue at `queue`, ten to a batch, in order.
pub async fn send_all(sqs: &aws_sdk_sqs::Client, queue: &str, bodies: &[String]) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for (n, chunk) in bodies.chunks(10).enumerate() {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{n}-{i}"))
                    .message_body(b)
                    .build()
                    .unwrap()
            })
            .collect();
        let sent = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send batch");
        assert!(
            sent.failed().is_empty(),
            "entries not sent: {:?}",
            sent.failed()
        );
    }
}

impl Moto {
    /// Sends one message to the SQS queue at `queue`.
    pub async fn send(&self, queue: &str, body: String) {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// Creates an SQS queue; its URL.
    pub async fn queue(&self, name: &str) -> String {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_string()
    }

    /// Instance id → private DNS name of every instance, from EC2's DescribeInstances through
    /// the query API (stowage itself makes no EC2 call, and the tests spare the build of the
    /// EC2 SDK crate).
    pub fn private_dns_names(&self) -> BTreeMap<String, String> {
        let xml = curl(&[
            "-sf",
            "-X",
            "POST",
            &self.endpoint,
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
            "-d",
            "Action=DescribeInstances&Version=2016-11-15",
        ])
        .expect("DescribeInstances");
        let mut out = BTreeMap::new();
        let mut rest = xml.as_str();
        while let Some(at) = rest.find("<instanceId>") {
            rest = &rest[at + "<instanceId>".len()..];
            let id = &rest[..rest.find('<').expect("instanceId ends")];
            let dns = rest
                .find("<privateDnsName>")
                .map(|d| &rest[d + "<privateDnsName>".len()..])
                .and_then(|r| r.find('<').map(|e| &r[..e]))
                .unwrap_or_default();
            out.insert(id.to_string(), dns.to_string());
        }
        out
    }

    /// An Auto Scaling group of `desired` instances (a launch configuration, no EC2 call) with
    /// these tags.
    pub async fn group(&self, name: &str, desired: i32, tags: &[(&str, &str)]) {
        use aws_sdk_autoscaling::types::Tag;
        let asg = aws_sdk_autoscaling::Client::new(&self.sdk_config().await);
        asg.create_launch_configuration()
            .launch_configuration_name(name)
            .image_id("ami-12c6146b")
            .instance_type("r6i.4xlarge")
            .send()
            .await
            .expect("create launch configuration");
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .key(*k)
                    .value(*v)
                    .propagate_at_launch(false)
                    .build()
            })
            .collect();
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(name)
            .min_size(0)
            .max_size(10)
            .desired_capacity(desired)
            .availability_zones("us-east-1a")
            .set_tags(Some(tags))
            .send()
            .await
            .expect("create auto scaling group");
    }
}

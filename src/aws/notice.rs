//! Interruption notices from the SQS queue (queue mode, docs/aws.md), parsed into what
//! stowage acts on. The queue is fed by EventBridge rules, so a message body is an EventBridge
//! event — or, when the rule targets an SNS topic the queue subscribes to, an SNS envelope
//! whose `Message` is that event. Auto Scaling's own test notification (sent when a lifecycle
//! hook is created with a queue target) is recognised so it can be deleted. Pure: no AWS call.
//!
//! Shapes (EventBridge `detail-type` / `source` → fields read):
//! - `EC2 Spot Instance Interruption Warning` / `aws.ec2`: `detail.instance-id`,
//!   `detail.instance-action` (`terminate`, `stop`, `hibernate`); the instance goes two
//!   minutes after the event's `time`.
//! - `EC2 Instance Rebalance Recommendation` / `aws.ec2`: `detail.instance-id`.
//! - `EC2 Instance State-change Notification` / `aws.ec2`: `detail.instance-id`,
//!   `detail.state` (acted on: `stopping`, `stopped`, `shutting-down`, `terminated`).
//! - `EC2 Instance-terminate Lifecycle Action` / `aws.autoscaling`: `detail.EC2InstanceId`,
//!   `AutoScalingGroupName`, `LifecycleHookName`, `LifecycleActionToken`.
//! - `AWS Health Event` / `aws.health` with `detail.service: EC2` and
//!   `detail.eventTypeCategory: scheduledChange`: `detail.affectedEntities[].entityValue`
//!   (instance ids), `detail.startTime`, `detail.eventTypeCode`.

use jiff::Timestamp;
use serde_json::Value;
use std::time::Duration;

/// How long EC2 gives a spot instance after its interruption warning.
pub const SPOT_NOTICE: Duration = Duration::from_secs(120);

/// `detail.instance-action` of a spot interruption warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SpotAction {
    Terminate,
    Stop,
    Hibernate,
}

/// What one queue message asks of stowage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The instance goes at `deadline`: cordon at once, drain within the time left.
    SpotInterruption {
        instance_id: String,
        action: SpotAction,
        deadline: Timestamp,
    },
    /// Elevated risk of interruption (policy: Ignore, Cordon, Drain).
    Rebalance { instance_id: String },
    /// The instance is stopping or gone.
    StateChange { instance_id: String, state: String },
    /// An Auto Scaling group is terminating the instance and waits for
    /// `CompleteLifecycleAction` (or the hook's timeout).
    LifecycleTerminate {
        instance_id: String,
        group: String,
        hook: String,
        token: String,
    },
    /// AWS Health scheduled maintenance (retirement, reboot) of these instances.
    ScheduledChange {
        instance_ids: Vec<String>,
        start: Option<Timestamp>,
        code: String,
    },
    /// Nothing to do (a test notification, a state stowage does not act on): delete it.
    Ignore { why: String },
}

impl Notice {
    /// The metric label `kind` of `stowage_interruptions_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::SpotInterruption { .. } => "spot_interruption",
            Notice::Rebalance { .. } => "rebalance",
            Notice::StateChange { .. } => "state_change",
            Notice::LifecycleTerminate { .. } => "lifecycle_terminate",
            Notice::ScheduledChange { .. } => "scheduled_change",
            Notice::Ignore { .. } => "ignored",
        }
    }

    /// The instances the notice is about.
    pub fn instances(&self) -> Vec<&str> {
        match self {
            Notice::SpotInterruption { instance_id, .. }
            | Notice::Rebalance { instance_id }
            | Notice::StateChange { instance_id, .. }
            | Notice::LifecycleTerminate { instance_id, .. } => vec![instance_id.as_str()],
            Notice::ScheduledChange { instance_ids, .. } => {
                instance_ids.iter().map(String::as_str).collect()
            }
            Notice::Ignore { .. } => Vec::new(),
        }
    }
}

/// Why a message is not a notice stowage understands (it is logged, counted and deleted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue message: {field}: {problem}")]
pub struct NoticeError {
    /// Where in the message, e.g. `detail.instance-id`.
    pub field: String,
    pub problem: String,
}

fn bad(field: &str, problem: impl Into<String>) -> NoticeError {
    NoticeError {
        field: field.into(),
        problem: problem.into(),
    }
}

fn text<'v>(v: &'v Value, path: &str) -> Result<&'v str, NoticeError> {
    let mut at = v;
    for part in path.split('.') {
        at = &at[part];
    }
    match at {
        Value::String(s) if !s.is_empty() => Ok(s),
        Value::Null => Err(bad(path, "missing")),
        other => Err(bad(
            path,
            format!("expected a non-empty string, got {other}"),
        )),
    }
}

fn time(v: &Value, path: &str) -> Result<Timestamp, NoticeError> {
    let t = text(v, path)?;
    t.parse()
        .map_err(|e| bad(path, format!("{t:?} is not an RFC 3339 time: {e}")))
}

/// EC2 states that mean the instance is leaving.
const LEAVING: &[&str] = &["stopping", "stopped", "shutting-down", "terminated"];

/// Parses one SQS message body.
pub fn parse(body: &str) -> Result<Notice, NoticeError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| bad("<body>", format!("not JSON: {e}")))?;
    // SNS envelope: the event is the `Message` string.
    if v["Type"] == "Notification"
        && let Some(message) = v["Message"].as_str()
    {
        return parse(message);
    }
    // Auto Scaling's own notification, sent straight to the queue.
    if v["Event"] == "autoscaling:TEST_NOTIFICATION" {
        return Ok(Notice::Ignore {
            why: "Auto Scaling test notification".into(),
        });
    }
    let source = text(&v, "source")?;
    let kind = text(&v, "detail-type")?;
    let detail = &v["detail"];
    if !detail.is_object() {
        return Err(bad("detail", "missing or not an object"));
    }
    match (source, kind) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => {
            let action = match text(&v, "detail.instance-action")? {
                "terminate" => SpotAction::Terminate,
                "stop" => SpotAction::Stop,
                "hibernate" => SpotAction::Hibernate,
                other => {
                    return Err(bad(
                        "detail.instance-action",
                        format!("{other:?} is not terminate, stop or hibernate"),
                    ));
                }
            };
            let sent = time(&v, "time")?;
            Ok(Notice::SpotInterruption {
                instance_id: text(&v, "detail.instance-id")?.into(),
                action,
                deadline: sent + SPOT_NOTICE,
            })
        }
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => Ok(Notice::Rebalance {
            instance_id: text(&v, "detail.instance-id")?.into(),
        }),
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let state = text(&v, "detail.state")?;
            let instance_id = text(&v, "detail.instance-id")?.to_string();
            if LEAVING.contains(&state) {
                Ok(Notice::StateChange {
                    instance_id,
                    state: state.into(),
                })
            } else {
                Ok(Notice::Ignore {
                    why: format!("instance {instance_id} is {state}"),
                })
            }
        }
        ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action") => {
            Ok(Notice::LifecycleTerminate {
                instance_id: text(&v, "detail.EC2InstanceId")?.into(),
                group: text(&v, "detail.AutoScalingGroupName")?.into(),
                hook: text(&v, "detail.LifecycleHookName")?.into(),
                token: text(&v, "detail.LifecycleActionToken")?.into(),
            })
        }
        ("aws.health", "AWS Health Event") => {
            let service = text(&v, "detail.service")?;
            let category = text(&v, "detail.eventTypeCategory")?;
            if service != "EC2" || category != "scheduledChange" {
                return Ok(Notice::Ignore {
                    why: format!("AWS Health {service} {category} event"),
                });
            }
            let entities = detail["affectedEntities"]
                .as_array()
                .ok_or_else(|| bad("detail.affectedEntities", "missing or not a list"))?;
            let instance_ids: Vec<String> = entities
                .iter()
                .filter_map(|e| e["entityValue"].as_str())
                .filter(|id| id.starts_with("i-"))
                .map(String::from)
                .collect();
            if instance_ids.is_empty() {
                return Err(bad(
                    "detail.affectedEntities",
                    "names no instance (entityValue i-…)",
                ));
            }
            let start = match &detail["startTime"] {
                Value::Null => None,
                _ => Some(parse_health_time(text(&v, "detail.startTime")?)?),
            };
            Ok(Notice::ScheduledChange {
                instance_ids,
                start,
                code: text(&v, "detail.eventTypeCode")?.into(),
            })
        }
        (source, kind) => Err(bad(
            "detail-type",
            format!("{kind:?} from {source:?} is not an event stowage handles"),
        )),
    }
}

/// AWS Health writes times as RFC 1123 (`Fri, 27 Nov 2026 06:00:00 GMT`) in its events;
/// RFC 3339 is accepted too.
fn parse_health_time(t: &str) -> Result<Timestamp, NoticeError> {
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    jiff::fmt::rfc2822::parse(t)
        .map(|z| z.timestamp())
        .map_err(|e| bad("detail.startTime", format!("{t:?} is not a time: {e}")))
}

/// The instance metadata documents `stowage interruption-agent` polls (IMDSv2), parsed into
/// the same notices as the queue's. Each takes the document's body; a 404 (no notice) is the
/// caller's to skip.
pub mod imds {
    use super::{Notice, NoticeError, SpotAction, bad, time};
    use serde_json::Value;

    /// `/latest/meta-data/spot/instance-action`: `{"action": "terminate", "time": "…"}`, the
    /// time being when the instance goes.
    pub fn spot_action(instance_id: &str, body: &str) -> Result<Notice, NoticeError> {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| bad("spot/instance-action", format!("not JSON: {e}")))?;
        let action = match v["action"].as_str() {
            Some("terminate") => SpotAction::Terminate,
            Some("stop") => SpotAction::Stop,
            Some("hibernate") => SpotAction::Hibernate,
            other => {
                return Err(bad(
                    "spot/instance-action.action",
                    format!("{other:?} is not terminate, stop or hibernate"),
                ));
            }
        };
        let deadline = time(&v, "time").map_err(|e| NoticeError {
            field: format!("spot/instance-action.{}", e.field),
            ..e
        })?;
        Ok(Notice::SpotInterruption {
            instance_id: instance_id.into(),
            action,
            deadline,
        })
    }

    /// `/latest/meta-data/events/recommendations/rebalance`: `{"noticeTime": "…"}`.
    pub fn rebalance(instance_id: &str, body: &str) -> Result<Notice, NoticeError> {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| bad("events/recommendations/rebalance", format!("not JSON: {e}")))?;
        if v["noticeTime"].as_str().is_none() {
            return Err(bad(
                "events/recommendations/rebalance.noticeTime",
                "missing",
            ));
        }
        Ok(Notice::Rebalance {
            instance_id: instance_id.into(),
        })
    }

    /// `/latest/meta-data/events/maintenance/scheduled`: a list of
    /// `{"Code", "NotBefore", "State", …}`; the active events are notices (canceled and
    /// completed ones are not).
    pub fn scheduled(instance_id: &str, body: &str) -> Result<Vec<Notice>, NoticeError> {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| bad("events/maintenance/scheduled", format!("not JSON: {e}")))?;
        let events = v
            .as_array()
            .ok_or_else(|| bad("events/maintenance/scheduled", "not a list"))?;
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e["State"].as_str().is_some_and(|s| s != "active") {
                continue;
            }
            let code = e["Code"].as_str().ok_or_else(|| {
                bad(
                    &format!("events/maintenance/scheduled[{i}].Code"),
                    "missing",
                )
            })?;
            let start = match e["NotBefore"].as_str() {
                None => None,
                Some(t) => Some(super::parse_health_time(t).map_err(|err| NoticeError {
                    field: format!("events/maintenance/scheduled[{i}].NotBefore"),
                    ..err
                })?),
            };
            out.push(Notice::ScheduledChange {
                instance_ids: vec![instance_id.into()],
                start,
                code: code.into(),
            });
        }
        Ok(out)
    }

    /// `/latest/meta-data/autoscaling/target-lifecycle-state`: `Terminated` means the group is
    /// terminating the instance; any other state is no notice.
    pub fn target_lifecycle_state(instance_id: &str, body: &str) -> Option<Notice> {
        (body.trim() == "Terminated").then(|| Notice::StateChange {
            instance_id: instance_id.into(),
            state: "auto-scaling-terminating".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, kind: &str, detail: Value) -> String {
        serde_json::json!({
            "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": kind, "source": source, "account": "123456789012",
            "time": "2026-11-27T06:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1a:instance/i-1234567890abcdef0"],
            "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn each_event_shape_of_the_design() {
        let spot = event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            serde_json::json!({"instance-id": "i-1234567890abcdef0", "instance-action": "terminate"}),
        );
        assert_eq!(
            parse(&spot).unwrap(),
            Notice::SpotInterruption {
                instance_id: "i-1234567890abcdef0".into(),
                action: SpotAction::Terminate,
                deadline: "2026-11-27T06:02:00Z".parse().unwrap(),
            }
        );
        let rebalance = event(
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            serde_json::json!({"instance-id": "i-1"}),
        );
        assert_eq!(
            parse(&rebalance).unwrap(),
            Notice::Rebalance {
                instance_id: "i-1".into()
            }
        );
        let stopping = event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            serde_json::json!({"instance-id": "i-2", "state": "shutting-down"}),
        );
        assert_eq!(parse(&stopping).unwrap().kind(), "state_change");
        let running = stopping.replace("shutting-down", "running");
        assert!(matches!(parse(&running).unwrap(), Notice::Ignore { .. }));
        let hook = event(
            "aws.autoscaling",
            "EC2 Instance-terminate Lifecycle Action",
            serde_json::json!({
                "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
                "AutoScalingGroupName": "spark-spot", "LifecycleHookName": "stowage-drain",
                "EC2InstanceId": "i-3", "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            }),
        );
        assert_eq!(
            parse(&hook).unwrap(),
            Notice::LifecycleTerminate {
                instance_id: "i-3".into(),
                group: "spark-spot".into(),
                hook: "stowage-drain".into(),
                token: "87654321-4321-4321-4321-210987654321".into(),
            }
        );
        let health = event(
            "aws.health",
            "AWS Health Event",
            serde_json::json!({
                "service": "EC2", "eventTypeCategory": "scheduledChange",
                "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                "startTime": "Fri, 27 Nov 2026 08:00:00 GMT",
                "affectedEntities": [{"entityValue": "i-4"}, {"entityValue": "i-5"}],
            }),
        );
        let notice = parse(&health).unwrap();
        assert_eq!(notice.instances(), ["i-4", "i-5"]);
        assert!(matches!(
            notice,
            Notice::ScheduledChange { start: Some(t), .. } if t == "2026-11-27T08:00:00Z".parse::<Timestamp>().unwrap()
        ));
    }

    #[test]
    fn envelopes_and_test_notifications() {
        let spot = event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            serde_json::json!({"instance-id": "i-9", "instance-action": "stop"}),
        );
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": spot})
            .to_string();
        assert_eq!(parse(&sns).unwrap().instances(), ["i-9"]);
        let test = r#"{"AccountId":"123456789012","RequestId":"r","AutoScalingGroupARN":"arn","AutoScalingGroupName":"spark-spot","Service":"AWS Auto Scaling","Event":"autoscaling:TEST_NOTIFICATION","Time":"2026-11-27T06:00:00.000Z"}"#;
        assert!(matches!(parse(test).unwrap(), Notice::Ignore { .. }));
    }

    #[test]
    fn instance_metadata_documents() {
        let spot = imds::spot_action(
            "i-1",
            r#"{"action": "terminate", "time": "2026-11-27T06:02:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            spot,
            Notice::SpotInterruption {
                instance_id: "i-1".into(),
                action: SpotAction::Terminate,
                deadline: "2026-11-27T06:02:00Z".parse().unwrap(),
            }
        );
        assert_eq!(
            imds::spot_action(
                "i-1",
                r#"{"action": "reboot", "time": "2026-11-27T06:02:00Z"}"#
            )
            .unwrap_err()
            .field,
            "spot/instance-action.action"
        );
        assert_eq!(
            imds::spot_action("i-1", r#"{"action": "stop"}"#)
                .unwrap_err()
                .field,
            "spot/instance-action.time"
        );
        assert_eq!(
            imds::rebalance("i-1", r#"{"noticeTime": "2026-11-27T06:00:00Z"}"#)
                .unwrap()
                .kind(),
            "rebalance"
        );
        let scheduled = imds::scheduled(
            "i-1",
            r#"[{"NotBefore": "21 Jan 2026 09:00:43 GMT", "Code": "system-reboot", "Description": "scheduled reboot", "EventId": "instance-event-0d59937288b749b32", "NotAfter": "21 Jan 2026 09:17:23 GMT", "State": "active"},
                {"NotBefore": "20 Jan 2026 09:00:43 GMT", "Code": "instance-stop", "State": "canceled"}]"#,
        )
        .unwrap();
        assert_eq!(scheduled.len(), 1, "canceled events are no notice");
        assert!(matches!(
            &scheduled[0],
            Notice::ScheduledChange { code, start: Some(t), .. }
                if code == "system-reboot" && *t == "2026-01-21T09:00:43Z".parse::<Timestamp>().unwrap()
        ));
        assert!(imds::target_lifecycle_state("i-1", "InService\n").is_none());
        assert_eq!(
            imds::target_lifecycle_state("i-1", "Terminated")
                .unwrap()
                .instances(),
            ["i-1"]
        );
    }

    #[test]
    fn malformed_messages_name_the_field() {
        let cases = [
            ("not json", "<body>"),
            (r#"{"detail-type": "x"}"#, "source"),
            (
                &event(
                    "aws.ec2",
                    "EC2 Spot Instance Interruption Warning",
                    serde_json::json!({"instance-action": "terminate"}),
                ),
                "detail.instance-id",
            ),
            (
                &event(
                    "aws.ec2",
                    "EC2 Spot Instance Interruption Warning",
                    serde_json::json!({"instance-id": "i-1", "instance-action": "explode"}),
                ),
                "detail.instance-action",
            ),
            (
                &event(
                    "aws.ec2",
                    "EC2 Spot Instance Interruption Warning",
                    serde_json::json!({"instance-id": 7, "instance-action": "stop"}),
                ),
                "detail.instance-id",
            ),
            (
                &event("aws.s3", "Object Created", serde_json::json!({})),
                "detail-type",
            ),
            (
                &event(
                    "aws.health",
                    "AWS Health Event",
                    serde_json::json!({"service": "EC2", "eventTypeCategory": "scheduledChange", "eventTypeCode": "X", "affectedEntities": []}),
                ),
                "detail.affectedEntities",
            ),
        ];
        for (body, field) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
    }
}

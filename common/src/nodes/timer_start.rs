//! `TimerStartNode` (KAI-Fusion's `TimerStart`): the entry point of a scheduled run. Its
//! settings become the workflow's scheduled job when the workflow is saved (see the API's
//! schedule registry); its output is the timer event `{job_id, node_id, scheduled_for, source,
//! trigger_data}`, or, when the workflow is run by hand, `trigger_data`.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};
use crate::schedule::timer::TimerConfig;

pub struct TimerStart;

impl NodeDefinition for TimerStart {
    fn type_name(&self) -> &'static str {
        "TimerStartNode"
    }

    fn description(&self) -> &'static str {
        "Starts a run on a schedule (cron, interval or once) in the schedule's time zone."
    }

    fn config_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "timer_type": {"type": "string", "enum": ["cron", "interval", "once", "manual"],
                    "default": "interval", "description": "Also read as `schedule_type`."},
                "cron_expression": {"type": "string", "description":
                    "Five fields (minute hour day-of-month month day-of-week), or six with \
                     seconds first; @hourly, @daily, @weekly, @monthly, @yearly."},
                "interval_seconds": {"type": "integer", "minimum": 1, "default": 3600},
                "delay_seconds": {"type": "integer", "minimum": 0,
                    "description": "For once: seconds after saving."},
                "run_at": {"type": "string", "format": "date-time",
                    "description": "For once: the instant (also read as `scheduled_time`)."},
                "timezone": {"type": "string", "default": "UTC", "description": "IANA name."},
                "max_executions": {"type": "integer", "minimum": 0, "default": 0,
                    "description": "0 = unlimited."},
                "enabled": {"type": "boolean", "default": true},
                "trigger_data": {"description": "JSON handed to each run."},
                "misfire_policy": {"type": "string", "enum": ["fire_once", "skip", "fire_all"],
                    "default": "fire_once"},
                "overlap_policy": {"type": "string", "enum": ["allow", "skip"],
                    "default": "allow"}
            }
        })
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::Entry
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "timer_data"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        TimerConfig::from_json(config).map(|_| ())
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let started_by_timer = ctx.trigger.get("job_id").is_some();
            let value = if started_by_timer {
                ctx.trigger.clone()
            } else {
                ctx.config
                    .get("trigger_data")
                    .map(|data| data.clone().into())
                    .unwrap_or_else(|| ctx.trigger.clone())
            };
            Ok(NodeOutput::all(value))
        }
        .boxed()
    }
}

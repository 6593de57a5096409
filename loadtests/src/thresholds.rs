//! Pass or fail: thresholds given on the command line, so a run can gate a deployment
//! pipeline. A missing or duplicated execution fails a run whatever the thresholds.

use crate::webhook::WebhookReport;

#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    pub max_p99_ms: Option<f64>,
    /// Accepted (2xx) requests as a fraction of those sent, 0 to 1.
    pub min_success_rate: Option<f64>,
    /// Accepted requests whose execution is missing.
    pub max_lost: Option<u64>,
}

/// Every threshold the run missed, each as a sentence; empty when it passed.
pub fn violations(report: &WebhookReport, thresholds: &Thresholds) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(max) = thresholds.max_p99_ms
        && report.latency.p99_ms > max
    {
        found.push(format!(
            "p99 latency {:.2} ms is over --max-p99-ms {max}",
            report.latency.p99_ms
        ));
    }
    if let Some(min) = thresholds.min_success_rate {
        let rate = if report.sent == 0 {
            0.0
        } else {
            report.accepted as f64 / report.sent as f64
        };
        if rate < min {
            found.push(format!(
                "success rate {rate:.4} is under --min-success-rate {min}"
            ));
        }
    }
    match &report.audit {
        Some(audit) => {
            let max_lost = thresholds.max_lost.unwrap_or(0);
            if audit.lost() > max_lost {
                found.push(format!(
                    "{} accepted requests have no execution (--max-lost {max_lost})",
                    audit.lost()
                ));
            }
            if audit.duplicated > 0 {
                found.push(format!("{} executions are duplicates", audit.duplicated));
            }
        }
        None if thresholds.max_lost.is_some() => {
            found.push("--max-lost needs an audit, and this run could not audit".to_owned());
        }
        None => {}
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Audit;
    use crate::recorder::Percentiles;
    use crate::webhook::Load;

    fn report(p99_ms: f64, sent: u64, accepted: u64, audit: Option<Audit>) -> WebhookReport {
        WebhookReport {
            scenario: "webhook",
            load: Load::ClosedLoop { connections: 1 },
            mode: "async",
            duration_s: 1.0,
            payload_bytes: 64,
            sent,
            accepted,
            accepted_per_s: accepted as f64,
            latency: Percentiles {
                p99_ms,
                ..Default::default()
            },
            refusals: Default::default(),
            windows: Vec::new(),
            audit,
            end_to_end: None,
            drained_after_s: None,
            queue_empty_after_s: None,
            audit_done_after_s: None,
            histogram: Vec::new(),
        }
    }

    #[test]
    fn thresholds_pass_and_fail_as_given() {
        let clean = Audit::default();
        let limits = Thresholds {
            max_p99_ms: Some(50.0),
            min_success_rate: Some(0.95),
            max_lost: Some(0),
        };
        assert!(violations(&report(20.0, 100, 96, Some(clean.clone())), &limits).is_empty());
        let slow = violations(&report(80.0, 100, 96, Some(clean.clone())), &limits);
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert!(slow[0].contains("p99"));
        let refused = violations(&report(20.0, 100, 90, Some(clean)), &limits);
        assert!(refused[0].contains("success rate 0.9000"), "{refused:?}");
    }

    #[test]
    fn lost_or_duplicated_executions_fail_even_without_thresholds() {
        let lost = Audit {
            missing: 2,
            ..Default::default()
        };
        let found = violations(&report(1.0, 10, 10, Some(lost)), &Thresholds::default());
        assert!(
            found[0].contains("2 accepted requests have no execution"),
            "{found:?}"
        );
        let twice = Audit {
            duplicated: 1,
            ..Default::default()
        };
        assert_eq!(
            violations(&report(1.0, 10, 10, Some(twice)), &Thresholds::default()).len(),
            1
        );
    }
}

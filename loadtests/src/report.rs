//! Reporting a run: the summary table on the terminal, the JSON file, and latency buckets.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::webhook::WebhookReport;

/// Latency histogram buckets, doubling from 0.25 ms: (upper bound in ms, requests).
pub fn buckets(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut buckets = Vec::new();
    let mut lower_us = 0u64;
    let mut upper_us = 250u64;
    loop {
        let count = histogram.count_between(lower_us + 1, upper_us)
            + if lower_us == 0 {
                histogram.count_at(0)
            } else {
                0
            };
        buckets.push((upper_us as f64 / 1000.0, count));
        if upper_us >= histogram.max() {
            return buckets;
        }
        lower_us = upper_us;
        upper_us *= 2;
    }
}

/// The summary table printed after a webhook run.
pub fn webhook_summary(report: &WebhookReport) -> String {
    let mut out = String::new();
    let l = &report.latency;
    let _ = writeln!(
        out,
        "\nkai-loadtest {} ({} mode, {:?})",
        report.scenario, report.mode, report.load
    );
    let _ = writeln!(out, "  duration          {:.1} s", report.duration_s);
    let _ = writeln!(out, "  body              {} bytes", report.payload_bytes);
    let _ = writeln!(out, "  sent              {}", report.sent);
    let _ = writeln!(
        out,
        "  accepted (2xx)    {} ({:.0}/s)",
        report.accepted, report.accepted_per_s
    );
    let _ = writeln!(
        out,
        "  latency ms        p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    match &report.audit {
        Some(audit) => {
            let rejected: Vec<String> = audit
                .rejected
                .iter()
                .map(|(status, n)| {
                    if *status == 0 {
                        format!("no answer: {n}")
                    } else {
                        format!("{status}: {n}")
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "  rejected          {}",
                if rejected.is_empty() {
                    "none".to_owned()
                } else {
                    rejected.join(", ")
                }
            );
            let _ = writeln!(
                out,
                "  executions        completed {}  failed {}  unfinished {}  missing {}  duplicated {}",
                audit.completed, audit.failed, audit.unfinished, audit.missing, audit.duplicated
            );
            if let Some(e2e) = &report.end_to_end {
                let _ = writeln!(
                    out,
                    "  end to end ms     p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (received → finished, {} runs)",
                    e2e.p50_ms, e2e.p90_ms, e2e.p99_ms, e2e.max_ms, e2e.count
                );
            }
            match report.drained_after_s {
                Some(s) => {
                    let _ = writeln!(out, "  all recorded      {s:.1} s after the load ended");
                }
                None => {
                    let _ = writeln!(out, "  all recorded      no: the audit timed out");
                }
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  executions        not audited (give --access-token and --workflow-id)"
            );
        }
    }
    out
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double_and_cover_every_sample() {
        let mut h = crate::recorder::new_histogram();
        for us in [100, 200, 300, 900, 5_000] {
            h.record(us).unwrap();
        }
        let buckets = buckets(&h);
        assert_eq!(buckets[0], (0.25, 2));
        assert_eq!(buckets[1], (0.5, 1));
        assert_eq!(buckets[2], (1.0, 1));
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 5);
        assert!(buckets.last().unwrap().0 >= 5.0);
    }
}

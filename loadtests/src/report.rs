//! Reporting a run: the summary table on the terminal, the JSON file, and latency buckets.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::webhook::WebhookReport;

/// Latency histogram buckets, doubling from 0.25 ms: (upper bound in ms, requests). Each
/// recorded value lands in exactly one bucket (counting ranges instead would count values near
/// a bound twice, since the histogram stores values at 3 significant digits).
pub fn buckets(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut uppers_us = vec![250u64];
    while uppers_us[uppers_us.len() - 1] < histogram.max() {
        uppers_us.push(uppers_us[uppers_us.len() - 1] * 2);
    }
    let mut counts = vec![0u64; uppers_us.len()];
    for recorded in histogram.iter_recorded() {
        let value = recorded.value_iterated_to();
        let bucket = uppers_us
            .iter()
            .position(|&upper| value <= upper)
            .unwrap_or(uppers_us.len() - 1);
        counts[bucket] += recorded.count_at_value();
    }
    uppers_us
        .iter()
        .zip(counts)
        .map(|(upper, count)| (*upper as f64 / 1000.0, count))
        .collect()
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
            if audit.refused_but_ran > 0 {
                let _ = writeln!(
                    out,
                    "  refused, ran once {} (answered 503 before their storage was confirmed)",
                    audit.refused_but_ran
                );
            }
            if let Some(e2e) = &report.end_to_end {
                let _ = writeln!(
                    out,
                    "  end to end ms     p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (accepted → finished, {} runs)",
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
            if let Some(queue) = report.queue_empty_after_s {
                let _ = writeln!(out, "  queue empty       {queue:.1} s after the load ended");
            }
            if let Some(done) = report.audit_done_after_s {
                let since_queue = report
                    .queue_empty_after_s
                    .map(|queue| format!(" ({:.1} s after the queue was empty)", done - queue))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  audit done        {done:.1} s after the load ended{since_queue}"
                );
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
        for us in [
            100, 200, 300, 900, 5_000, 250, 251, 499, 500, 501, 4_000, 4_001,
        ] {
            h.record(us).unwrap();
        }
        let buckets = buckets(&h);
        assert_eq!(buckets[0], (0.25, 3));
        assert_eq!(buckets[1], (0.5, 4));
        assert_eq!(buckets[2], (1.0, 2));
        assert_eq!(
            buckets.iter().map(|(_, n)| n).sum::<u64>(),
            12,
            "values at the bounds are counted once"
        );
        assert!(buckets.last().unwrap().0 >= 5.0);
    }
}

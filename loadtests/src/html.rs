//! The HTML report of a webhook or e2e run: the summary and the audit as tables, a chart of
//! latency over time (p50 and p99 of each second) and a latency histogram, drawn as inline SVG
//! with plotters.

use plotters::prelude::*;

use crate::webhook::WebhookReport;

const WIDTH: u32 = 860;
const HEIGHT: u32 = 360;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// p50 and p99 of each second of the run, in milliseconds.
fn latency_over_time(report: &WebhookReport) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let seconds = report.windows.last().map_or(1, |w| w.second + 1);
        let top = report
            .windows
            .iter()
            .map(|w| w.latency.p99_ms)
            .fold(1.0_f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency over time (from the intended send time)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0u64..seconds, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("second of the run")
            .y_desc("ms")
            .draw()?;
        let series = |pick: fn(&crate::recorder::Window) -> f64| {
            report
                .windows
                .iter()
                .map(move |w| (w.second, pick(w)))
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(series(|w| w.latency.p50_ms), &BLUE))?
            .label("p50")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(series(|w| w.latency.p99_ms), &RED))?
            .label("p99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Requests per latency bucket (buckets double from 0.25 ms).
fn histogram(report: &WebhookReport) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let buckets = &report.histogram;
        let most = buckets.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency histogram", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (0u32..buckets.len().max(1) as u32).into_segmented(),
                0u64..most + most / 10 + 1,
            )?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("latency up to (ms)")
            .y_desc("requests")
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => buckets
                    .get(*i as usize)
                    .map(|(upper, _)| format!("{upper}"))
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(2)
                .data(buckets.iter().enumerate().map(|(i, (_, n))| (i as u32, *n))),
        )?;
        root.present()?;
    }
    Ok(svg)
}

/// The whole report as one self-contained HTML page.
pub fn webhook_report(report: &WebhookReport) -> anyhow::Result<String> {
    let summary = escape(&crate::report::webhook_summary(report));
    let json = escape(&serde_json::to_string_pretty(&report.audit)?);
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>kai-loadtest {scenario}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}pre{{background:#f4f4f4;padding:1em}}</style>\
         </head><body>\n<h1>kai-loadtest {scenario}</h1>\n<h2>Summary</h2>\n<pre>{summary}</pre>\n\
         <h2>Latency over time</h2>\n{over_time}\n<h2>Latency histogram</h2>\n{histogram}\n\
         <h2>Audit</h2>\n<pre>{json}</pre>\n</body></html>\n",
        scenario = report.scenario,
        over_time = latency_over_time(report)?,
        histogram = histogram(report)?,
    ))
}

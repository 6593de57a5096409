//! The `listing` scenario: what a workflow's execution listing costs at depth. It walks the whole
//! listing once by cursor (summaries, the audit's read), then times the full listing's first
//! page and its deepest full page by cursor, alternately, and a few pages by `offset` at the
//! same depth for comparison.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::recorder::{Percentiles, new_histogram};
use crate::target::{Api, Scratch};

/// Rows a page of the walk reads (the summaries listing's largest page).
const WALK_PAGE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ListingOptions {
    pub api: String,
    /// The owner's access token and the workflow whose executions are listed.
    pub target: Scratch,
    /// Rows of each timed page (the listing's default is 50).
    pub page_size: usize,
    /// Timed requests of the first page and of the deep page, each.
    pub samples: usize,
    /// Timed requests of the deep page by `offset` (each walks every row before it).
    pub offset_samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListingReport {
    /// Executions the workflow holds.
    pub rows: u64,
    /// Seconds to read every execution's summary by cursor.
    pub walk_s: f64,
    /// Rows before the deep page.
    pub depth: u64,
    pub page_size: usize,
    pub first_page: Percentiles,
    pub deep_page: Percentiles,
    /// The same deep page asked by `offset`.
    pub deep_page_by_offset: Percentiles,
}

impl ListingReport {
    /// The deep page's median time over the first page's.
    pub fn deep_over_first(&self) -> f64 {
        self.deep_page.p50_ms / self.first_page.p50_ms.max(1e-9)
    }
}

pub async fn run(options: ListingOptions) -> anyhow::Result<ListingReport> {
    let api = Api::new(&options.api)?;
    let token = &options.target.access_token;
    let executions = format!(
        "{}/api/v1/workflows/{}/executions",
        api.base, options.target.workflow_id
    );
    let summaries = format!("{executions}/summaries");

    // The walk: every row once, remembering where each page began.
    let walk_started = Instant::now();
    let (mut rows, mut boundaries, mut cursor) = (0u64, Vec::new(), None::<String>);
    loop {
        let url = with_query(&summaries, WALK_PAGE, cursor.as_deref(), None)?;
        let (page, _) = api.get_page(token, url).await?;
        rows += page["items"].as_array().map_or(0, Vec::len) as u64;
        match page["next_cursor"].as_str() {
            Some(next) => {
                boundaries.push((rows, next.to_owned()));
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    let walk_s = walk_started.elapsed().as_secs_f64();
    let page_size = options.page_size as u64;
    anyhow::ensure!(
        rows >= 2 * page_size,
        "the workflow holds {rows} executions: too few to page"
    );

    // The cursor in front of the last full page: from the nearest page boundary, one more page
    // of summaries as long as the gap.
    let target = rows - page_size;
    let (mut depth, mut deep_cursor) = boundaries
        .iter()
        .rev()
        .find(|(depth, _)| *depth <= target)
        .map_or((0, None), |(depth, cursor)| (*depth, Some(cursor.clone())));
    if depth < target {
        let gap = usize::try_from(target - depth)?;
        let url = with_query(&summaries, gap, deep_cursor.as_deref(), None)?;
        let (page, _) = api.get_page(token, url).await?;
        deep_cursor = page["next_cursor"].as_str().map(str::to_owned);
        depth = target;
    }
    let deep_cursor = deep_cursor.ok_or_else(|| anyhow::anyhow!("no cursor at depth {depth}"))?;

    let (mut first, mut deep, mut by_offset) = (new_histogram(), new_histogram(), new_histogram());
    for _ in 0..options.samples {
        let first_url = with_query(&executions, options.page_size, None, None)?;
        first.saturating_record(timed_page(&api, token, first_url, options.page_size).await?);
        let deep_url = with_query(&executions, options.page_size, Some(&deep_cursor), None)?;
        deep.saturating_record(timed_page(&api, token, deep_url, options.page_size).await?);
    }
    for _ in 0..options.offset_samples {
        let url = with_query(&executions, options.page_size, None, Some(depth))?;
        by_offset.saturating_record(timed_page(&api, token, url, options.page_size).await?);
    }
    Ok(ListingReport {
        rows,
        walk_s,
        depth,
        page_size: options.page_size,
        first_page: Percentiles::of(&first),
        deep_page: Percentiles::of(&deep),
        deep_page_by_offset: Percentiles::of(&by_offset),
    })
}

/// Microseconds one page took to answer in full; an error unless it held `expected` rows.
async fn timed_page(
    api: &Api,
    token: &str,
    url: reqwest::Url,
    expected: usize,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let (page, _) = api.get_page(token, url).await?;
    let took = started.elapsed();
    let held = page.as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        held == expected,
        "a timed page held {held} rows, not {expected}"
    );
    Ok(took.max(Duration::from_micros(1)).as_micros() as u64)
}

fn with_query(
    base: &str,
    limit: usize,
    cursor: Option<&str>,
    offset: Option<u64>,
) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(base)?;
    url.query_pairs_mut()
        .append_pair("limit", &limit.to_string());
    if let Some(cursor) = cursor {
        url.query_pairs_mut().append_pair("cursor", cursor);
    }
    if let Some(offset) = offset {
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string());
    }
    Ok(url)
}

pub fn summary(report: &ListingReport) -> String {
    let line = |name: &str, p: &Percentiles| {
        format!(
            "  {name:<26} p50 {:>8.2} ms  p90 {:>8.2} ms  max {:>8.2} ms  ({} requests)\n",
            p.p50_ms, p.p90_ms, p.max_ms, p.count
        )
    };
    let mut out = format!(
        "kai-loadtest listing: {} executions; every summary read by cursor in {:.1} s\n",
        report.rows, report.walk_s
    );
    out += &line("first page", &report.first_page);
    out += &line(
        &format!("page at {} by cursor", report.depth),
        &report.deep_page,
    );
    out += &line(
        &format!("page at {} by offset", report.depth),
        &report.deep_page_by_offset,
    );
    out += &format!(
        "  deep page / first page (p50): {:.2}x",
        report.deep_over_first()
    );
    out
}

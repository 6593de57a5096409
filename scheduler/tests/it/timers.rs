//! Timer emission by real schedulers: every tick once, across a leader's `kill -9`; schedules
//! that must not fire do not; changes take effect at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::json;

use crate::harness::{Cluster, Scheduler, Tick, metrics_of, single_leader, spawn, spawn_with};

fn fire_times(ticks: &[Tick]) -> Vec<DateTime<Utc>> {
    let mut times: Vec<_> = ticks.iter().map(|t| t.scheduled_for).collect();
    times.sort();
    times
}

async fn recorded_ticks(cluster: &Cluster, job_id: &str) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT scheduled_for FROM job_executions \
         WHERE job_id = $1::uuid AND status = 'queued' ORDER BY scheduled_for",
    )
    .bind(job_id)
    .fetch_all(&cluster.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_one_second_timer_ticks_once_each_second_across_a_leader_kill() {
    let cluster = Cluster::start().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut a = spawn(&cluster.env).await;
    let mut b = spawn(&cluster.env).await;
    let leader = single_leader(&client, &[&a, &b], Duration::from_secs(60)).await;
    let (_, job_id) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "misfire_policy": "fire_all"}))
        .await;
    cluster
        .wait_for_ticks(&job_id, 3, Duration::from_secs(10))
        .await;

    let (killed, survivor): (&mut Scheduler, &Scheduler) = if leader == 0 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    killed.child.start_kill().unwrap(); // SIGKILL
    killed.child.wait().await.unwrap();
    let killed_at = Instant::now();
    let killed_at_utc = Utc::now();
    single_leader(&client, &[survivor], Duration::from_secs(5)).await;
    let failover = killed_at.elapsed();
    eprintln!("standby took over after {failover:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );

    // Run on under the new leader for a few more ticks.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ticks = loop {
        let ticks = cluster.ticks_of(&job_id).await;
        if ticks
            .iter()
            .any(|t| t.scheduled_for > killed_at_utc + chrono::Duration::seconds(3))
        {
            break ticks;
        }
        assert!(Instant::now() < deadline, "no ticks after the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let times = fire_times(&ticks);
    let distinct: HashSet<_> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "a tick fired twice: {times:?}");
    let ids: HashSet<_> = ticks.iter().map(|t| t.message_id.clone()).collect();
    assert_eq!(ids.len(), ticks.len());
    for tick in &ticks {
        assert!(
            tick.message_id.starts_with(&format!("timer:{job_id}:")),
            "{}",
            tick.message_id
        );
    }
    // fire_all: nothing missed, and the grid never drifts.
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "a gap or drift between ticks: {times:?}"
        );
    }
    // Every tick on the stream is recorded once (and only ticks on the stream are).
    let recorded = recorded_ticks(&cluster, &job_id).await;
    assert_eq!(&recorded[..times.len()], &times[..]);
    let _ = a.child.start_kill();
    let _ = b.child.start_kill();
    cluster.stop().await;
}

#[tokio::test]
async fn limited_once_overlapping_disabled_and_deleted_schedules_fire_only_as_told() {
    let cluster = Cluster::start().await;
    let mut scheduler = spawn(&cluster.env).await;
    let client = reqwest::Client::new();
    single_leader(&client, &[&scheduler], Duration::from_secs(60)).await;

    let (_, limited) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "max_executions": 2}))
        .await;
    let (_, once) = cluster
        .timer_workflow(json!({"schedule_type": "once", "delay_seconds": 1}))
        .await;
    let (_, disabled) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "enabled": false}))
        .await;
    // No worker runs here, so the first run stays queued: an unfinished previous run.
    let (_, no_overlap) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "overlap_policy": "skip"}))
        .await;
    let (_, deleted) = cluster.timer_workflow(json!({"interval_seconds": 1})).await;
    let (deleted_workflow, of_deleted_workflow) =
        cluster.timer_workflow(json!({"interval_seconds": 1})).await;

    cluster
        .wait_for_ticks(&deleted, 1, Duration::from_secs(10))
        .await;
    cluster
        .wait_for_ticks(&of_deleted_workflow, 1, Duration::from_secs(10))
        .await;
    cluster
        .send(
            Method::DELETE,
            &format!("/api/v1/jobs/scheduled/{deleted}"),
            None,
        )
        .await;
    cluster
        .send(
            Method::DELETE,
            &format!("/api/v1/workflows/{deleted_workflow}"),
            None,
        )
        .await;
    let before_deletion = cluster.ticks_of(&deleted).await.len();
    let before_workflow_deletion = cluster.ticks_of(&of_deleted_workflow).await.len();

    tokio::time::sleep(Duration::from_secs(4)).await;

    assert_eq!(cluster.ticks_of(&limited).await.len(), 2);
    let job = cluster
        .send(
            Method::GET,
            &format!("/api/v1/jobs/scheduled/{limited}"),
            None,
        )
        .await;
    assert_eq!(job["current_executions"], 2);
    assert_eq!(job["next_run_at"], serde_json::Value::Null);

    assert_eq!(cluster.ticks_of(&once).await.len(), 1);
    let job = cluster
        .send(Method::GET, &format!("/api/v1/jobs/scheduled/{once}"), None)
        .await;
    assert_eq!(job["next_run_at"], serde_json::Value::Null);

    assert_eq!(cluster.ticks_of(&disabled).await.len(), 0);

    assert_eq!(cluster.ticks_of(&no_overlap).await.len(), 1);
    let skipped = cluster
        .send(
            Method::GET,
            &format!("/api/v1/jobs/scheduled/{no_overlap}/executions?status=skipped"),
            None,
        )
        .await;
    assert!(
        skipped.as_array().unwrap().len() >= 2,
        "ticks skipped while the previous run waits: {skipped}"
    );
    assert!(skipped[0]["execution_id"].is_null());

    assert_eq!(cluster.ticks_of(&deleted).await.len(), before_deletion);
    assert_eq!(
        cluster.ticks_of(&of_deleted_workflow).await.len(),
        before_workflow_deletion
    );
    let _ = scheduler.child.start_kill();
    cluster.stop().await;
}

#[tokio::test]
async fn a_changed_schedule_takes_effect_at_once_and_cron_ticks_land_on_its_seconds() {
    let cluster = Cluster::start().await;
    let mut scheduler = spawn(&cluster.env).await;
    let client = reqwest::Client::new();
    single_leader(&client, &[&scheduler], Duration::from_secs(60)).await;

    // Hourly at first; changed to every second, it ticks long before the periodic resync.
    let (_, job_id) = cluster
        .timer_workflow(json!({"interval_seconds": 3600}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed_at = Instant::now();
    cluster
        .send(
            Method::PUT,
            &format!("/api/v1/jobs/scheduled/{job_id}"),
            Some(json!({"timer_config": {"interval_seconds": 1}})),
        )
        .await;
    cluster
        .wait_for_ticks(&job_id, 1, Duration::from_secs(10))
        .await;
    let took = changed_at.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Six-field cron, every second: ticks on whole seconds, one per second.
    let (_, cron) = cluster
        .timer_workflow(json!({"schedule_type": "cron", "cron_expression": "* * * * * *"}))
        .await;
    let ticks = cluster
        .wait_for_ticks(&cron, 3, Duration::from_secs(10))
        .await;
    let times = fire_times(&ticks);
    for time in &times {
        assert_eq!(time.timestamp_subsec_nanos(), 0, "{time}");
    }
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "{times:?}");
    }
    assert!(ticks.iter().all(|t| t.source == "timer"));
    let listed = cluster
        .send(
            Method::GET,
            &format!("/api/v1/jobs/scheduled/{cron}/executions"),
            None,
        )
        .await;
    for tick in listed.as_array().unwrap() {
        let scheduled: DateTime<Utc> = tick["scheduled_for"].as_str().unwrap().parse().unwrap();
        let emitted: DateTime<Utc> = tick["emitted_at"].as_str().unwrap().parse().unwrap();
        assert!(emitted >= scheduled, "emitted before its time: {tick}");
        assert_eq!(tick["status"], "queued", "no worker runs here: {tick}");
    }

    let metrics = metrics_of(&client, &scheduler).await;
    for name in [
        "kai_scheduler_is_leader 1",
        "kai_scheduler_schedules_loaded 2",
        "kai_scheduler_ticks_emitted_total",
        "kai_scheduler_tick_lateness_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    let _ = scheduler.child.start_kill();
    cluster.stop().await;
}

/// Ticks of `job_id` emitted more than the misfire grace (5 s) after their time.
async fn late_ticks(cluster: &Cluster, job_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM job_executions WHERE job_id = $1::uuid AND status = 'queued' \
            AND started_at - scheduled_for > interval '5 seconds'",
    )
    .bind(job_id)
    .fetch_one(&cluster.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn ticks_missed_while_no_scheduler_ran_follow_the_misfire_policy() {
    let cluster = Cluster::start().await;
    let (_, fire_once) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "misfire_policy": "fire_once"}))
        .await;
    let (_, skip) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "misfire_policy": "skip"}))
        .await;
    let (_, fire_all) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "misfire_policy": "fire_all"}))
        .await;
    // Nine seconds without a scheduler: about four ticks each are more than 5 s overdue when
    // one starts.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let mut scheduler = spawn(&cluster.env).await;
    for job in [&fire_once, &skip, &fire_all] {
        cluster
            .wait_for_ticks(job, 3, Duration::from_secs(60))
            .await;
    }
    assert_eq!(
        late_ticks(&cluster, &fire_once).await,
        1,
        "coalesced into one"
    );
    assert_eq!(late_ticks(&cluster, &skip).await, 0, "dropped");
    assert!(late_ticks(&cluster, &fire_all).await >= 3, "each run");
    // Whatever the policy, no tick twice and the grid kept.
    for job in [&fire_once, &skip, &fire_all] {
        let times = fire_times(&cluster.ticks_of(job).await);
        let distinct: HashSet<_> = times.iter().collect();
        assert_eq!(distinct.len(), times.len(), "{times:?}");
        for time in &times {
            assert_eq!(
                times[0].timestamp_subsec_micros(),
                time.timestamp_subsec_micros(),
                "{times:?}"
            );
        }
    }
    let _ = scheduler.child.start_kill();
    cluster.stop().await;
}

#[tokio::test]
async fn ticks_resume_without_duplicates_after_the_scheduler_loses_nats_for_a_while() {
    let cluster = Cluster::start().await;
    let nats = kai_common::test_proxy::TcpProxy::start(kai_common::testing::service_addr(
        "NATS_URL",
        "nats://127.0.0.1:4222",
    ))
    .await;
    let mut scheduler = spawn_with(
        &cluster.env,
        &[("NATS_URL", format!("nats://{}", nats.addr()))],
    )
    .await;
    let client = reqwest::Client::new();
    single_leader(&client, &[&scheduler], Duration::from_secs(60)).await;
    let (_, job_id) = cluster
        .timer_workflow(json!({"interval_seconds": 1, "misfire_policy": "fire_all"}))
        .await;
    cluster
        .wait_for_ticks(&job_id, 2, Duration::from_secs(10))
        .await;
    nats.cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    nats.restore();
    let cut_at = Utc::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ticks = loop {
        let ticks = cluster.ticks_of(&job_id).await;
        if ticks
            .iter()
            .any(|t| t.scheduled_for > cut_at + chrono::Duration::seconds(2))
        {
            break ticks;
        }
        assert!(Instant::now() < deadline, "no ticks after NATS came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let times = fire_times(&ticks);
    let distinct: HashSet<_> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "a tick twice: {times:?}");
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "{times:?}");
    }
    let _ = scheduler.child.start_kill();
    cluster.stop().await;
}

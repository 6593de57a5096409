//! The batch writer: runs of many jobs in one transaction, one bad run not holding back the rest.

use chrono::Utc;
use kai_common::jobs::{WebhookEvent, WebhookJobV1};
use kai_worker::engine;
use kai_worker::persist::{self, FinishedRun, Written};
use kai_worker::writer::{RunWriter, WriteFailure};
use serde_json::json;
use uuid::Uuid;

use crate::harness::Harness;

fn run_for(workflow_id: Uuid, user_id: Uuid, webhook_id: &str) -> FinishedRun {
    let job = WebhookJobV1 {
        execution_id: Uuid::now_v7(),
        workflow_id,
        workflow_version: 1,
        user_id,
        enqueued_at: Utc::now(),
        event: WebhookEvent {
            webhook_id: webhook_id.to_owned(),
            node_id: "hook".into(),
            correlation_id: Uuid::new_v4(),
            http_method: "POST".into(),
            event_type: "webhook.received".into(),
            data: json!({}),
            received_at: Utc::now(),
            client_ip: None,
            user_agent: None,
            headers: Default::default(),
            url: "http://test/".into(),
        },
        reply_to: None,
        idempotent: false,
    };
    FinishedRun {
        job: job.into(),
        record: engine::failed("not run".into(), "test"),
        attempt: 1,
    }
}

/// The owner and the webhook id of a harness workflow.
async fn owner_and_webhook(harness: &Harness, workflow_id: Uuid) -> (Uuid, String) {
    sqlx::query_as(
        "SELECT w.user_id, e.webhook_id FROM workflows w JOIN webhook_endpoints e ON e.workflow_id = w.id \
         WHERE w.id = $1",
    )
    .bind(workflow_id)
    .fetch_one(&harness.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_batch_with_a_deleted_workflow_writes_the_others() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let (user_id, webhook_id) = owner_and_webhook(&harness, hook.workflow_id).await;
    let writer = RunWriter::start(harness.state.db.clone(), 1, 16, 8 << 20);

    let good = [
        run_for(hook.workflow_id, user_id, &webhook_id),
        run_for(hook.workflow_id, user_id, &webhook_id),
    ];
    let good_ids: Vec<Uuid> = good.iter().map(|r| r.job.execution_id).collect();
    let orphan = run_for(Uuid::new_v4(), user_id, &webhook_id);
    let [a, b] = good;
    let results =
        futures::future::join_all([writer.write(a), writer.write(orphan), writer.write(b)]).await;
    let outcomes: Vec<Result<Written, WriteFailure>> =
        results.into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        outcomes,
        [
            Ok(Written::New),
            Err(WriteFailure::OwnerGone),
            Ok(Written::New)
        ]
    );

    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM workflow_executions WHERE id = ANY($1)")
            .bind(&good_ids)
            .fetch_one(&harness.state.db)
            .await
            .unwrap();
    assert_eq!(recorded, 2);

    // Written again (a redelivery): recognised, nothing added.
    let again = run_for(hook.workflow_id, user_id, &webhook_id);
    let mut copy = run_for(hook.workflow_id, user_id, &webhook_id);
    copy.job.execution_id = again.job.execution_id;
    assert_eq!(writer.write(again).await.1, Ok(Written::New));
    assert_eq!(writer.write(copy).await.1, Ok(Written::AlreadyRecorded));
    // Two deliveries of one job in the same batch: one written, one recognised.
    let twin = run_for(hook.workflow_id, user_id, &webhook_id);
    let mut other = run_for(hook.workflow_id, user_id, &webhook_id);
    other.job.execution_id = twin.job.execution_id;
    let twins = futures::future::join_all([writer.write(twin), writer.write(other)]).await;
    let outcomes: Vec<_> = twins.into_iter().map(|(_, r)| r).collect();
    assert_eq!(outcomes, [Ok(Written::New), Ok(Written::AlreadyRecorded)]);

    let deltas: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_trigger_deltas")
        .fetch_one(&harness.state.db)
        .await
        .unwrap();
    assert_eq!(deltas, 4, "one counter delta per execution written");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&harness.state.db)
        .await
        .unwrap();
    assert_eq!(events, 4, "one webhook event per execution written");
    harness.stop().await;
}

#[tokio::test]
async fn runs_are_on_disk_once_durable_returns() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let (user_id, webhook_id) = owner_and_webhook(&harness, hook.workflow_id).await;
    let writer = RunWriter::start(harness.state.db.clone(), 2, 16, 8 << 20);
    for _ in 0..5 {
        let run = run_for(hook.workflow_id, user_id, &webhook_id);
        assert_eq!(writer.write(run).await.1, Ok(Written::New));
        // The run's commit record is before this point of the WAL...
        let written: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(&harness.state.db)
            .await
            .unwrap();
        writer.durable().await.unwrap();
        // ...and the WAL is on disk up to it once `durable` returns.
        let flushed: bool =
            sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn")
                .bind(&written)
                .fetch_one(&harness.state.db)
                .await
                .unwrap();
        assert!(flushed, "WAL flushed past {written}");
    }
    harness.stop().await;
}

#[tokio::test]
async fn a_long_run_recorded_running_is_completed_by_its_outcome_once() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let (user_id, webhook_id) = owner_and_webhook(&harness, hook.workflow_id).await;
    let writer = RunWriter::start(harness.state.db.clone(), 1, 16, 8 << 20);
    let db = &harness.state.db;
    let status = |id: Uuid| async move {
        sqlx::query_scalar::<_, String>("SELECT status FROM workflow_executions WHERE id = $1")
            .bind(id)
            .fetch_one(db)
            .await
            .unwrap()
    };

    let run = run_for(hook.workflow_id, user_id, &webhook_id);
    let id = run.job.execution_id;
    let running = persist::RunningExecution::of(&run.job, 1);
    persist::mark_running(db, &running).await.unwrap();
    assert_eq!(status(id).await, "running");
    assert_eq!(
        persist::recorded_reply(db, id).await.unwrap(),
        None,
        "a running record is not an outcome: a redelivery runs the job"
    );
    assert_eq!(writer.write(run).await.1, Ok(Written::New));
    assert_eq!(status(id).await, "failed", "the outcome completes the row");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE execution_id = $1")
            .bind(id)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(events, 1);

    // Marked again after its outcome (a late marker), and written again (a redelivery):
    // neither changes the record.
    let mut late = run_for(hook.workflow_id, user_id, &webhook_id);
    late.job.execution_id = id;
    persist::mark_running(db, &persist::RunningExecution::of(&late.job, 2))
        .await
        .unwrap();
    assert_eq!(status(id).await, "failed");
    late.record.status = kai_common::jobs::ExecutionStatus::Completed;
    assert_eq!(writer.write(late).await.1, Ok(Written::AlreadyRecorded));
    assert_eq!(status(id).await, "failed");
    harness.stop().await;
}

//! Housekeeping: log months past retention dropped by partition (the audit log by its own),
//! finished executions pruned.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use kai_common::testing::TestEnv;
use kai_scheduler::housekeeping::Housekeeping;
use sqlx::PgPool;
use uuid::Uuid;

async fn database(env: &TestEnv) -> PgPool {
    let url = env.database_url().into();
    let db = kai_common::db::connect(&url, 2).await.unwrap();
    kai_common::db::migrate(&db).await.unwrap();
    db
}

async fn tick_at(db: &PgPool, at: DateTime<Utc>) {
    sqlx::query("INSERT INTO job_executions (job_id, scheduled_for) VALUES ($1, $2)")
        .bind(Uuid::new_v4())
        .bind(at)
        .execute(db)
        .await
        .unwrap();
}

async fn ticks(db: &PgPool) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar("SELECT scheduled_for FROM job_executions ORDER BY scheduled_for")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn audit_at(db: &PgPool, at: DateTime<Utc>) {
    sqlx::query(
        "INSERT INTO audit_log (actor_type, action, created_at) VALUES ('operator', 'login', $1)",
    )
    .bind(at)
    .execute(db)
    .await
    .unwrap();
}

async fn audit_times(db: &PgPool) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar("SELECT created_at FROM audit_log ORDER BY created_at")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn execution(db: &PgPool, workflow: (Uuid, Uuid), started: DateTime<Utc>, status: &str) {
    sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, \
            trigger_type, status, enqueued_at, started_at) \
         VALUES ($1, $2, 1, $3, 'timer', $4, $5, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(workflow.0)
    .bind(workflow.1)
    .bind(status)
    .bind(started)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn expired_log_months_are_dropped_and_old_finished_executions_pruned() {
    let env = TestEnv::new();
    let db = database(&env).await;
    // PostgreSQL keeps microseconds.
    let now = Utc::now().trunc_subsecs(6);
    // A month long past, prepared as its own partition, and an old row outside prepared months.
    sqlx::query(
        "CREATE TABLE job_executions_2025_01 PARTITION OF job_executions \
         FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')",
    )
    .execute(&db)
    .await
    .unwrap();
    let january: DateTime<Utc> = "2025-01-15T12:00:00Z".parse().unwrap();
    tick_at(&db, january).await;
    tick_at(&db, now - Duration::days(200)).await;
    let recent = now - Duration::hours(1);
    tick_at(&db, recent).await;

    let user: Uuid = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash) VALUES ('old@example.com', 'x') RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let workflow: Uuid =
        sqlx::query_scalar("INSERT INTO workflows (user_id, name) VALUES ($1, 'old') RETURNING id")
            .bind(user)
            .fetch_one(&db)
            .await
            .unwrap();
    execution(&db, (workflow, user), now - Duration::days(40), "completed").await;
    execution(&db, (workflow, user), now - Duration::days(40), "failed").await;
    execution(&db, (workflow, user), now - Duration::days(40), "running").await;
    execution(&db, (workflow, user), now - Duration::days(2), "completed").await;

    let keep_executions = Housekeeping {
        db: db.clone(),
        log_retention_days: 30,
        execution_retention_days: 0,
        audit_retention_days: 365,
    };
    for (age_hours, id) in [(25, Uuid::new_v4()), (1, Uuid::new_v4())] {
        sqlx::query(
            "INSERT INTO webhook_idempotency_keys (execution_id, webhook_id, fingerprint, \
                created_at) VALUES ($1, 'wh_x', '\\x00', $2)",
        )
        .bind(id)
        .bind(now - Duration::hours(age_hours))
        .execute(&db)
        .await
        .unwrap();
    }
    audit_at(&db, now - Duration::days(400)).await;
    let half_a_year = now - Duration::days(200);
    audit_at(&db, half_a_year).await;
    keep_executions.upkeep(now).await;
    assert_eq!(ticks(&db).await, vec![recent]);
    assert_eq!(
        audit_times(&db).await,
        vec![half_a_year],
        "the audit log is kept by its own, longer retention"
    );
    let audit_months: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'audit_log'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        audit_months >= 5,
        "audit months prepared ahead: {audit_months}"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_idempotency_keys")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(keys, 1, "keys older than a day are forgotten");
    let partition: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('job_executions_2025_01')::text")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        partition, None,
        "the expired month is dropped as a partition"
    );
    let ahead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'webhook_events'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        ahead >= 5,
        "default and this month and three ahead: {ahead}"
    );
    let count = |db: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM workflow_executions")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    assert_eq!(count(db.clone()).await, 4, "retention 0 keeps executions");

    let prune = Housekeeping {
        db: db.clone(),
        log_retention_days: 30,
        execution_retention_days: 30,
        audit_retention_days: 365,
    };
    prune.upkeep(now).await;
    let left: Vec<String> =
        sqlx::query_scalar("SELECT status FROM workflow_executions ORDER BY started_at, status")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(left, ["running", "completed"]);
    db.close().await;
    env.cleanup().await;
}

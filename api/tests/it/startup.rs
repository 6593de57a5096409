//! The binary refuses to start on invalid configuration, naming the variable.

use std::process::Command;

/// Runs `kai-api` with `args` (`migrate`, or nothing to serve) and `vars`.
fn run_api(args: &[&str], vars: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kai-api"));
    command
        .args(args)
        .env_remove("KAI_JWT_SECRET")
        .env_remove("KAI_ENV");
    for (key, value) in vars {
        command.env(key, value);
    }
    let output = command.output().expect("kai-api runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn an_invalid_variable_stops_the_process_naming_it() {
    for (variable, value) in [
        ("KAI_API_ADDR", "not-an-address"),
        ("DATABASE_URL", "mysql://localhost/kai"),
        ("NATS_URL", "http://"),
        ("KAI_NATS_PREFIX", "has.dots"),
        ("KAI_JWT_SECRET", "too-short"),
        ("KAI_ENV", "staging"),
        ("KAI_TRUSTED_PROXIES", "10.0.0.0/8, not-a-network"),
        ("KAI_JOBS_MAX_MESSAGES", "0"),
    ] {
        let (ok, output) = run_api(&["migrate"], &[(variable, value)]);
        assert!(!ok, "{variable}={value} must be refused");
        assert!(
            output.contains(variable),
            "{variable} not named in: {output}"
        );
    }
}

#[test]
fn production_requires_its_secrets_to_serve() {
    // Serving (the default command); nothing listens on the database port, so even a binary
    // that wrongly went on would stop at once instead of serving.
    let serve = [
        ("KAI_ENV", "production"),
        ("KAI_API_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/kai"),
    ];
    let (ok, output) = run_api(&[], &serve);
    assert!(!ok);
    assert!(output.contains("KAI_JWT_SECRET"), "{output}");
    // The secret's value is never printed.
    let secret = "a-very-secret-value-of-at-least-32-chars";
    let with_one = [&serve[..], &[("KAI_JWT_SECRET", secret)]].concat();
    let (ok, output) = run_api(&[], &with_one);
    assert!(!ok);
    assert!(output.contains("KAI_ENCRYPTION_KEY"), "{output}");
    assert!(!output.contains(secret));
}

#[tokio::test]
async fn migrate_creates_the_database_and_schema_and_replicas_do_not_race() {
    let env = kai_common::testing::TestEnv::new();
    // Four processes migrating one missing database at once: all succeed, once.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_kai-api"))
                .arg("migrate")
                .envs(env.env_vars())
                .env_remove("KAI_JWT_SECRET")
                .output()
        })
        .collect();
    for output in futures::future::join_all(runs).await {
        let output = output.unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pool = sqlx::PgPool::connect(&env.database_url()).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, kai_common::db::MIGRATOR.iter().count() as i64);
    let vector: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(vector, "pgvector is installed in the schema");
    pool.close().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_release_is_accepted() {
    let env = kai_common::testing::TestEnv::new();
    let url = secrecy::SecretString::from(env.database_url());
    let pool = kai_common::db::connect(&url, 2).await.unwrap();
    kai_common::db::migrate(&pool).await.unwrap();
    // What a later release's migration leaves behind.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', true, '\\x00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    kai_common::db::migrate(&pool)
        .await
        .expect("an older replica restarting keeps running");
    pool.close().await;
    env.cleanup().await;
}

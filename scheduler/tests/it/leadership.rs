//! Leader election across real `kai-scheduler` processes.

use std::time::{Duration, Instant};

use kai_common::testing::TestEnv;

use crate::harness::{Scheduler, metrics_of, single_leader, spawn};

#[tokio::test]
async fn exactly_one_leader_and_a_standby_takes_over_when_it_is_killed() {
    kai_common::tls::install_crypto_provider();
    let env = TestEnv::new();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut a = spawn(&env).await;
    let mut b = spawn(&env).await;
    let mut c = spawn(&env).await;

    let leader = single_leader(&client, &[&a, &b, &c], Duration::from_secs(60)).await;
    // Stable: still the same single leader a little later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        single_leader(&client, &[&a, &b, &c], Duration::from_secs(5)).await,
        leader
    );

    let all = [&mut a, &mut b, &mut c];
    all[leader].child.start_kill().unwrap();
    all[leader].child.wait().await.unwrap();
    let killed_at = Instant::now();
    let survivors: Vec<&Scheduler> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, s)| &**s)
        .collect();
    single_leader(&client, &survivors, Duration::from_secs(5)).await;
    let failover = killed_at.elapsed();
    eprintln!("failover took {failover:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );

    let metrics = metrics_of(&client, survivors[0]).await;
    assert!(metrics.contains("kai_scheduler_is_leader"), "{metrics}");
    for scheduler in [&mut a, &mut b, &mut c] {
        let _ = scheduler.child.start_kill();
    }
    env.cleanup().await;
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_variable() {
    let env = TestEnv::new();
    for (name, value) in [
        ("KAI_LOG_RETENTION_DAYS", "0"),
        ("KAI_EXECUTION_RETENTION_DAYS", "a month"),
        ("KAI_SCHEDULER_ADDR", "nowhere"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kai-scheduler"))
            .envs(env.env_vars())
            .env(name, value)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{name}={value} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    env.cleanup().await;
}

//! Leader election across real `kai-scheduler` processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kai_common::testing::TestEnv;
use serde_json::Value;
use tokio::process::{Child, Command};

struct Scheduler {
    child: Child,
    health: String,
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn spawn(env: &TestEnv) -> Scheduler {
    let port = free_port().await;
    let child = Command::new(env!("CARGO_BIN_EXE_kai-scheduler"))
        .envs(env.env_vars())
        .env("KAI_SCHEDULER_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kai-scheduler starts");
    Scheduler {
        child,
        health: format!("http://127.0.0.1:{port}/health"),
    }
}

/// `Some(is_leader)` once the process answers its health endpoint.
async fn is_leader(client: &reqwest::Client, scheduler: &Scheduler) -> Option<bool> {
    let body: Value = client
        .get(&scheduler.health)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["is_leader"].as_bool()
}

/// Waits until exactly one of `schedulers` leads and returns its index.
async fn single_leader(
    client: &reqwest::Client,
    schedulers: &[&Scheduler],
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let mut leaders = Vec::new();
        let mut answered = 0;
        for (i, s) in schedulers.iter().enumerate() {
            if let Some(leading) = is_leader(client, s).await {
                answered += 1;
                if leading {
                    leaders.push(i);
                }
            }
        }
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if answered == schedulers.len() && leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

    let metrics = client
        .get(survivors[0].health.replace("/health", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kai_scheduler_is_leader"), "{metrics}");
    for scheduler in [&mut a, &mut b, &mut c] {
        let _ = scheduler.child.start_kill();
    }
    env.cleanup().await;
}

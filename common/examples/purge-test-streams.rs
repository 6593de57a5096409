//! Deletes the JetStream streams integration tests left behind (a test that panicked before its
//! cleanup). Run by `scripts/test.sh` before the suite, when no test is running. Only names of
//! the tests' own shape are touched: `T` + 12 hex digits + `_JOBS`, `_DLQ` or `_EVENTS`.

use futures::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    kai_common::tls::install_crypto_provider();
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let mut names = js.stream_names();
    let mut stale = Vec::new();
    while let Some(name) = names.next().await {
        let name = name?;
        if kai_common::testing::is_test_stream(&name) {
            stale.push(name);
        }
    }
    for name in &stale {
        js.delete_stream(name).await?;
    }
    println!("deleted {} stale test streams", stale.len());
    Ok(())
}

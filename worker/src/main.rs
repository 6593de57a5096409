//! `kai-worker`: parse the configuration, then run until SIGTERM drains it.

// mimalloc rather than glibc malloc: allocation was a fifth of ingress CPU with glibc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use kai_worker::config::{Cli, Command};

/// The allocator's own setting (read from the environment when the process starts): how long
/// freed memory is kept for reuse before it goes back to the system. mimalloc keeps it for 10 ms
/// and only gives it back when the thread that freed it allocates again, so after a burst of
/// large payloads an idle worker kept 40-75 MiB (issue 15); at 0 it returns to about 25 MiB,
/// and the drain rate of small jobs is unchanged (docs/BENCHMARKS.md, large payloads).
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Starts this program again with `PURGE_DELAY` at 0 unless the operator set it: the allocator
/// reads its settings before `main`, so they cannot be changed from here otherwise.
fn with_prompt_purging() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return Ok(());
    }
    let error = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "0")
        .exec();
    Err(error)
}

fn main() -> anyhow::Result<()> {
    if let Err(e) = with_prompt_purging() {
        // Not fatal: the worker runs, holding freed memory a little longer.
        eprintln!("kai-worker: could not set {PURGE_DELAY} (running without it): {e}");
    }
    run()
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    kai_common::tls::install_crypto_provider();
    let Cli { command, config } = Cli::parse();
    if let Some(Command::Healthcheck(args)) = &command {
        return kai_common::healthcheck::run(args, config.addr).await;
    }
    let _telemetry = kai_common::telemetry::init("kai-worker")?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    kai_worker::run(config, listener, kai_common::shutdown::on_signal()).await
}

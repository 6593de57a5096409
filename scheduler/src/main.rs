//! `kai-scheduler`: parse the configuration, then campaign for leadership until SIGTERM.

// mimalloc rather than glibc malloc: allocation was a fifth of ingress CPU with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use kai_scheduler::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kai_common::tls::install_crypto_provider();
    let Cli { command, config } = Cli::parse();
    if let Some(Command::Healthcheck(args)) = &command {
        return kai_common::healthcheck::run(args, config.addr).await;
    }
    let _telemetry = kai_common::telemetry::init("kai-scheduler")?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    kai_scheduler::run(config, listener, kai_common::shutdown::on_signal()).await
}

//! `kai-api`: serve the API (default) or apply migrations (`kai-api migrate`).

// mimalloc rather than glibc malloc: allocation was a fifth of ingress CPU with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use kai_api::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kai_common::tls::install_crypto_provider();
    let cli = Cli::parse();
    let _telemetry = kai_common::telemetry::init("kai-api")?;
    let config = cli.config;
    // Refuse to start without required secrets before touching anything.
    config.secrets.resolve(config.common.environment)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let db = kai_common::db::connect(&config.common.database_url, 2).await?;
            kai_common::db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            kai_api::run(config, listener, kai_common::shutdown::on_signal()).await
        }
    }
}

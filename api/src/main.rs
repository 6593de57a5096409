//! `kai-api`: serve the API (default) or apply migrations (`kai-api migrate`).

// mimalloc rather than glibc malloc: allocation was a fifth of ingress CPU with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use kai_api::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kai_common::tls::install_crypto_provider();
    let Cli { command, config } = Cli::parse();
    if let Some(Command::Healthcheck(args)) = &command {
        return kai_common::healthcheck::run(args, config.addr).await;
    }
    let _telemetry = kai_common::telemetry::init("kai-api")?;
    match command {
        // Migrations need no secrets: the chart's migration job gets only the database URL.
        Some(Command::Migrate) => {
            let db = kai_common::db::connect(&config.common.database_url, 2).await?;
            kai_common::db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        // Serving is the default; a healthcheck was answered above.
        Some(Command::Serve | Command::Healthcheck(_)) | None => {
            // Refuse to start without required secrets before touching anything.
            config.secrets.resolve(config.common.environment)?;
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            kai_api::run(config, listener, kai_common::shutdown::on_signal()).await
        }
    }
}

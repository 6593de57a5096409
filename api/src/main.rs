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
        Some(Command::RotateCredentials(args)) => {
            let secrets = config.secrets.resolve(config.common.environment)?;
            let db = kai_common::db::connect(&config.common.database_url, 2).await?;
            kai_common::db::migrate(&db).await?;
            let keys = secrets.key_ring();
            println!(
                "re-encrypting credentials under key {}",
                keys.current_key_id()
            );
            let rotation =
                kai_api::rotate::rotate_credentials(&db, &keys, args.batch_size, |done, total| {
                    println!("  {done} of {total}");
                })
                .await?;
            println!("{} re-encrypted", rotation.resealed);
            for (id, error) in &rotation.failed {
                println!("  credential {id}: {error}");
            }
            anyhow::ensure!(
                rotation.failed.is_empty(),
                "{} credentials could not be decrypted and keep their old encryption",
                rotation.failed.len()
            );
            Ok(())
        }
        Some(Command::RotateWebhookTokens(args)) => {
            let db = kai_common::db::connect(&config.common.database_url, 2).await?;
            kai_common::db::migrate(&db).await?;
            let rotated = kai_api::webhooks::token_rotation::rotate_all(
                &db,
                args.owner,
                args.grace_seconds,
                args.batch_size,
                |done| println!("  {done} rotated"),
            )
            .await?;
            println!(
                "{rotated} webhook tokens rotated; previous tokens valid for {} s",
                args.grace_seconds
            );
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

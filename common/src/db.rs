//! PostgreSQL: connecting (creating the database when it is missing) and applying migrations.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// The SQL migrations in `migrations/`, compiled into every binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// SQLSTATE of `CREATE DATABASE` for a name that exists (another replica won the race).
const DUPLICATE_DATABASE: &str = "42P04";
/// SQLSTATE of a unique violation (two `CREATE DATABASE`s racing on the catalog).
const UNIQUE_VIOLATION: &str = "23505";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(sqlx::Error),
    #[error("could not create the database: {0}")]
    Create(sqlx::Error),
    #[error("could not connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("could not apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Creates the database named in `url` if it does not exist. Safe when several processes race.
pub async fn create_database_if_missing(url: &SecretString) -> Result<(), DbError> {
    let url = url.expose_secret();
    let exists = Postgres::database_exists(url)
        .await
        .map_err(DbError::Create)?;
    if exists {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => {
            tracing::info!("created database");
            Ok(())
        }
        Err(sqlx::Error::Database(e))
            if matches!(
                e.code().as_deref(),
                Some(DUPLICATE_DATABASE | UNIQUE_VIOLATION)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(DbError::Create(e)),
    }
}

/// A pool for `url`, creating the database first when it is missing.
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, DbError> {
    create_database_if_missing(url).await?;
    let options: PgConnectOptions = url.expose_secret().parse().map_err(DbError::InvalidUrl)?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5));
    with_nodelay(pool, &options)
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Pool options that set `TCP_NODELAY` on each new connection to the server of `options`
/// (sqlx 0.9.0 no longer does; see `db_nodelay`).
pub fn with_nodelay(pool: PgPoolOptions, options: &PgConnectOptions) -> PgPoolOptions {
    let Some(port) = tcp_port(options) else {
        return pool;
    };
    pool.after_connect(move |_, _| {
        Box::pin(async move {
            crate::db_nodelay::set_on_connections_to(port);
            Ok(())
        })
    })
}

/// The server's port when `options` connect over TCP (not a Unix socket).
fn tcp_port(options: &PgConnectOptions) -> Option<u16> {
    let unix = options.get_socket().is_some() || options.get_host().starts_with('/');
    (!unix).then(|| options.get_port())
}

/// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while it migrates, so
/// replicas starting together apply each migration once and the others wait.
///
/// A database migrated by a newer release is accepted: during a rolling upgrade an older
/// replica that restarts must keep running (migrations are written to be backward compatible).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut migrator = Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// True when `err` is a unique violation of the named constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(e) => {
            e.code().as_deref() == Some(UNIQUE_VIOLATION) && e.constraint() == Some(constraint)
        }
        _ => false,
    }
}

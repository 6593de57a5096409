//! Leader election among any number of schedulers with a PostgreSQL session advisory lock.
//!
//! The leader holds the lock on a dedicated connection. When the leader process dies its
//! connection closes and PostgreSQL releases the lock at once; a standby polling every
//! `POLL` takes over. If the leader's host vanishes instead, the server's TCP keepalives
//! (set short on this connection) end the session. If the link goes silent without closing (a
//! partition, or a proxy between them that stops forwarding but still acknowledges the packets,
//! so keepalives see nothing wrong), PostgreSQL ends the session once no query came for
//! `SESSION_ENDS_IDLE`, which is longer than the leader takes to step down: the leader checks
//! its connection every `POLL`, gives up on a check unanswered within `CHECK_TIMEOUT`, and so
//! stops leading before PostgreSQL frees the lock for a standby. Whatever a leader emits is
//! idempotent too (deterministic ids), so even an overlap would be harmless.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_secs(1);
/// Longest a lock check (or connecting) may take before the connection counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// PostgreSQL ends an election session that sent no query for this long (`idle_session_timeout`),
/// releasing its lock: a leader cut off from the database has stepped down by then
/// (`POLL + CHECK_TIMEOUT` after its last answered check), a healthy one polls far more often.
const SESSION_ENDS_IDLE: Duration = Duration::from_secs(6);
const _: () = assert!(POLL.as_millis() + CHECK_TIMEOUT.as_millis() < SESSION_ENDS_IDLE.as_millis());

/// Whether this process currently leads; shared with health and the leader's tasks.
#[derive(Clone, Default)]
pub struct Leadership {
    is_leader: Arc<AtomicBool>,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::SeqCst)
    }

    fn set(&self, leading: bool) {
        let was = self.is_leader.swap(leading, Ordering::SeqCst);
        metrics::gauge!("kai_scheduler_is_leader").set(if leading { 1.0 } else { 0.0 });
        if was != leading {
            if leading {
                metrics::counter!("kai_scheduler_leadership_acquired_total").increment(1);
                tracing::info!("became the leader");
            } else {
                tracing::warn!("lost leadership");
            }
        }
    }
}

/// Work only the leader does, started when leadership is gained and cancelled when lost.
pub trait LeaderWork: Send + Sync + 'static {
    fn run(&self, stop: CancellationToken) -> impl Future<Output = ()> + Send;
}

/// Campaigns until `shutdown`, running `work` whenever this process leads.
pub async fn campaign<W: LeaderWork>(
    database_url: SecretString,
    prefix: String,
    leadership: Leadership,
    work: Arc<W>,
    shutdown: CancellationToken,
) {
    let lock_name = format!("kai-scheduler:{prefix}");
    while !shutdown.is_cancelled() {
        let mut conn = match connect(&database_url).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler cannot reach PostgreSQL; retrying");
                sleep_or_stop(&shutdown).await;
                continue;
            }
        };
        hold_or_wait(&mut conn, &lock_name, &leadership, &work, &shutdown).await;
        leadership.set(false);
        // Closing the session releases the lock for a standby right away (bounded: over a
        // silent link the goodbye never arrives, and PostgreSQL ends the idle session itself).
        let _ = tokio::time::timeout(CHECK_TIMEOUT, conn.close()).await;
    }
}

async fn connect(url: &SecretString) -> Result<PgConnection, sqlx::Error> {
    let options: PgConnectOptions = url.expose_secret().parse()?;
    let idle_ms = SESSION_ENDS_IDLE.as_millis().to_string();
    // Short server-side keepalives: if this host disappears, PostgreSQL ends the session (and
    // frees the lock) within about 11 s instead of the kernel's default two hours. A silent
    // link that keepalives cannot see ends the session after `SESSION_ENDS_IDLE`.
    let options = options.options([
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
        ("idle_session_timeout", idle_ms.as_str()),
        ("application_name", "kai-scheduler"),
    ]);
    tokio::time::timeout(CHECK_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "PostgreSQL did not answer the connection in time",
            ))
        })?
}

/// Returns when the connection fails or on shutdown.
async fn hold_or_wait<W: LeaderWork>(
    conn: &mut PgConnection,
    lock_name: &str,
    leadership: &Leadership,
    work: &Arc<W>,
    shutdown: &CancellationToken,
) {
    let mut leader_stop: Option<CancellationToken> = None;
    loop {
        let query = if leader_stop.is_some() {
            // Still alive and still ours? (The lock cannot be lost while the session lives.)
            sqlx::query_scalar::<_, bool>("SELECT true")
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtext($1))")
        };
        let query = if leader_stop.is_some() {
            query
        } else {
            query.bind(lock_name)
        };
        let result = tokio::time::timeout(CHECK_TIMEOUT, query.fetch_one(&mut *conn)).await;
        match result {
            Ok(Ok(true)) if leader_stop.is_none() => {
                leadership.set(true);
                let stop = CancellationToken::new();
                let work = work.clone();
                let token = stop.clone();
                tokio::spawn(async move { work.run(token).await });
                leader_stop = Some(stop);
            }
            Ok(Ok(_)) => {
                if leader_stop.is_none() {
                    leadership.set(false);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election connection failed");
                break;
            }
            Err(_) => {
                tracing::warn!("leader election query timed out");
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(stop) = leader_stop {
        stop.cancel();
    }
}

async fn sleep_or_stop(shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => {}
        _ = shutdown.cancelled() => {}
    }
}

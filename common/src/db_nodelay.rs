//! `TCP_NODELAY` on this process's PostgreSQL connections.
//!
//! sqlx 0.9.0 opens its TCP sockets without it (a regression: transact-rs/sqlx#4335, fixed
//! upstream by #4336 but in no release this project can use yet). Nagle's algorithm then holds
//! the last segment of a statement written in several segments until the server acknowledges
//! the ones before it, and the server delays that acknowledgement by up to 40 ms. The worker's
//! batched writes hit it under load: synchronous webhooks at 16 concurrent callers answered
//! with p99 51 ms, against 14 ms with the same processes talking to PostgreSQL over a Unix
//! socket (docs/BENCHMARKS.md).
//!
//! sqlx does not hand out its socket, so after each new connection this finds the process's
//! TCP sockets to the database's port and sets the option on those that lack it. It reaches
//! them through a duplicate of each descriptor, taken with `pidfd_getfd` on the process itself.
//! Remove this module once a sqlx release sets the option again.

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to `port` that lacks it;
/// returns how many it set. Best effort: where the system refuses (not Linux, a kernel before
/// 5.6, a seccomp profile forbidding `pidfd_getfd`) it sets none and says so once.
#[cfg(target_os = "linux")]
pub fn set_on_connections_to(port: u16) -> usize {
    use rustix::net::sockopt::{set_tcp_nodelay, tcp_nodelay};
    let mut set = 0;
    for_each_tcp_socket(|socket, _, peer| {
        if peer.port() == port
            && tcp_nodelay(socket).is_ok_and(|on| !on)
            && set_tcp_nodelay(socket, true).is_ok()
        {
            set += 1;
        }
    });
    set
}

#[cfg(not(target_os = "linux"))]
pub fn set_on_connections_to(_port: u16) -> usize {
    0
}

/// Calls `visit` with a duplicate of each connected TCP socket of this process, with its local
/// and remote addresses.
#[cfg(target_os = "linux")]
pub(crate) fn for_each_tcp_socket(
    mut visit: impl FnMut(&std::os::fd::OwnedFd, std::net::SocketAddr, std::net::SocketAddr),
) {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    let process = match pidfd_open(getpid(), PidfdFlags::empty()) {
        Ok(process) => process,
        Err(e) => return refused_once(&e),
    };
    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in descriptors.flatten() {
        // Only sockets are worth a system call each.
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed (or reused) since it was listed: the duplicate
        // then fails, or is looked at like any other socket.
        let socket = match pidfd_getfd(&process, fd, PidfdGetfdFlags::empty()) {
            Ok(socket) => socket,
            Err(e) => {
                refused_once(&e);
                continue;
            }
        };
        let address = |found: rustix::io::Result<Option<rustix::net::SocketAddrAny>>| {
            found
                .ok()
                .flatten()
                .and_then(|a| std::net::SocketAddr::try_from(a).ok())
        };
        let local = address(rustix::net::getsockname(&socket).map(Some));
        let peer = address(rustix::net::getpeername(&socket));
        if let (Some(local), Some(peer)) = (local, peer) {
            visit(&socket, local, peer);
        }
    }
}

#[cfg(target_os = "linux")]
fn refused_once(error: &rustix::io::Errno) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(%error, "cannot set TCP_NODELAY on PostgreSQL connections: \
            statements written in several segments may wait up to 40 ms");
    });
}

#[cfg(all(test, feature = "testing", target_os = "linux"))]
mod tests {
    use crate::testing::{TestEnv, addr_of, nodelay_of_local_port};
    use secrecy::SecretString;

    #[tokio::test]
    async fn every_pooled_connection_to_postgresql_has_tcp_nodelay() {
        let env = TestEnv::new();
        assert_eq!(addr_of(&env.database_url()).ip().to_string(), "127.0.0.1");
        let pool = crate::db::connect(&SecretString::from(env.database_url()), 3)
            .await
            .unwrap();
        let mut connections = Vec::new();
        for _ in 0..3 {
            connections.push(pool.acquire().await.unwrap());
        }
        for connection in &mut connections {
            // The server sees the connection's own port (loopback: no address translation).
            let port: i32 = sqlx::query_scalar("SELECT inet_client_port()")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(
                nodelay_of_local_port(port as u16),
                Some(true),
                "the connection from port {port}"
            );
        }
        drop(connections);
        pool.close().await;
        env.cleanup().await;
    }
}

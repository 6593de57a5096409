//! A TCP proxy that simulates a network partition: between a process and a dependency it
//! forwards bytes both ways until told to partition (SIGUSR1), then stops forwarding without
//! closing anything, as a link that drops every packet does: reads and writes on each side
//! simply get no answer, and a connection opened meanwhile is accepted but hears nothing. On
//! SIGUSR2 the partition heals and whatever each side sent meanwhile flows on, as TCP would
//! deliver it once the link is back. How long each peer takes to notice is its own keepalives'
//! and timeouts' business: that is what the fault suite measures with it.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One forwarded address: connections to `listen` are relayed to `upstream`.
#[derive(Debug, Clone)]
pub struct Route {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
}

impl std::str::FromStr for Route {
    type Err = String;

    /// `LISTEN=UPSTREAM`, e.g. `127.0.0.1:25432=127.0.0.1:15432`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (listen, upstream) = value
            .split_once('=')
            .ok_or_else(|| format!("{value:?}: expected LISTEN=UPSTREAM"))?;
        let address = |part: &str| {
            part.parse::<SocketAddr>()
                .map_err(|e| format!("{part:?}: {e} (expected an address such as 127.0.0.1:4222)"))
        };
        Ok(Self {
            listen: address(listen)?,
            upstream: address(upstream)?,
        })
    }
}

/// Serves `routes` until interrupted; SIGUSR1 partitions every route, SIGUSR2 heals them.
pub async fn run(routes: Vec<Route>) -> anyhow::Result<()> {
    let (partitioned, watcher) = watch::channel(false);
    for route in routes {
        let listener = TcpListener::bind(route.listen)
            .await
            .with_context(|| format!("listening on {}", route.listen))?;
        tokio::spawn(accept(listener, route.upstream, watcher.clone()));
    }
    eprintln!("forwarding; SIGUSR1 partitions, SIGUSR2 heals");
    use tokio::signal::unix::{SignalKind, signal};
    let mut cut = signal(SignalKind::user_defined1())?;
    let mut heal = signal(SignalKind::user_defined2())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = cut.recv() => { partitioned.send_replace(true); eprintln!("partitioned"); }
            _ = heal.recv() => { partitioned.send_replace(false); eprintln!("healed"); }
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, partitioned: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let partitioned = partitioned.clone();
        tokio::spawn(async move {
            // A connection opened during a partition reaches its upstream only once it heals.
            if !wait_until_healed(&mut partitioned.clone()).await {
                return;
            }
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                relay(client_read, server_write, partitioned.clone()),
                relay(server_read, client_write, partitioned),
            );
        });
    }
}

/// Copies `from` to `to`, forwarding nothing while partitioned (bytes read just before a
/// partition are held until it heals). Ends at end of stream or an error, closing `to`'s side.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut partitioned: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if !wait_until_healed(&mut partitioned).await {
            return;
        }
        // Reading is cancelled (losing nothing: `read` is cancel-safe) when a partition starts.
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = partitioned.wait_for(|cut| *cut) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if !wait_until_healed(&mut partitioned).await || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while partitioned; `false` when the proxy is going away.
async fn wait_until_healed(partitioned: &mut watch::Receiver<bool>) -> bool {
    partitioned.wait_for(|cut| !*cut).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_as_listen_equals_upstream() {
        let route: Route = "127.0.0.1:1=127.0.0.1:2".parse().unwrap();
        assert_eq!(route.listen.port(), 1);
        assert_eq!(route.upstream.port(), 2);
        assert!("127.0.0.1:1".parse::<Route>().is_err());
        assert!("localhost:1=127.0.0.1:2".parse::<Route>().is_err());
    }

    #[tokio::test]
    async fn a_partition_holds_bytes_without_closing_and_healing_delivers_them() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap();
        let (partitioned, watcher) = watch::channel(false);
        tokio::spawn(accept(listener, upstream_addr, watcher));

        let mut client = TcpStream::connect(proxy_addr).await.unwrap();
        let (mut server, _) = upstream.accept().await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        partitioned.send_replace(true);
        client.write_all(b"held").await.unwrap();
        let wait = std::time::Duration::from_millis(300);
        // Nothing arrives, and the connection stays open (no end of stream either).
        assert!(
            tokio::time::timeout(wait, server.read(&mut got))
                .await
                .is_err()
        );
        partitioned.send_replace(false);
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"held");
    }
}

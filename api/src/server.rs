//! The HTTP server: hyper serving the poem application, each connection's read buffer bounded,
//! its request heads and bodies timed (`ConnectionLimits`), and the connections open at once
//! capped.
//!
//! poem's own `Server` leaves hyper's HTTP/1 read buffer at its default ceiling (about 400 KiB).
//! A connection that has carried a large body keeps that buffer for as long as it stays open, so
//! a few hundred keep-alive connections that sent 1 MiB webhooks held most of the API's memory
//! (issue 15). Serving through hyper directly lets us set the ceiling; everything else (the
//! endpoint, the request's addresses, graceful shutdown with a deadline) is as poem does it.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioTimer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::connection_limits::ConnectionLimits;
use crate::idle_body::IdleTimeoutBody;

/// Ceiling of one HTTP/1 connection's read buffer. A request's head must fit in it (hyper answers
/// 431 otherwise), which 64 KiB leaves ample room for; a body streams through it in pieces of at
/// most this size.
pub const HTTP1_MAX_BUF_BYTES: usize = 64 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `endpoint` on `listener` until `shutdown` is cancelled, then lets open requests finish
/// for up to `grace` before dropping their connections.
pub async fn serve<E>(
    endpoint: E,
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
    limits: &ConnectionLimits,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let endpoint = Arc::new(endpoint);
    let limits = Arc::new(limits.clone());
    // One permit per open connection: at the cap, accepting waits (new connections queue in the
    // kernel's backlog) until one closes.
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let local = listener.local_addr()?;
    let graceful = GracefulShutdown::new();
    // Cancelled when the grace period is over: connections still open are dropped.
    let deadline = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let watcher = graceful.watcher();
        let endpoint = endpoint.clone();
        let deadline = deadline.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = serve_connection(endpoint, stream, local, remote, watcher, &limits) => {
                    if let Err(error) = result {
                        tracing::debug!(%remote, %error, "connection ended with an error");
                    }
                }
                _ = deadline.cancelled() => {}
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "requests still open after the shutdown grace period; closing their connections"
        );
        deadline.cancel();
    }
    Ok(())
}

/// One connection, HTTP/1 or HTTP/2 as the client speaks, until it closes or shutdown has let
/// its open requests finish.
async fn serve_connection<E>(
    endpoint: Arc<E>,
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    watcher: Watcher,
    limits: &ConnectionLimits,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    E: Endpoint + 'static,
{
    let body_idle = limits.body_idle_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let endpoint = endpoint.clone();
        async move {
            let mut request = poem::Request::from((
                request,
                LocalAddr(Addr::SocketAddr(local)),
                RemoteAddr(Addr::SocketAddr(remote)),
                Scheme::HTTP,
            ));
            let body = BoxBody::from(request.take_body());
            request.set_body(poem::Body::from(BoxBody::new(IdleTimeoutBody::new(
                body, body_idle,
            ))));
            let response = endpoint.get_response(request).await;
            Ok::<_, Infallible>(hyper::Response::<BoxBody<Bytes, io::Error>>::from(response))
        }
    });
    // A response written in more than one segment (a head, then a body hyper could not join
    // to it) would otherwise wait for the client's delayed ACK of the first.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(HTTP1_MAX_BUF_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    watcher.watch(connection).await
}

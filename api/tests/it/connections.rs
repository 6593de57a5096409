//! What one client may hold of the server: a request head sent too slowly and a body that
//! stalls are cut off, and connections beyond the cap wait until one closes. Raw TCP, as a slow
//! client would do it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, lone_webhook_workflow};

async fn api(adjust: impl FnOnce(&mut kai_api::connection_limits::ConnectionLimits)) -> TestApp {
    TestApp::spawn_api_only_with(|config| adjust(&mut config.connections)).await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection or `wait` passes (then `None`).
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

/// One response's head and body on a kept-alive connection (its length given).
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&received).into_owned()
    })
    .await
    .ok()
}

#[tokio::test]
async fn a_client_slow_to_send_its_request_head_is_cut_off() {
    let app = api(|limits| limits.header_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: kai\r\n")
        .await
        .unwrap();
    // ...and the blank line that ends the head never comes.
    let answer = read_until_closed(&mut stream, Duration::from_secs(8))
        .await
        .expect("the connection was still open 8 s later");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_fails_its_request_with_408_saying_so() {
    let app = api(|limits| limits.body_idle_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: kai\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\": ",
        )
        .await
        .unwrap();
    let answer = read_response(&mut stream, Duration::from_secs(8))
        .await
        .expect("no answer 8 s after the body stalled");
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // A webhook call's body, read by the ingress's own reader: the same 408.
    let user = app.user("stalled@example.com").await;
    let workflow = app.create_workflow(&user, &lone_webhook_workflow()).await;
    let (url, token) = app
        .webhook_of(&user, workflow["id"].as_str().unwrap())
        .await;
    let path = &url[url.find("/api/").unwrap()..];
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: kai\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\": "
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_response(&mut stream, Duration::from_secs(8))
        .await
        .expect("no answer 8 s after the webhook body stalled");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = api(|limits| limits.max_connections = 1).await;
    let request = b"GET /health HTTP/1.1\r\nHost: kai\r\n\r\n";
    let mut first = connect(&app).await;
    first.write_all(request).await.unwrap();
    let answer = read_response(&mut first, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The first connection stays open: the second is not served...
    let mut second = connect(&app).await;
    second.write_all(request).await.unwrap();
    assert!(
        read_response(&mut second, Duration::from_millis(700))
            .await
            .is_none_or(|answer| answer.is_empty()),
        "a connection beyond the cap was served"
    );
    // ...until the first closes.
    drop(first);
    let answer = read_response(&mut second, Duration::from_secs(5))
        .await
        .expect("the waiting connection was not served after the first closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

/// Accepted connections have Nagle's algorithm off: a response written in pieces is not held
/// back for the client's delayed acknowledgement of the first.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    let app = api(|_| {}).await;
    let mut client = connect(&app).await;
    client
        .write_all(b"GET /health HTTP/1.1\r\nHost: kai\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut client, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The server's end of this connection lives in this process: local port the API's, peer
    // port the client's.
    let server_port = client.peer_addr().unwrap().port();
    let client_port = client.local_addr().unwrap().port();
    assert_eq!(
        kai_common::testing::nodelay_between(server_port, client_port),
        Some(true)
    );
    app.stop().await;
}

//! A fake upstream for outbound-call tests: an echo, redirects, rate limits, a service that is
//! down, bodies of any size or without end, and the endpoints credential tests call (OpenAI's
//! `/models`, Tavily's `/search`, Cohere's `/v1/rerank`, a protected `HEAD`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Query};
use poem::{Body, EndpointExt, IntoResponse, Request, Route, handler};
use serde::Deserialize;
use serde_json::{Value, json};

/// The key and password the fake services accept.
pub const GOOD_KEY: &str = "sk-test-good-key-0123456789abcdef";
pub const GOOD_PASSWORD: &str = "correct-horse-battery-staple";

#[derive(Default)]
pub struct Seen {
    /// Every request the echo received: method, path and query, headers, body.
    pub requests: Mutex<Vec<Value>>,
    pub limited_calls: AtomicU32,
    pub down_calls: AtomicU32,
    pub model_calls: AtomicU32,
}

pub struct Upstream {
    pub base: String,
    pub seen: Arc<Seen>,
}

fn headers_json(headers: &HeaderMap) -> Value {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), json!(v.to_str().unwrap_or_default())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[handler]
async fn echo(request: &Request, body: Body, seen: Data<&Arc<Seen>>) -> poem::Response {
    let body = body.into_string().await.unwrap_or_default();
    let record = json!({
        "method": request.method().as_str(),
        "uri": request.original_uri().to_string(),
        "headers": headers_json(request.headers()),
        "body": body,
    });
    seen.requests.lock().unwrap().push(record.clone());
    poem::web::Json(record).into_response()
}

#[derive(Deserialize)]
struct To {
    to: String,
}

#[handler]
fn redirect(Query(to): Query<To>) -> poem::Response {
    poem::Response::builder()
        .status(StatusCode::FOUND)
        .header("location", to.to)
        .finish()
}

/// 429 with `Retry-After: 1` on the first call, then 200.
#[handler]
fn limited(seen: Data<&Arc<Seen>>) -> poem::Response {
    if seen.limited_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        poem::Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", "1")
            .body("slow down")
    } else {
        poem::web::Json(json!({"ok": true})).into_response()
    }
}

#[handler]
fn down(seen: Data<&Arc<Seen>>) -> poem::Response {
    seen.down_calls.fetch_add(1, Ordering::SeqCst);
    (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response()
}

#[derive(Deserialize)]
struct Size {
    bytes: usize,
}

#[handler]
fn big(Query(size): Query<Size>) -> String {
    "x".repeat(size.bytes)
}

/// A body that never ends.
#[handler]
fn endless() -> Body {
    let chunks = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Some((Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024]), ()))
    });
    Body::from_bytes_stream(chunks)
}

#[handler]
fn with_status(poem::web::Path(code): poem::web::Path<u16>) -> poem::Response {
    (
        StatusCode::from_u16(code).unwrap(),
        format!("status {code}"),
    )
        .into_response()
}

fn bearer_is_good(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {GOOD_KEY}"))
}

fn verdict(good: bool, body: Value) -> poem::Response {
    if good {
        poem::web::Json(body).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "invalid api key").into_response()
    }
}

#[handler]
fn models(headers: &HeaderMap, seen: Data<&Arc<Seen>>) -> poem::Response {
    seen.model_calls.fetch_add(1, Ordering::SeqCst);
    verdict(
        bearer_is_good(headers),
        json!({"object": "list", "data": [{"id": "tiny", "object": "model"}]}),
    )
}

#[handler]
fn search(headers: &HeaderMap) -> poem::Response {
    verdict(bearer_is_good(headers), json!({"results": []}))
}

#[handler]
fn rerank(headers: &HeaderMap) -> poem::Response {
    verdict(
        bearer_is_good(headers),
        json!({"results": [{"index": 0, "relevance_score": 0.9}]}),
    )
}

/// `HEAD` (or `GET`) accepted with basic auth `ada` / `GOOD_PASSWORD`.
#[handler]
fn protected(request: &Request) -> poem::Response {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ada:{GOOD_PASSWORD}"))
    );
    let good = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    let status = if good {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    poem::Response::builder().status(status).finish()
}

impl Upstream {
    /// Serves on `bind` (e.g. `127.0.0.1:0`).
    pub async fn start_on(bind: &str) -> Self {
        let seen = Arc::new(Seen::default());
        let any = || {
            poem::RouteMethod::new()
                .get(echo)
                .post(echo)
                .put(echo)
                .patch(echo)
                .delete(echo)
        };
        let routes = Route::new()
            .at("/echo", any())
            .at("/echo/*rest", any())
            .at("/redirect", poem::get(redirect))
            .at("/limited", poem::get(limited).post(limited))
            .at("/down", poem::get(down).post(down))
            .at("/big", poem::get(big))
            .at("/endless", poem::get(endless))
            .at("/status/:code", poem::get(with_status))
            .at("/v1/models", poem::get(models))
            .at("/search", poem::post(search))
            .at("/v1/rerank", poem::post(rerank))
            .at("/protected", poem::get(protected).head(protected))
            .data(seen.clone());
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
        Self { base, seen }
    }

    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The requests the echo received.
    pub fn echoed(&self) -> Vec<Value> {
        self.seen.requests.lock().unwrap().clone()
    }
}

/// An HTTPS server with a self-signed certificate for 127.0.0.1 (`fixtures/`), answering every
/// request `200 ok`; its URL.
pub async fn self_signed_https() -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    kai_common::tls::install_crypto_provider();
    let certificate =
        CertificateDer::from_pem_slice(include_bytes!("fixtures/self-signed.crt")).unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("fixtures/self-signed.key")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

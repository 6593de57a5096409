//! `https://example.com` and `https://docs.example.com` served locally, so the KAI-Fusion exports
//! that scrape them run unchanged: an HTTPS server whose certificate (`fixtures/example-site.*`)
//! a test CA (`fixtures/example-ca.crt`) signed, reached through the worker's DNS overrides. It
//! records the requests and how many ran at once per host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kai_common::outbound::OutboundConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const HOSTS: &[&str] = &["example.com", "docs.example.com", "www.example.com"];

#[derive(Default)]
pub struct ExampleSite {
    pub addr: Option<SocketAddr>,
    /// `host/path` → (content type, body).
    pages: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// `host/path` of every request, in order.
    requests: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    delay: Mutex<Duration>,
}

impl ExampleSite {
    pub async fn start() -> Arc<Self> {
        kai_common::tls::install_crypto_provider();
        let certificate =
            CertificateDer::from_pem_slice(include_bytes!("fixtures/example-site.crt")).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("fixtures/example-site.key")).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let site = Arc::new(Self {
            addr: Some(listener.local_addr().unwrap()),
            ..Self::default()
        });
        let serving = site.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, site) = (acceptor.clone(), serving.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(socket).await {
                        site.answer(tls).await;
                    }
                });
            }
        });
        site
    }

    /// Serves `body` at `https://{host_path}` (e.g. `docs.example.com/guide`).
    pub fn page(&self, host_path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        self.pages
            .lock()
            .unwrap()
            .insert(host_path.to_owned(), (content_type.to_owned(), body.into()));
    }

    /// Each answer waits this long first (to see concurrency).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Outbound settings that reach this site for its host names and trust its CA, and allow
    /// the tests' other loopback servers.
    pub fn outbound(&self) -> OutboundConfig {
        let mut config = OutboundConfig::allowing("127.0.0.1")
            .trusting(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/fixtures/example-ca.crt"
            ))
            .unwrap();
        config.resolve_overrides = HOSTS
            .iter()
            .map(|host| ((*host).to_owned(), self.addr.unwrap()))
            .collect();
        config
    }

    async fn answer(&self, mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
            match tls.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request).into_owned();
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let host = text
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("host")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        let host = host.split(':').next().unwrap_or_default().to_owned();
        let key = format!("{host}{path}");
        self.requests.lock().unwrap().push(key.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let page = self.pages.lock().unwrap().get(&key).cloned();
        let (status, content_type, body) = match page {
            Some((content_type, body)) => ("200 OK", content_type, body),
            None => (
                "404 Not Found",
                "text/plain".to_owned(),
                b"not found".to_vec(),
            ),
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        );
        let _ = tls.write_all(head.as_bytes()).await;
        let _ = tls.write_all(&body).await;
        let _ = tls.shutdown().await;
    }
}

/// A page of `paragraphs` paragraphs about `topic`, with navigation and a script to strip.
pub fn article(title: &str, topic: &str, paragraphs: usize) -> String {
    let body: String = (0..paragraphs)
        .map(|i| {
            format!(
                "<p>Paragraph {i} about {topic}: the {topic} guide explains step {i} in detail, \
                 with enough words to make a chunk of its own when split.</p>"
            )
        })
        .collect();
    format!(
        "<html><head><title>{title}</title><script>tracking()</script></head><body>\
         <nav>Home | Blog | Contact</nav><main><h1>{title}</h1>{body}</main>\
         <footer>Copyright Example</footer></body></html>"
    )
}

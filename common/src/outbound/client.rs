//! The one HTTP client for URLs a workflow author controls: every address a host name resolves
//! to is checked by the SSRF guard (all of them must pass, so a name that answers with a public
//! and an internal address is refused), IP literals in any notation are checked before the
//! request, every redirect (at most 5) is checked again, and proxies from the environment are
//! ignored so a request cannot be routed around the guard.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::guard::{AllowedHosts, Refused};

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 5;

/// Why a URL may not be fetched at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("`{0}` URLs are not fetched; only http and https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
}

/// A `reqwest::Client` behind the SSRF guard.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    allowed: Arc<AllowedHosts>,
}

impl GuardedClient {
    /// Builds the guarded client from `builder` (timeouts, TLS settings), replacing its DNS
    /// resolver, redirect policy and proxies.
    pub fn new(allowed: AllowedHosts, builder: reqwest::ClientBuilder) -> reqwest::Result<Self> {
        Self::with_overrides(allowed, Vec::new(), builder)
    }

    /// The same, with host names answered by fixed addresses instead of DNS (tests serve
    /// `example.com` locally this way); those addresses are checked by the guard all the same.
    pub fn with_overrides(
        allowed: AllowedHosts,
        overrides: Vec<(String, SocketAddr)>,
        builder: reqwest::ClientBuilder,
    ) -> reqwest::Result<Self> {
        let allowed = Arc::new(allowed);
        let redirects = allowed.clone();
        let client = builder
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: allowed.clone(),
                overrides: Arc::new(overrides),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match check_url(&redirects, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refusal) => attempt.error(refusal),
                }
            }))
            .build()?;
        Ok(Self { client, allowed })
    }

    /// Whether `url` may be fetched before any connection is made: its scheme, and its host when
    /// it is an IP address (names are checked as they resolve).
    pub fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        check_url(&self.allowed, url)
    }

    /// The client, for requests whose URL passed [`Self::check_url`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

fn check_url(allowed: &AllowedHosts, url: &Url) -> Result<(), GuardError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(GuardError::Scheme(url.scheme().to_owned()));
    }
    // The URL parser has already read every IPv4 notation (`2130706433`, `0x7f.1`) as the
    // address it means.
    match url.host().ok_or(GuardError::NoHost)? {
        Host::Ipv4(address) => Ok(allowed.check(&address.to_string(), address.into())?),
        Host::Ipv6(address) => Ok(allowed.check(&address.to_string(), address.into())?),
        Host::Domain(_) => Ok(()),
    }
}

/// The refusal behind a failed request, when the guard refused it.
pub fn refusal_of<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        if let Some(GuardError::Refused(refused)) = error.downcast_ref::<GuardError>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

struct GuardedResolver {
    allowed: Arc<AllowedHosts>,
    overrides: Arc<Vec<(String, SocketAddr)>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let overrides = self.overrides.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let fixed: Vec<SocketAddr> = overrides
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(&host))
                .map(|(_, address)| *address)
                .collect();
            let addresses: Vec<SocketAddr> = if fixed.is_empty() {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                fixed
            };
            for address in &addresses {
                allowed.check(&host, address.ip())?;
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on `bind` answering every request with `response`.
    async fn serve(bind: &str, response: String) -> SocketAddr {
        let listener = TcpListener::bind(bind).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        address
    }

    fn ok() -> String {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned()
    }

    fn redirect_to(location: &str) -> String {
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n"
        )
    }

    fn guarded(allowed: &str) -> GuardedClient {
        crate::tls::install_crypto_provider();
        GuardedClient::new(allowed.parse().unwrap(), reqwest::Client::builder()).unwrap()
    }

    /// Fetches `url` through the guard as a node would: the URL checked, then requested.
    async fn fetch(client: &GuardedClient, url: &str) -> Result<String, String> {
        let url = Url::parse(url).unwrap();
        client.check_url(&url).map_err(|e| e.to_string())?;
        let response = client.client().get(url).send().await;
        match response {
            Ok(response) => Ok(response.text().await.unwrap()),
            Err(error) => Err(match refusal_of(&error) {
                Some(refused) => refused.to_string(),
                None => format!("not the guard: {error:?}"),
            }),
        }
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_in_any_notation_naming_the_host_and_rule() {
        let client = guarded("");
        for (url, names) in [
            ("http://127.0.0.1/", "loopback"),
            ("http://2130706433/", "loopback"),
            ("http://0x7f.1/", "loopback"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://[::1]/", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://10.1.2.3/", "private"),
            ("http://0.0.0.0/", "unspecified"),
        ] {
            let refusal = fetch(&client, url).await.unwrap_err();
            assert!(
                refusal.starts_with("the SSRF guard refused"),
                "{url}: {refusal}"
            );
            assert!(refusal.contains(names), "{url}: {refusal}");
        }
        let scheme = fetch(&client, "file:///etc/passwd").await.unwrap_err();
        assert!(scheme.contains("only http and https"), "{scheme}");
    }

    #[tokio::test]
    async fn a_host_name_is_checked_after_it_resolves() {
        let server = serve("127.0.0.1:0", ok()).await;
        let refusal = fetch(
            &guarded(""),
            &format!("http://localhost:{}/", server.port()),
        )
        .await
        .unwrap_err();
        assert!(
            refusal.starts_with("the SSRF guard refused localhost"),
            "{refusal}"
        );
        assert!(refusal.contains("loopback"), "{refusal}");
        let by_name = guarded("localhost");
        let allowed = fetch(&by_name, &format!("http://localhost:{}/", server.port())).await;
        assert_eq!(allowed.unwrap(), "ok", "an operator allowed it by name");
        let by_network = guarded("127.0.0.0/8");
        let allowed = fetch(&by_network, &format!("http://{server}/")).await;
        assert_eq!(allowed.unwrap(), "ok", "or by network");
    }

    #[tokio::test]
    async fn an_allowed_host_that_redirects_inside_is_refused_at_the_redirect() {
        let inside = serve("127.0.0.1:0", ok()).await;
        // The allowed server (127.0.0.2, allowed by address) sends the caller to 127.0.0.1,
        // and then to a name that resolves there.
        for location in [
            format!("http://{inside}/"),
            format!("http://localhost:{}/", inside.port()),
        ] {
            let redirector = serve("127.0.0.2:0", redirect_to(&location)).await;
            let refusal = fetch(&guarded("127.0.0.2"), &format!("http://{redirector}/"))
                .await
                .unwrap_err();
            assert!(
                refusal.starts_with("the SSRF guard refused"),
                "{location}: {refusal}"
            );
            assert!(refusal.contains("loopback"), "{location}: {refusal}");
        }
        // Allowed all the way, the redirect is followed.
        let redirector = serve("127.0.0.2:0", redirect_to(&format!("http://{inside}/"))).await;
        let both = guarded("127.0.0.2, 127.0.0.1");
        let followed = fetch(&both, &format!("http://{redirector}/")).await;
        assert_eq!(followed.unwrap(), "ok");
    }

    #[tokio::test]
    async fn redirects_stop_after_five() {
        // A server redirecting to itself for ever.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let looping = serve(
            &address.to_string(),
            redirect_to(&format!("http://{address}/")),
        )
        .await;
        let error = fetch(&guarded("127.0.0.1"), &format!("http://{looping}/"))
            .await
            .unwrap_err();
        assert!(error.contains("more than 5 redirects"), "{error}");
    }
}

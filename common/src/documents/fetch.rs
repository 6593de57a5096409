//! Fetching pages for the scraper and loader: through the SSRF-guarded client (every address,
//! every redirect), at most two requests at a time per host, robots.txt honoured unless the
//! author turns it off, transient failures (no answer, 429, 5xx) retried with a doubling
//! pause, answers bounded by `KAI_HTTP_MAX_RESPONSE_BYTES`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::{OnceCell, Semaphore};
use url::Url;

use super::robots::RobotsRules;
use crate::outbound::auth::Auth;
use crate::outbound::call::{self, CallError, HttpAnswer, HttpCall, Outbound, Oversize};

/// Requests in flight to one host at once.
pub const PER_HOST: usize = 2;

#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub user_agent: String,
    pub timeout: Duration,
    /// Further attempts after a transient failure.
    pub retries: u32,
    pub respect_robots: bool,
    /// Pause before the first retry (doubling after).
    pub backoff: Duration,
}

/// Why a page was not fetched. Messages name the page's URL only without its query (it may carry
/// a token).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// The SSRF guard refused it, or it is not an http(s) URL.
    #[error("refused: {0}")]
    Refused(String),
    #[error("robots.txt: {0}")]
    Robots(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("{0}")]
    Failed(String),
}

/// Fetches pages for one run (its robots.txt answers and host limits are kept for the run).
pub struct Fetcher {
    outbound: Outbound,
    settings: FetchSettings,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    robots: Mutex<HashMap<String, Arc<OnceCell<Arc<RobotsRules>>>>>,
}

impl Fetcher {
    pub fn new(outbound: Outbound, settings: FetchSettings) -> Self {
        Self {
            outbound,
            settings,
            hosts: Mutex::default(),
            robots: Mutex::default(),
        }
    }

    /// `url`'s answer (2xx), after robots.txt allowed it.
    pub async fn fetch(&self, url: &str) -> Result<HttpAnswer, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::Refused(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Refused(
                "only http and https URLs are fetched".into(),
            ));
        }
        self.outbound
            .client(true)
            .check_url(&url)
            .map_err(|e| FetchError::Refused(e.to_string()))?;
        if self.settings.respect_robots {
            self.robots_of(&url)
                .await
                .check(url.as_str())
                .map_err(FetchError::Robots)?;
        }
        let answer = self.get(&url).await?;
        if !(200..300).contains(&answer.status) {
            return Err(FetchError::Status(answer.status));
        }
        Ok(answer)
    }

    /// The site's robots.txt rules, fetched once per run.
    async fn robots_of(&self, url: &Url) -> Arc<RobotsRules> {
        let origin = url.origin().ascii_serialization();
        let cell = self
            .robots
            .lock()
            .expect("robots cache")
            .entry(origin.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let robots_url = match Url::parse(&format!("{origin}/robots.txt")) {
                Ok(url) => url,
                Err(e) => return Arc::new(RobotsRules::DisallowAll(e.to_string())),
            };
            Arc::new(match self.get(&robots_url).await {
                Ok(answer) => RobotsRules::from_answer(answer.status, &answer.body),
                Err(error) => RobotsRules::DisallowAll(error.to_string()),
            })
        })
        .await
        .clone()
    }

    /// One GET, with the host's limit and the retries; any status is an answer.
    async fn get(&self, url: &Url) -> Result<HttpAnswer, FetchError> {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(0)
        );
        let permits = self
            .hosts
            .lock()
            .expect("host limits")
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_HOST)))
            .clone();
        let request = HttpCall {
            method: Method::GET,
            url: url.clone(),
            headers: vec![
                ("user-agent".into(), self.settings.user_agent.clone()),
                (
                    "accept".into(),
                    "text/html,application/xhtml+xml,text/plain,text/markdown,application/pdf;q=0.9,*/*;q=0.5"
                        .into(),
                ),
            ],
            query: Vec::new(),
            body: None,
            content_type: None,
            auth: Auth::None,
            timeout: self.settings.timeout,
            verify_tls: true,
        };
        let mut pause = self.settings.backoff;
        let mut attempt = 0;
        loop {
            let outcome = {
                let _permit = permits.acquire().await.expect("never closed");
                call::send(
                    &self.outbound,
                    &request,
                    self.outbound.max_response_bytes,
                    Oversize::Fail,
                )
                .await
            };
            let transient = match &outcome {
                Ok(answer) => answer.status == 429 || answer.status >= 500,
                Err(error) => matches!(error, CallError::Timeout(_) | CallError::Network(_)),
            };
            if !transient || attempt >= self.settings.retries {
                return outcome.map_err(|error| match error {
                    error if error.is_refusal() => FetchError::Refused(error.to_string()),
                    error => FetchError::Failed(error.to_string()),
                });
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
}

/// `url` without its query and fragment, for messages and metadata.
pub fn display_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

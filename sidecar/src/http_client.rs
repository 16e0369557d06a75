//! The sidecar's HTTP client for the broadcaster's admin API and zero-code scrapes: HTTP/1.1
//! on the hyper stack that kube's client already links (hyper-util's pooled client, rustls
//! with the system's roots for an `https://` URL), so the binary carries one HTTP client
//! stack, not two, and no HTTP/2 client (each is code kept resident; see README "Steady RSS").
//! Proxies are not used (the URLs are the pod's own loopback); GET follows redirects, as
//! browsers and Prometheus do.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, LOCATION};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Redirects a GET follows before giving up.
const MAX_REDIRECTS: usize = 10;
/// The client for `https://` URLs.
type TlsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request got no answer (or a body that could not be read).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL {url:?}")]
    Url {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error("cannot use the system's CA certificates for {url}: {why}")]
    Roots { url: String, why: String },
    #[error("error sending request for url ({url})")]
    Send {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("error reading the answer from {url}")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("too many redirects (more than {MAX_REDIRECTS}) from {url}")]
    Redirects { url: String },
}

/// A pooled HTTP/1.1 client.
#[derive(Debug)]
pub struct HttpClient {
    idle_per_host: usize,
    plain: Client<HttpConnector, Empty<Bytes>>,
    /// Built at the first `https://` request: loading the system's CA certificates costs
    /// memory that plain loopback URLs never need.
    tls: OnceLock<Result<TlsClient, String>>,
}

/// An answer whose body has not been read yet.
pub struct Response {
    url: String,
    inner: http::Response<hyper::body::Incoming>,
}

impl HttpClient {
    /// A client keeping at most `idle_per_host` idle connections. An `https://` URL uses the
    /// system's CA certificates, loaded at its first use.
    pub fn new(idle_per_host: usize) -> Self {
        HttpClient {
            idle_per_host,
            plain: builder(idle_per_host).build(connector()),
            tls: OnceLock::new(),
        }
    }

    fn tls(&self) -> Result<&TlsClient, &str> {
        self.tls
            .get_or_init(|| {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| e.to_string())?
                    .https_only()
                    .enable_http1()
                    .wrap_connector(connector());
                Ok(builder(self.idle_per_host).build(https))
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// `GET url` with an `Accept` header, following redirects.
    pub async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response, ClientError> {
        let mut url = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send(Method::GET, &url, accept).await?;
            match redirect_target(&url, resp.inner.status(), resp.inner.headers()) {
                Some(next) => url = next,
                None => return Ok(resp),
            }
        }
        Err(ClientError::Redirects { url })
    }

    /// `POST url` without a body.
    pub async fn post(&self, url: &str) -> Result<Response, ClientError> {
        self.send(Method::POST, url, None).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, ClientError> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(accept) = accept {
            req = req.header(http::header::ACCEPT, accept);
        }
        let req = req.body(Empty::new()).map_err(|source| ClientError::Url {
            url: url.to_owned(),
            source,
        })?;
        let sent = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            let tls = self.tls().map_err(|why| ClientError::Roots {
                url: url.to_owned(),
                why: why.to_owned(),
            })?;
            tls.request(req).await
        } else {
            self.plain.request(req).await
        };
        let inner = sent.map_err(|source| ClientError::Send {
            url: url.to_owned(),
            source,
        })?;
        Ok(Response {
            url: url.to_owned(),
            inner,
        })
    }
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap<HeaderValue> {
        self.inner.headers()
    }

    /// The `Content-Length` the answer declares, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.inner
            .headers()
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// The body, cut at `max` bytes (the rest is not read).
    pub async fn read_limited(self, max: usize) -> Result<Vec<u8>, ClientError> {
        let url = self.url;
        let mut body = self.inner.into_body();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(|source| ClientError::Body {
                url: url.clone(),
                source,
            })?;
            if let Ok(chunk) = frame.into_data() {
                let room = max - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
        Ok(out)
    }
}

/// Where a redirect answer points, resolved against `url`; `None` when it is no redirect.
fn redirect_target(url: &str, status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get(LOCATION)?.to_str().ok()?;
    if location.contains("://") {
        return Some(location.to_owned());
    }
    let base: Uri = url.parse().ok()?;
    let origin = format!("{}://{}", base.scheme_str()?, base.authority()?);
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{origin}{dir}/{location}"))
}

/// TCP for both clients: no Nagle delay on small requests (as reqwest had it); any scheme,
/// because the TLS connector hands its `https://` URLs to it (`send` routes by scheme).
fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.enforce_http(false);
    c
}

fn builder(idle_per_host: usize) -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_max_idle_per_host(idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new());
    b
}

#[cfg(test)]
mod tests;

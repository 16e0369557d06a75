//! `http(s)://...`: polls a GTFS-realtime URL every poll interval with a conditional GET
//! (`If-None-Match` / `If-Modified-Since` from the last answer's `ETag` / `Last-Modified`), so
//! an unchanged feed costs a 304 and is not re-broadcast.
//!
//! What agencies serve: `Content-Encoding: gzip` (decoded), protobuf or octet-stream content
//! types (or none), redirects (followed, at most 10), slow answers (bounded by a timeout of
//! the poll interval, 1..=30 s), huge ones (bounded by the feed size limit, counted after
//! decompression). An answer whose content type is HTML, text, JSON or XML is an error page
//! (often with status 200): refused whole, with the start of its text in the error.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};

use super::{Ingest, SourceError};
use crate::pipeline::prepare::MAX_FEED_BYTES;

#[async_backtrace::framed]
pub async fn run(url: String, poll_interval: Duration, ingest: Ingest) {
    let timeout = poll_interval.clamp(Duration::from_secs(1), Duration::from_secs(30));
    let client = match client(timeout) {
        Ok(c) => c,
        Err(e) => {
            ingest.error(&SourceError::Request {
                url,
                reason: format!("cannot build HTTP client: {e}"),
            });
            return;
        }
    };
    let mut validators = Validators::default();
    let mut ticker = tokio::time::interval(poll_interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match poll_once(&client, &url, &mut validators).await {
            Ok(Some(body)) => ingest.push(body),
            Ok(None) => {
                ingest
                    .stats()
                    .not_modified
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => ingest.error(&e),
        }
    }
}

const MAX_REDIRECTS: usize = 10;
/// Bytes of an error body kept in the error message.
const ERROR_EXCERPT: usize = 160;
/// What we ask for: the types agencies serve GTFS-realtime as.
const ACCEPTED: &str = "application/x-protobuf, application/protobuf, application/x-google-protobuf, application/octet-stream;q=0.9, */*;q=0.1";

/// Content types that are never a protobuf feed: error pages and API errors.
fn is_text_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
}

/// The first bytes of a body, as text for an error message.
async fn excerpt(response: reqwest::Response) -> String {
    let body = response.bytes().await.unwrap_or_default();
    let head = &body[..body.len().min(ERROR_EXCERPT)];
    String::from_utf8_lossy(head)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The source's HTTP client: gzip, at most 10 redirects, `timeout` for a whole answer.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("transit-broadcaster/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .gzip(true)
        .build()
}

/// The last answer's cache validators.
#[derive(Debug, Default, Clone)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// One conditional GET. `Ok(None)`: not modified.
pub async fn poll_once(
    client: &reqwest::Client,
    url: &str,
    validators: &mut Validators,
) -> Result<Option<Bytes>, SourceError> {
    let mut request = client.get(url).header(ACCEPT, ACCEPTED);
    if let Some(etag) = &validators.etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(lm) = &validators.last_modified {
        request = request.header(IF_MODIFIED_SINCE, lm);
    }
    let request_error = |e: reqwest::Error| SourceError::Request {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let mut response = request.send().await.map_err(request_error)?;
    match response.status() {
        StatusCode::NOT_MODIFIED => return Ok(None),
        StatusCode::OK => {}
        other => {
            return Err(SourceError::Status {
                url: url.to_string(),
                status: other.as_u16(),
                body: excerpt(response).await,
            });
        }
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if is_text_type(&content_type) {
        return Err(SourceError::NotAFeed {
            url: url.to_string(),
            content_type,
            body: excerpt(response).await,
        });
    }
    if let Some(len) = response.content_length()
        && len > MAX_FEED_BYTES as u64
    {
        return Err(SourceError::Oversize {
            size: len,
            max: MAX_FEED_BYTES,
        });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(String::from)
    };
    let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_FEED_BYTES {
            return Err(SourceError::Oversize {
                size: (body.len() + chunk.len()) as u64,
                max: MAX_FEED_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    // Only remember validators of a body we actually took.
    validators.etag = etag;
    validators.last_modified = last_modified;
    Ok(Some(body.freeze()))
}

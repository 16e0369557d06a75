//! `http(s)://...`: polls a GTFS-realtime URL every poll interval with a conditional GET
//! (`If-None-Match` / `If-Modified-Since` from the last answer's `ETag` / `Last-Modified`), so
//! an unchanged feed costs a 304 and is not re-broadcast.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use super::{Ingest, SourceError};
use crate::feed::MAX_FEED_BYTES;

#[async_backtrace::framed]
pub async fn run(url: String, poll_interval: Duration, ingest: Ingest) {
    let timeout = poll_interval.clamp(Duration::from_secs(1), Duration::from_secs(30));
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("transit-broadcaster/", env!("CARGO_PKG_VERSION")))
        .build()
    {
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
    let mut request = client.get(url);
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
            });
        }
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

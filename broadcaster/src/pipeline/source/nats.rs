//! `nats://host:port/subject`: each NATS message on the subject is one encoded `FeedMessage`.
//! Connects with retries (the server may start after us); async-nats reconnects and
//! resubscribes by itself after that.

use std::time::Duration;

use futures::StreamExt;

use super::{Ingest, SourceError};

#[async_backtrace::framed]
pub async fn run(server: String, subject: String, ingest: Ingest) {
    // The server string may carry credentials from a Secret: only the redacted form is ever
    // logged or reported.
    let shown = redact_userinfo(&server);
    let mut delay = Duration::from_millis(100);
    loop {
        let client = match async_nats::ConnectOptions::new()
            .name("transit-broadcaster")
            .connection_timeout(Duration::from_secs(5))
            .connect(server.as_str())
            .await
        {
            Ok(client) => client,
            Err(e) => {
                ingest.error(&SourceError::Connect {
                    target: format!("nats://{shown}"),
                    reason: e.to_string(),
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        let mut subscription = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                ingest.error(&SourceError::Connect {
                    target: format!("nats://{shown}/{subject}"),
                    reason: e.to_string(),
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(server = %shown, %subject, "nats source subscribed");
        while let Some(message) = subscription.next().await {
            ingest.push(message.payload);
        }
        ingest.error(&SourceError::Connect {
            target: format!("nats://{shown}/{subject}"),
            reason: "subscription ended; reconnecting".into(),
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `user:password@host:port` → `user:***@host:port`; `token@host` → `***@host`.
pub fn redact_userinfo(server: &str) -> String {
    match server.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => server.to_string(),
    }
}

#[cfg(test)]
mod tests;

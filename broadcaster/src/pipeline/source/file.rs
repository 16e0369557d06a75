//! `file:///path`: replays a recording, a sequence of length-delimited `FeedMessage`s (each
//! preceded by its protobuf varint length), at `--replay-rate` messages per second, optionally
//! looping. A frame longer than the feed size limit is skipped with an error; a corrupt or
//! truncated recording stops the replay with an error naming the byte offset.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::{Ingest, SourceError};
use crate::pipeline::prepare::MAX_FEED_BYTES;

/// One step of reading a recording.
#[derive(Debug)]
pub enum Frame {
    Message(Bytes),
    /// A frame too large to take; its bytes were skipped.
    Oversize(u64),
    End,
}

/// Reads length-delimited frames, tracking the byte offset for error messages.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    offset: u64,
    path: String,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, path: impl Into<String>) -> Self {
        Self {
            reader,
            offset: 0,
            path: path.into(),
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> SourceError {
        SourceError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            reason: reason.into(),
        }
    }

    pub async fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let frame_start = self.offset;
        let mut len: u64 = 0;
        for shift in (0..).step_by(7) {
            if shift > 63 {
                return Err(self.corrupt("length prefix is not a valid varint"));
            }
            let mut byte = [0u8; 1];
            let n = self
                .reader
                .read(&mut byte)
                .await
                .map_err(|e| SourceError::Io {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
            if n == 0 {
                if shift == 0 {
                    return Ok(Frame::End);
                }
                return Err(self.corrupt("recording ends inside a length prefix"));
            }
            self.offset += 1;
            len |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_FEED_BYTES as u64 {
            let skipped =
                tokio::io::copy(&mut (&mut self.reader).take(len), &mut tokio::io::sink())
                    .await
                    .map_err(|e| SourceError::Io {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })?;
            self.offset += skipped;
            if skipped < len {
                return Err(SourceError::Corrupt {
                    path: self.path.clone(),
                    offset: frame_start,
                    reason: format!("frame of {len} bytes is truncated after {skipped}"),
                });
            }
            return Ok(Frame::Oversize(len));
        }
        let mut buf = vec![0u8; len as usize];
        match self.reader.read_exact(&mut buf).await {
            Ok(_) => {
                self.offset += len;
                Ok(Frame::Message(Bytes::from(buf)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(SourceError::Corrupt {
                path: self.path.clone(),
                offset: frame_start,
                reason: format!("frame of {len} bytes is truncated"),
            }),
            Err(e) => Err(SourceError::Io {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Appends one length-delimited frame to `out` (the recording format).
pub fn encode_frame(message: &[u8], out: &mut Vec<u8>) {
    prost::encoding::encode_varint(message.len() as u64, out);
    out.extend_from_slice(message);
}

#[async_backtrace::framed]
pub async fn run(path: PathBuf, rate: f64, looping: bool, ingest: Ingest) {
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut ticker = period.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        match replay_once(&path, &mut ticker, &ingest).await {
            Ok(0) => {
                ingest.error(&SourceError::Corrupt {
                    path: path.display().to_string(),
                    offset: 0,
                    reason: "recording holds no messages".into(),
                });
                return;
            }
            Ok(n) => tracing::info!(path = %path.display(), messages = n, "replay finished"),
            Err(e) => {
                ingest.error(&e);
                return;
            }
        }
        if !looping {
            return;
        }
    }
}

async fn replay_once(
    path: &Path,
    ticker: &mut Option<tokio::time::Interval>,
    ingest: &Ingest,
) -> Result<u64, SourceError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| SourceError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut frames = FrameReader::new(BufReader::new(file), path.display().to_string());
    let mut sent = 0u64;
    loop {
        match frames.next_frame().await? {
            Frame::End => return Ok(sent),
            Frame::Oversize(size) => ingest.error(&SourceError::Oversize {
                size,
                max: MAX_FEED_BYTES,
            }),
            Frame::Message(bytes) => {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                } else {
                    // As fast as possible, but let the dispatchers run.
                    tokio::task::yield_now().await;
                }
                ingest.push(bytes);
                sent += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;

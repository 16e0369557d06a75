//! Reading the processes' log files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The last `lines` lines of a file (lossy UTF-8), at most the last 64 KiB of it.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The first line of a JSON log (`--log-format json`) whose message contains `needle`: its
/// timestamp (ms since the epoch) and message.
pub fn find_log(path: &Path, needle: &str) -> Option<(u64, String)> {
    find_log_after(path, needle, 0)
}

/// Like [`find_log`], the first matching line logged at or after `after_ms`.
pub fn find_log_after(path: &Path, needle: &str, after_ms: u64) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let msg = v["fields"]["message"].as_str()?;
        if !msg.contains(needle) {
            return None;
        }
        let ts: jiff::Timestamp = v["timestamp"].as_str()?.parse().ok()?;
        let ms = ts.as_millisecond() as u64;
        (ms >= after_ms).then(|| (ms, line.to_string()))
    })
}

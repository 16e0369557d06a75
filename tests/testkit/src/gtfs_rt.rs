//! `shared/gtfs-rt/`, real agencies' GTFS-realtime captures (`recording.bin`, `feeds/`, `bad/`).

use std::path::{Path, PathBuf};

/// The captures: `STALLWATCH_GTFS_RT_DIR`, else `shared/gtfs-rt` beside `from` or one of its
/// ancestors (a worktree sits deeper than the main clone). `None` when it is nowhere; the
/// caller says what it skips.
pub fn dir(from: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STALLWATCH_GTFS_RT_DIR") {
        return Some(dir.into());
    }
    from.ancestors()
        .map(|a| a.join("shared/gtfs-rt"))
        .find(|d| d.join("recording.bin").is_file())
}

/// Every file in `dir`, sorted by path, with its contents.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

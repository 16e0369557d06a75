//! Loopback ports for child servers.
//!
//! A port is chosen here, released, and bound again a moment later by a child process, so
//! anything that grabs it in between makes the child fail with "Address already in use". Two
//! things did: the kernel's own ephemeral ports (every outgoing connection of a test takes
//! one, and `bind(:0)` draws from the same range), and another test of the same process being
//! handed the same port. So ports come from below the ephemeral range, chosen at random, and a
//! process never hands out the same port twice. Test binaries run one after another, so the
//! process-wide record covers every concurrent caller.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port handed out: clear of the well-known and most registered service ports.
const LOWEST: u16 = 10_000;
/// Linux's default ephemeral range starts here (when `/proc` cannot be read).
const DEFAULT_EPHEMERAL_START: u16 = 32_768;
/// Random picks before giving up and letting the kernel choose.
const TRIES: u32 = 1_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port, from below the kernel's ephemeral range, never the same twice in one
/// process. Falls back to a kernel-chosen port if that range is exhausted or absent.
pub fn free_port() -> u16 {
    let end = ephemeral_start();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    if end > LOWEST {
        let span = u64::from(end - LOWEST);
        let random = RandomState::new();
        for attempt in 0..TRIES {
            let port = LOWEST + (random.hash_one(attempt) % span) as u16;
            if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return port;
            }
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port");
    handed_out.insert(port);
    port
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A loopback port whose server accepts connections and never answers (it holds them open):
/// a hung HTTP API, so a caller's request waits for its whole timeout. The listener lives on a
/// thread of its own until the process ends.
pub fn hung_http_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = listener
        .local_addr()
        .expect("a bound listener's address")
        .port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

#[cfg(test)]
mod tests;

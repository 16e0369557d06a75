//! Loopback ports for child servers.

use std::net::TcpListener;

/// A free loopback port: bound to :0, then released (good enough for a child server that
/// binds it right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

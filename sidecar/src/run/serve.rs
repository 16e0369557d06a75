//! Binding the listeners and serving a router on each until shutdown, and what can go wrong
//! doing so.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ingest::{IngestAddr, IngestAddrError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    IngestAddr(#[from] IngestAddrError),
    #[error("cannot parse {what} address {addr:?}")]
    Addr { what: &'static str, addr: String },
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// Where the ingest listener ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestBound {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Resolves once the sidecar is shut down (`Running::shutdown`); every server and task holds
/// a clone.
#[derive(Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    pub(super) fn new() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    pub(crate) async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Bind `addr` and say where it ended up (port 0 picks one).
pub(super) async fn bind(
    what: &'static str,
    addr: &str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let parsed: SocketAddr = addr.parse().map_err(|_| StartError::Addr {
        what,
        addr: addr.to_owned(),
    })?;
    let bind_error = |source| StartError::Bind {
        what,
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(parsed).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// Serve `router` on `listener` until `shutdown` (in-flight requests finish); a server that
/// fails is logged under `name`.
pub(super) fn serve<L>(
    name: &'static str,
    listener: L,
    router: Router,
    shutdown: Stop,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.wait());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "{name} server failed");
        }
    })
}

/// The ingest listener: loopback TCP or a Unix socket.
pub(super) async fn ingest(
    addr: IngestAddr,
    router: Router,
    shutdown: Stop,
) -> Result<(IngestBound, JoinHandle<()>), StartError> {
    match addr {
        IngestAddr::Tcp(addr) => {
            let (listener, bound) = bind("ingest", &addr.to_string()).await?;
            let task = serve("ingest", listener, router, shutdown);
            Ok((IngestBound::Tcp(bound), task))
        }
        IngestAddr::Unix(path) => {
            // A socket left by a previous run would make bind fail.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) {
                let _ = std::fs::remove_file(&path);
            }
            let listener =
                tokio::net::UnixListener::bind(&path).map_err(|source| StartError::Bind {
                    what: "ingest",
                    addr: path.display().to_string(),
                    source,
                })?;
            let task = serve("ingest", listener, router, shutdown);
            Ok((IngestBound::Unix(path), task))
        }
    }
}

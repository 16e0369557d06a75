//! The shutdown signal every binary waits for: SIGTERM (what the kubelet sends) or SIGINT
//! (Ctrl-C). One definition so that all three binaries stop the same way.

/// Resolves at the first SIGTERM or SIGINT.
///
/// If a handler cannot be installed (no signal support in this environment), waits on the other
/// one alone and logs nothing: the caller's process still stops on SIGKILL.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

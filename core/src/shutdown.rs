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

/// Ends the process `grace` after the first SIGTERM/SIGINT, whatever state it is in: a thread
/// with a runtime of its own watches the signal, so a wedged loop, a request that never
/// returns or a blocked worker of the main runtime (which then sees no signal at all) cannot
/// hold the pod until the kubelet's SIGKILL. `last_words` runs just before the exit (status
/// 1): the caller logs there, with its own logger.
///
/// Returns `false` when the watchdog's runtime cannot be built; the process then stops on the
/// kubelet's SIGKILL only.
pub fn exit_at_grace_after_signal(
    grace: std::time::Duration,
    last_words: impl FnOnce() + Send + 'static,
) -> bool {
    let Ok(watchdog) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    std::thread::spawn(move || {
        watchdog.block_on(signal());
        std::thread::sleep(grace);
        last_words();
        std::process::exit(1);
    });
    true
}

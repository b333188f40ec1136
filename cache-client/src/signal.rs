//! The one wait for a process's stop signal (Ctrl-C or SIGTERM), shared by the node, the gateway
//! and the load tool.

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. If SIGTERM cannot be watched, only Ctrl-C stops it.
pub async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => term.recv().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this process");
                std::future::pending().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

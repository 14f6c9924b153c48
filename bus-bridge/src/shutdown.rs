//! Shutdown goes out on a `watch` channel; every task races its work
//! against it.

use tokio::sync::watch;

/// Resolves once shutdown is signalled (or its sender is gone).
pub(crate) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

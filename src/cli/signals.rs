//! One place for shutdown signals: SIGTERM (Kubernetes) and SIGINT (a terminal).
use tokio::signal::unix::{signal, SignalKind};

pub async fn wait_for_shutdown() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

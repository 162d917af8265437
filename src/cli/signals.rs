//! One place for shutdown signals: SIGTERM (Kubernetes) and SIGINT (a terminal).
//! Installed first thing, so a signal that arrives while the agent is still
//! starting is not fatal (the default action) but starts an orderly drain.
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct ShutdownSignals {
    term: Signal,
    int: Signal,
}

impl ShutdownSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first of them; returns its name.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

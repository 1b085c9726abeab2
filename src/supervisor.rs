//! One shutdown signal for everything that runs until the process stops (pollers, Schema
//! Registry tasks, delivery probes, the HTTP server) and one place that waits for them.
//!
//! Each piece gets a receiver of the same signal ([`Supervisor::signal`]): async tasks await
//! its change, the probe threads read it between steps. [`Supervisor::shutdown`] raises it and
//! waits for every piece up to a limit, then names those still running, so a stuck piece is
//! reported instead of silently holding the exit.
//!
//! A [group](Supervisor::group) is a supervisor of its own with its own signal, kept by key
//! inside its parent: one cluster's poller, probe and Schema Registry task. A configuration
//! reload stops one group ([`Supervisor::stop_group`]) and leaves the others running;
//! [`Supervisor::shutdown`] raises every group's signal with its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running piece: an async task or a thread.
enum Piece {
    Task(JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

pub struct Supervisor {
    signal: watch::Sender<bool>,
    pieces: Vec<(String, Piece)>,
    /// Pieces stopped together apart from the others (one cluster's), by key.
    groups: BTreeMap<String, Supervisor>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            signal: watch::channel(false).0,
            pieces: Vec::new(),
            groups: BTreeMap::new(),
        }
    }

    /// The group under `key`, created empty on first use. Its pieces watch the group's
    /// [`Self::signal`], raised by [`Self::stop_group`] or by this supervisor's shutdown.
    pub fn group(&mut self, key: &str) -> &mut Supervisor {
        self.groups.entry(key.to_string()).or_default()
    }

    /// Stops the group under `key` (if any) and waits up to `limit` for its pieces; returns the
    /// names of those still running then (left behind with their signal raised).
    pub async fn stop_group(&mut self, key: &str, limit: Duration) -> Vec<String> {
        match self.groups.remove(key) {
            Some(group) => group.shutdown(limit).await,
            None => Vec::new(),
        }
    }

    /// The shutdown signal: turns true once, when [`Self::shutdown`] starts.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.subscribe()
    }

    /// Runs `fut` as a task; it should end soon after the signal turns true.
    pub fn task(&mut self, name: impl Into<String>, fut: impl Future<Output = ()> + Send + 'static) {
        self.pieces.push((name.into(), Piece::Task(tokio::spawn(fut))));
    }

    /// Adopts a task already spawned.
    pub fn adopt_task(&mut self, name: impl Into<String>, handle: JoinHandle<()>) {
        self.pieces.push((name.into(), Piece::Task(handle)));
    }

    /// Adopts a thread that watches [`Self::signal`].
    pub fn adopt_thread(&mut self, name: impl Into<String>, handle: std::thread::JoinHandle<()>) {
        self.pieces.push((name.into(), Piece::Thread(handle)));
    }

    /// Raises the signal and waits up to `limit` for every piece; returns the names of those
    /// still running then (they are left behind, not aborted: the process is about to exit).
    pub async fn shutdown(self, limit: Duration) -> Vec<String> {
        let mut pieces = Vec::new();
        self.raise_into(&mut pieces);
        wait_for(pieces, limit).await
    }

    /// Raises the signal of this supervisor and of every group, and hands over their pieces.
    fn raise_into(self, pieces: &mut Vec<(String, Piece)>) {
        let _ = self.signal.send(true);
        pieces.extend(self.pieces);
        for (_, group) in self.groups {
            group.raise_into(pieces);
        }
    }
}

/// Waits up to `limit` for `pieces`; returns the names of those still running then.
async fn wait_for(pieces: Vec<(String, Piece)>, limit: Duration) -> Vec<String> {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let names: Vec<String> = pieces.iter().map(|(n, _)| n.clone()).collect();
    for (i, (_, piece)) in pieces.into_iter().enumerate() {
        let done = done_tx.clone();
        match piece {
            Piece::Task(handle) => {
                tokio::spawn(async move {
                    let _ = handle.await;
                    let _ = done.send(i);
                });
            }
            Piece::Thread(handle) => {
                tokio::task::spawn_blocking(move || {
                    let _ = handle.join();
                    let _ = done.send(i);
                });
            }
        }
    }
    drop(done_tx);
    let mut running = vec![true; names.len()];
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            d = done_rx.recv() => match d {
                Some(i) => running[i] = false,
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    names
        .into_iter()
        .zip(running)
        .filter(|(_, r)| *r)
        .map(|(n, _)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn every_piece_that_follows_the_signal_is_awaited() {
        let mut s = Supervisor::new();
        let mut rx = s.signal();
        s.task("task", async move {
            let _ = rx.changed().await;
        });
        let rx = s.signal();
        let thread = std::thread::spawn(move || {
            while !*rx.borrow() {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        s.adopt_thread("thread", thread);
        let started = Instant::now();
        assert!(s.shutdown(Duration::from_secs(10)).await.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_piece_ignoring_the_signal_is_named_after_the_limit() {
        let mut s = Supervisor::new();
        let mut rx = s.signal();
        s.task("good", async move {
            let _ = rx.changed().await;
        });
        s.task("stuck", std::future::pending());
        let started = Instant::now();
        assert_eq!(s.shutdown(Duration::from_millis(200)).await, vec!["stuck".to_string()]);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_group_stops_alone_and_shutdown_stops_the_rest() {
        let mut s = Supervisor::new();
        let (a_done, mut a_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut rx = s.group("a").signal();
        s.group("a").task("poller a", async move {
            let _ = rx.changed().await;
            let _ = a_done.send(());
        });
        let (b_done, mut b_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut rx = s.group("b").signal();
        s.group("b").task("poller b", async move {
            let _ = rx.changed().await;
            let _ = b_done.send(());
        });
        let mut rx = s.signal();
        s.task("server", async move {
            let _ = rx.changed().await;
        });
        assert!(s.stop_group("a", Duration::from_secs(10)).await.is_empty());
        assert!(a_stopped.try_recv().is_ok());
        assert!(b_stopped.try_recv().is_err(), "the other group keeps running");
        assert!(s.stop_group("missing", Duration::from_secs(1)).await.is_empty());
        assert!(s.shutdown(Duration::from_secs(10)).await.is_empty());
        assert!(b_stopped.try_recv().is_ok());
    }
}

//! Liveness and readiness: a shared state the pipeline thread updates and the telemetry
//! listener reads (`/healthz`, `/readyz`).
//!
//! Owns: what "alive" and "ready" mean (README, "Metrics and health"). Must not: do I/O or
//! block; every update is an atomic store, cheap enough for the pipeline thread.
//!
//! One state per process ([`shared`]), as the metrics recorder is one per process: the binary
//! runs one gateway (`run`) or one archive route (`archive`), whose thread plays the pipeline
//! thread's part below. Several gateways in one process (tests) share it; only a process that serves
//! the telemetry listener reads it.
//!
//! - **Alive** unless the pipeline thread, once started, has not come round its loop for
//!   longer than the stall limit (`2 × pipeline.shutdown_timeout_ms + 60 s`: a revoke or a
//!   transaction commit may legitimately block it for `shutdown_timeout_ms`).
//! - **Ready** once the consumer joined its group (the first assignment, possibly of no
//!   partitions: more replicas than partitions is normal), while no registry outage is in
//!   progress, the delivery mode has not failed fatally (fenced, failed delivery) and the gateway
//!   is not stopping.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The process's health state.
pub fn shared() -> Arc<Health> {
    static SHARED: LazyLock<Arc<Health>> = LazyLock::new(|| Arc::new(Health::new()));
    SHARED.clone()
}

/// Milliseconds since an origin fixed at creation (0: never).
fn millis(origin: Instant) -> u64 {
    (origin.elapsed().as_millis() as u64).max(1)
}

pub struct Health {
    origin: Instant,
    /// When the pipeline thread last came round its loop (0: not started).
    heartbeat_ms: AtomicU64,
    stall_after_ms: AtomicU64,
    /// The consumer has had an assignment (its group joined).
    joined: AtomicBool,
    partitions: AtomicU64,
    /// When the current registry outage began (0: none).
    registry_down_since_ms: AtomicU64,
    stopping: AtomicBool,
    fatal: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Health {
            origin: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            stall_after_ms: AtomicU64::new(u64::MAX),
            joined: AtomicBool::new(false),
            partitions: AtomicU64::new(0),
            registry_down_since_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            fatal: Mutex::new(None),
        }
    }

    /// The pipeline thread starts: liveness watches its heartbeat from now on.
    pub fn pipeline_started(&self, shutdown_timeout: Duration) {
        let stall = 2 * shutdown_timeout + Duration::from_secs(60);
        self.stall_after_ms
            .store(stall.as_millis() as u64, Ordering::Relaxed);
        self.joined.store(false, Ordering::Relaxed);
        self.stopping.store(false, Ordering::Relaxed);
        self.heartbeat();
    }

    /// The pipeline thread came round its loop (called every few hundred messages, and while
    /// idle or paused: not per message).
    pub fn heartbeat(&self) {
        self.heartbeat_ms
            .store(millis(self.origin), Ordering::Relaxed);
    }

    /// A rebalance completed with `partitions` assigned.
    pub fn assigned(&self, partitions: usize) {
        self.partitions.store(partitions as u64, Ordering::Relaxed);
        self.joined.store(true, Ordering::Relaxed);
    }

    /// Partitions were revoked; `partitions` remain.
    pub fn revoked(&self, partitions: usize) {
        self.partitions.store(partitions as u64, Ordering::Relaxed);
    }

    pub fn partitions(&self) -> u64 {
        self.partitions.load(Ordering::Relaxed)
    }

    /// The pipeline paused on a registry outage (`true`) or resumed after it (`false`).
    pub fn registry_outage(&self, down: bool) {
        let since = if down { millis(self.origin) } else { 0 };
        self.registry_down_since_ms.store(since, Ordering::Relaxed);
    }

    /// The gateway stops (drain and commit, or an error): not ready any more.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The delivery mode failed in a way the gateway cannot go on from.
    pub fn fatal(&self, reason: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(reason);
        self.stopping();
    }

    /// `/healthz`: `Ok` with a line saying so, or `Err` naming the stall.
    pub fn liveness(&self) -> Result<String, String> {
        let beat = self.heartbeat_ms.load(Ordering::Relaxed);
        if beat == 0 {
            return Ok("alive (starting: the pipeline has not started yet)".into());
        }
        let quiet = millis(self.origin).saturating_sub(beat);
        let limit = self.stall_after_ms.load(Ordering::Relaxed);
        if quiet > limit && !self.stopping.load(Ordering::Relaxed) {
            return Err(format!(
                "the pipeline thread has not come round its loop for {} s (limit {} s)",
                quiet / 1000,
                limit / 1000
            ));
        }
        Ok("alive".into())
    }

    /// `/readyz`: `Ok` with a line saying so, or `Err` with the reason it is not ready.
    pub fn readiness(&self) -> Result<String, String> {
        if let Some(reason) = self
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(format!("failed: {reason}"));
        }
        if self.stopping.load(Ordering::Relaxed) {
            return Err("stopping: draining and committing".into());
        }
        if self.heartbeat_ms.load(Ordering::Relaxed) == 0 {
            return Err("starting: resolving the routes' reader schemas".into());
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("waiting for the consumer group's first assignment".into());
        }
        let down = self.registry_down_since_ms.load(Ordering::Relaxed);
        if down != 0 {
            let secs = millis(self.origin).saturating_sub(down) / 1000;
            return Err(format!(
                "schema registry unavailable for {secs} s: partitions paused, retrying"
            ));
        }
        let n = self.partitions();
        Ok(if n == 0 {
            "ready: in the group, no partitions assigned (more replicas than partitions)".into()
        } else if n == 1 {
            "ready: 1 partition assigned".into()
        } else {
            format!("ready: {n} partitions assigned")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_start_assignment_outage_and_failure() {
        let h = Health::new();
        assert!(h.liveness().is_ok());
        assert!(h.readiness().unwrap_err().starts_with("starting"));
        h.pipeline_started(Duration::from_secs(30));
        assert!(h.readiness().unwrap_err().contains("first assignment"));
        h.assigned(0);
        assert!(h.readiness().unwrap().contains("no partitions"));
        h.assigned(3);
        assert_eq!(h.readiness().unwrap(), "ready: 3 partitions assigned");
        h.assigned(1);
        assert_eq!(h.readiness().unwrap(), "ready: 1 partition assigned");
        h.revoked(0);
        assert!(
            h.readiness().is_ok(),
            "a rebalance does not make it unready"
        );
        h.registry_outage(true);
        assert!(h.readiness().unwrap_err().contains("registry unavailable"));
        assert!(h.liveness().is_ok(), "an outage does not fail liveness");
        h.registry_outage(false);
        assert!(h.readiness().is_ok());
        h.fatal("fenced".into());
        assert_eq!(h.readiness().unwrap_err(), "failed: fenced");
        assert!(h.liveness().is_ok());
    }

    #[test]
    fn stopping_is_not_ready() {
        let h = Health::new();
        h.pipeline_started(Duration::from_secs(30));
        h.assigned(1);
        h.stopping();
        assert!(h.readiness().unwrap_err().starts_with("stopping"));
    }
}

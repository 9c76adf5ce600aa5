//! Keeping a lease, and fencing its holder when it cannot be kept.
//!
//! A [`Keeper`] renews one [`Lease`] every third of `lease_ttl`. While it
//! holds, [`Keeper::holding`] is true. It turns false, for good, when:
//!
//! - a renewal finds the keys taken over or removed ([`Lost::TakenOver`]);
//! - no renewal has succeeded by the fence time, `expires - lease_ttl/10`
//!   ([`Lost::Expired`]): NATS unreachable, slow, or this process
//!   partitioned from it.
//!
//! The holder (the task running the topic's upstream) waits on
//! [`Keeper::lost`] and stops its upstream at once. Since the fence time is
//! before the lease's expiry as the server counts it (see
//! [`crate::lease`]), the old owner has stopped before a new one can
//! acquire: the only overlap is the time the holder takes to act on the
//! signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::lease::{Lease, LeaseError, Leases};
use crate::metrics;

/// Why a lease was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Another instance holds the keys now.
    TakenOver,
    /// No renewal succeeded before the fence time.
    Expired,
    /// The holder released it ([`Keeper::release`]).
    Released,
}

impl Lost {
    /// The metric label: `released`, `taken_over` or `expired`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::TakenOver => "taken_over",
            Self::Expired => "expired",
        }
    }
}

/// The state a keeper publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Held; valid until this instant at least.
    Until(Instant),
    /// Given up, for this reason.
    Lost(Lost),
}

/// Renews one lease in a task of its own until it is lost or released.
#[derive(Debug)]
pub struct Keeper {
    topic: Arc<str>,
    state: watch::Receiver<Holding>,
    release: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping `lease`.
    pub fn spawn(leases: Arc<Leases>, lease: Lease) -> Self {
        let topic: Arc<str> = lease.topic().into();
        let (tx, state) = watch::channel(Holding::Until(fence(&leases, &lease)));
        let (release, released) = oneshot::channel();
        let task = tokio::spawn(keep(leases, lease, tx, released));
        Self {
            topic,
            state,
            release: Some(release),
            task,
        }
    }

    /// The topic kept.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the lease is still held.
    pub fn holding(&self) -> bool {
        matches!(*self.state.borrow(), Holding::Until(_))
    }

    /// The latest state.
    pub fn state(&self) -> Holding {
        *self.state.borrow()
    }

    /// Waits until the lease is given up, and says why.
    pub async fn lost(&self) -> Lost {
        let mut state = self.state.clone();
        loop {
            if let Holding::Lost(why) = *state.borrow_and_update() {
                return why;
            }
            if state.changed().await.is_err() {
                // The task ended without saying why: it was aborted.
                return Lost::Released;
            }
        }
    }

    /// Releases the lease (its keys are deleted, so another instance may
    /// take the topic at once) and waits for the keeper to end.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // Dropped without `release`: stop renewing; the keys expire.
        self.task.abort();
    }
}

/// When a holder must have stopped: a tenth of the ttl before expiry, so
/// it has time to act.
fn fence(leases: &Leases, lease: &Lease) -> Instant {
    lease.expires() - leases.ttl() / 10
}

async fn keep(
    leases: Arc<Leases>,
    mut lease: Lease,
    state: watch::Sender<Holding>,
    mut released: oneshot::Receiver<()>,
) {
    // Counts the lease as held until this task ends, however it ends.
    metrics::record_held(1.0);
    let mut held = Held { end: None };
    let every = leases.ttl() / 3;
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            biased;
            asked = &mut released => {
                state.send_replace(Holding::Lost(Lost::Released));
                held.end = Some(Lost::Released);
                // Asked to release: the keys go now. Dropped without
                // asking (the holder is gone): they expire.
                if asked.is_ok()
                    && let Err(e) = leases.release(lease).await
                {
                    tracing::debug!(error = %e, "releasing a lease");
                }
                return;
            }
            () = sleep_until(fence(&leases, &lease)) => {
                state.send_replace(Holding::Lost(Lost::Expired));
                held.end = Some(Lost::Expired);
                tracing::warn!(topic = lease.topic(), "lease not renewed in time: giving the topic up");
                return;
            }
            () = sleep_until(next) => {}
        }
        // A renewal may take until the fence; past it the lease is gone
        // whatever NATS answers.
        let deadline = fence(&leases, &lease);
        match timeout_at(deadline, leases.renew(&mut lease)).await {
            Ok(Ok(())) => {
                state.send_replace(Holding::Until(fence(&leases, &lease)));
                next = Instant::now() + every;
            }
            Ok(Err(LeaseError::Lost)) => {
                state.send_replace(Holding::Lost(Lost::TakenOver));
                held.end = Some(Lost::TakenOver);
                tracing::warn!(
                    topic = lease.topic(),
                    "lease taken over: giving the topic up"
                );
                return;
            }
            // NATS slow or away: try again soon, until the fence.
            Ok(Err(LeaseError::Nats(e))) => {
                tracing::debug!(topic = lease.topic(), error = %e, "lease renewal failed");
                metrics::record_renew_failure();
                next = Instant::now() + retry_after(every);
            }
            Err(_elapsed) => {
                state.send_replace(Holding::Lost(Lost::Expired));
                held.end = Some(Lost::Expired);
                tracing::warn!(
                    topic = lease.topic(),
                    "lease renewal timed out: giving the topic up"
                );
                return;
            }
        }
    }
}

/// The keeping task's share of the held-leases gauge, and how its lease
/// ended, recorded when the task ends (an aborted task, whose keeper was
/// dropped without a release, leaves its keys to expire).
struct Held {
    end: Option<Lost>,
}

impl Drop for Held {
    fn drop(&mut self) {
        metrics::record_held(-1.0);
        metrics::record_end(self.end.unwrap_or(Lost::Expired).label());
    }
}

/// A failed renewal is retried after a tenth of the period (at least
/// 50 ms): often enough to catch NATS coming back before the fence,
/// rarely enough not to flood it.
fn retry_after(every: Duration) -> Duration {
    (every / 10).max(Duration::from_millis(50))
}

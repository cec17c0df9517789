//! The pace of a streaming body: an idle limit (the longest wait for the next piece) and a
//! minimum rate (bytes per second, averaged over windows, after a grace period), counting
//! only the time the gateway spends waiting on the body's sender. Time the body is not
//! polled — the receiving side is slow to take it — is not the sender's fault and is not
//! counted, so a steady transfer of any length passes and a trickle is cut, whichever the
//! direction.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Why a body was cut for its pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Nothing arrived for this long.
    Idle(Duration),
    /// Fewer bytes than the minimum rate asks for arrived within a window.
    Slow {
        /// Bytes per second in the window that failed.
        rate: u64,
        /// The minimum, bytes per second.
        min: u64,
        /// The window's length.
        window: Duration,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::Idle(d) => write!(f, "nothing received for {} s", d.as_secs()),
            Stall::Slow { rate, min, window } => write!(
                f,
                "{rate} bytes/s over {} s, below the minimum of {min} bytes/s",
                window.as_secs()
            ),
        }
    }
}

/// The limits a [`Pace`] holds a body to.
#[derive(Debug, Clone, Copy)]
pub struct PaceLimits {
    /// Longest wait for the next piece.
    pub idle: Duration,
    /// Minimum bytes per second, averaged over `window`; 0 turns the rate check off.
    pub min_rate: u64,
    /// The window the rate is averaged over.
    pub window: Duration,
    /// Waiting time at the start during which the rate is not checked (connection set-up,
    /// a client that reads a file before it sends).
    pub grace: Duration,
}

/// The pace of one body: call [`Pace::on_data`] for every piece and [`Pace::on_pending`]
/// whenever the sender has nothing yet.
pub struct Pace {
    limits: PaceLimits,
    /// When the current wait began (None: not waiting).
    pending_since: Option<Instant>,
    /// When the wait without a byte began (a wait is committed in parts; this is not).
    idle_since: Option<Instant>,
    /// Waiting time so far, committed.
    waited: Duration,
    /// Whether the grace period is over.
    graced: bool,
    window_waited: Duration,
    window_bytes: u64,
    /// The timer, kept across waits (reset, not reallocated).
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether `sleep` is set for the current wait.
    armed: bool,
}

impl Pace {
    pub fn new(limits: PaceLimits) -> Pace {
        Pace {
            limits: PaceLimits {
                idle: limits.idle.max(Duration::from_millis(1)),
                window: limits.window.max(Duration::from_millis(1)),
                ..limits
            },
            pending_since: None,
            idle_since: None,
            waited: Duration::ZERO,
            graced: false,
            window_waited: Duration::ZERO,
            window_bytes: 0,
            sleep: None,
            armed: false,
        }
    }

    /// Whether the body's sender is being waited on.
    pub fn waiting(&self) -> bool {
        self.pending_since.is_some()
    }

    /// `n` bytes arrived.
    pub fn on_data(&mut self, n: u64) -> Result<(), Stall> {
        self.armed = false;
        self.idle_since = None;
        if let Some(p) = self.pending_since.take() {
            self.commit(Instant::now().saturating_duration_since(p));
        }
        self.window_bytes = self.window_bytes.saturating_add(n);
        self.roll()
    }

    /// The sender has nothing yet: registers a timer with `cx` and fails once a limit is
    /// broken.
    pub fn on_pending(&mut self, cx: &mut Context<'_>) -> Result<(), Stall> {
        let now = Instant::now();
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        // Each round commits the wait so far and moves the deadline forward; a few rounds
        // at most (a window and the idle limit can fall due together).
        for _ in 0..4 {
            if !self.armed {
                let deadline = self.deadline();
                match &mut self.sleep {
                    Some(s) => s.as_mut().reset(deadline),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                self.armed = true;
            }
            let Some(sleep) = self.sleep.as_mut() else {
                return Ok(());
            };
            if sleep.as_mut().poll(cx) == Poll::Pending {
                return Ok(());
            }
            self.armed = false;
            self.check(Instant::now())?;
        }
        Ok(())
    }

    /// Commits the wait up to `now` and checks both limits.
    fn check(&mut self, now: Instant) -> Result<(), Stall> {
        if let Some(p) = self.pending_since {
            self.commit(now.saturating_duration_since(p));
            self.pending_since = Some(now);
        }
        if let Some(i) = self.idle_since
            && now.saturating_duration_since(i) >= self.limits.idle
        {
            return Err(Stall::Idle(self.limits.idle));
        }
        self.roll()
    }

    fn commit(&mut self, waited: Duration) {
        self.waited += waited;
        if self.graced {
            self.window_waited += waited;
        }
    }

    /// Ends the grace period or a window when it is due, checking the window's rate.
    fn roll(&mut self) -> Result<(), Stall> {
        if self.limits.min_rate == 0 {
            return Ok(());
        }
        if !self.graced {
            if self.waited >= self.limits.grace {
                self.graced = true;
                self.window_waited = Duration::ZERO;
                self.window_bytes = 0;
            }
            return Ok(());
        }
        if self.window_waited < self.limits.window {
            return Ok(());
        }
        let ms = u64::try_from(self.window_waited.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let rate = self.window_bytes.saturating_mul(1000) / ms;
        if rate < self.limits.min_rate {
            return Err(Stall::Slow {
                rate,
                min: self.limits.min_rate,
                window: self.limits.window,
            });
        }
        self.window_waited = Duration::ZERO;
        self.window_bytes = 0;
        Ok(())
    }

    /// When the current wait next needs a look: the idle limit, or the end of the grace
    /// period or of the window.
    fn deadline(&self) -> Instant {
        let now = Instant::now();
        let since = self.pending_since.unwrap_or(now);
        let idle_at = self.idle_since.unwrap_or(now) + self.limits.idle;
        if self.limits.min_rate == 0 {
            return idle_at;
        }
        let left = if self.graced {
            self.limits.window.saturating_sub(self.window_waited)
        } else {
            self.limits.grace.saturating_sub(self.waited)
        };
        idle_at.min(since + left.max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Limits in tenths of the durations named (tests run in real time): `idle`, `window`
    /// and `grace` in units of 100 ms, the rate in bytes per second.
    fn limits(idle: u64, rate: u64, window: u64, grace: u64) -> PaceLimits {
        PaceLimits {
            idle: tick(idle),
            min_rate: rate,
            window: tick(window),
            grace: tick(grace),
        }
    }

    fn tick(n: u64) -> Duration {
        Duration::from_millis(100 * n)
    }

    /// Waits on the pace for `d` (the sender sends nothing meanwhile).
    async fn wait(p: &mut Pace, d: Duration) -> Result<(), Stall> {
        let waiting = poll_fn(|cx| match p.on_pending(cx) {
            Err(e) => Poll::Ready(e),
            Ok(()) => Poll::Pending,
        });
        match tokio::time::timeout(d, waiting).await {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
        }
    }

    #[tokio::test]
    async fn idle_is_the_longest_wait() {
        let mut p = Pace::new(limits(5, 0, 10, 10));
        wait(&mut p, tick(4)).await.unwrap();
        p.on_data(1).unwrap();
        wait(&mut p, tick(4)).await.unwrap();
        p.on_data(1).unwrap();
        assert_eq!(wait(&mut p, tick(6)).await, Err(Stall::Idle(tick(5))));
    }

    #[tokio::test]
    async fn a_trickle_is_cut_after_grace_and_a_window() {
        // 1 byte per 100 ms is 10 bytes/s, against a minimum of 100.
        let mut p = Pace::new(limits(30, 100, 2, 2));
        let mut cut = None;
        for s in 0..20 {
            if let Err(e) = wait(&mut p, tick(1)).await {
                cut = Some((s, e));
                break;
            }
            if let Err(e) = p.on_data(1) {
                cut = Some((s, e));
                break;
            }
        }
        let (s, e) = cut.expect("a 1 byte/s body is cut");
        assert!(s <= 5, "cut after {s} pieces");
        assert!(matches!(e, Stall::Slow { min: 100, .. }), "{e:?}");
    }

    #[tokio::test]
    async fn time_not_waiting_on_the_sender_is_not_counted() {
        let mut p = Pace::new(limits(30, 100, 2, 2));
        for _ in 0..30 {
            // 200 bytes per 50 ms of waiting: 4000 bytes/s, however long the receiver
            // takes between polls.
            wait(&mut p, Duration::from_millis(50)).await.unwrap();
            p.on_data(200).unwrap();
            tokio::time::sleep(tick(1)).await;
        }
    }

    #[tokio::test]
    async fn no_rate_limit_when_off() {
        let mut p = Pace::new(limits(30, 0, 1, 0));
        for _ in 0..20 {
            wait(&mut p, Duration::from_millis(20)).await.unwrap();
            p.on_data(1).unwrap();
        }
    }
}

//! The rate limit on per-message log lines (a dead letter, a skipped message).
//!
//! Owns: [`RateLimit`], a fixed-window limiter that is pure (the caller passes the clock in;
//! no I/O, no allocation), and the one process-wide instance behind [`failed_message_line`],
//! [`report_due`] and [`report_suppressed`], which emit the "lines suppressed" summary through
//! `tracing`. At most [`LINES_PER_WINDOW`] per-message lines are logged per [`WINDOW`] in the
//! whole process; the ones held back are counted, and the count is logged in one summary line
//! before the next line that is let through, once the window it was counted in has ended
//! (`report_due`, called periodically by the binary), or at shutdown (`report_suppressed`).
//! Must not: format or log the per-message line itself (the worker does, naming route,
//! topic, partition, offset, kind and reason), log message payloads or config values.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Per-message lines logged at most per [`WINDOW`], process-wide.
pub const LINES_PER_WINDOW: u32 = 10;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// What to do with one per-message line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines were held back since the last one logged (and not yet
    /// reported).
    Emit { suppressed: u64 },
    /// Hold it back (counted).
    Suppress,
}

/// A fixed-window rate limit: at most `limit` lines from the start of a window until `window`
/// has passed; the next line after that starts a new window.
#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    window: Duration,
    started: Option<Instant>,
    emitted: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(limit: u32, window: Duration) -> Self {
        RateLimit {
            limit,
            window,
            started: None,
            emitted: 0,
            suppressed: 0,
        }
    }

    fn window_over(&self, now: Instant) -> bool {
        self.started
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window)
    }

    /// The verdict on a line at `now`.
    pub fn admit(&mut self, now: Instant) -> Verdict {
        if self.window_over(now) {
            self.started = Some(now);
            self.emitted = 0;
        }
        if self.emitted < self.limit {
            self.emitted += 1;
            Verdict::Emit {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// The count of lines held back, taken (reported once), when there are some and the window
    /// they were held back in has ended at `now`.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self.suppressed > 0 && self.window_over(now) {
            Some(std::mem::take(&mut self.suppressed))
        } else {
            None
        }
    }

    /// The count of lines held back and not yet reported, taken, if any (at shutdown).
    pub fn take(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

/// The process-wide limit on per-message lines.
static FAILED_MESSAGE_LINES: Mutex<RateLimit> =
    Mutex::new(RateLimit::new(LINES_PER_WINDOW, WINDOW));

fn limit() -> MutexGuard<'static, RateLimit> {
    // The limiter's state is valid whatever panicked while holding it.
    FAILED_MESSAGE_LINES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn summary(suppressed: u64) {
    tracing::warn!(
        suppressed,
        limit = LINES_PER_WINDOW,
        window_s = WINDOW.as_secs(),
        "log lines for dead-lettered or skipped messages suppressed by the rate limit"
    );
}

/// Whether to log the line for one dead-lettered or skipped message now. When lines were held
/// back before it, logs their count first. Nothing is allocated when the answer is no.
pub fn failed_message_line() -> bool {
    let verdict = limit().admit(Instant::now());
    match verdict {
        Verdict::Suppress => false,
        Verdict::Emit { suppressed } => {
            if suppressed > 0 {
                summary(suppressed);
            }
            true
        }
    }
}

/// Logs the count of lines held back once their window has ended (call it about every
/// [`WINDOW`]): a flood that stops is still accounted for without waiting for the next line.
pub fn report_due() {
    let due = limit().due(Instant::now());
    if let Some(n) = due {
        summary(n);
    }
}

/// Logs the count of lines held back and not yet reported, if any (at shutdown).
pub fn report_suppressed() {
    let rest = limit().take();
    if let Some(n) = rest {
        summary(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn emitted(v: Verdict) -> Option<u64> {
        match v {
            Verdict::Emit { suppressed } => Some(suppressed),
            Verdict::Suppress => None,
        }
    }

    #[test]
    fn the_first_lines_of_a_window_pass_then_the_rest_are_counted() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(3, 10 * SEC);
        let verdicts: Vec<_> = (0..7).map(|i| l.admit(t0 + i * SEC)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Emit { suppressed: 0 },
                Verdict::Emit { suppressed: 0 },
                Verdict::Emit { suppressed: 0 },
                Verdict::Suppress,
                Verdict::Suppress,
                Verdict::Suppress,
                Verdict::Suppress,
            ]
        );
        // Not due within the window; the next window's first line carries the count.
        assert_eq!(l.due(t0 + 9 * SEC), None);
        assert_eq!(emitted(l.admit(t0 + 10 * SEC)), Some(4));
        assert_eq!(emitted(l.admit(t0 + 11 * SEC)), Some(0));
    }

    #[test]
    fn every_line_is_either_emitted_or_counted_exactly_once() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(10, 10 * SEC);
        let (mut emitted_lines, mut reported) = (0u64, 0u64);
        let mut count = |v: Verdict| {
            if let Verdict::Emit { suppressed } = v {
                emitted_lines += 1;
                reported += suppressed;
            }
        };
        // Bursts of 100 lines 1 ms apart at 0, 15, 20 and 40 s; periodic reports at 12 and
        // 30 s, and the final one at shutdown.
        let mut reports = Vec::new();
        for (burst, at) in [0, 15, 20, 40].into_iter().enumerate() {
            for i in 0..100u32 {
                count(l.admit(t0 + at * SEC + i * Duration::from_millis(1)));
            }
            if let Some(report_at) = [Some(12), None, Some(30), None][burst] {
                reports.push(l.due(t0 + report_at * SEC));
            }
        }
        reports.push(l.take());
        // 20 s is within the window opened at 15 s: that burst is all held back, and reported
        // with the one before it.
        assert_eq!(reports, [Some(90), Some(190), Some(90)]);
        assert_eq!(emitted_lines, 30);
        assert_eq!(reported, 0, "each window's first line follows a report");
        let held: u64 = reports.iter().flatten().sum();
        assert_eq!(emitted_lines + held, 400, "every line accounted for");
        assert_eq!(l.take(), None, "taken once");
    }

    #[test]
    fn a_due_report_waits_for_the_window_and_is_taken_once() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(1, 10 * SEC);
        assert_eq!(emitted(l.admit(t0)), Some(0));
        assert_eq!(l.admit(t0 + SEC), Verdict::Suppress);
        assert_eq!(l.admit(t0 + 2 * SEC), Verdict::Suppress);
        assert_eq!(l.due(t0 + 5 * SEC), None);
        assert_eq!(l.due(t0 + 10 * SEC), Some(2));
        assert_eq!(l.due(t0 + 20 * SEC), None);
        // Reported already: the next window's first line carries nothing.
        assert_eq!(emitted(l.admit(t0 + 21 * SEC)), Some(0));
    }

    #[test]
    fn nothing_held_back_means_nothing_to_report() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(2, 10 * SEC);
        assert_eq!(l.due(t0), None);
        assert_eq!(l.take(), None);
        l.admit(t0);
        assert_eq!(l.due(t0 + 60 * SEC), None);
        assert_eq!(l.take(), None);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_open_a_window() {
        let t0 = Instant::now() + 60 * SEC;
        let mut l = RateLimit::new(1, 10 * SEC);
        assert_eq!(emitted(l.admit(t0)), Some(0));
        assert_eq!(l.admit(t0 - 30 * SEC), Verdict::Suppress);
    }
}

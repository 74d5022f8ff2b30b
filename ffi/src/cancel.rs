//! Cancellation that applies to the running call only. Each context has a
//! [`RunFlag`]: a cancellable call marks it running for its length ([`RunFlag::begin`]),
//! `llmrt_cancel` turns "running" into "cancelled", and the call, asking between
//! layers and tokens, stops. A cancel made while nothing runs finds the flag idle and
//! does nothing, so it cannot stop a later call.

use std::sync::atomic::{AtomicU8, Ordering};

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// Whether a cancellable call is running on a context, and whether it was asked to stop.
pub(crate) struct RunFlag(AtomicU8);

impl RunFlag {
    /// Idle.
    pub const fn new() -> RunFlag {
        RunFlag(AtomicU8::new(IDLE))
    }

    /// Marks a call running until the returned guard is dropped. The caller holds the
    /// context's lock, so calls never overlap.
    pub fn begin(&self) -> Running<'_> {
        self.0.store(RUNNING, Ordering::Release);
        Running(self)
    }

    /// Asks the running call to stop; `false` (and nothing changed) when none runs.
    pub fn cancel(&self) -> bool {
        self.0
            .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A running call; back to idle when dropped.
pub(crate) struct Running<'a>(&'a RunFlag);

impl Running<'_> {
    /// Whether `llmrt_cancel` asked this call to stop.
    pub fn cancelled(&self) -> bool {
        self.0 .0.load(Ordering::Acquire) == CANCELLED
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0 .0.store(IDLE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_the_running_call_only() {
        let f = RunFlag::new();
        assert!(!f.cancel(), "nothing runs: nothing to cancel");
        {
            let r = f.begin();
            assert!(!r.cancelled(), "an idle cancel must not carry over");
            assert!(f.cancel());
            assert!(r.cancelled());
            assert!(!f.cancel(), "already cancelled");
        }
        let r = f.begin();
        assert!(!r.cancelled(), "the next call starts clean");
    }
}

//! Flow-control windows (RFC 9113 section 5.2 and 6.9). Pure.

use crate::frame::MAX_WINDOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("WINDOW_UPDATE with a 0 increment")]
    ZeroIncrement,
    #[error("flow-control window above 2^31-1")]
    Overflow,
    #[error("peer sent more than the flow-control window allows")]
    Exceeded,
}

/// A send window: how much DATA we may still send. May go negative when the peer lowers
/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 section 6.9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow(i64);

impl SendWindow {
    pub fn new(initial: u32) -> Self {
        Self(i64::from(initial))
    }

    pub fn available(&self) -> usize {
        self.0.max(0) as usize
    }

    pub fn consume(&mut self, n: usize) {
        self.0 -= n as i64;
    }

    /// A WINDOW_UPDATE.
    pub fn increase(&mut self, increment: u32) -> Result<(), FlowError> {
        if increment == 0 {
            return Err(FlowError::ZeroIncrement);
        }
        self.adjust(i64::from(increment))
    }

    /// A change of SETTINGS_INITIAL_WINDOW_SIZE, applied to an open stream.
    pub fn adjust(&mut self, delta: i64) -> Result<(), FlowError> {
        let next = self.0 + delta;
        if next > i64::from(MAX_WINDOW) {
            return Err(FlowError::Overflow);
        }
        self.0 = next;
        Ok(())
    }
}

/// A receive window: how much DATA the peer may still send, and what we have consumed but
/// not yet given back with a WINDOW_UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    initial: u32,
    window: i64,
    released: u32,
}

impl RecvWindow {
    pub fn new(initial: u32) -> Self {
        Self {
            initial,
            window: i64::from(initial),
            released: 0,
        }
    }

    /// A DATA frame of `n` bytes (padding included) arrived.
    pub fn receive(&mut self, n: usize) -> Result<(), FlowError> {
        if n as i64 > self.window {
            return Err(FlowError::Exceeded);
        }
        self.window -= n as i64;
        Ok(())
    }

    /// `n` received bytes were consumed. Returns the WINDOW_UPDATE increment to send once
    /// half the window is consumed (batched, as most implementations do).
    pub fn release(&mut self, n: usize) -> Option<u32> {
        self.released = self.released.saturating_add(n as u32);
        if self.released < self.initial / 2 {
            return None;
        }
        let increment = std::mem::take(&mut self.released);
        self.window += i64::from(increment);
        Some(increment)
    }
}

#[cfg(test)]
mod tests;

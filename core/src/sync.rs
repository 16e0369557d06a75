//! The lock-poisoning policy, in one place.
//!
//! Every `std::sync::Mutex` in Stallwatch guards plain state (maps, counters, the last report)
//! that stays consistent between statements, so a panic in another thread while holding the lock
//! leaves nothing half-written that matters. Recovering the guard keeps one panicking task from
//! cascading into every other user of the lock, which is the story's failure in another form.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the guard even if a previous holder panicked.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;

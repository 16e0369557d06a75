//! The per-stream stall verdict state machine the sidecar runs.
//!
//! Pure: no clocks, no I/O. The caller passes the time as a monotonic
//! [`Duration`](std::time::Duration) since an origin of its choosing, feeds accepted reports
//! with [`Judge::observe`] and calls [`Judge::tick`] periodically (a few times per report
//! interval) so that silence is noticed. Both return the [`Transition`]s they caused, so the
//! I/O layer publishes only on change.
//!
//! The rules, per stream:
//! - **Healthy** is the default. An idle stream (empty channel) is never stalled, however long
//!   nothing arrives.
//! - **Stalled / `ChannelStuck`**: items have been waiting and `dequeued_total` has not moved
//!   for [`VerdictConfig::stall_after`]. The clock starts at the sender's reported last
//!   dequeue, but never before the previous report (which showed no wait), so the verdict
//!   comes with the first report after the threshold rather than up to an interval later.
//! - **Stalled / `DispatcherDead`**: the dispatcher is reported `dead` or `missing` while items
//!   wait in the channel or arrive. Decided at once: nothing will ever read that channel.
//! - **Stalled / `ReportsLost`**: no report for [`VerdictConfig::report_timeout`] (a hung
//!   process or a blocked runtime). Streams already stalled keep their more specific reason.
//! - **Back to Healthy** only after [`VerdictConfig::recover_after`] during which every report
//!   shows the stream making progress (or empty), so a verdict does not flap.
//! - A new broadcaster `instance` (the process restarted) resets the counters' baselines but
//!   keeps verdicts: a stalled stream must prove progress in the new process to recover.
//!
//! With reports every `interval`, a stuck channel is judged within `stall_after + 2 * interval`
//! of the first item getting stuck: at most one interval until a report shows it waiting, then
//! `stall_after`, then at most one interval until the report that crosses the threshold.
//!
//! ## Where a change goes
//! - `types`: the thresholds ([`VerdictConfig`]), [`Verdict`], [`Change`], [`Transition`].
//! - `track`: one stream's rules: `Track::judge` (waiting clock in `date_wait`, verdict
//!   changes in `next_verdict`) and the age of its last dequeue.
//! - `judge`: the [`Judge`] over one broadcaster's streams: report order and instances, the
//!   silence rule (`Judge::tick`), the [`StreamView`]s and stalled list the sidecar shows.
//!
//! `judge` imports `track`, both import `types`; this root only re-exports.

mod judge;
mod track;
mod types;

pub use judge::{Judge, StreamView};
pub use types::{Change, Transition, Verdict, VerdictConfig};

#[cfg(test)]
mod tests;

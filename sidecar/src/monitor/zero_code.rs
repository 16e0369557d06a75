//! Zero-code mode's part of the shared state: how scraping goes (`/v1/status` `scrape`), the
//! ring of the last scrapes kept for bundles, and the `Unknown` pod condition while no verdict
//! can be given.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use stallwatch_core::clock::now_ms;
use stallwatch_core::condition::StalledStream;
use stallwatch_core::scrape::Adapted;

use super::condition::{DesiredCondition, desired_condition};
use super::{Monitor, State};

/// The condition reason while zero-code mode cannot judge (pod condition status `Unknown`).
pub const METRICS_UNAVAILABLE_REASON: &str = "MetricsUnavailable";

/// `GET /v1/status` `scrape`: zero-code mode's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapeStatus {
    pub url: String,
    /// The last scrape mapped to streams and was judged.
    pub ok: bool,
    /// Why the last scrape gave no verdict; the same text is in the pod condition.
    pub error: Option<String>,
    /// A stable label for `error` (as in `stallwatch_sidecar_scrapes_total{outcome}`).
    pub error_kind: Option<String>,
    /// Since when scrapes fail, ms since the epoch.
    pub since_ms: Option<u64>,
    pub last_ok_ms: Option<u64>,
    /// App restarts seen as a mapped counter going backwards.
    pub app_restarts: u64,
    pub last_app_restart: Option<String>,
}

/// One scrape as kept for bundles: the mapped series (exposition lines), or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapeRecord {
    pub at_ms: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<String>,
}

pub(super) struct ZeroCode {
    pub(super) status: ScrapeStatus,
    pub(super) ring: VecDeque<ScrapeRecord>,
    capacity: usize,
}

impl ZeroCode {
    /// Keep one scrape in the ring and the status; `failure` is its kind and message.
    fn record(&mut self, at_ms: u64, series: Vec<String>, failure: Option<(&'static str, String)>) {
        let error = failure.as_ref().map(|(_, e)| e.clone());
        match failure {
            None => {
                self.status.ok = true;
                self.status.error = None;
                self.status.error_kind = None;
                self.status.since_ms = None;
                self.status.last_ok_ms = Some(at_ms);
            }
            Some((kind, error)) => {
                if self.status.error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(kind, "zero-code mode: no verdict from this scrape: {error}");
                }
                if self.status.ok || self.status.since_ms.is_none() {
                    self.status.since_ms = Some(at_ms);
                }
                self.status.ok = false;
                self.status.error = Some(error);
                self.status.error_kind = Some(kind.to_owned());
            }
        }
        if self.ring.len() >= self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(ScrapeRecord {
            at_ms,
            ok: error.is_none(),
            error,
            series,
        });
    }
}

/// What one scrape came to, as the scrape loop hands it over.
#[derive(Debug)]
pub enum ScrapeOutcome {
    /// Mapped: the report to judge and the mapped series as exposition lines.
    Mapped {
        adapted: Box<Adapted>,
        series: Vec<String>,
    },
    /// No verdict from this scrape: `kind` labels the metric, `error` is for people.
    Failed {
        kind: &'static str,
        error: String,
        series: Vec<String>,
    },
}

impl Monitor {
    /// Switch to zero-code mode: reports are refused, silence is not a stall, and every
    /// scrape is kept in a ring of `history` for bundles.
    pub fn enable_zero_code(&self, url: &str, history: usize) {
        let mut st = self.lock();
        st.zero_code = Some(ZeroCode {
            status: ScrapeStatus {
                url: url.to_owned(),
                ok: false,
                error: Some("no scrape yet".to_owned()),
                error_kind: Some("pending".to_owned()),
                since_ms: None,
                last_ok_ms: None,
                app_restarts: 0,
                last_app_restart: None,
            },
            ring: VecDeque::with_capacity(history.min(1024)),
            capacity: history.max(1),
        });
        self.metrics.scrape_ok.set(0);
    }

    /// Judge one scrape. A failed one changes no verdict: it sets the status, the metric
    /// and, while nothing is stalled, an `Unknown` pod condition naming the problem.
    pub fn observe_scrape(&self, outcome: ScrapeOutcome) {
        let mut st = self.lock();
        let at_ms = now_ms();
        let (series, failure) = match outcome {
            ScrapeOutcome::Mapped { adapted, series } => {
                (series, self.judge_mapped(&mut st, *adapted).err())
            }
            ScrapeOutcome::Failed {
                kind,
                error,
                series,
            } => (series, Some((kind, error))),
        };
        self.metrics
            .scrape(failure.as_ref().map_or("ok", |(kind, _)| kind));
        let Some(z) = st.zero_code.as_mut() else {
            return;
        };
        z.record(at_ms, series, failure);
        self.refresh_condition(&st);
    }

    /// Feed a mapped scrape to the verdict machine; `Err` with a kind and message if refused.
    fn judge_mapped(&self, st: &mut State, adapted: Adapted) -> Result<(), (&'static str, String)> {
        let Adapted { report, restart } = adapted;
        if let Some(why) = &restart {
            tracing::info!("{why}: new instance, progress baselines reset");
            self.metrics.app_restarts.inc();
        }
        let result = self.observe_locked(st, report);
        if let (Some(z), Some(why)) = (st.zero_code.as_mut(), restart) {
            z.status.app_restarts += 1;
            z.status.last_app_restart = Some(why);
        }
        // The adapter's reports are valid and in order; should one not be, say so.
        result.map_err(|e| {
            (
                "invalid_report",
                format!("the mapped series make no valid report: {e}"),
            )
        })
    }

    /// The pod condition after a scrape: `Unknown` while failing and nothing is stalled, the
    /// verdicts' condition otherwise (none before the first judged scrape, as in report mode).
    fn refresh_condition(&self, st: &State) {
        let now = self.now();
        let stalled = st.judge.stalled_streams(now);
        let desired = match zero_code_condition(st, &stalled) {
            Some(unknown) => unknown,
            None if st.judge.last_report_at().is_some() => {
                desired_condition(&stalled, st.judge.streams(now).len())
            }
            None => return,
        };
        self.set_condition(desired);
    }
}

/// In zero-code mode with a failing scrape and no stalled stream: the `Unknown` condition. A
/// stalled stream keeps its `False` condition: a verdict stays until progress is shown.
pub(super) fn zero_code_condition(
    st: &State,
    stalled: &[StalledStream],
) -> Option<DesiredCondition> {
    let z = st.zero_code.as_ref()?;
    if z.status.ok || !stalled.is_empty() {
        return None;
    }
    let error = z.status.error.as_deref().unwrap_or("no scrape yet");
    Some(DesiredCondition {
        healthy: false,
        unknown: true,
        reason: METRICS_UNAVAILABLE_REASON.to_owned(),
        message: stallwatch_core::report::truncate(
            &format!(
                "zero-code mode: no verdict: scraping {}: {error}",
                z.status.url
            ),
            stallwatch_core::condition::MAX_MESSAGE_LEN,
        ),
    })
}

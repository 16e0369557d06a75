//! Leader election with a `coordination.k8s.io/v1` Lease: a pure decision (acquire, renew,
//! take over an expired lease, or follow) and a thin I/O loop over [`LeaseStore`].
//!
//! Writes are replaces with the lease's resourceVersion, so two candidates racing for an
//! expired lease cannot both win: the loser gets 409 and follows.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

use stallwatch_core::sync::lock;

use crate::health::Heartbeat;

/// What one candidate sees of the Lease.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseView {
    pub holder: Option<String>,
    /// Last renewal, ms since the epoch.
    pub renewed_ms: Option<u64>,
    pub duration_ms: u64,
    pub transitions: i32,
}

/// What to do about the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// No lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else's lease expired (or was released): take it over.
    TakeOver,
    /// Someone else holds a live lease until `until_ms`.
    Follow { holder: String, until_ms: u64 },
}

/// The pure decision.
pub fn decide(lease: Option<&LeaseView>, me: &str, now_ms: u64) -> LeaseAction {
    let Some(l) = lease else {
        return LeaseAction::Create;
    };
    match l.holder.as_deref() {
        Some(h) if h == me => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver,
        Some(h) => {
            let until = l.renewed_ms.unwrap_or(0).saturating_add(l.duration_ms);
            if now_ms >= until {
                LeaseAction::TakeOver
            } else {
                LeaseAction::Follow {
                    holder: h.to_string(),
                    until_ms: until,
                }
            }
        }
    }
}

fn micro(ms: u64) -> MicroTime {
    MicroTime(Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        renewed_ms: spec.renew_time.map(|t| t.0.as_millisecond().max(0) as u64),
        duration_ms: spec.lease_duration_seconds.unwrap_or(15).max(1) as u64 * 1000,
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

/// [`decide`], remembering `last_seen`, the last Lease this candidate read. A missing lease
/// whose last holder was someone else, still live when last seen, was deleted under its
/// holder (`kubectl delete lease`): follow until it would have expired (the holder re-creates
/// it at its next renewal) instead of creating it at once and leading beside the holder for
/// up to a renew period.
pub fn decide_seen(
    lease: Option<&LeaseView>,
    last_seen: Option<&LeaseView>,
    me: &str,
    now_ms: u64,
) -> LeaseAction {
    if lease.is_none()
        && let Some(seen) = last_seen
        && let Some(holder) = seen.holder.as_deref().filter(|h| !h.is_empty() && *h != me)
    {
        let until = seen
            .renewed_ms
            .unwrap_or(0)
            .saturating_add(seen.duration_ms);
        if now_ms < until {
            return LeaseAction::Follow {
                holder: holder.to_string(),
                until_ms: until,
            };
        }
    }
    decide(lease, me, now_ms)
}

/// The Lease to write for `action`, from the current one.
pub fn next_lease(
    current: Option<&Lease>,
    name: &str,
    me: &str,
    action: &LeaseAction,
    now_ms: u64,
    duration: Duration,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let mut spec = lease.spec.take().unwrap_or_default();
    let taking = matches!(action, LeaseAction::Create | LeaseAction::TakeOver);
    if taking {
        spec.acquire_time = Some(micro(now_ms));
        if matches!(action, LeaseAction::TakeOver) {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        } else {
            spec.lease_transitions = Some(0);
        }
    }
    spec.holder_identity = Some(me.into());
    spec.renew_time = Some(micro(now_ms));
    spec.lease_duration_seconds = Some(duration.as_secs().max(1) as i32);
    lease.spec = Some(spec);
    lease
}

/// Why a lease write did not land.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else wrote first (409) or created it first.
    #[error("lost the race for the lease")]
    Conflict,
    #[error("lease API: {0}")]
    Api(#[source] kube::Error),
    /// No answer within a renew period (a hung connection): the round is given up, so the
    /// loop goes on renewing, or steps down, on time.
    #[error("no answer from the lease API within {0:?}")]
    Timeout(Duration),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The three Lease calls, so the loop can run against a mock.
pub trait LeaseStore: Send + Sync {
    fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, LeaseError>>;
    fn create(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>>;
    /// Replace with `lease.metadata.resourceVersion` as precondition.
    fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>>;
}

/// The real store.
pub struct KubeLeases {
    api: Api<Lease>,
    name: String,
    namespace: String,
}

impl KubeLeases {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        KubeLeases {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

fn lease_err(e: kube::Error) -> LeaseError {
    match e {
        kube::Error::Api(s) if s.code == 409 => LeaseError::Conflict,
        e => LeaseError::Api(e),
    }
}

impl LeaseStore for KubeLeases {
    fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, LeaseError>> {
        Box::pin(async move { self.api.get_opt(&self.name).await.map_err(lease_err) })
    }
    fn create(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
        Box::pin(async move {
            // Owned by the operator's Deployment: gone with `helm uninstall`.
            let client = self.api.clone().into_client();
            lease.metadata.owner_references =
                crate::owner::release_owner(&client, &self.namespace).await;
            self.api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(lease_err)
        })
    }
    fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
        Box::pin(async move {
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map_err(lease_err)
        })
    }
}

/// The outcome of one election round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    Leading,
    /// Someone else holds a live lease (`None`: we lost a race for it).
    Following {
        holder: Option<String>,
    },
}

/// One candidate.
pub struct Elector<S> {
    pub store: S,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// The Lease as last read or written ([`decide_seen`]).
    pub last_seen: std::sync::Mutex<Option<LeaseView>>,
}

impl<S: LeaseStore> Elector<S> {
    /// One round: returns whether we hold the lease afterwards.
    #[cfg(test)]
    pub async fn try_once(&self, now_ms: u64) -> Result<bool, LeaseError> {
        Ok(self.round(now_ms).await? == Round::Leading)
    }

    /// One round: acquire, renew or take over the lease, or follow its holder.
    pub async fn round(&self, now_ms: u64) -> Result<Round, LeaseError> {
        let current = self.store.get().await?;
        let seen = current.as_ref().map(view);
        let last = match &seen {
            Some(v) => lock(&self.last_seen).replace(v.clone()),
            None => lock(&self.last_seen).clone(),
        };
        let action = decide_seen(seen.as_ref(), last.as_ref(), &self.identity, now_ms);
        if let LeaseAction::Follow { holder, .. } = action {
            return Ok(Round::Following {
                holder: Some(holder),
            });
        }
        let next = next_lease(
            current.as_ref(),
            &self.name,
            &self.identity,
            &action,
            now_ms,
            self.duration,
        );
        let written = match action {
            LeaseAction::Create => self.store.create(next).await,
            _ => self.store.replace(next).await,
        };
        match written {
            Ok(lease) => {
                *lock(&self.last_seen) = Some(view(&lease));
                Ok(Round::Leading)
            }
            Err(LeaseError::Conflict) => Ok(Round::Following { holder: None }),
            Err(e) => Err(e),
        }
    }

    /// Give the lease up (at shutdown) so a follower takes it at its next round, without
    /// waiting for the lease to expire. The holder stays and the renew time moves one lease
    /// duration back (expired now): so the same identity coming back renews it (not a
    /// transition) while anyone else takes it over (a transition).
    pub async fn release(&self, now_ms: u64) -> Result<(), LeaseError> {
        let Some(mut lease) = self.store.get().await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let duration_ms = spec.lease_duration_seconds.unwrap_or(15).max(1) as u64 * 1000;
        spec.renew_time = Some(micro(now_ms.saturating_sub(duration_ms)));
        self.store.replace(lease).await.map(|_| ())
    }

    /// Campaign forever: publishes `true` while leading. Renews every third of the lease
    /// duration; a leader that fails to renew for a whole duration steps down. Beats
    /// `heartbeat` after every round (each round, and the release at shutdown, bounded by a
    /// renew period, so a hung connection neither stops the beats nor holds up a shutdown).
    pub async fn run_beating(
        &self,
        leading: watch::Sender<bool>,
        clock: impl Fn() -> u64,
        mut shutdown: watch::Receiver<bool>,
        heartbeat: &Heartbeat,
    ) {
        let period = self.duration / 3;
        let mut last_renewed: Option<u64> = None;
        // The holder last logged while following (a standby says once whom it waits for).
        let mut followed: Option<Option<String>> = None;
        loop {
            let now = clock();
            let round = tokio::time::timeout(period, self.round(now))
                .await
                .unwrap_or(Err(LeaseError::Timeout(period)));
            heartbeat.beat();
            heartbeat.wedge_point().await;
            match round {
                Ok(Round::Leading) => {
                    followed = None;
                    last_renewed = Some(now);
                    if !*leading.borrow() {
                        tracing::info!(identity = %self.identity, "acquired the leader lease");
                    }
                    leading.send_replace(true);
                }
                Ok(Round::Following { holder }) => {
                    if *leading.borrow() {
                        tracing::warn!(identity = %self.identity, "lost the leader lease");
                    }
                    if followed.as_ref() != Some(&holder) {
                        tracing::info!(
                            identity = %self.identity,
                            lease = %self.name,
                            holder = holder.as_deref().unwrap_or("another candidate"),
                            "standing by: waiting for the leader lease (retrying every {period:?})"
                        );
                        followed = Some(holder);
                    }
                    last_renewed = None;
                    leading.send_replace(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    let expired = last_renewed
                        .is_none_or(|t| now.saturating_sub(t) >= self.duration.as_millis() as u64);
                    if expired && *leading.borrow() {
                        tracing::warn!("could not renew the lease in time; stepping down");
                        leading.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => {
                    if *leading.borrow() {
                        let released = tokio::time::timeout(period, self.release(clock()))
                            .await
                            .unwrap_or(Err(LeaseError::Timeout(period)));
                        if let Err(e) = released {
                            tracing::warn!(error = %e, "releasing the lease failed");
                        }
                        leading.send_replace(false);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! `transit-sidecar`: runs next to a transit broadcaster in its pod, turns the broadcaster's
//! reports into a stall verdict per stream, makes a stall visible where Kubernetes and people
//! look, and captures diagnostic bundles onto the dump volume.
//!
//! - [`ingest`]: `POST /v1/reports` on loopback or a Unix socket; refusals are counted.
//! - [`monitor`]: shared state around `stallwatch_core::verdict::Judge`; status, history.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, `/v1/status`.
//! - [`admin`] + [`auth`]: the bearer-token admin API (dumps, stream restarts).
//! - [`publish`]: the pod condition (`pods/status`) and Events via kube.
//! - [`capture`], [`bundles`], [`procdump`]: dump bundles, written atomically, with retention;
//!   process dumps with minidump-writer or gcore when permitted.
//! - [`inspect`]: `transit-sidecar inspect BUNDLE`.
//! - [`broadcaster`]: client of the broadcaster's loopback admin API.
//! - [`run`]: wiring; [`cli`]: the command line.
//!
//! May depend on `stallwatch-core`, kube, k8s-openapi, axum, reqwest, minidump-writer,
//! prometheus-client. Verdict logic lives in `stallwatch-core`, not here; this crate is I/O.
//! No `unsafe` anywhere (the process-dump module reads capabilities from `/proc`).
#![deny(unsafe_code)]

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod broadcaster;
pub mod bundles;
pub(crate) mod capture;
pub mod cli;
pub(crate) mod http;
pub mod ingest;
pub mod inspect;
pub mod metrics;
pub mod monitor;
pub(crate) mod procdump;
pub(crate) mod publish;
pub mod run;
pub(crate) mod taskdump_render;

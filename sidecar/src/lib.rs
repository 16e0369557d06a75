//! `transit-sidecar`: runs next to a transit broadcaster in its pod, turns the broadcaster's
//! reports into a stall verdict per stream, makes a stall visible where Kubernetes and people
//! look, and captures diagnostic bundles onto the dump volume.
//!
//! # Modules
//!
//! State and its operations:
//! - [`monitor`]: shared state around `stallwatch_core::verdict::Judge`: status, recent reports,
//!   verdict history, the desired pod condition and the notices the I/O tasks act on (what a
//!   report or tick does: `monitor/verdicts.rs`; the shapes handed out: `monitor/views.rs`;
//!   the condition: `monitor/condition.rs`).
//! - [`metrics`]: the `stallwatch_sidecar_*` Prometheus metrics.
//! - [`bundles`]: writing bundles onto the dump volume (atomic, 0640/2770, retention) and
//!   verifying them; one write in `bundles/write.rs`, failures in `bundles/error.rs`, file
//!   system access behind the `Storage` trait (`bundles/storage.rs`).
//! - `capture`: one capture: the sidecar's state (`state.json`), the task dump, the process
//!   dump, handed to `bundles`. `procdump`: minidump / gcore when permitted.
//! - `taskdump_render`: the task dump for people (`tasks.txt`, stack groups), shared by
//!   `capture` and [`inspect`].
//! - `broadcaster`: client of the broadcaster's loopback admin API (task dump, restart).
//! - `http_client`: the HTTP/1.1 client of `broadcaster` and `scrape`, on the hyper stack
//!   kube's client links anyway (one HTTP client stack in the binary, not two).
//! - `scrape`: zero-code mode's scrape loop (an app's own metrics instead of reports),
//!   handing each outcome to `monitor` (whose `zero_code` part keeps the status and the
//!   ring of scrapes for bundles).
//!
//! Edges (HTTP and Kubernetes):
//! - `ingest`: `POST /v1/reports` on loopback or a Unix socket; refusals are counted.
//! - `http`: `/healthz`, `/readyz`, `/metrics`, `/v1/status`.
//! - `admin` + `auth`: the bearer-token admin API (dumps, stream restarts).
//! - `publish`: the pod condition (`pods/status`) and Events via kube.
//! - [`inspect`]: `transit-sidecar inspect BUNDLE`: a bundle read back for people.
//!
//! Start-up and the command line:
//! - [`cli`]: the command line (clap, env-var fallbacks).
//! - [`run`]: [`run::start`] wires everything (listeners through one `serve` helper, ticker,
//!   publisher, reactor) and [`run::run`] is the binary; `main.rs` only parses and calls it.
//!
//! # Module graph
//!
//! Imports point one way only (no module imports one that imports it back):
//!
//! ```text
//! run ──> admin, http, ingest, publish, capture, bundles, broadcaster, auth, cli, metrics, monitor, scrape
//!   run::command ──> run::serve, inspect, cli      run::background ──> run::serve, publish, capture, monitor
//! admin ──> capture, broadcaster, auth, monitor, metrics
//! inspect ──> capture (BundleState), bundles, taskdump_render, monitor
//! capture ──> bundles, procdump, broadcaster, taskdump_render, monitor, cli
//! http, ingest, publish ──> monitor (publish also metrics)
//! scrape ──> monitor, http_client   monitor ──> metrics           procdump ──> cli
//! broadcaster ──> http_client
//! leaves: metrics, bundles, http_client, taskdump_render, auth, cli
//! ```
//!
//! # Where a change goes
//!
//! - A verdict rule: not here, `stallwatch-core` (`core/src/verdict/`); what is kept about it
//!   (history, status fields): `monitor`.
//! - A new endpoint: `http` (public), `admin` (token-protected) or `ingest` (reports); its state
//!   in `monitor`, never in `run`.
//! - A new file in bundles: `capture` (what is collected) and `core/src/bundle.rs` (names);
//!   how it is written: `bundles`; how it is shown: `inspect` / `taskdump_render`.
//! - A new option: `cli` (with its env var, and `docs/architecture.md`), used in `run`.
//! - A new metric: `metrics`, incremented where the event happens.
//! - A new listener or background task: `run::serve` / `run::background`, wired in
//!   `run::start_with_storage`.
//!
//! May depend on `stallwatch-core`, kube, k8s-openapi, axum, hyper (the client kube links;
//! not reqwest: see `http_client`), minidump-writer, prometheus-client. Verdict logic lives in `stallwatch-core`, not here; this crate is I/O.
//! No `unsafe` anywhere (the process-dump module reads capabilities from `/proc`).
#![deny(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

// A module is `pub` when another crate uses it; the comment says which.
pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod broadcaster;
// The bundle store: tests/bundles.rs and tests/api.rs.
pub mod bundles;
pub(crate) mod capture;
// The options: the binary (main.rs) and the tests that start the sidecar in-process.
pub mod cli;
pub(crate) mod http;
pub(crate) mod http_client;
pub(crate) mod ingest;
// `transit-sidecar inspect`: tests/api.rs reads bundles with it.
pub mod inspect;
pub(crate) mod liveness;
// The metric registry: tests/ingest_fuzz.rs.
pub mod metrics;
// The verdicts and views: the workspace's e2e tests, tests/api.rs, tests/ingest_fuzz.rs.
pub mod monitor;
pub(crate) mod procdump;
pub(crate) mod publish;
// Start-up: the binary, the bench, tests/api.rs.
pub mod run;
pub(crate) mod scrape;
pub(crate) mod taskdump_render;

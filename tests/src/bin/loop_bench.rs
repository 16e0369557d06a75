//! `stallwatch-loop-bench`: the whole loop, measured with the real binaries.
//!
//! Induces `--stalls` stalls in one local "pod" (alternately `hang-dispatcher`, judged
//! `ChannelStuck` after `--stall-after`, and the story's `legacy-unsupervised` poison, judged
//! `DispatcherDead` at once), lets the operator's decision function with the local adapter dump
//! and restart each, and prints per-stall latencies: detection beyond the threshold, verdict to
//! durable bundle (no process dump), verdict to restart issued, stall to restart. The
//! broadcaster's `/healthz` is probed during every stall, to show what a liveness probe sees.
//! Then a soak (`--soak-secs`, default 600) with bursty, overloaded input counts false verdicts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use stallwatch_core::remediation::Policy;
use stallwatch_e2e::remediate::{LocalRemediator, LoopEventKind};
use stallwatch_e2e::{BroadcasterOpts, Env, Pod, Subscriber, find_log_after, now_ms};

#[derive(Parser, Debug)]
#[command(about = "Benchmark Stallwatch's detect-dump-restart loop with the real binaries")]
struct Args {
    /// Stalls to induce (at least 20 for the report).
    #[arg(long, env = "BENCH_STALLS", default_value_t = 20)]
    stalls: usize,
    /// The sidecar's `--stall-after`, in ms.
    #[arg(long, env = "BENCH_STALL_AFTER_MS", default_value_t = 2000)]
    stall_after_ms: u64,
    /// The broadcaster's report interval, in ms.
    #[arg(long, env = "BENCH_REPORT_INTERVAL_MS", default_value_t = 250)]
    report_interval_ms: u64,
    /// Soak duration with bursty input (0 skips the soak).
    #[arg(long, env = "BENCH_SOAK_SECS", default_value_t = 600)]
    soak_secs: u64,
}

#[derive(Debug)]
struct Sample {
    kind: &'static str,
    detect_beyond_ms: i64,
    verdict_to_bundle_ms: u64,
    capture_ms: u64,
    verdict_to_restart_ms: u64,
    stall_to_restart_ms: u64,
}

/// A table row: name, the measure, the stall kind it is about (all if none), the target.
type Row<'a> = (
    &'a str,
    &'a dyn Fn(&Sample) -> f64,
    Option<&'a str>,
    &'a str,
);

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

fn mode_opts(i: usize, opts: &mut BroadcasterOpts, fault_after_ms: u64) {
    if i.is_multiple_of(2) {
        // 100 messages/s: an item is waiting within 10 ms of the hang.
        opts.source = "synthetic://?rate=100&vehicles=20".into();
        opts.fault = Some("hang-dispatcher".into());
        opts.fault_after = Some(format!("{fault_after_ms}ms"));
    } else {
        opts.source = format!("synthetic://?rate=20&vehicles=20&poison_after={fault_after_ms}ms");
        opts.fault = Some("legacy-unsupervised".into());
        opts.fault_after = None;
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("loop bench failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let stall_after = args.stall_after_ms;
    println!(
        "stallwatch-loop-bench: {} stalls, stall-after {stall_after} ms, reports every {} ms, soak {} s",
        args.stalls, args.report_interval_ms, args.soak_secs
    );
    let mut bench = Bench::start(&args).await?;
    let mut samples = Vec::new();
    for i in 0..args.stalls {
        let s = bench.stall(i).await?;
        println!(
            "  stall {:2} {:14} detect +{:4} ms beyond threshold, bundle {:4} ms after verdict (capture {:3} ms), restart {:4} ms after verdict, {:5} ms after the stall",
            i + 1,
            s.kind,
            s.detect_beyond_ms,
            s.verdict_to_bundle_ms,
            s.capture_ms,
            s.verdict_to_restart_ms,
            s.stall_to_restart_ms
        );
        samples.push(s);
        bench.wait_recovered().await?;
    }
    let probes = bench.probes;
    drop(bench);

    let soak = if args.soak_secs > 0 {
        Some(soak(args.soak_secs, stall_after, args.report_interval_ms).await?)
    } else {
        None
    };
    print_table(&samples, soak.as_ref());
    println!(
        "\nBaseline, a default liveness probe (periodSeconds 10 x failureThreshold 3): at best 30 s after the \
         first failing probe, plus up to 10 s until that probe runs. But it never fires for this stall: the \
         broadcaster's /healthz answered 200 in {} of {} probes taken during the stalls above, since the \
         process is alive and serving while the stream broadcasts nothing.",
        probes.0, probes.1
    );
    Ok(())
}

/// When each stall's fault strikes after the broadcaster starts.
const FAULT_AFTER_MS: u64 = 1_500;

/// The local pod under test, the loop acting on it, and what the stalls so far measured.
struct Bench {
    pod: Pod,
    rem: LocalRemediator,
    stall_after: u64,
    /// (answered 200, total) `/healthz` probes during stalls.
    probes: (u32, u32),
    /// Verdicts from before this time belong to an earlier stall.
    start_ms: u64,
}

impl Bench {
    async fn start(args: &Args) -> Result<Self> {
        let stall_after = args.stall_after_ms;
        let env = Env::new()?;
        let mut bopts = BroadcasterOpts::new("synthetic://");
        mode_opts(0, &mut bopts, FAULT_AFTER_MS);
        bopts.report_interval = format!("{}ms", args.report_interval_ms);
        bopts.extra = vec!["--log-format=json".into()];
        let pod = Pod::start(env, bopts, |o| {
            o.stall_after = format!("{stall_after}ms");
            o.report_timeout = format!("{stall_after}ms");
            o.recover_after = "500ms".into();
        })
        .await?;
        let rem = LocalRemediator::new(Policy {
            budget_per_hour: 10_000,
            cooldown_ms: 0,
            dump_timeout_ms: 5_000,
            restart_timeout_ms: 10_000,
            ..Policy::default()
        });
        Ok(Bench {
            pod,
            rem,
            stall_after,
            probes: (0, 0),
            start_ms: now_ms(),
        })
    }

    /// Stall `i` (the mode the broadcaster was started in), remediated, measured.
    async fn stall(&mut self, i: usize) -> Result<Sample> {
        let kind = if i.is_multiple_of(2) {
            "ChannelStuck"
        } else {
            "DispatcherDead"
        };
        // The next start runs the next mode.
        mode_opts(i + 1, self.pod.broadcaster.opts_mut(), FAULT_AFTER_MS);
        let from = self.rem.events.len();
        let since = self.remediate(i, kind, from).await?;
        self.sample(i, kind, from, since)
    }

    /// Poll until the verdict, probe `/healthz` once, then run the loop until it restarts the
    /// broadcaster. Returns the verdict's `since_ms`.
    async fn remediate(&mut self, i: usize, kind: &str, from: usize) -> Result<u64> {
        let t0 = Instant::now();
        let mut since = None;
        loop {
            if t0.elapsed() > Duration::from_secs(40) {
                bail!(
                    "stall {i} ({kind}) not remediated within 40 s; events: {:?}",
                    &self.rem.events[from..]
                );
            }
            let status = self.pod.sidecar.status().await?;
            if since.is_none()
                && let Some(s) = status.stream("all")
                && s.verdict == "stalled"
                && s.since_ms.is_some_and(|t| t >= self.start_ms)
            {
                since = s.since_ms;
                self.probe_health().await;
            }
            if since.is_some() {
                self.rem
                    .pass(&self.pod.sidecar, &mut self.pod.broadcaster)
                    .await?;
                if self
                    .rem
                    .find(from, |k| *k == LoopEventKind::RestartIssued)
                    .is_some()
                {
                    return Ok(since.unwrap_or_default());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What a liveness probe would see during the stall.
    async fn probe_health(&mut self) {
        self.probes.1 += 1;
        if matches!(self.pod.broadcaster.healthz().await, Ok((200, _))) {
            self.probes.0 += 1;
        }
    }

    /// The stall's latencies, from the broadcaster's log, the loop's events and the bundle.
    fn sample(&self, i: usize, kind: &'static str, from: usize, since: u64) -> Result<Sample> {
        let needle = if i.is_multiple_of(2) {
            "awaits forever"
        } else {
            "poison"
        };
        let log = &self.pod.broadcaster.proc.log;
        let (stall_ms, _) = find_log_after(log, needle, self.start_ms.saturating_sub(50))
            .with_context(|| format!("no {needle:?} log line for stall {i}"))?;
        let threshold = if i.is_multiple_of(2) {
            stall_ms + self.stall_after
        } else {
            stall_ms
        };
        let (bundle_at, bundle_path) = self
            .rem
            .events
            .iter()
            .skip(from)
            .find_map(|e| match &e.kind {
                LoopEventKind::DumpCaptured { path, .. } => Some((e.at_ms, path.clone())),
                _ => None,
            })
            .with_context(|| format!("no bundle for stall {i}"))?;
        let restart_at = self
            .rem
            .find(from, |k| *k == LoopEventKind::RestartIssued)
            .map(|e| e.at_ms)
            .unwrap_or_default();
        Ok(Sample {
            kind,
            detect_beyond_ms: since as i64 - threshold as i64,
            verdict_to_bundle_ms: bundle_at.saturating_sub(since),
            capture_ms: capture_total_ms(&bundle_path),
            verdict_to_restart_ms: restart_at.saturating_sub(since),
            stall_to_restart_ms: restart_at.saturating_sub(stall_ms),
        })
    }

    /// Wait for the new process to be judged healthy before the next stall.
    async fn wait_recovered(&mut self) -> Result<()> {
        self.pod
            .broadcaster
            .wait_ready(Duration::from_secs(20))
            .await?;
        self.start_ms = now_ms();
        self.pod
            .wait_healthy("all", Duration::from_secs(30))
            .await?;
        self.rem
            .pass(&self.pod.sidecar, &mut self.pod.broadcaster)
            .await?;
        Ok(())
    }
}

/// The capture's own duration, from the bundle's manifest (`timings.total_ms`); 0 if unknown.
fn capture_total_ms(bundle_path: &str) -> u64 {
    std::fs::read_to_string(std::path::Path::new(bundle_path).join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["timings"]["total_ms"].as_u64())
        .unwrap_or(0)
}

/// The markdown table of percentiles, and the soak's line.
fn print_table(samples: &[Sample], soak: Option<&(u64, u64, String)>) {
    let col = |f: &dyn Fn(&Sample) -> f64, kind: Option<&str>| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| kind.is_none_or(|k| s.kind == k))
            .map(f)
            .collect();
        (pct(v.clone(), 50.0), pct(v.clone(), 99.0), v.len())
    };
    println!(
        "\n| measure ({} stalls) | p50 | p99 | target |",
        samples.len()
    );
    println!("| --- | ---: | ---: | --- |");
    let rows: [Row<'_>; 6] = [
        (
            "detection beyond threshold, ChannelStuck (ms)",
            &|s| s.detect_beyond_ms as f64,
            Some("ChannelStuck"),
            "p99 < 500 ms",
        ),
        (
            "detection after dispatcher death, DispatcherDead (ms)",
            &|s| s.detect_beyond_ms as f64,
            Some("DispatcherDead"),
            "p99 < 500 ms",
        ),
        (
            "verdict -> durable bundle, no process dump (ms)",
            &|s| s.verdict_to_bundle_ms as f64,
            None,
            "< 1000 ms",
        ),
        (
            "  of which the capture itself (manifest total_ms)",
            &|s| s.capture_ms as f64,
            None,
            "",
        ),
        (
            "verdict -> restart issued (ms)",
            &|s| s.verdict_to_restart_ms as f64,
            None,
            "< 2000 ms",
        ),
        (
            "stall begins -> restart issued (ms)",
            &|s| s.stall_to_restart_ms as f64,
            None,
            "",
        ),
    ];
    for (name, f, kind, target) in rows {
        let (p50, p99, n) = col(f, kind);
        println!("| {name} [n={n}] | {p50:.0} | {p99:.0} | {target} |");
    }
    match soak {
        Some((secs, verdicts, detail)) => println!(
            "| false verdicts in a {secs} s soak with bursty input | {verdicts} | | 0 |\n\n  soak: {detail}"
        ),
        None => println!("| false verdicts in a soak | not run (--soak-secs 0) | | 0 |"),
    }
}

/// A supervised broadcaster under bursty, overloaded input. The synthetic source has no burst
/// mode, so the bursts come from the load: the source asked for 400 messages/s with 1 %
/// malformed entities into the default 5-slot channel (it fills and drains as the dispatcher
/// competes for the CPU), a slow subscriber, and 10 subscribers connecting at once every 5 s.
async fn soak(secs: u64, stall_after: u64, report_ms: u64) -> Result<(u64, u64, String)> {
    let env = Env::new()?;
    let mut opts =
        BroadcasterOpts::new("synthetic://?rate=400&vehicles=40&malformed_rate=0.01&seed=3");
    opts.report_interval = format!("{report_ms}ms");
    opts.streams = vec!["downtown=routes:R1,R2".into(), "all".into()];
    let pod = Pod::start(env, opts, |o| {
        o.stall_after = format!("{stall_after}ms");
        o.report_timeout = format!("{stall_after}ms");
    })
    .await?;
    let url = pod.broadcaster.grpc_url();
    let _slow = Subscriber::spawn(
        &pod.env,
        "slow",
        &url,
        "all",
        Some(Duration::from_millis(200)),
    )?;
    let fast = Subscriber::spawn(&pod.env, "fast", &url, "downtown", None)?;
    let start = Instant::now();
    let mut churn = Vec::new();
    let mut seen_stalled = 0u64;
    let mut round = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        round += 1;
        // Every 5 s a burst of 10 subscribers connects; the previous burst disconnects.
        if round % 5 == 1 {
            churn.clear();
            for k in 0..10 {
                churn.push(Subscriber::spawn(
                    &pod.env,
                    &format!("churn-{k}"),
                    &url,
                    if k % 2 == 0 { "all" } else { "downtown" },
                    None,
                )?);
            }
        }
        let s = pod.sidecar.status().await?;
        seen_stalled += s
            .streams
            .iter()
            .filter(|st| st.verdict == "stalled")
            .count() as u64;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let detections = pod.sidecar.detections().await?;
    let m = pod.broadcaster.metrics().await?;
    let detail = format!(
        "{} messages, dropped-oldest {} (all) / {} (downtown), quarantined {}, subscriber lag {}, fast subscriber got {} updates; stalled seen in status polls: {seen_stalled}",
        m.sum("stallwatch_broadcaster_source_messages_total", &[]) as u64,
        m.stream("dropped_oldest_total", "all"),
        m.stream("dropped_oldest_total", "downtown"),
        m.sum("stallwatch_broadcaster_quarantined_total", &[]) as u64,
        m.sum("stallwatch_broadcaster_subscriber_lagged_total", &[]) as u64,
        fast.updates()
    );
    Ok((secs, detections.max(seen_stalled.min(1)), detail))
}

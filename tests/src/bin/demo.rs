//! `stallwatch-demo`: the story from `docs/` reproduced and remediated on a laptop, no cluster.
//!
//! Runs the real binaries: `transit-broadcaster` on its synthetic source in the
//! `legacy-unsupervised` fault mode with one malformed entity injected after a few seconds,
//! `transit-sidecar` with a local dump directory, a subscriber, and the operator's remediation
//! decision function with a local adapter that captures a bundle through the sidecar's admin
//! API and restarts the broadcaster process where the operator would delete the pod. Prints a
//! timeline, then `transit-sidecar inspect` on the bundle. Exits 0 only if every step happened.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use stallwatch_core::remediation::Policy;
use stallwatch_e2e::remediate::{LocalRemediator, LoopEventKind};
use stallwatch_e2e::{BroadcasterOpts, Env, Pod, Subscriber, find_log, inspect, now_ms};

#[derive(Parser, Debug)]
#[command(about = "Reproduce the story's silent stall and watch Stallwatch remediate it")]
struct Args {
    /// When the poison entity is injected.
    #[arg(long, env = "DEMO_POISON_AFTER", default_value = "5s")]
    poison_after: String,
    /// The sidecar's stall threshold.
    #[arg(long, env = "DEMO_STALL_AFTER", default_value = "2s")]
    stall_after: String,
    /// The broadcaster's report interval.
    #[arg(long, env = "DEMO_REPORT_INTERVAL", default_value = "250ms")]
    report_interval: String,
    /// Keep the dump directory here instead of a fresh temp dir.
    #[arg(long, env = "DEMO_DUMP_DIR")]
    dump_dir: Option<PathBuf>,
}

struct Timeline {
    start: Instant,
    start_ms: u64,
}

impl Timeline {
    fn at_ms(&self, ms: u64, what: &str) {
        let rel = ms.saturating_sub(self.start_ms) as f64 / 1000.0;
        println!("[+{rel:7.3}s] {what}");
    }
    fn now(&self, what: &str) {
        let rel = self.start.elapsed().as_secs_f64();
        println!("[+{rel:7.3}s] {what}");
    }
}

#[derive(Default)]
struct Steps {
    flowing: bool,
    poison: bool,
    dispatcher_gone: bool,
    verdict: bool,
    bundle: Option<String>,
    restart: bool,
    flowing_again: bool,
    inspect_missing_task: bool,
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("\nDEMO FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let tl = Timeline {
        start: Instant::now(),
        start_ms: now_ms(),
    };
    let deadline = Duration::from_secs(55);
    let env = Env::new()?;
    println!("Stallwatch demo: the story's silent stall, caught and remediated locally.");
    println!(
        "  broadcaster: synthetic feed, fault legacy-unsupervised (the story's unsupervised dispatcher), poison after {}",
        args.poison_after
    );
    println!(
        "  sidecar: stall-after {}, reports every {}; remediation: the operator's decision function (DumpAndRestart)\n",
        args.stall_after, args.report_interval
    );
    let mut bopts = BroadcasterOpts::new(&format!(
        "synthetic://?rate=10&vehicles=40&routes=4&poison_after={}",
        args.poison_after
    ))
    .fault("legacy-unsupervised");
    bopts.report_interval = args.report_interval.clone();
    bopts.extra = vec!["--log-format=json".into()];
    let dump_dir = args
        .dump_dir
        .clone()
        .unwrap_or_else(|| env.path().join("dumps"));
    let stall_after = args.stall_after.clone();
    let mut pod = Pod::start(env, bopts, |o| {
        o.stall_after = stall_after.clone();
        o.report_timeout = stall_after.clone();
        o.recover_after = "1s".into();
        o.dump_dir = dump_dir.clone();
    })
    .await?;
    tl.now(&format!(
        "broadcaster (pid {}) and sidecar (pid {}) running; dumps go to {}",
        pod.broadcaster.proc.pid().unwrap_or_default(),
        pod.sidecar.proc.pid().unwrap_or_default(),
        dump_dir.display()
    ));
    // The restarted process gets a feed without the poison entity: as in the story, a restart
    // helps (until the next bad message).
    pod.broadcaster.opts_mut().source = "synthetic://?rate=10&vehicles=40&routes=4".into();

    let mut steps = Steps::default();
    let mut sub = Subscriber::spawn(
        &pod.env,
        "subscriber",
        &pod.broadcaster.grpc_url(),
        "all",
        None,
    )?;
    let n = sub.wait_for(0, 5, Duration::from_secs(15)).await?;
    steps.flowing = true;
    tl.now(&format!(
        "updates flowing: subscriber received {n} updates on stream \"all\""
    ));

    let policy = Policy {
        dump_timeout_ms: 5_000,
        restart_timeout_ms: 10_000,
        cooldown_ms: 0,
        ..Policy::default()
    };
    let mut loop_ = LocalRemediator::new(policy);
    let blog = pod.broadcaster.proc.log.clone();
    let mut poison_ms = None;
    let mut dead_ms = None;
    let mut verdict_since = None;
    let mut restart_at = None;
    let mut updates_before_restart = 0;
    let mut printed = 0;
    while tl.start.elapsed() < deadline {
        if poison_ms.is_none()
            && let Some((ms, _)) = find_log(&blog, "poison")
        {
            poison_ms = Some(ms);
            steps.poison = true;
            tl.at_ms(
                ms,
                "poison message: the feed carries one malformed entity (broadcaster log: \"injecting one poison entity\")",
            );
        }
        let status = pod.sidecar.status().await?;
        if dead_ms.is_none()
            && let Some(s) = status.stream("all")
            && matches!(s.dispatcher.as_deref(), Some("dead" | "missing"))
        {
            dead_ms = Some(now_ms());
            steps.dispatcher_gone = true;
            let up = pod
                .broadcaster
                .metrics()
                .await
                .map(|m| m.stream("dispatcher_up", "all"))
                .unwrap_or(9);
            let health = pod.broadcaster.healthz().await.map(|h| h.0).unwrap_or(0);
            let snap = sub.snapshot();
            if let Some(last) = snap.last_at {
                let at = last.duration_since(tl.start).as_secs_f64();
                println!(
                    "[+{at:7.3}s] subscriber's last update (#{}); the connection stays open, nothing more arrives",
                    snap.updates
                );
            }
            tl.now(&format!(
                "dispatcher gone: reported {} (dispatcher_up={up}), channel {}/{}; process alive, /healthz still {health}, nothing logged",
                s.dispatcher.as_deref().unwrap_or("?"),
                s.depth.unwrap_or(0),
                s.capacity.unwrap_or(0)
            ));
        }
        if verdict_since.is_none()
            && let Some(s) = status.stream("all")
            && s.verdict == "stalled"
        {
            let since = s.since_ms.unwrap_or_else(now_ms);
            verdict_since = Some(since);
            steps.verdict = true;
            let reason = s.reason.map(|r| r.as_str()).unwrap_or("?");
            let after = match (reason, poison_ms) {
                ("ChannelStuck", Some(p)) => {
                    let threshold = p + humantime_ms(&args.stall_after);
                    format!(
                        "{} ms after the stall-after threshold",
                        since as i64 - threshold as i64
                    )
                }
                (_, Some(p)) => format!(
                    "{} ms after the poison message; a dead dispatcher is judged at once, threshold 0",
                    since.saturating_sub(p)
                ),
                _ => String::new(),
            };
            let judged = since.saturating_sub(tl.start_ms) as f64 / 1000.0;
            tl.now(
                &format!(
                    "VERDICT (judged at +{judged:.3}s): stream all stalled, {reason} ({after}); /readyz {}; \"{}\"",
                    pod.sidecar.readyz().await.unwrap_or(0),
                    s.message.clone().unwrap_or_default()
                ),
            );
        }
        // The loop reads the sidecar's status itself; let it act only once the timeline has
        // shown the verdict, or a stall seen first by the loop would skip those lines.
        if verdict_since.is_some() {
            loop_.pass(&pod.sidecar, &mut pod.broadcaster).await?;
        }
        for e in &loop_.events[printed..] {
            let text = match &e.kind {
                LoopEventKind::Note(reason) => format!("operator loop: {reason}: {}", e.text),
                LoopEventKind::DumpCaptured { path, bytes } => {
                    steps.bundle = Some(path.clone());
                    format!("BUNDLE captured: {path} ({bytes} bytes, durable)")
                }
                LoopEventKind::RestartIssued => {
                    steps.restart = true;
                    restart_at = Some(e.at);
                    updates_before_restart = sub.updates();
                    format!("RESTART: {}", e.text)
                }
                _ => format!("operator loop: {}", e.text),
            };
            tl.at_ms(e.at_ms, &text);
        }
        printed = loop_.events.len();
        if steps.restart {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    if steps.restart {
        pod.broadcaster.wait_ready(Duration::from_secs(15)).await?;
        // The old subscriber's stream ended with the old process; a client reconnects.
        let gone = sub.updates();
        sub = Subscriber::spawn(
            &pod.env,
            "subscriber-2",
            &pod.broadcaster.grpc_url(),
            "all",
            None,
        )?;
        match sub.wait_for(0, 5, Duration::from_secs(15)).await {
            Ok(n) => {
                steps.flowing_again = true;
                tl.now(&format!(
                    "updates flowing again: a reconnected subscriber received {n} updates, {} ms after the restart (the first subscriber had {gone}, none after the poison: {} at the restart)",
                    restart_at.map(|t| t.elapsed().as_millis()).unwrap_or(0),
                    updates_before_restart,
                ));
            }
            Err(e) => tl.now(&format!("updates did NOT resume: {e:#}")),
        }
        if let Ok(s) = pod.wait_healthy("all", Duration::from_secs(10)).await {
            tl.now(&format!(
                "sidecar: stream all healthy again (instance {})",
                s.instance.unwrap_or_default()
            ));
        }
        // Let the loop close the attempt.
        loop_.pass(&pod.sidecar, &mut pod.broadcaster).await?;
        for e in &loop_.events[printed..] {
            tl.at_ms(e.at_ms, &format!("operator loop: {}", e.text));
        }
    }

    let mut parse_error_named = false;
    if let Some(path) = &steps.bundle {
        println!("\n$ transit-sidecar inspect {path}");
        let text = inspect(std::path::Path::new(path), false)?;
        for line in text.lines() {
            println!("    {line}");
        }
        steps.inspect_missing_task = text.contains("no dispatcher task found for stream all");
        parse_error_named = text.contains("unobserved dispatcher failure: prepare failed");
        if steps.inspect_missing_task {
            println!(
                "\n=> the bundle shows what took days in the story: no reader task for the stream."
            );
        }
        if parse_error_named {
            println!("=> and it names the error that killed the dispatcher, which nothing logged.");
        }
    }

    let missing: Vec<&str> = [
        (steps.flowing, "updates flowing"),
        (steps.poison, "the poison message"),
        (steps.dispatcher_gone, "the dispatcher gone"),
        (steps.verdict, "the stall verdict"),
        (steps.bundle.is_some(), "the bundle"),
        (steps.restart, "the restart"),
        (steps.flowing_again, "updates flowing again"),
        (
            steps.inspect_missing_task,
            "inspect showing the missing dispatcher task",
        ),
        (parse_error_named, "inspect naming the parse error"),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, n)| n)
    .collect();
    let took = tl.start.elapsed();
    if !missing.is_empty() {
        eprintln!(
            "\nbroadcaster log tail:\n{}\n\nsidecar log tail:\n{}",
            pod.broadcaster.proc.tail(15),
            pod.sidecar.proc.tail(15)
        );
        bail!("missing step(s): {}", missing.join(", "));
    }
    println!(
        "\nOK: every step happened in {:.1}s. Bundle kept at {}",
        took.as_secs_f64(),
        steps.bundle.unwrap_or_default()
    );
    if args.dump_dir.is_none() {
        // Keep the bundle for the user to inspect.
        let kept = pod.env.keep();
        println!("(scratch dir kept: {})", kept.display());
    }
    Ok(())
}

fn humantime_ms(s: &str) -> u64 {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("ms") {
        return v.parse().unwrap_or(0);
    }
    if let Some(v) = s.strip_suffix('s') {
        return (v.parse::<f64>().unwrap_or(0.0) * 1000.0) as u64;
    }
    0
}

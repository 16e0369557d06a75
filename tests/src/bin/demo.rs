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
use stallwatch_e2e::{
    BroadcasterOpts, Env, Pod, StreamStatus, Subscriber, find_log, inspect, now_ms,
};

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

/// What the demo watched happen, and what it needs to tell the next step.
struct Demo {
    args: Args,
    tl: Timeline,
    pod: Pod,
    sub: Subscriber,
    remediator: LocalRemediator,
    steps: Steps,
    poison_ms: Option<u64>,
    dead_ms: Option<u64>,
    verdict_since: Option<u64>,
    restart_at: Option<Instant>,
    updates_before_restart: u64,
    /// Loop events already printed.
    printed: usize,
}

async fn run(args: Args) -> Result<()> {
    let tl = Timeline {
        start: Instant::now(),
        start_ms: now_ms(),
    };
    let pod = start_pod(&args, &tl).await?;
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
    let mut demo = Demo {
        args,
        tl,
        pod,
        sub,
        remediator: LocalRemediator::new(policy),
        steps,
        poison_ms: None,
        dead_ms: None,
        verdict_since: None,
        restart_at: None,
        updates_before_restart: 0,
        printed: 0,
    };
    demo.watch_until_restart(Duration::from_secs(55)).await?;
    if demo.steps.restart {
        demo.after_restart().await?;
    }
    let parse_error_named = demo.show_bundle()?;
    demo.finish(parse_error_named)
}

/// Print the story's setup and start the pod (sidecar, then broadcaster).
async fn start_pod(args: &Args, tl: &Timeline) -> Result<Pod> {
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
    Ok(pod)
}

impl Demo {
    /// Poll the logs, the sidecar and the loop until the loop restarts the broadcaster (or
    /// `deadline` since the start passes).
    async fn watch_until_restart(&mut self, deadline: Duration) -> Result<()> {
        while self.tl.start.elapsed() < deadline {
            self.note_poison();
            let status = self.pod.sidecar.status().await?;
            if self.dead_ms.is_none()
                && let Some(s) = status.stream("all")
                && matches!(s.dispatcher.as_deref(), Some("dead" | "missing"))
            {
                self.note_dispatcher_gone(s).await;
            }
            if self.verdict_since.is_none()
                && let Some(s) = status.stream("all")
                && s.verdict == "stalled"
            {
                self.note_verdict(s).await;
            }
            // The loop reads the sidecar's status itself; let it act only once the timeline has
            // shown the verdict, or a stall seen first by the loop would skip those lines.
            if self.verdict_since.is_some() {
                self.remediator
                    .pass(&self.pod.sidecar, &mut self.pod.broadcaster)
                    .await?;
            }
            self.print_loop_events();
            if self.steps.restart {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    fn note_poison(&mut self) {
        if self.poison_ms.is_some() {
            return;
        }
        if let Some((ms, _)) = find_log(&self.pod.broadcaster.proc.log, "poison") {
            self.poison_ms = Some(ms);
            self.steps.poison = true;
            self.tl.at_ms(
                ms,
                "poison message: the feed carries one malformed entity (broadcaster log: \"injecting one poison entity\")",
            );
        }
    }

    async fn note_dispatcher_gone(&mut self, s: &StreamStatus) {
        self.dead_ms = Some(now_ms());
        self.steps.dispatcher_gone = true;
        let up = self
            .pod
            .broadcaster
            .metrics()
            .await
            .map(|m| m.stream("dispatcher_up", "all"))
            .unwrap_or(9);
        let health = self
            .pod
            .broadcaster
            .healthz()
            .await
            .map(|h| h.0)
            .unwrap_or(0);
        let snap = self.sub.snapshot();
        if let Some(last) = snap.last_at {
            let at = last.duration_since(self.tl.start).as_secs_f64();
            println!(
                "[+{at:7.3}s] subscriber's last update (#{}); the connection stays open, nothing more arrives",
                snap.updates
            );
        }
        self.tl.now(&format!(
            "dispatcher gone: reported {} (dispatcher_up={up}), channel {}/{}; process alive, /healthz still {health}, nothing logged",
            s.dispatcher.as_deref().unwrap_or("?"),
            s.depth.unwrap_or(0),
            s.capacity.unwrap_or(0)
        ));
    }

    async fn note_verdict(&mut self, s: &StreamStatus) {
        let since = s.since_ms.unwrap_or_else(now_ms);
        self.verdict_since = Some(since);
        self.steps.verdict = true;
        let reason = s.reason.map(|r| r.as_str()).unwrap_or("?");
        let after = match (reason, self.poison_ms) {
            ("ChannelStuck", Some(p)) => {
                let threshold = p + humantime_ms(&self.args.stall_after);
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
        let judged = since.saturating_sub(self.tl.start_ms) as f64 / 1000.0;
        self.tl.now(&format!(
            "VERDICT (judged at +{judged:.3}s): stream all stalled, {reason} ({after}); /readyz {}; \"{}\"",
            self.pod.sidecar.readyz().await.unwrap_or(0),
            s.message.clone().unwrap_or_default()
        ));
    }

    /// Print the loop's new events, noting the bundle and the restart.
    fn print_loop_events(&mut self) {
        for e in &self.remediator.events[self.printed..] {
            let text = match &e.kind {
                LoopEventKind::Note(reason) => format!("operator loop: {reason}: {}", e.text),
                LoopEventKind::DumpCaptured { path, bytes } => {
                    self.steps.bundle = Some(path.clone());
                    format!("BUNDLE captured: {path} ({bytes} bytes, durable)")
                }
                LoopEventKind::RestartIssued => {
                    self.steps.restart = true;
                    self.restart_at = Some(e.at);
                    self.updates_before_restart = self.sub.updates();
                    format!("RESTART: {}", e.text)
                }
                _ => format!("operator loop: {}", e.text),
            };
            self.tl.at_ms(e.at_ms, &text);
        }
        self.printed = self.remediator.events.len();
    }

    /// A reconnected subscriber gets updates again; the sidecar sees the stream healthy; the
    /// loop closes the attempt.
    async fn after_restart(&mut self) -> Result<()> {
        self.pod
            .broadcaster
            .wait_ready(Duration::from_secs(15))
            .await?;
        // The old subscriber's stream ended with the old process; a client reconnects.
        let gone = self.sub.updates();
        self.sub = Subscriber::spawn(
            &self.pod.env,
            "subscriber-2",
            &self.pod.broadcaster.grpc_url(),
            "all",
            None,
        )?;
        match self.sub.wait_for(0, 5, Duration::from_secs(15)).await {
            Ok(n) => {
                self.steps.flowing_again = true;
                self.tl.now(&format!(
                    "updates flowing again: a reconnected subscriber received {n} updates, {} ms after the restart (the first subscriber had {gone}, none after the poison: {} at the restart)",
                    self.restart_at.map(|t| t.elapsed().as_millis()).unwrap_or(0),
                    self.updates_before_restart,
                ));
            }
            Err(e) => self.tl.now(&format!("updates did NOT resume: {e:#}")),
        }
        if let Ok(s) = self.pod.wait_healthy("all", Duration::from_secs(10)).await {
            self.tl.now(&format!(
                "sidecar: stream all healthy again (instance {})",
                s.instance.unwrap_or_default()
            ));
        }
        // Let the loop close the attempt.
        self.remediator
            .pass(&self.pod.sidecar, &mut self.pod.broadcaster)
            .await?;
        for e in &self.remediator.events[self.printed..] {
            self.tl
                .at_ms(e.at_ms, &format!("operator loop: {}", e.text));
        }
        Ok(())
    }

    /// `transit-sidecar inspect` on the bundle, printed; whether it names the parse error.
    fn show_bundle(&mut self) -> Result<bool> {
        let Some(path) = &self.steps.bundle else {
            return Ok(false);
        };
        println!("\n$ transit-sidecar inspect {path}");
        let text = inspect(std::path::Path::new(path), false)?;
        for line in text.lines() {
            println!("    {line}");
        }
        self.steps.inspect_missing_task = text.contains("no dispatcher task found for stream all");
        let parse_error_named = text.contains("unobserved dispatcher failure: prepare failed");
        if self.steps.inspect_missing_task {
            println!(
                "\n=> the bundle shows what took days in the story: no reader task for the stream."
            );
        }
        if parse_error_named {
            println!("=> and it names the error that killed the dispatcher, which nothing logged.");
        }
        Ok(parse_error_named)
    }

    /// Fail naming every step that did not happen; otherwise say where the bundle is.
    fn finish(self, parse_error_named: bool) -> Result<()> {
        let steps = &self.steps;
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
        let took = self.tl.start.elapsed();
        if !missing.is_empty() {
            eprintln!(
                "\nbroadcaster log tail:\n{}\n\nsidecar log tail:\n{}",
                self.pod.broadcaster.proc.tail(15),
                self.pod.sidecar.proc.tail(15)
            );
            bail!("missing step(s): {}", missing.join(", "));
        }
        println!(
            "\nOK: every step happened in {:.1}s. Bundle kept at {}",
            took.as_secs_f64(),
            self.steps.bundle.clone().unwrap_or_default()
        );
        if self.args.dump_dir.is_none() {
            // Keep the bundle for the user to inspect.
            let kept = self.pod.env.keep();
            println!("(scratch dir kept: {})", kept.display());
        }
        Ok(())
    }
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

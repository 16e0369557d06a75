//! The closing table: issue 14's targets against this run's numbers, ours (the default gRPC
//! server) first, with what each was compared to. Sections not run say so. Targets 4 and 5
//! belong to the sidecar and operator benches.

use super::memory::MemoryRow;
use super::scale::ScaleResult;
use super::{GrpcServer, Row, SystemRow, latency_fractions, system_name};

/// One scale configuration's results: the gRPC servers, NATS, the TCP floor.
pub type ScaleRun = (Vec<ScaleResult>, Option<ScaleResult>, Option<ScaleResult>);

struct Line {
    target: String,
    measured: String,
    met: Option<bool>,
}

fn ours() -> &'static str {
    system_name(GrpcServer::default())
}

fn our_row(row: &Row) -> Option<&SystemRow> {
    row.grpc.iter().find(|s| s.system == ours())
}

fn fanout_lines(rows: &[Row], out: &mut Vec<Line>) {
    for row in rows {
        let (Some(us), Some(nats)) = (our_row(row), &row.nats) else {
            continue;
        };
        if nats.peak.deliveries == 0 {
            out.push(Line {
                target: format!(
                    "1. deliveries/s >= 1.0x nats-server, {} subscribers",
                    row.subs
                ),
                measured: "not measured: the NATS round delivered nothing".into(),
                met: None,
            });
            continue;
        }
        let ratio = us.peak.rate() / nats.peak.rate().max(1e-9);
        out.push(Line {
            target: format!(
                "1. deliveries/s >= 1.0x nats-server, {} subscribers",
                row.subs
            ),
            measured: format!(
                "{ratio:.2}x ({:.0} vs {:.0}/s)",
                us.peak.rate(),
                nats.peak.rate()
            ),
            met: Some(ratio >= 1.0),
        });
    }
    let Some(half) = latency_fractions().iter().position(|f| *f == 0.5) else {
        return;
    };
    for row in rows {
        let (Some(us), Some(nats)) = (our_row(row), &row.nats) else {
            continue;
        };
        let (p99, nats_p99) = (
            us.latency[half].percentile(0.99),
            nats.latency[half].percentile(0.99),
        );
        out.push(Line {
            target: format!(
                "2. p99 at half of peak < 10 ms and <= nats-server's, {} subscribers",
                row.subs
            ),
            measured: format!("{p99:.2} ms (nats-server {nats_p99:.2} ms)"),
            met: Some(p99 < 10.0 && p99 <= nats_p99),
        });
    }
}

fn scale_lines(runs: &[ScaleRun], out: &mut Vec<Line>) {
    for (grpc, nats, floor) in runs {
        let Some(us) = grpc.iter().find(|r| r.system == ours()) else {
            continue;
        };
        if us.subscribers < 10_000 {
            continue;
        }
        let mut compared = Vec::new();
        if let Some(n) = nats {
            compared.push(format!("nats-server {:.1} ms", n.percentile(0.99)));
        }
        if let Some(f) = floor {
            compared.push(format!("TCP floor {:.1} ms", f.percentile(0.99)));
        }
        let p99 = us.percentile(0.99);
        out.push(Line {
            target: format!(
                "3. p99 < 50 ms, {} subscribers on {} real connections",
                us.subscribers, us.connections
            ),
            measured: format!("{p99:.1} ms ({})", compared.join(", ")),
            met: Some(p99 < 50.0),
        });
        let lag = us.gaps + us.missed + us.server_lagged.unwrap_or(0);
        out.push(Line {
            target: format!(
                "3. none lagged, {} subscribers on {} real connections",
                us.subscribers, us.connections
            ),
            measured: format!(
                "{} gaps, {} missed, {} lagged (server), {} deliveries",
                us.gaps,
                us.missed,
                us.server_lagged.unwrap_or(0),
                us.deliveries
            ),
            met: Some(lag == 0),
        });
    }
}

fn memory_lines(rows: &[MemoryRow], out: &mut Vec<Line>) {
    for r in rows {
        if r.server != GrpcServer::default() || r.connections != r.subscribers {
            continue;
        }
        out.push(Line {
            target: format!(
                "3. <= 16 KiB per idle subscriber on its own connection ({})",
                r.subscribers
            ),
            measured: format!("{:.1} KiB", r.per_kib()),
            met: Some(r.per_kib() <= 16.0),
        });
    }
}

/// Prints the table; `None` for a section that did not run.
pub fn print(fanout: Option<&[Row]>, memory: Option<&[MemoryRow]>, scale: Option<&[ScaleRun]>) {
    let mut lines = Vec::new();
    let skipped = |what: &str, section: &str| Line {
        target: what.to_string(),
        measured: format!("not run (BENCH_SECTIONS without {section})"),
        met: None,
    };
    match fanout {
        Some(rows) => fanout_lines(rows, &mut lines),
        None => lines.push(skipped("1. and 2. (fan-out)", "fanout")),
    }
    match scale {
        Some(runs) => scale_lines(runs, &mut lines),
        None => lines.push(skipped("3. p99 and lag at 10,000", "scale")),
    }
    match memory {
        Some(rows) => memory_lines(rows, &mut lines),
        None => lines.push(skipped("3. memory per idle subscriber", "memory")),
    }
    for (target, bench) in [
        (
            "4. sidecar steady RSS <= 8 MiB",
            "cargo bench -p transit-sidecar --bench sidecar",
        ),
        (
            "5. operator RSS <= 32 MiB",
            "cargo bench -p transit-operator --bench footprint_real",
        ),
    ] {
        lines.push(Line {
            target: target.to_string(),
            measured: format!("not this bench: `{bench}`"),
            met: None,
        });
    }
    println!("## Issue 14 targets, this run ({})", ours());
    println!();
    println!("| target | measured | met |");
    println!("|---|---|---|");
    for l in lines {
        let met = match l.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        println!("| {} | {} | {met} |", l.target, l.measured);
    }
    println!();
}

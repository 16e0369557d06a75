//! Process dumps of the broadcaster: a minidump (threads, stacks, modules; tens of KB) via
//! `minidump-writer`, or a full core via `gcore` when explicitly enabled.
//!
//! Both need the pod to share its process namespace (`shareProcessNamespace: true`, so the
//! broadcaster's pid is visible here) and the sidecar to hold `CAP_SYS_PTRACE`. When either is
//! missing the bundle's manifest says so instead of carrying a dump. A minidump written
//! without ptrace rights "succeeds" with zero threads; that case is detected by reading the
//! thread list back from the minidump and reported as a failure.
//!
//! No `unsafe` is needed: capabilities come from `/proc/self/status`, the dumpers do the
//! ptrace work.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stallwatch_core::bundle::{CORE_FILE, MINIDUMP_FILE, ProcessDumpKind, ProcessDumpOutcome};

use crate::cli::ProcessDumpMode;

/// `CAP_SYS_PTRACE`'s bit in the capability sets.
const CAP_SYS_PTRACE: u32 = 19;
/// A core of a large process can take a while; beyond this gcore is killed.
pub const GCORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a process dump cannot be taken here, or `Ok` when it may be attempted.
pub fn permission(
    pid: Option<u32>,
    own_pid: u32,
    proc_root: &Path,
    cap_eff: Option<u64>,
) -> Result<u32, String> {
    let pid = pid.ok_or_else(|| {
        "the broadcaster's reports carry no pid, so there is no process to dump".to_owned()
    })?;
    if pid == own_pid {
        return Err(format!(
            "the broadcaster reports pid {pid}, which is the sidecar itself: the pod does not share its process namespace (set shareProcessNamespace: true)"
        ));
    }
    if !proc_root.join(pid.to_string()).exists() {
        return Err(format!(
            "pid {pid} is not visible from the sidecar: the pod does not share its process namespace (set shareProcessNamespace: true)"
        ));
    }
    match cap_eff {
        Some(caps) if caps & (1 << CAP_SYS_PTRACE) != 0 => Ok(pid),
        Some(_) => Err(
            "the sidecar lacks CAP_SYS_PTRACE (add SYS_PTRACE to the sidecar container's securityContext.capabilities)"
                .to_owned(),
        ),
        None => Err("cannot read the sidecar's capabilities from /proc/self/status".to_owned()),
    }
}

/// The effective capability set from a `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

fn own_cap_eff() -> Option<u64> {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
}

/// Take the configured process dump of `pid` into `dir`. Blocking; run it off the runtime.
pub fn dump(mode: ProcessDumpMode, pid: Option<u32>, dir: &Path) -> ProcessDumpOutcome {
    let take: fn(u32, &Path) -> ProcessDumpOutcome = match mode {
        ProcessDumpMode::None => {
            return ProcessDumpOutcome::Skipped {
                why: "process dumps are off (--process-dump none)".to_owned(),
            };
        }
        ProcessDumpMode::Minidump => minidump,
        ProcessDumpMode::Full => core,
    };
    match permission(pid, std::process::id(), Path::new("/proc"), own_cap_eff()) {
        Ok(pid) => take(pid, dir),
        Err(why) => ProcessDumpOutcome::Skipped { why },
    }
}

fn minidump(pid: u32, dir: &Path) -> ProcessDumpOutcome {
    let path = dir.join(MINIDUMP_FILE);
    let result = (|| -> Result<Vec<u8>, String> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .read(true)
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        let pid = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        minidump_writer::minidump_writer::MinidumpWriterConfig::new(pid, pid)
            .write(&mut file)
            .map_err(|e| format!("minidump-writer: {e}"))
    })();
    let outcome = match result {
        Err(why) => ProcessDumpOutcome::Failed { why },
        Ok(bytes) => judge_minidump(&bytes),
    };
    if !matches!(outcome, ProcessDumpOutcome::Written { .. }) {
        let _ = fs::remove_file(&path);
    }
    outcome
}

/// A minidump is only useful with threads in it: zero threads means ptrace attach was refused
/// (e.g. no `CAP_SYS_PTRACE` against a target with more capabilities) although the writer
/// reported success.
pub fn judge_minidump(bytes: &[u8]) -> ProcessDumpOutcome {
    match minidump_thread_count(bytes) {
        Err(why) => ProcessDumpOutcome::Failed {
            why: format!("the minidump is unreadable: {why}"),
        },
        Ok(0) => ProcessDumpOutcome::Failed {
            why: "the minidump has no threads: attaching with ptrace was refused (the sidecar needs CAP_SYS_PTRACE and a target it may trace)".to_owned(),
        },
        Ok(threads) => ProcessDumpOutcome::Written {
            kind: ProcessDumpKind::Minidump,
            file: MINIDUMP_FILE.to_owned(),
            bytes: bytes.len() as u64,
            threads: u64::from(threads),
        },
    }
}

/// The number of threads in a minidump's thread list stream.
pub fn minidump_thread_count(bytes: &[u8]) -> Result<u32, String> {
    const SIGNATURE: u32 = 0x504d_444d; // "MDMP"
    const THREAD_LIST_STREAM: u32 = 3;
    let u32_at = |off: usize| -> Result<u32, String> {
        bytes
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated at offset {off}"))
    };
    if u32_at(0)? != SIGNATURE {
        return Err("not a minidump (bad signature)".to_owned());
    }
    let streams = u32_at(8)? as usize;
    let dir = u32_at(12)? as usize;
    for i in 0..streams.min(4096) {
        let entry = dir + i * 12;
        if u32_at(entry)? == THREAD_LIST_STREAM {
            let rva = u32_at(entry + 8)? as usize;
            return u32_at(rva);
        }
    }
    Ok(0)
}

fn core(pid: u32, dir: &Path) -> ProcessDumpOutcome {
    let prefix = dir.join("broadcaster");
    let threads = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let mut child = match Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return ProcessDumpOutcome::Failed {
                why: format!("cannot run gcore (is gdb installed in the image?): {e}"),
            };
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > GCORE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return ProcessDumpOutcome::Failed {
                    why: format!("gcore took longer than {GCORE_TIMEOUT:?} and was killed"),
                };
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return ProcessDumpOutcome::Failed {
                    why: format!("waiting for gcore: {e}"),
                };
            }
        }
    };
    let produced = dir.join(format!("broadcaster.{pid}"));
    if !status.success() || !produced.exists() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        let _ = fs::remove_file(&produced);
        return ProcessDumpOutcome::Failed {
            why: format!(
                "gcore {status}: {}",
                stallwatch_core::report::truncate(stderr.trim(), 512)
            ),
        };
    }
    let target = dir.join(CORE_FILE);
    if let Err(e) = fs::rename(&produced, &target) {
        return ProcessDumpOutcome::Failed {
            why: format!("renaming the core: {e}"),
        };
    }
    let bytes = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    ProcessDumpOutcome::Written {
        kind: ProcessDumpKind::Core,
        file: CORE_FILE.to_owned(),
        bytes,
        threads,
    }
}

#[cfg(test)]
mod tests;

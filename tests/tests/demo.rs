//! The README's first command stays working: `stallwatch-demo` (what `scripts/demo.sh` runs)
//! exits 0, having printed every step of the timeline.

use std::process::Command;

#[test]
fn the_demo_runs_every_step() {
    stallwatch_e2e::bin("transit-broadcaster").unwrap();
    let dumps = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stallwatch-demo"))
        .args(["--poison-after=2s", "--stall-after=1s"])
        .arg(format!("--dump-dir={}", dumps.path().display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for step in [
        "updates flowing:",
        "poison message:",
        "dispatcher gone:",
        "VERDICT",
        "BUNDLE captured:",
        "RESTART:",
        "updates flowing again:",
        "no dispatcher task found for stream all",
        "OK: every step happened",
    ] {
        assert!(stdout.contains(step), "{step:?} missing:\n{stdout}");
    }
}

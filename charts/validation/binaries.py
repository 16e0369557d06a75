"""What the built binaries say about themselves: `transit-operator rbac` (the permissions this
build uses) and the `--help` of `transit-operator run` and `transit-sidecar run` (their CLI
and env vars). scripts/test.sh builds the binaries before it runs the validation."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from .common import ROOT, CheckFailed, require

PROFILE = "debug"


def target_dir() -> Path:
    """Cargo's target directory: $CARGO_TARGET_DIR (relative to the workspace, as cargo run
    from there takes it) or target/."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    return (ROOT / configured) if configured else ROOT / "target"


def binary(name: str) -> Path:
    path = target_dir() / PROFILE / name
    require(path.is_file(), f"{path} is missing: build it first "
                            f"(cargo build --bin {name}; scripts/test.sh builds every binary)")
    return path


def run(name: str, *args: str) -> str:
    """The stdout of `name args...`; a non-zero exit is a failure with its stderr."""
    exe = binary(name)
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "NO_COLOR": "1"})
    if proc.returncode != 0:
        raise CheckFailed(f"`{exe.relative_to(ROOT) if exe.is_relative_to(ROOT) else exe} "
                          f"{' '.join(args)}` exited {proc.returncode}: "
                          f"{proc.stderr.strip()[:300]} (a stale binary? rebuild it)")
    return proc.stdout


def operator_rbac() -> dict:
    """`transit-operator rbac`, parsed: {operator, leaderElection, sidecar} -> rules."""
    text = run("transit-operator", "rbac")
    doc = yaml.safe_load(text)
    require(isinstance(doc, dict), f"`transit-operator rbac` printed no YAML mapping: {text[:200]!r}")
    return doc


def env_vars(help_text: str) -> set[str]:
    """Every `[env: NAME=]` clap lists in a --help text."""
    return set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)=", help_text))


def option_default(help_text: str, option: str) -> str:
    """The `[default: ...]` clap shows for `--option` in a --help text (short or long form),
    looked for only in that option's own block."""
    blocks = re.split(r"\n(?=\s+-)", help_text)
    block = next((b for b in blocks if re.match(r"\s+" + re.escape(option) + r"\b", b)), None)
    require(block is not None, f"no `{option}` in the --help text")
    m = re.search(r"\[default: ([^\]]*)\]", block)
    require(m is not None, f"`{option}` shows no default in the --help text")
    return m.group(1)

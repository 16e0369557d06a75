#!/usr/bin/env bash
# Installs what the tests need and the machine may lack: nats-server and promtool (Debian's
# `prometheus` package, for the chart's alert rules), the node tests' container runtime and
# network (containerd, runc, the CNI plugins, iptables; debootstrap for the images that need a
# Debian base: scripts/build-images.py) and the pinned Python tools for offline chart
# validation (a virtualenv in .venv). Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to apt-get install $*; install it yourself or run as root" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -f /tmp/.stallwatch-apt-updated ]; then
    apt-get update -qq >/dev/null && touch /tmp/.stallwatch-apt-updated
  fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The pinned toolchain (rust-toolchain.toml), linked from the installed stable where they match.
scripts/toolchain.sh

# cargo-deny for `cargo deny check licenses bans sources` (deny.toml). A debug build installs in
# about 2 CPU-minutes instead of 6 and checks this graph in under a second.
cargo_deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qF "$cargo_deny_version"; then
  echo "setup: installing cargo-deny $cargo_deny_version (cargo install, debug build)"
  cargo install --quiet --locked --debug --version "$cargo_deny_version" cargo-deny
fi

if ! command -v nats-server >/dev/null 2>&1; then
  echo "setup: installing nats-server (Debian package)"
  apt_install nats-server
fi

if ! command -v promtool >/dev/null 2>&1; then
  # The package also brings a Prometheus server whose unit would start on :9090, the
  # broadcaster's port in the tests: a policy-rc.d keeps it from starting (promtool is all the
  # tests use).
  echo "setup: installing promtool (Debian package prometheus)"
  policy=/usr/sbin/policy-rc.d
  if [ "$(id -u)" = 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt_install prometheus
fi

# The node tests (tests/envtest, `node` mode): a real kubelet needs a container runtime and
# network plugins. Nothing is started here: the tests run containerd with their own config.
node_packages=()
command -v containerd >/dev/null 2>&1 || node_packages+=(containerd)
command -v runc >/dev/null 2>&1 || node_packages+=(runc)
[ -x /usr/lib/cni/bridge ] || node_packages+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || node_packages+=(iptables)
command -v debootstrap >/dev/null 2>&1 || node_packages+=(debootstrap)
if [ ${#node_packages[@]} -gt 0 ]; then
  echo "setup: installing ${node_packages[*]} (Debian packages, for the node tests)"
  policy=/usr/sbin/policy-rc.d
  if [ "$(id -u)" = 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt_install "${node_packages[@]}"
fi

# Python tools in .venv: chart validation (charts/requirements.txt) and the broadcaster's
# grpcio interop tests (broadcaster/tests/requirements.txt), resolved together in one pip run.
# The stamp is the hash of every file, so changing any of them reinstalls.
requirements=()
for f in charts/requirements.txt broadcaster/tests/requirements.txt; do
  if [ -f "$f" ]; then requirements+=("$f"); fi
done
if [ ${#requirements[@]} -gt 0 ]; then
  stamp=.venv/.requirements.sha256
  want=$(sha256sum "${requirements[@]}" | sha256sum | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv with ${requirements[*]}"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "${requirements[@]/#/--requirement=}"
    echo "$want" > "$stamp"
  fi
fi

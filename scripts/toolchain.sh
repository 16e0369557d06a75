#!/usr/bin/env bash
# rust-toolchain.toml pins a release by number. On a machine without network access to the
# toolchain server, rustup may know that same release only as "stable": link it under the pinned
# name rather than letting rustup try (and fail) to download it. Never installs anything else:
# a different stable release is an error that says what to do.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rustup >/dev/null 2>&1 || exit 0
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
if rustup toolchain list | grep -q "^${pinned}[- ]"; then
  exit 0
fi
stable=$(rustc +stable --version 2>/dev/null | cut -d' ' -f2 || true)
if [ "$stable" = "$pinned" ]; then
  echo "toolchain: linking the installed stable ($stable) as $pinned"
  # `rustup toolchain link` refuses names that look like releases, so link the directory as
  # rustup itself lays out an installed release.
  sysroot=$(rustc +stable --print sysroot)
  host=$(rustc +stable -vV | sed -n 's/^host: //p')
  ln -s "$sysroot" "$(dirname "$sysroot")/${pinned}-${host}"
else
  echo "toolchain: rust-toolchain.toml pins $pinned, rustup has stable=${stable:-none}; run 'rustup toolchain install $pinned'" >&2
  exit 1
fi

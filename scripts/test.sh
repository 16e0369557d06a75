#!/usr/bin/env bash
# The whole test suite: lint, build, unit/integration/end-to-end tests, generated-file drift,
# offline chart validation. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

scripts/setup.sh
# setup.sh installed nats-server and grpcio: a test that cannot find them fails, not skips.
export STALLWATCH_REQUIRE_TEST_TOOLS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo deny (licences, bans, sources)"
cargo deny --log-level error check licenses bans sources
echo "== cargo doc (broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
echo "== structure (import cycles, long functions)"
python3 scripts/check-structure.py --self-test
python3 scripts/check-structure.py
echo "== cargo build (binaries the end-to-end tests run)"
cargo build --workspace --bins
# The node tests' images hold the debug binaries just built: the release and small-profile
# builds the Dockerfile makes would add 12-15 minutes on 2 cores (tests/README.md has the
# numbers). `scripts/build-images.py` without --profile builds them from release binaries, as
# users get them; tests/README.md's memory figures come from such a run.
echo "== images (the Dockerfile's runtime stages, with the debug binaries)"
python3 scripts/build-images.py --profile debug
echo "== cargo test"
cargo test --workspace --no-fail-fast
echo "== h2spec: the lean HTTP/2 server against tonic's (scripts/h2spec.sh)"
scripts/h2spec.sh
echo "== python report client (unit)"
timeout 300 python3 -m unittest discover -s examples/report-clients/python
if [ -x scripts/check-generated.sh ]; then
  echo "== generated files"
  scripts/check-generated.sh
fi
if [ -f charts/validate.py ]; then
  echo "== chart validation"
  .venv/bin/python charts/validate.py
fi

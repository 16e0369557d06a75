#!/usr/bin/env bash
# Regenerates the TransitStream CRD from the Rust types and compares it with the checked-in
# copies: crds/transitstream.yaml and the chart's charts/stallwatch/crds/transitstream.yaml.
#   scripts/check-generated.sh          fail (exit 1) with a diff when a copy differs
#   scripts/check-generated.sh --write  rewrite both copies
# Uses the debug binary (target/debug/transit-operator), building it when missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=check
case "${1:-}" in
  --write) mode=write ;;
  "") ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

cargo build --quiet -p transit-operator --bin transit-operator
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
target/debug/transit-operator crd >"$generated"

copies=(crds/transitstream.yaml charts/stallwatch/crds/transitstream.yaml)
status=0
for copy in "${copies[@]}"; do
  if [[ $mode == write ]]; then
    mkdir -p "$(dirname "$copy")"
    cp "$generated" "$copy"
    echo "wrote $copy"
  elif ! diff -u "$copy" "$generated" >/dev/null 2>&1; then
    echo "$copy differs from \`transit-operator crd\`:" >&2
    diff -u "$copy" "$generated" >&2 || true
    status=1
  fi
done
if [[ $status -ne 0 ]]; then
  echo "run scripts/check-generated.sh --write and commit the result" >&2
fi
exit $status

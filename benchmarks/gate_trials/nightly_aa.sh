#!/usr/bin/env bash
# One A/A gate of the full nightly suite, as .ci/nightly runs it, with one other busy process beside it
# (issue 20: "one A/B gate of the full nightly suite ... reaches a conclusive verdict on an A/A in <= 20 minutes
# on 2 cores"). Usage: bash benchmarks/gate_trials/nightly_aa.sh [OUT] [extra bench gate options]
# Prints the start, the gate's verdict, its exit code and its wall time. Run from a checkout with bench installed.
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/nightly-aa}
shift || true
rm -rf "$OUT"
python -c "while True: pass" &
BUSY=$!
trap 'kill $BUSY' EXIT
echo "start $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg) head $(git rev-parse --short HEAD)"
s=$(date +%s)
bench gate HEAD suites/nightly.yaml --head HEAD --concurrent --rounds 6 --max-rounds 24 \
  --set settings.speed.min_time_s=3 --out "$OUT" "$@"
rc=$?
echo "exit $rc after $(($(date +%s) - s)) s, end $(date -u +%T)"
exit $rc

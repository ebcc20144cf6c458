#!/usr/bin/env bash
# Long fuzzing run of every parser reachable before authentication: each
# hypothesis target (test_fuzz_*.py) runs for SECONDS (default 600) with fresh
# random batches; figures go to fuzz-report.txt (or $SHOAL_FUZZ_REPORT).
#
#   scripts/fuzz.sh [SECONDS] [-k PATTERN]     e.g. scripts/fuzz.sh 60 -k relay
#
# A failure prints hypothesis' shrunk example: add it to the target's file as a
# regression test (see test_regression_* there) and fix the parser.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
export SHOAL_FUZZ_SECONDS="$seconds"
export SHOAL_FUZZ_REPORT="${SHOAL_FUZZ_REPORT:-$PWD/fuzz-report.txt}"
echo "fuzzing each target for ${seconds} s; figures in $SHOAL_FUZZ_REPORT"
files=$(find core/tests plugins -name 'test_fuzz_*.py' -not -path '*/.venv/*' | sort)
.venv/bin/python -m pytest $files -q -p no:cacheprovider -k "not regression and not round_trip" "$@"
rc=$?
cat "$SHOAL_FUZZ_REPORT"
exit $rc

#!/usr/bin/env bash
# Long fuzzing run of every parser reachable before authentication: each
# hypothesis target (test_fuzz_*.py) runs for SECONDS (default 600) with fresh
# random batches; figures (examples, wall-clock and CPU seconds) go to
# fuzz-report.txt (or $SHOAL_FUZZ_REPORT).
#
#   scripts/fuzz.sh [SECONDS] [-j JOBS] [-k PATTERN]
#   e.g. scripts/fuzz.sh 60 -k relay       scripts/fuzz.sh 600 -j 2
#
# -j runs the targets in JOBS pytest processes side by side (one target per
# process at a time), so a long run takes about targets x SECONDS / JOBS.
# A failure prints hypothesis' shrunk example: add it to the target's file as a
# regression test (see test_regression_* there) and fix the parser.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=600
if [[ $# -gt 0 && "$1" != -* ]]; then seconds="$1"; shift; fi
jobs=1
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -j) jobs="${2:?-j needs a number}"; shift 2 ;;
        -j*) jobs="${1#-j}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: -j takes a whole number of jobs, got '$jobs'" >&2; exit 2
fi
export SHOAL_FUZZ_SECONDS="$seconds"
export SHOAL_FUZZ_REPORT="${SHOAL_FUZZ_REPORT:-$PWD/fuzz-report.txt}"
files=$(find core/tests plugins -name 'test_fuzz_*.py' -not -path '*/.venv/*' | sort)
pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider)
select=(-k "not regression and not round_trip" "${args[@]}")
mapfile -t targets < <("${pytest[@]}" --collect-only $files "${select[@]}" 2>/dev/null \
                       | grep '::')
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz.sh: no fuzz target matches" >&2; exit 2
fi
echo "fuzzing ${#targets[@]} targets for ${seconds} s each in ${jobs} job(s);" \
     "figures in $SHOAL_FUZZ_REPORT"
pids=()
for ((j = 0; j < jobs; j++)); do
    mine=()
    for ((i = j; i < ${#targets[@]}; i += jobs)); do mine+=("${targets[i]}"); done
    [[ ${#mine[@]} -gt 0 ]] || continue
    "${pytest[@]}" "${mine[@]}" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
cat "$SHOAL_FUZZ_REPORT"
exit $rc

#!/usr/bin/env bash
# Run the whole test suite: unit tests, in-memory integration tests and, as
# root, the network-namespace labs. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no test: that is a failure of the suite here.
if [ $rc -eq 5 ]; then
    echo "test.sh: no tests were collected" >&2
    exit 1
fi
exit $rc

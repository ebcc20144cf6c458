#!/usr/bin/env bash
# Set up this machine (Debian packages, .venv) and run the local demo network.
# Needs root: the demo builds network namespaces with real TUN interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"

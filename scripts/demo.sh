#!/usr/bin/env bash
# Set up this machine (Debian packages, .venv) and run the local demo network.
# Needs root: the demo builds network namespaces with real TUN interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
# The LAN side: broadcast discovery answered by every node, DOSBox IPXNET clients across nodes.
exec .venv/bin/python scripts/lan_demo.py

#!/usr/bin/env bash
# Set up a fresh machine for Shoal: Debian packages, a virtualenv in .venv with
# the core and every plugin installed editable, and the test tools.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(iproute2 nftables iputils-ping iperf3 wireguard-go wireguard-tools ethtool jq procps dosbox
      postgresql coturn tinyproxy chromium chromium-driver dnsutils nebula openvpn)
need=()
for d in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || need+=("$d")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian packages: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "setup: not root, cannot install Debian packages: ${need[*]}" >&2
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.shoal-installed
sources=$(cat core/pyproject.toml plugins/*/pyproject.toml requirements-dev.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sources" ]; then
    echo "setup: installing shoal and its plugins into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
    args=(-e core)
    for p in plugins/*/; do args+=(-e "$p"); done
    .venv/bin/pip install -q "${args[@]}" -r requirements-dev.txt >.venv/install.log 2>&1 \
        || { cat .venv/install.log >&2; exit 1; }
    echo "$sources" > "$stamp"
fi

# A local wheelhouse of the core's dependencies and the build backend, so tests can
# build wheels and install them into fresh virtualenvs without network access
# (tests/test_template_netns.py: a third-party transport in a core-only venv).
wh_stamp=.venv/wheelhouse/.shoal-wheelhouse
wh_sources=$(cat core/pyproject.toml docs/template-transport/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$wh_stamp" ] || [ "$(cat "$wh_stamp")" != "$wh_sources" ]; then
    echo "setup: preparing the local wheelhouse in .venv/wheelhouse"
    .venv/bin/pip wheel -q -w .venv/wheelhouse ./core "setuptools>=77" \
        >.venv/wheelhouse.log 2>&1 || { cat .venv/wheelhouse.log >&2; exit 1; }
    rm -f .venv/wheelhouse/shoal-*.whl   # the core itself is built fresh by the tests
    echo "$wh_sources" > "$wh_stamp"
fi

"""A third-party transport needs nothing outside the public contract.

The template distribution (``docs/template-transport``) is built as a wheel and
installed, with a freshly built core wheel, into a new virtualenv that holds
nothing else (dependencies come from the local wheelhouse ``scripts/setup.sh``
prepares: no network). From that virtualenv ``shoal plugins`` lists it, and two
real ``shoal up`` nodes whose only transport is the template carry a ping.

    ns a  192.0.2.1 ──veth── 192.0.2.2  ns b        (overlay 100.64.0.1 <-> .2)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.testing import netlab
from shoal.testing.netlab import Lab, wait_until

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "template-transport"
CORE = ROOT / "core"
WHEELHOUSE = Path(sys.executable).resolve().parent.parent / "wheelhouse"
if not WHEELHOUSE.is_dir():   # .venv/bin/python may resolve to the base interpreter
    WHEELHOUSE = Path(sys.executable).parent.parent / "wheelhouse"
PORT = 41700

_REASON = netlab.can_run() or (None if WHEELHOUSE.is_dir() else
                               f"no wheelhouse at {WHEELHOUSE}: run ./scripts/setup.sh")
pytestmark = [pytest.mark.netns, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def _clean_env() -> dict[str, str]:
    """The fresh virtualenv must see only what is installed in it."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(argv: list[str], timeout: float = 300) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_clean_env())
    assert r.returncode == 0, f"{' '.join(argv)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("template")
    dist = tmp / "dist"
    offline = ["--no-index", "--find-links", str(WHEELHOUSE)]
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    _run([*pip, "wheel", *offline, "--no-deps", "-w", str(dist), str(CORE), str(TEMPLATE)])
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert any(w.startswith("shoal_transport_template-") for w in wheels), wheels
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(env)])
    _run([str(env / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check",
          "install", *offline, "--find-links", str(dist), "shoal", "shoal-transport-template"])
    yield env


def test_core_only_venv_lists_the_template(venv: Path) -> None:
    out = json.loads(_run([str(venv / "bin" / "shoal"), "plugins", "--json"]))
    names = {p["name"]: p for p in out}
    assert names["template"]["distribution"] == "shoal-transport-template"
    # only the core and the template are installed: none of the project's own plugins
    assert set(names) == {"core-identity", "template"}, sorted(names)


def test_nodes_ping_over_the_template_transport(venv: Path) -> None:
    shoal = str(venv / "bin" / "shoal")
    with Lab("tpl") as lab:
        a, b = lab.ns("a"), lab.ns("b")
        lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        nodes = {"alice": (a, "100.64.0.1", "192.0.2.1"), "bob": (b, "100.64.0.2", "192.0.2.2")}
        cfgs = {n: lab.write(f"{n}.toml", f'''name = "{n}"
state_dir = "{lab.dir / n}"
plugins = ["template"]
[interface]
name = "shoal0"
address = "{vip}/10"
[api]
socket = "{lab.dir / n}.sock"
[tunnel]
keepalive = 2
[plugin.template]
port = {PORT}
''') for n, (_, vip, _) in nodes.items()}
        keys = {n: _run(["ip", "netns", "exec", ns, shoal, "key", "public", "-c",
                         str(cfgs[n])]).strip() for n, (ns, _, _) in nodes.items()}
        for n, other in (("alice", "bob"), ("bob", "alice")):
            _, vip, under = nodes[other]
            with cfgs[n].open("a") as f:
                f.write(f'''
[[peers]]
name = "{other}"
public_key = "{keys[other]}"
endpoint = "template={under}:{PORT}"
virtual_ip = "{vip}"
''')
        for n, (ns, _, _) in nodes.items():
            lab.spawn(ns, ["env", "-u", "PYTHONPATH", shoal, "up", "-c", str(cfgs[n])], n)

        def status(n: str) -> dict:
            ns = nodes[n][0]
            return json.loads(_run(["ip", "netns", "exec", ns, shoal, "status", "--json", "-c",
                                    str(cfgs[n])], timeout=30))

        def pings() -> bool:
            r = lab.sh(a, "ping -c 1 -W 1 100.64.0.2", check=False)
            return r.returncode == 0

        try:
            wait_until(pings, 60, interval=0.5, what="a ping over the template transport")
            peer = status("alice")["peers"][0]
            assert (peer["path"], peer["transport"]) == ("direct", "template"), peer
            assert peer["endpoint"] == f"192.0.2.2:{PORT}"
            assert status("alice")["template"]["listen"] == [f"0.0.0.0:{PORT}"]
        except Exception:
            for n in nodes:
                sys.stderr.write(f"--- {n}.log\n{lab.log_text(n)[-3000:]}\n")
            raise

"""End to end: a standalone relay hears of a logout at once (real processes in namespaces).

Topology (one switch)::

    server   203.0.113.10 (control :7400, in-server relay :3480,
                           announces the standalone relay)
    relay    203.0.113.12 (``shoal relay run``, udp :3481, the server's secret)
    x        203.0.113.66 (tests/relay_abuse.py: logs in, registers at the
                           standalone relay with its grant, logs out)

Without the pushed REVOKE the standalone relay would honour the old grant
until it lapses (grant_lifetime, 600 s); with it, a SEND from the logged-out
node is refused as not registered and its old grant as revoked within a
fraction of a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shoal.testing import netlab
from shoal.testing.fleet import server_config
from shoal.testing.netlab import SHOAL, Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

ABUSE = str(Path(__file__).with_name("relay_abuse.py"))
STANDALONE = "203.0.113.12:3481"


def test_logout_reaches_the_standalone_relay_at_once() -> None:
    with Lab("rvk") as lab:
        sw = lab.switch()
        srv, rly, x = lab.ns("srv"), lab.ns("rly"), lab.ns("x")
        lab.attach(sw, srv, "203.0.113.10/24")
        lab.attach(sw, rly, "203.0.113.12/24")
        lab.attach(sw, x, "203.0.113.66/24")
        cfg = server_config(lab, discovery=False)
        # [plugin.relay] is the config's last table: the standalone relay joins it
        cfg.write_text(cfg.read_text() + f'announce = [{{udp = "{STANDALONE}"}}]\n')
        key = lab.shoal(srv, "server", "init", "-c", str(cfg)).stdout.strip().splitlines()[-1]
        lab.spawn(srv, [SHOAL, "server", "run", "-c", str(cfg)], "server")
        wait_until(lambda: "listening" in lab.log_text("server"), 30, what="the server to listen")
        relay_cfg = lab.write("relay.toml", f'''listen_udp = "{STANDALONE}"
secret_file = "{lab.dir}/server/relay.secret"
''')
        lab.spawn(rly, [SHOAL, "relay", "run", "-c", str(relay_cfg)], "relay")
        wait_until(lambda: "relay listening" in lab.log_text("relay"), 30,
                   what="the standalone relay to listen")
        r = lab.sh(x, " ".join([sys.executable, ABUSE, "203.0.113.10:7400", key, STANDALONE,
                                key, "logout"]), timeout=60)
        refusals = json.loads(r.stdout.strip().splitlines()[-1])["refusals"]
        print(f"after the logout the standalone relay refused: {refusals}")
        # 3: not registered (the registration is gone), 4: the old grant is revoked
        assert set(refusals) == {"refused3", "refused4"}, (refusals, lab.log_text("relay"))
        assert max(refusals.values()) < 2.0, refusals
        assert "did not confirm" not in lab.log_text("server")

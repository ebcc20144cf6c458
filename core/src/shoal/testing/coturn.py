"""coturn (Debian's ``turnserver``) in a lab namespace: RFC 5780 STUN and TURN for tests.

``start`` adds the two addresses to a namespace that is already on the lab's
"internet" switch and runs ``turnserver`` on both addresses x ports 3478/3479
(RFC 5780 needs both), relaying from the first address. Authentication is
either none or coturn's REST-API shared secret (``use-auth-secret``), or
long-term users given as ``{name: password}``. With ``tls=(cert, key)`` it
also listens for TURN over TLS on 5349 (``turns:``). The process belongs to
the lab (stopped by PID on close).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from shoal.testing.netlab import Lab, wait_until

COTURN_IPS = ("203.0.113.20", "203.0.113.21")
PORTS = (3478, 3479)
TLS_PORT = 5349
REALM = "shoal.test"


def available() -> str | None:
    """None if coturn is installed, else why the test must skip."""
    if shutil.which("turnserver") is None:
        return "needs coturn (Debian package 'coturn': turnserver, turnutils_natdiscovery)"
    return None


@dataclass
class Coturn:
    ns: str
    ips: tuple[str, str]
    port: int
    proc: subprocess.Popen[bytes]
    log: str
    secret: str | None = None

    @property
    def stun(self) -> str:
        return f"{self.ips[0]}:{self.port}"


def start(lab: Lab, ns: str, ifname: str, secret: str | None = None,
          users: dict[str, str] | None = None, ips: tuple[str, str] = COTURN_IPS,
          tcp: bool = False, tls: tuple[str, str] | None = None, timeout: float = 15
          ) -> Coturn:
    """Run coturn in ``ns`` on ``ips`` (added to ``ifname``/24); ready when it listens."""
    for ip in ips:
        lab.sh(ns, f"ip addr add {ip}/24 dev {ifname}")
    log = f"coturn-{ips[0]}"
    argv = ["turnserver", "-n", f"--listening-ip={ips[0]}", f"--listening-ip={ips[1]}",
            f"--listening-port={PORTS[0]}", f"--alt-listening-port={PORTS[1]}",
            f"--relay-ip={ips[0]}", "--min-port=49152", "--max-port=65535",
            "--no-dtls", "--no-cli", "--fingerprint", f"--realm={REALM}",
            "--log-file=stdout", "--simple-log", "--verbose", "--log-binding",
            f"--userdb={lab.dir}/coturn-{ips[0]}.sqlite", f"--pidfile={lab.dir}/coturn.pid"]
    if tls is None:
        argv.append("--no-tls")
    else:
        argv += [f"--cert={tls[0]}", f"--pkey={tls[1]}", f"--tls-listening-port={TLS_PORT}",
                 f"--alt-tls-listening-port={TLS_PORT + 1}"]
    if not tcp:
        argv.append("--no-tcp")
    if secret is not None:
        argv += ["--use-auth-secret", f"--static-auth-secret={secret}"]
    elif users:
        argv.append("--lt-cred-mech")
        argv += [f"--user={u}:{p}" for u, p in users.items()]
    else:
        argv.append("--no-auth")
    proc = lab.spawn(ns, argv, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"turnserver exited: {lab.log_text(log)[-2000:]}")
        text = lab.log_text(log)
        return all(f"{ip}:{PORTS[1]}" in text for ip in ips) and "Total" in text

    wait_until(ready, timeout, 0.1, "coturn to listen")
    return Coturn(ns=ns, ips=ips, port=PORTS[0], proc=proc, log=log, secret=secret)

"""A throwaway PostgreSQL cluster for tests and benchmarks.

``initdb`` in a temporary directory (as the unprivileged ``postgres`` user
when run as root), a server listening only on a Unix socket in that
directory, stopped by PID and deleted on ``stop``. Nothing is started by the
system's service manager and nothing listens on TCP.

    with PostgresCluster() as pg:
        url = pg.create_database("t1")   # postgresql://postgres@/t1?host=/tmp/...
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
            "/usr/lib/postgresql/15/bin")


def bin_dir() -> str | None:
    for d in BIN_DIRS:
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    return None


def unavailable() -> str | None:
    """None if a throwaway cluster can be started here, else the reason it cannot."""
    if bin_dir() is None:
        return "needs PostgreSQL server binaries (Debian package 'postgresql')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs the unprivileged user 'postgres' to run initdb"
    return None


class PostgresCluster:
    def __init__(self) -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self.bin = bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
        os.chmod(self.dir, 0o700)    # mkdtemp honours the umask, which may be anything
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.sock.mkdir(mode=0o700)
        os.chmod(self.sock, 0o700)   # whatever the process umask is
        if self._user:
            os.chown(self.sock, pwd.getpwnam("postgres").pw_uid, -1)

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        # An explicit umask: the caller's may be anything (PostgreSQL needs 0700 dirs).
        return subprocess.run([f"{self.bin}/{argv[0]}", *argv[1:]], capture_output=True,
                              text=True, user=self._user, timeout=120, check=False,
                              umask=0o077,
                              cwd=self.dir)  # the caller's directory may be closed to that user

    def start(self, timeout: float = 30) -> PostgresCluster:
        r = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E",
                      "UTF8", "--locale=C", "-N")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()}")
        log = open(self.dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [f"{self.bin}/postgres", "-D", str(self.data), "-p", "5432",
             "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.sock}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, user=self._user, umask=0o077,
            cwd=self.dir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + self.log_tail())
            if self.psql("SELECT 1").returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("postgres did not become ready: " + self.log_tail())

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def psql(self, sql: str, db: str = "postgres") -> subprocess.CompletedProcess[str]:
        return self._run("psql", "-h", str(self.sock), "-U", "postgres", "-d", db,
                         "-v", "ON_ERROR_STOP=1", "-Atqc", sql)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.sock}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        name = name or f"t_{secrets.token_hex(4)}"
        r = self.psql(f'CREATE DATABASE "{name}"')
        if r.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed: {r.stderr.strip()}")
        return self.url(name)

    def pause(self) -> None:
        """Stop the server (keeping its data) to simulate an unreachable database."""
        self._halt()

    def resume(self, timeout: float = 30) -> None:
        assert self.proc is not None
        log = open(self.dir / "postgres.log", "ab")
        argv: Any = self.proc.args
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     user=self._user, umask=0o077, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql("SELECT 1").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not come back: " + self.log_tail())

    def _halt(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGINT)     # "fast" shutdown: disconnects clients
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self) -> None:
        self._halt()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

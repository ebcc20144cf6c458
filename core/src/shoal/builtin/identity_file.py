"""Built-in plugin: the node's key pair lives in a 0600 file under ``state_dir``."""

from __future__ import annotations

from pathlib import Path

from shoal import identity
from shoal.hookspecs import hookimpl


@hookimpl(trylast=True)
def shoal_identity_load_keypair(state_dir: Path, create: bool) -> identity.StaticKeypair:
    return identity.load_or_create(state_dir, create=create)

"""A node's (or server's) static X25519 identity.

The private key is 32 raw bytes, stored base64-encoded in ``STATE_DIR/KEY_FILE``
with mode 0600. A key file that group or others can read is refused: the
key is the node's identity, and its address is bound to it for good.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from shoal.errors import ShoalError

KEY_FILE = "private.key"
KEY_LEN = 32


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def decode_public_key(text: str) -> bytes:
    """Base64 to 32 raw bytes; ValueError with a readable message otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"must decode to {KEY_LEN} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class StaticKeypair:
    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> StaticKeypair:
        return cls.from_private(
            X25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                serialization.NoEncryption()))

    @classmethod
    def from_private(cls, private: bytes) -> StaticKeypair:
        if len(private) != KEY_LEN:
            raise ValueError("private key must be 32 bytes")
        pub = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private, pub)

    @property
    def public_b64(self) -> str:
        return encode_key(self.public)


def make_state_dir(state_dir: str | Path) -> Path:
    """Create ``state_dir`` (0700) if needed; one clear line if that is impossible."""
    d = Path(state_dir)
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise ShoalError(f"{d}: state_dir is a file, not a directory; set state_dir to a "
                         "directory path") from None
    except NotADirectoryError:
        raise ShoalError(f"{d}: state_dir lies under a file, not a directory; set state_dir "
                         "to a directory path") from None
    except OSError as e:
        raise ShoalError(f"{d}: cannot create state_dir ({e.strerror}); set state_dir to a "
                         "writable directory") from None
    return d


def load_or_create(state_dir: str | Path, create: bool = True, key_file: str = KEY_FILE,
                   missing_hint: str = "start the node once or run 'shoal key public'"
                   ) -> StaticKeypair:
    """Load the key pair from ``state_dir``; create it (0600) if missing and ``create``."""
    d = Path(state_dir)
    path = d / key_file
    try:
        st = path.stat()
    except NotADirectoryError:
        raise ShoalError(f"{d}: state_dir lies under a file, not a directory; set "
                         "state_dir to a directory path") from None
    except FileNotFoundError:
        if path.is_symlink():
            raise ShoalError(f"{path}: key file is a dangling symbolic link to "
                             f"{os.readlink(path)}; remove the link or restore its target") \
                from None
        if not create:
            raise ShoalError(f"{path}: no key yet; {missing_hint}") from None
        make_state_dir(d)
        kp = StaticKeypair.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise ShoalError(f"{path}: cannot create the key file ({e.strerror}); make "
                             "state_dir writable") from None
        with os.fdopen(fd, "w") as f:
            f.write(encode_key(kp.private) + "\n")
        return kp
    if stat.S_ISDIR(st.st_mode):
        raise ShoalError(f"{path}: key file is a directory; remove it (a new key is then "
                         "created) or put the key file there")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ShoalError(
            f"{path}: key file is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run 'chmod 600 {path}'")
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
        return StaticKeypair.from_private(raw)
    except (binascii.Error, ValueError):
        raise ShoalError(f"{path}: key file is corrupt (expected base64 of 32 bytes)") from None
    except OSError as e:
        raise ShoalError(f"{path}: cannot read the key file ({e.strerror})") from None

import os
import stat

import pytest

from shoal import identity
from shoal.errors import ShoalError


def test_created_once_with_mode_0600(tmp_path):
    kp = identity.load_or_create(tmp_path / "state")
    path = tmp_path / "state" / identity.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert identity.load_or_create(tmp_path / "state") == kp  # stable across restarts
    assert len(kp.public) == 32 and identity.decode_public_key(kp.public_b64) == kp.public


def test_refuses_a_key_others_can_read(tmp_path):
    identity.load_or_create(tmp_path)
    os.chmod(tmp_path / identity.KEY_FILE, 0o644)
    with pytest.raises(ShoalError, match="chmod 600"):
        identity.load_or_create(tmp_path)


def test_corrupt_key_and_missing_key(tmp_path):
    (tmp_path / identity.KEY_FILE).write_text("not base64!")
    os.chmod(tmp_path / identity.KEY_FILE, 0o600)
    with pytest.raises(ShoalError, match="corrupt"):
        identity.load_or_create(tmp_path)
    with pytest.raises(ShoalError, match="no key yet"):
        identity.load_or_create(tmp_path / "empty", create=False)


@pytest.mark.parametrize("text", ["", "abc", "A" * 42 + "==", "!" * 44])
def test_public_key_decoding_errors(text):
    with pytest.raises(ValueError):
        identity.decode_public_key(text)


def test_private_key_never_in_repr():
    kp = identity.StaticKeypair.generate()
    assert kp.private.hex() not in repr(kp) and identity.encode_key(kp.private) not in repr(kp)

"""The encrypted control channel over TCP (node <-> coordination server), sans-IO.

``Noise_XX_25519_ChaChaPoly_BLAKE2s``: both sides prove their static keys. The
node compares the server's key with the one pinned in its config *before* it
reveals its own (message 3), so a wrong server is a clear error, never a
silent connect. The server learns the node's key from message 3.

Byte stream::

    node   -> server:  "SHC1" | u16 len | noise msg1 (e)
    server -> node:            u16 len | noise msg2 (e, ee, s, es)
    node   -> server:          u16 len | noise msg3 (s, se)
    then both ways:            u16 len | noise transport ciphertext
                                         plaintext = flags u8 | chunk

A logical message is split into chunks of at most ``CHUNK`` bytes; flag bit 0
(``MORE``) says another chunk of the same message follows. Messages are
bounded by ``MAX_MESSAGE``; anything malformed raises ``ChannelError`` and the
caller closes the connection.
"""

from __future__ import annotations

from enum import Enum

from noise.connection import Keypair as NoiseKeypair
from noise.connection import NoiseConnection

from shoal.identity import StaticKeypair, encode_key

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"shoal control v1"
PREAMBLE = b"SHC1"
MAX_FRAME = 65535
CHUNK = MAX_FRAME - 16 - 1
MAX_MESSAGE = 4 << 20
MORE = 0x01


class ChannelError(Exception):
    """The peer broke the channel protocol; close the connection."""


class ServerKeyMismatch(ChannelError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"the server presented key {encode_key(got)}, but [server] public_key is "
                         f"{encode_key(expected)}; refusing to log in")
        self.expected, self.got = expected, got


class State(Enum):
    PREAMBLE = "preamble"      # server waiting for "SHC1"
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class Channel:
    def __init__(self, local: StaticKeypair, *, initiator: bool,
                 expected_remote: bytes | None = None) -> None:
        self.initiator = initiator
        self.expected_remote = expected_remote
        self.remote_static: bytes | None = None
        self._noise = NoiseConnection.from_name(PROTOCOL_NAME)
        self._noise.set_prologue(PROLOGUE)
        self._noise.set_keypair_from_private_bytes(NoiseKeypair.STATIC, local.private)
        if initiator:
            self._noise.set_as_initiator()
        else:
            self._noise.set_as_responder()
        self._noise.start_handshake()
        self._in = bytearray()
        self._out = bytearray()
        self._partial = bytearray()
        self._step = 0
        self.state = State.HANDSHAKE if initiator else State.PREAMBLE
        if initiator:
            self._out += PREAMBLE
            self._frame(bytes(self._noise.write_message()))
            self._step = 1

    # ------------------------------------------------------------ output
    def _frame(self, body: bytes) -> None:
        self._out += len(body).to_bytes(2, "big") + body

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def send_message(self, data: bytes) -> None:
        if self.state is not State.OPEN:
            raise ChannelError("channel is not open")
        if len(data) > MAX_MESSAGE:
            raise ValueError("message too large")
        view = memoryview(data)
        pos = 0
        while True:
            chunk = view[pos:pos + CHUNK]
            pos += len(chunk)
            flags = MORE if pos < len(data) else 0
            self._frame(bytes(self._noise.encrypt(bytes([flags]) + bytes(chunk))))
            if pos >= len(data):
                return

    # ------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> list[bytes]:
        """Feed bytes from the socket; returns complete messages (after the handshake)."""
        if self.state is State.CLOSED:
            raise ChannelError("channel closed")
        self._in += data
        out: list[bytes] = []
        if self.state is State.PREAMBLE:
            if len(self._in) < len(PREAMBLE):
                if not PREAMBLE.startswith(bytes(self._in)):
                    self._fail("not a Shoal control connection")
                return out
            if bytes(self._in[:4]) != PREAMBLE:
                self._fail("not a Shoal control connection")
            del self._in[:4]
            self.state = State.HANDSHAKE
        while len(self._in) >= 2:
            n = int.from_bytes(self._in[:2], "big")
            if len(self._in) < 2 + n:
                break
            body = bytes(self._in[2:2 + n])
            del self._in[:2 + n]
            if self.state is State.HANDSHAKE:
                self._handshake(body)
            else:
                msg = self._transport(body)
                if msg is not None:
                    out.append(msg)
        return out

    def _fail(self, why: str) -> None:
        self.state = State.CLOSED
        raise ChannelError(why)

    def _handshake(self, body: bytes) -> None:
        n = self._noise
        try:
            if self.initiator and self._step == 1:      # msg2 from the server
                n.read_message(body)
                rs = bytes(n.noise_protocol.handshake_state.rs.public_bytes)
                if self.expected_remote is not None and rs != self.expected_remote:
                    self.state = State.CLOSED
                    raise ServerKeyMismatch(self.expected_remote, rs)
                self.remote_static = rs
                self._frame(bytes(n.write_message()))
                self._step = 3
            elif not self.initiator and self._step == 0:  # msg1 from the node
                n.read_message(body)
                self._frame(bytes(n.write_message()))
                self._step = 2
            elif not self.initiator and self._step == 2:  # msg3 from the node
                hs = n.noise_protocol.handshake_state  # released once the handshake completes
                n.read_message(body)
                self.remote_static = bytes(hs.rs.public_bytes)
                self._step = 3
            else:
                self._fail("unexpected handshake message")
        except ChannelError:
            raise
        except Exception as e:  # noqa: BLE001 - noiseprotocol raises assorted types
            self._fail(f"control handshake failed: {type(e).__name__}")
        if n.handshake_finished:
            self.state = State.OPEN

    def _transport(self, body: bytes) -> bytes | None:
        try:
            pt = bytes(self._noise.decrypt(body))
        except Exception as e:  # noqa: BLE001
            self._fail(f"control frame does not authenticate: {type(e).__name__}")
        if not pt:
            self._fail("empty control frame")
        flags, chunk = pt[0], pt[1:]
        if flags & ~MORE:
            self._fail("unknown control frame flags")
        if len(self._partial) + len(chunk) > MAX_MESSAGE:
            self._fail("control message too large")
        self._partial += chunk
        if flags & MORE:
            return None
        msg = bytes(self._partial)
        self._partial.clear()
        return msg

"""TUN offload negotiation falls back cleanly when the descriptor refuses it."""

from __future__ import annotations

import os

from shoal import tun


def test_enable_offloads_on_a_non_tun_descriptor_reports_nothing_accepted() -> None:
    r, w = os.pipe()
    try:
        assert tun.enable_offloads(r) == 0
    finally:
        os.close(r)
        os.close(w)


def test_offload_names_cover_the_requested_flags() -> None:
    names = [n for bit, n in tun.OFFLOAD_NAMES.items() if (tun.TSO | tun.USO) & bit]
    assert names == ["csum", "tso4", "tso6", "tso_ecn", "uso4", "uso6"]

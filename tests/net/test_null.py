"""null:// drops everything and is never readable."""

from __future__ import annotations

import select

from ioth.net.plugs.null import NullPlug
from ioth.net.registry import open_plug


def test_null_counts_and_never_readable() -> None:
    plug = open_plug("null://")
    assert isinstance(plug, NullPlug)
    frame = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00" + b"p" * 50
    assert plug.send(frame)
    assert plug.send(frame)
    assert plug.counters.tx_frames == 2 and plug.counters.tx_bytes == 2 * len(frame)
    r, _, _ = select.select([plug.fileno()], [], [], 0.05)
    assert r == []
    assert plug.recv_frames() == []
    plug.close()
    assert not plug.send(frame)
    assert plug.counters.tx_dropped == 1
    plug.close()  # idempotent


def test_null_mtu_option() -> None:
    plug = open_plug("null://[mtu=9000]")
    assert plug.mtu == 9000
    plug.close()

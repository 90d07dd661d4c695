"""Fixtures and helpers of the runtime tests: the quiet-read tests' ``quiet`` knob (QUIET_READ
on and off), a stack on one end of a ptp:// cable with a bare plug on the other, and UDP frames
for it."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioth
from ioth.net.dgram import DgramPlug
from ioth.net.registry import open_plug
from ioth.stack import runtime as rt
from ioth.wire import ipv4, udp

#: the cable stack's address
A_IP = "192.0.2.1"
#: the bare plug's source MAC
PEER_MAC = bytes.fromhex("020000000b0b")


@pytest.fixture(params=[1, 0], ids=["quiet", "full"])
def quiet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Runs a test with quiet reads on, then off."""
    monkeypatch.setattr(rt, "QUIET_READ", request.param)
    yield request.param


@pytest.fixture
def cable(tmp_path: Path, quiet: int) -> Iterator[tuple[ioth.Stack, DgramPlug, int]]:
    """A stack on one end of a ptp:// cable, a bare plug on the other, and the stack's
    interface index."""
    path = tmp_path / "ptp"
    a = ioth.Stack(f"ptp://{path}", f"eth,ip={A_IP}/24")
    b = open_plug(f"ptp://{path}")
    assert isinstance(b, DgramPlug)
    try:
        yield a, b, a.if_nametoindex("vde0")
    finally:
        b.close()
        a.close()


def udp_frames(a: ioth.Stack, index: int, src_ip: str, dst_ip: str, port: int,
               payloads: list[bytes]) -> list[bytes]:
    """Ethernet/IPv4/UDP frames src_ip:4000 -> dst_ip:``port`` to interface ``index``'s MAC."""
    mac = bytes.fromhex(a.linkgetaddr(index).replace(":", ""))
    src, dst = ipv4.str_to_addr(src_ip), ipv4.str_to_addr(dst_ip)
    out = []
    for i, data in enumerate(payloads):
        seg = udp.emit(4000, port, data, src, dst) + data  # (emit: the header)
        ip = ipv4.emit_fast(src, dst, 17, len(seg), ident=i + 1)
        out.append(mac + PEER_MAC + struct.pack("!H", 0x0800) + ip + seg)
    return out

"""udp:// plug: in-process pairs over loopback (IPv4 and IPv6)."""

from __future__ import annotations

import selectors
import socket

import pytest

from ioth.errors import VNLError
from ioth.net.plug import Plug
from ioth.net.plugs.udp import UdpPlug
from ioth.net.registry import open_plug


def free_udp_port(family: int = socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def recv_some(plug: Plug, want: int = 1, timeout: float = 2.0) -> list[bytes]:
    got: list[bytes] = []
    with selectors.DefaultSelector() as sel:
        for fd in plug.filenos():
            sel.register(fd, selectors.EVENT_READ)
        while len(got) < want:
            if not sel.select(timeout):
                break
            got.extend(plug.recv_frames())
    return got


def frame(n: int = 60, tag: int = 0) -> bytes:
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes([tag]) * (n - 14)


def test_udp_pair_ipv4() -> None:
    pa, pb = free_udp_port(), free_udp_port()
    a = open_plug(f"udp://127.0.0.1:{pa}->127.0.0.1:{pb}")
    b = open_plug(f"udp://{pb}->127.0.0.1:{pa}")
    with a, b:
        assert isinstance(a, UdpPlug)
        assert a.send(frame(60, 1))
        assert recv_some(b) == [frame(60, 1)]
        assert b.send(frame(1514, 2))
        assert recv_some(a) == [frame(1514, 2)]
        assert a.counters.tx_frames == 1 and a.counters.rx_frames == 1
        assert b.counters.rx_bytes == 60


def test_udp_pair_ipv6_brackets() -> None:
    pa, pb = free_udp_port(socket.AF_INET6), free_udp_port(socket.AF_INET6)
    with open_plug(f"udp://[::1]:{pa}->[::1]:{pb}") as a, \
            open_plug(f"udp://{pb}->[::1]:{pa}") as b:
        assert a.send(frame(100, 3))
        assert recv_some(b) == [frame(100, 3)]


def test_udp_mtu_option_and_oversize_drop() -> None:
    pa, pb = free_udp_port(), free_udp_port()
    with open_plug(f"udp://{pa}->127.0.0.1:{pb}/mtu=9000") as a, \
            open_plug(f"udp://{pb}->127.0.0.1:{pa}") as b:
        assert a.mtu == 9000
        assert a.send(frame(9014, 4))
        assert recv_some(b) == [frame(9014, 4)]
        assert not b.send(frame(9014, 5))  # b keeps the default 1500
        assert b.counters.tx_dropped == 1


def test_udp_batch_and_short_datagram_counted() -> None:
    pa, pb = free_udp_port(), free_udp_port()
    with open_plug(f"udp://{pa}->127.0.0.1:{pb}") as a, \
            open_plug(f"udp://{pb}->127.0.0.1:{pa}") as b:
        for i in range(50):
            a.send(frame(200, i))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"short", ("127.0.0.1", pb))
        got = recv_some(b, 50)
        assert [f[14] for f in got] == list(range(50))
        recv_some(b, 1, 0.2)
        assert b.counters.rx_errors == 1


@pytest.mark.parametrize("bad", ["udp://5000", "udp://5000->nohost", "udp://->127.0.0.1:1",
                                 "udp://5000->127.0.0.1:1/mtu=10", "udp://5000->1.2.3.4:5/x=1"])
def test_udp_bad_vnl(bad: str) -> None:
    with pytest.raises(VNLError):
        open_plug(bad)

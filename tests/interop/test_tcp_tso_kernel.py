"""TSO and checksum offload on output, against the Linux kernel behind an offloading TAP.

An ioth stack on ``tap://...[offload]`` sends to a kernel TCP server (python in a fresh
namespace).  The stack hands the TAP 64 KiB super-segments with partial checksums (virtio-net
GSO header, NEEDS_CSUM) while both ends keep the link MSS; the kernel must receive the exact
bytes (SHA-256), count no checksum errors, and report a receive MSS of the link size in
``ss -ti`` (it honoured our gso_size).  The loss test drops some of the frames ioth writes to
the TAP (a wrapper around the plug's ``send``: this kernel has no netem or tc actions to drop
inside the namespace), so the kernel sees holes in the super-segments and ioth must repair
them with SACK-driven retransmissions and RTOs.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

import ioth
from ioth.net.plug import OffloadFrame
from ioth.net.plugs.tap import TapPlug
from tests.support.peers import Netns, kernel_lan, require_tools

pytestmark = pytest.mark.interop

SERVER = r"""
import hashlib, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
print(n, h.hexdigest(), flush=True)
"""

NSTAT = ("TcpInCsumErrors", "TcpInErrs", "TcpExtTCPOFOQueue", "TcpExtTCPSACKReorder")


@pytest.fixture
def lan() -> Iterator[tuple[Netns, ioth.Stack, TapPlug, str]]:
    """Kernel 192.0.2.1 / 2001:db8::1 in a namespace; ioth .2 / ::2 on its offloading TAP."""
    require_tools("ss", "nstat")
    with kernel_lan("tso", offload=True) as (ns, stack, tap):
        plug = next(iter(stack.runtime.plugs.values()))
        assert isinstance(plug, TapPlug) and plug.offload
        yield ns, stack, plug, tap


def _nstat(ns: Netns) -> dict[str, int]:
    out = ns.run(["nstat", "-az", *NSTAT]).stdout
    values = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in NSTAT:
            values[f[0]] = int(f[1])
    return values


def _send_to_kernel(ns: Netns, stack: ioth.Stack, addr: str, data: bytes
                    ) -> tuple[int, str, list[str], dict[str, object]]:
    """Send ``data`` to a kernel server; (bytes received, their SHA-256, ``ss -tin`` lines
    seen during the transfer, the ioth connection's figures just before closing)."""
    port = 20000 + secrets.randbelow(20000)
    srv = ns.popen(["python3", "-c", SERVER, addr, str(port)], stdout=subprocess.PIPE)
    assert srv.stdout is not None
    assert srv.stdout.readline().strip() == b"ready"
    s = stack.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.settimeout(60)
    s.connect((addr, port))
    info: dict[str, object] = {}
    errors: list[BaseException] = []

    def send() -> None:
        try:
            s.sendall(data)
            info.update(stack.tcp_connections()[0])
            s.close()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    t = threading.Thread(target=send)
    t.start()
    ss: list[str] = []
    while t.is_alive() and not ss:
        lines = ns.run(["ss", "-tinH", "state", "established", f"sport = :{port}"]).stdout
        if "rcvmss" in lines:
            ss = lines.splitlines()
    t.join(120)
    assert not t.is_alive() and not errors, errors
    line = srv.stdout.readline().split()
    srv.wait(30)
    return int(line[0]), line[1].decode(), ss, info


@pytest.mark.parametrize("addr", ["192.0.2.1", "2001:db8::1"], ids=["ipv4", "ipv6"])
def test_super_segments_reach_the_kernel_intact(
        lan: tuple[Netns, ioth.Stack, TapPlug, str], addr: str) -> None:
    ns, stack, plug, _ = lan
    data = random.Random(5).randbytes(20_000_000)
    n, digest, ss, info = _send_to_kernel(ns, stack, addr, data)
    assert n == len(data) and digest == hashlib.sha256(data).hexdigest()
    layer = stack.core.tcp
    # super-segments went out whole, cut by the kernel; checksums left to it
    assert layer.tx_super > 0 and plug.gso_sent > 0 and plug.csum_offloaded > 0
    assert layer.tx_super_split == 0
    v6 = ":" in addr
    link_mss = 1500 - (60 if v6 else 40)
    assert info["mss"] == link_mss - 12  # the MSS stays the link's (timestamps on)
    counters = _nstat(ns)
    assert counters.get("TcpInCsumErrors", 0) == 0 and counters.get("TcpInErrs", 0) == 0
    # the kernel sees the link MSS: its receive MSS estimate comes from our gso_size
    assert ss, "the connection never showed up in ss -ti"
    text = " ".join(ss)
    m = re.search(r"rcvmss:(\d+)", text)
    assert m is not None and 536 <= int(m.group(1)) <= link_mss, text
    m = re.search(r"\bmss:(\d+)", text)
    assert m is not None and int(m.group(1)) == link_mss - 12, text


def test_lost_frames_of_super_segments_are_retransmitted(
        lan: tuple[Netns, ioth.Stack, TapPlug, str]) -> None:
    ns, stack, plug, _ = lan
    rng = random.Random(9)
    dropped = [0, 0]
    send = plug.send

    def lossy(frame: bytes | bytearray | memoryview) -> bool:
        if len(frame) > 1000 and rng.random() < 0.02:
            dropped[0] += 1
            if isinstance(frame, OffloadFrame) and frame.gso_size:
                dropped[1] += 1
            return True  # lost on the way
        return send(frame)

    plug.send = lossy  # type: ignore[method-assign]
    data = random.Random(6).randbytes(8_000_000)
    n, digest, _, info = _send_to_kernel(ns, stack, "192.0.2.1", data)
    assert n == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert dropped[1] > 0  # whole super-segments were lost, not only single segments
    retrans = info["retransmissions"]
    assert isinstance(retrans, int) and retrans > 0
    assert stack.core.tcp.tx_super > 0
    assert _nstat(ns).get("TcpInCsumErrors", 0) == 0

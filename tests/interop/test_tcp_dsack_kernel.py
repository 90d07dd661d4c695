"""D-SACK (RFC 2883) between the ioth TCP and the Linux kernel, both directions.

The kernel stack lives in a network namespace behind a TUN device whose other end is an
in-process :class:`TunShim` around an ioth :class:`TcpLayer` (see
tests/stack/tcp/test_kernel_interop.py).  The shim duplicates or delays packets (this kernel
has no sch_netem, so the impairment sits on the shim's side of the TUN).  The kernel's own
counters, read with ``nstat`` inside the namespace, show what it made of our D-SACKs and what
it sent us:

* ioth receiver -> kernel sender: duplicated segments reach the ioth receiver, which reports
  them with D-SACK blocks; the kernel counts them (TcpExtTCPDSACKRecv).
* kernel receiver -> ioth sender: delayed (reordered) segments make the ioth sender
  retransmit needlessly; the kernel reports the duplicates (TcpExtTCPDSACKOldSent), and the
  ioth sender counts them as spurious and undoes its congestion window reductions.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time

import pytest

from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.tcp.test_kernel_interop import (
    I4,
    K4,
    K4B,
    KERNEL_SERVER,
    Echo,
    TunShim,
    kernel_client_to_echo,
    tun_ns,
)
from tests.support.peers import Netns, require_tools

pytestmark = pytest.mark.interop

__all__ = ["tun_ns"]  # the fixture, used by name

SIZE = 3_000_000


def nstat(ns: Netns) -> dict[str, int]:
    """The namespace's absolute TCP counters (no history file is read or written)."""
    out = ns.run(["nstat", "-asz"]).stdout
    vals: dict[str, int] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            vals[f[0]] = int(f[1])
    return vals


def test_ioth_receiver_dsacks_reach_the_kernel(tun_ns: tuple[Netns, int]) -> None:
    """Kernel client -> ioth echo server, 3 % of the packets duplicated both ways."""
    require_tools("nstat")
    ns, fd = tun_ns
    shim = TunShim(fd, TcpPolicy(time_wait=1.0), duplicate=0.03)
    conn = kernel_client_to_echo(ns, shim, "198.18.5.2", SIZE).conn
    counters = nstat(ns)
    print("ioth:", conn.info().dsacks_sent, "D-SACKs sent,", conn.dsacks, "received; kernel:",
          {k: v for k, v in counters.items() if "DSACK" in k and v})
    assert conn.sack_ok
    assert conn.dsacks_sent > 0, conn.info()
    assert counters.get("TcpExtTCPDSACKRecv", 0) > 0, counters
    # the kernel got duplicates from us too, and told us so
    assert counters.get("TcpExtTCPDSACKOldSent", 0) > 0 and conn.dsacks > 0, counters
    shim.run_until(lambda: not shim.layer.connections, lambda now: None, timeout=10)


def test_kernel_dsacks_undo_ioth_spurious_retransmissions(tun_ns: tuple[Netns, int]) -> None:
    """ioth client -> kernel echo server; 20 % of the packets delayed up to 15 ms (reordering,
    no loss): the kernel D-SACKs our needless retransmissions and we undo the reductions."""
    require_tools("nstat")
    ns, fd = tun_ns
    shim = TunShim(fd, TcpPolicy(time_wait=1.0), jitter=0.015)
    proc = ns.popen([sys.executable, "-c", KERNEL_SERVER, K4], stdout=-1)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    conn = shim.layer.connect(I4, K4B, 5001, time.monotonic())
    data = random.Random(13).randbytes(SIZE)
    app = Echo(shim.layer, conn, data, echo=False)
    shim.run_until(lambda: app.eof and app.shut, app, 90.0)
    out = proc.communicate(timeout=30)[0].decode().split()
    assert out == [str(SIZE), hashlib.sha256(data).hexdigest()]
    assert app.rx.hexdigest() == hashlib.sha256(data).hexdigest()
    counters = nstat(ns)
    info = conn.info()
    print("ioth:", info.retransmissions, "retransmissions,", info.dsacks, "D-SACKs,",
          info.spurious_retrans, "spurious,", info.undos, "undos,", info.fast_recoveries,
          "recoveries; kernel:", {k: v for k, v in counters.items() if "DSACK" in k and v})
    assert shim.dropped == 0
    assert info.retransmissions > 0, info
    assert counters.get("TcpExtTCPDSACKOldSent", 0) > 0, counters
    assert info.dsacks > 0 and info.spurious_retrans > 0, info
    assert info.undos > 0, info
    shim.run_until(lambda: not shim.layer.connections, lambda now: None, timeout=30)

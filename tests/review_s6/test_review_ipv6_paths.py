"""Adversarial review (session 6): the first pass's IPv4 findings, again over IPv6.

The fixes of the first pass touched family-independent code and IPv4 paths; the same
observations over IPv6 (2001:db8::1 the peer, ::2 the DUT): readiness and SO_ERROR after a
reset and a refused non-blocking connect, a connect timeout, options inherited by an
accepted socket, TCP_MAXSEG and TCP_INFO, a dead peer found by keepalive, shutdown of a
listener waking accept.  The kernel (a second namespace) is the oracle.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import _conn
from tests.review_s6.oracle import (
    DUT6,
    PEER6,
    Envs,
    Scenario,
    close_all,
    full_listener,
    mask,
    mask_when,
    params,
    run,
    tryit,
)

pytestmark = pytest.mark.interop
V6 = socket.AF_INET6
LINGER0 = struct.pack("ii", 1, 0)
TCP = socket.IPPROTO_TCP


def _so_error(s: Any) -> Any:
    return tryit(lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))


def reset_v6(peer: Any, dut: Any) -> list[Any]:
    """The peer sends and resets: poll mask, SO_ERROR once, the bytes, then b""."""
    lst, k, d = _conn(peer, dut, V6, DUT6)
    k.sendall(b"last")
    time.sleep(0.1)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    time.sleep(0.3)
    out = [mask(d), _so_error(d), mask(d), tryit(lambda: d.recv(10)),
           tryit(lambda: d.recv(10)), tryit(lambda: d.send(b"x"))]
    close_all(d, lst)
    return out


def refused_nonblocking_v6(peer: Any, dut: Any) -> list[Any]:
    """A refused non-blocking connect: EINPROGRESS, the mask, SO_ERROR once, the mask."""
    probe = peer(V6)
    probe.bind((PEER6, 0))
    addr = probe.getsockname()
    probe.close()
    c = dut(V6)
    c.setblocking(False)
    out = [tryit(lambda: c.connect_ex(addr)), mask_when(c, select.POLLOUT), _so_error(c),
           mask(c), _so_error(c)]
    close_all(c)
    return out


def connect_timeout_v6(peer: Any, dut: Any) -> list[Any]:
    """connect with a timeout to a peer dropping the SYN: TimeoutError, no event,
    EALREADY."""
    lst, fill = full_listener(lambda: peer(V6), PEER6)
    c = dut(V6)
    c.settimeout(0.4)
    out = [tryit(lambda: c.connect(lst.getsockname())), mask(c),
           tryit(lambda: c.connect(lst.getsockname()))]
    close_all(c, *fill, lst)
    return out


def accepted_inherits_v6(peer: Any, dut: Any) -> list[Any]:
    """TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE of the listener on the accepted socket;
    TCP_MAXSEG and TCP_INFO's state of the connection."""
    lst = dut(V6)
    lst.setsockopt(TCP, socket.TCP_NODELAY, 1)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    lst.setsockopt(TCP, socket.TCP_KEEPIDLE, 42)
    lst.bind(("::", 0))
    lst.listen(2)
    k = peer(V6)
    k.settimeout(5)
    k.connect((DUT6, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    out = [d.getsockopt(TCP, socket.TCP_NODELAY),
           d.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
           d.getsockopt(TCP, socket.TCP_KEEPIDLE),
           d.getsockopt(TCP, socket.TCP_MAXSEG), k.getsockopt(TCP, socket.TCP_MAXSEG),
           d.getsockopt(TCP, getattr(socket, "TCP_INFO", 11), 8)[0]]
    close_all(d, k, lst)
    return out


def accepted_v6only(peer: Any, dut: Any) -> list[Any]:
    """IPV6_V6ONLY set on the listener reads 1 on the accepted socket (Linux clones it)."""
    lst = dut(V6)
    lst.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    lst.bind(("::", 0))
    lst.listen(2)
    k = peer(V6)
    k.settimeout(5)
    k.connect((DUT6, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    out = [d.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)]
    close_all(d, k, lst)
    return out


def keepalive_after_connect_v6(peer: Any, dut: Any) -> list[Any]:
    """Keepalive (1 s, 1 s, 2) set after connect, the peer falls silent: ETIMEDOUT within
    about 3 s."""
    plst = peer(V6)
    plst.bind((PEER6, 0))
    plst.listen(2)
    plst.settimeout(5)
    c = dut(V6)
    c.settimeout(5)
    c.connect(plst.getsockname())
    a, _ = plst.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(TCP, socket.TCP_KEEPIDLE, 1)
    c.setsockopt(TCP, socket.TCP_KEEPINTVL, 1)
    c.setsockopt(TCP, socket.TCP_KEEPCNT, 2)
    peer.silence(True)
    try:
        c.settimeout(7)
        t0 = time.monotonic()
        out = [tryit(lambda: c.recv(10)), time.monotonic() - t0 < 6]
    finally:
        peer.silence(False)
    close_all(c, a, plst)
    return out


def listener_shutdown_v6(peer: Any, dut: Any) -> list[Any]:
    """shutdown(SHUT_RDWR) of a listener from another thread wakes its blocked accept
    (EINVAL) and refuses new connections."""
    s = dut(V6)
    s.bind((DUT6, 0))
    s.listen(2)
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(tryit(lambda: s.accept())), daemon=True)
    t.start()
    time.sleep(0.3)
    out: list[Any] = [tryit(lambda: s.shutdown(socket.SHUT_RDWR))]
    t.join(1.5)
    out.append(box[0] if box else "still blocked")
    k = peer(V6)
    k.settimeout(2)
    out.append(tryit(lambda: k.connect((DUT6, s.getsockname()[1]))))
    close_all(k, s)
    return out


SCENARIOS: list[Scenario] = [reset_v6, refused_nonblocking_v6, connect_timeout_v6,
                             accepted_inherits_v6, accepted_v6only,
                             keepalive_after_connect_v6, listener_shutdown_v6]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_ipv6_paths_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

"""Adversarial review (session 6): socket life-cycle corners, the kernel as oracle.

What a socket can still do after a refused or timed-out connect (listen, bind: it keeps
the port the connect bound), connect_ex with a timeout, repeated shutdowns on a live
connection, getsockname after a failed connect.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, PEER_IP, _conn
from tests.review_s6.oracle import (
    Envs,
    Factory,
    Scenario,
    close_all,
    full_listener,
    params,
    run,
    tryit,
)

pytestmark = pytest.mark.interop


def _refused(peer: Factory) -> Any:
    probe = peer()
    probe.bind((PEER_IP, 0))
    addr = probe.getsockname()
    probe.close()
    return addr


def after_a_refused_connect(peer: Factory, dut: Factory) -> list[Any]:
    """After a refused connect (with a timeout, and blocking): getsockname, bind (Linux
    released the autobound port: bind works), listen, and a connect to the listener."""
    out: list[Any] = []
    for timeout in (3.0, None):
        s = dut()
        s.settimeout(timeout)
        out.append(tryit(lambda s=s: s.connect(_refused(peer))))
        name = s.getsockname()
        out += [name[0], name[1] > 0, tryit(lambda s=s: s.bind((DUT_IP, 0))),
                tryit(lambda s=s: s.listen(2)), s.getsockname() == name]
        close_all(s)
    return out


def connect_ex_with_timeout(peer: Factory, dut: Factory) -> list[Any]:
    """connect_ex with a timeout to a peer that drops the SYN: an errno, not an exception
    (CPython: EWOULDBLOCK when the timeout expires), then EALREADY while it goes on."""
    lst, fill = full_listener(peer, PEER_IP)
    c = dut()
    c.settimeout(0.4)
    out = [tryit(lambda: c.connect_ex(lst.getsockname())),
           tryit(lambda: c.connect_ex(lst.getsockname()))]
    close_all(c, *fill, lst)
    return out


def connect_timeout_then_completes(peer: Factory, dut: Factory) -> list[Any]:
    """connect times out (the peer's queue is full, its SYN dropped); the peer then makes
    room: the attempt, still going, completes with the SYN's retransmission; a second
    connect then reports it (Linux: None) and the connection carries data both ways."""
    lst, fill = full_listener(peer, PEER_IP)
    c = dut()
    c.settimeout(0.4)
    out: list[Any] = [tryit(lambda: c.connect(lst.getsockname()))]
    lst.setblocking(False)
    accepted = []
    port = c.getsockname()[1]
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and not any(addr[1] == port for _, addr in accepted):
        try:
            a, addr = lst.accept()
            accepted.append((a, addr))
        except BlockingIOError:
            time.sleep(0.05)
    mine = [a for a, addr in accepted if addr[1] == port]
    out.append(len(mine))
    c.settimeout(3)
    out.append(tryit(lambda: c.connect(lst.getsockname())))
    if mine:
        out.append(tryit(lambda: c.sendall(b"late")))
        mine[0].settimeout(3)
        out.append(tryit(lambda: mine[0].recv(10)))
    close_all(c, *fill, lst, *(a for a, _ in accepted))
    return out


def answers_the_peers_keepalive(peer: Factory, dut: Factory) -> list[Any]:
    """The peer probes an idle connection (SO_KEEPALIVE, idle 1 s, interval 1 s, 2
    probes): the DUT answers every probe, so 3.5 s later the peer's connection is alive (a
    timeout, not ETIMEDOUT) and carries data; the same with a peer that advertised a small
    MSS (TCP_MAXSEG 1000 on its listener: the DUT's TCP_MAXSEG follows, 988)."""
    lst = peer()
    lst.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
    lst.bind((PEER_IP, 0))
    lst.listen(2)
    lst.settimeout(5)
    c = dut()
    c.settimeout(5)
    c.connect(lst.getsockname())
    a, _ = lst.accept()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    a.settimeout(3.5)
    out: list[Any] = [tryit(lambda: a.recv(10)),
                      tryit(lambda: c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))]
    c.sendall(b"x" * 5000)
    got = b""
    a.settimeout(3)
    while len(got) < 5000:
        chunk = a.recv(8192)
        if not chunk:
            break
        got += chunk
    out.append(len(got))
    close_all(c, a, lst)
    return out


def repeated_shutdowns(peer: Factory, dut: Factory) -> list[Any]:
    """shutdown(SHUT_WR) twice, then SHUT_RD twice, then SHUT_RDWR, on a live connection:
    all succeed; the peer sees one EOF."""
    lst, k, d = _conn(peer, dut)
    out: list[Any] = [tryit(lambda: d.shutdown(socket.SHUT_WR)),
                      tryit(lambda: d.shutdown(socket.SHUT_WR)),
                      tryit(lambda: d.shutdown(socket.SHUT_RD)),
                      tryit(lambda: d.shutdown(socket.SHUT_RD)),
                      tryit(lambda: d.shutdown(socket.SHUT_RDWR))]
    out += [tryit(lambda: k.recv(10)), tryit(lambda: k.send(b"still open"))]
    close_all(d, k, lst)
    return out


def names_after_close_of_peer(peer: Factory, dut: Factory) -> list[Any]:
    """After the peer's FIN and after its reset: getpeername (Linux: works after the FIN,
    ENOTCONN after the reset), getsockname works in both."""
    out: list[Any] = []
    for reset in (False, True):
        lst, k, d = _conn(peer, dut)
        if reset:
            k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        k.close()
        time.sleep(0.3)
        out += [type(tryit(lambda d=d: d.getpeername())).__name__,
                type(tryit(lambda d=d: d.getsockname())).__name__]
        close_all(d, lst)
    return out


SCENARIOS: list[Scenario] = [after_a_refused_connect, connect_ex_with_timeout,
                             connect_timeout_then_completes, answers_the_peers_keepalive,
                             repeated_shutdowns, names_after_close_of_peer]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_life_cycle_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)

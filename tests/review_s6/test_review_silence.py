"""Adversarial review (session 6): a peer that falls silent, the kernel as oracle.

The peer's namespace drops everything it sends (a netem qdisc with 100 % loss on its side of
the link), as a crashed host or a cut cable would: SO_KEEPALIVE with short TCP_KEEPIDLE /
INTVL / CNT must end the connection with ETIMEDOUT, TCP_USER_TIMEOUT must bound how long
unacknowledged data is retried, TCP_SYNCNT how many SYNs a connect sends; a short outage in
the middle of a transfer must heal.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop
PEER4, DUT4 = "192.0.2.1", "192.0.2.2"
TCP = socket.IPPROTO_TCP


def _client(peer: Any, dut: Factory) -> tuple[Any, Any, Any]:
    """(peer listener, DUT client, peer's accepted socket) over IPv4."""
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(4)
    lst.settimeout(5)
    c = dut(socket.AF_INET)
    c.settimeout(5)
    c.connect(lst.getsockname())
    a, _ = lst.accept()
    return lst, c, a


def _timed(fn: Any, limit: float) -> list[Any]:
    t0 = time.monotonic()
    r = tryit(fn)
    took = time.monotonic() - t0
    return [r, "in time" if took < limit else "late"]


def _keepalive(c: Any) -> None:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(TCP, socket.TCP_KEEPIDLE, 1)
    c.setsockopt(TCP, socket.TCP_KEEPINTVL, 1)
    c.setsockopt(TCP, socket.TCP_KEEPCNT, 2)


def _dead_peer(peer: Any, dut: Factory, before: bool) -> list[Any]:
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(4)
    lst.settimeout(5)
    c = dut(socket.AF_INET)
    if before:
        _keepalive(c)
    c.settimeout(5)
    c.connect(lst.getsockname())
    a, _ = lst.accept()
    if not before:
        _keepalive(c)
    peer.silence(True)
    try:
        c.settimeout(7)
        out = _timed(lambda: c.recv(10), 6)
        out.append(tryit(lambda: c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
    finally:
        peer.silence(False)
    close_all(c, a, lst)
    return out


def keepalive_ends_a_dead_connection(peer: Any, dut: Factory) -> list[Any]:
    """SO_KEEPALIVE, TCP_KEEPIDLE 1, INTVL 1, CNT 2 set on the connected socket (the usual
    order: connect, then options); the peer falls silent: a recv waiting on the idle
    connection fails with ETIMEDOUT within about 3 s (Linux)."""
    return _dead_peer(peer, dut, before=False)


def keepalive_set_before_connect(peer: Any, dut: Factory) -> list[Any]:
    """The same with the options set before connect."""
    return _dead_peer(peer, dut, before=True)


def keepalive_answered_keeps_it(peer: Any, dut: Factory) -> list[Any]:
    """The same keepalive settings with the peer answering: after 3 s the connection is
    still there (the probes were acknowledged) and carries data."""
    lst, c, a = _client(peer, dut)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(TCP, socket.TCP_KEEPIDLE, 1)
    c.setsockopt(TCP, socket.TCP_KEEPINTVL, 1)
    c.setsockopt(TCP, socket.TCP_KEEPCNT, 2)
    c.settimeout(3.5)
    out: list[Any] = [tryit(lambda: c.recv(10))]
    a.sendall(b"alive")
    out.append(tryit(lambda: c.recv(10)))
    close_all(c, a, lst)
    return out


def user_timeout_bounds_retries(peer: Any, dut: Factory) -> list[Any]:
    """TCP_USER_TIMEOUT 1000 ms, the peer falls silent, the DUT sends: the connection is
    aborted (ETIMEDOUT) within a few seconds instead of retrying for minutes (Linux)."""
    lst, c, a = _client(peer, dut)
    out: list[Any] = [tryit(lambda: c.setsockopt(TCP, socket.TCP_USER_TIMEOUT, 1000)),
                      tryit(lambda: c.getsockopt(TCP, socket.TCP_USER_TIMEOUT))]
    peer.silence(True)
    try:
        c.sendall(b"u" * 1000)
        c.settimeout(6)
        out += _timed(lambda: c.recv(10), 5)
    finally:
        peer.silence(False)
    close_all(c, a, lst)
    return out


def syncnt_bounds_a_connect(peer: Any, dut: Factory) -> list[Any]:
    """TCP_SYNCNT 1 and a silent peer: the connect gives up after the SYN and one
    retransmission (about 3 s), ETIMEDOUT, before the socket's 6 s timeout (Linux)."""
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(4)
    lst.settimeout(5)
    warm = dut(socket.AF_INET)  # (the neighbour entry fresh: the SYNs go out, no ARP)
    warm.settimeout(5)
    warm.connect(lst.getsockname())
    close_all(warm, lst.accept()[0])
    c = dut(socket.AF_INET)
    out: list[Any] = [tryit(lambda: c.setsockopt(TCP, socket.TCP_SYNCNT, 1))]
    peer.silence(True)
    try:
        c.settimeout(6)
        out += _timed(lambda: c.connect(lst.getsockname()), 5.5)
    finally:
        peer.silence(False)
    close_all(c, lst)
    return out


def outage_heals(peer: Any, dut: Factory) -> list[Any]:
    """The peer is silent for 0.8 s in the middle of a 2 MB transfer from the DUT: the DUT
    retransmits, the transfer completes intact."""
    lst, c, a = _client(peer, dut)
    blob = bytes(i % 241 for i in range(2 << 20))
    got = bytearray()
    a.settimeout(10)

    def read() -> None:
        while len(got) < len(blob):
            chunk = a.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)
    t = threading.Thread(target=read)
    t.start()
    c.settimeout(10)
    c.sendall(blob[:1 << 20])
    peer.silence(True)
    try:
        time.sleep(0.8)
    finally:
        peer.silence(False)
    c.sendall(blob[1 << 20:])
    t.join(10)
    out = [bytes(got) == blob]
    close_all(c, a, lst)
    return out


SCENARIOS: list[Scenario] = [keepalive_ends_a_dead_connection, keepalive_set_before_connect,
                             keepalive_answered_keeps_it, user_timeout_bounds_retries,
                             syncnt_bounds_a_connect, outage_heals]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_silent_peer_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

"""Linux parity (session 5): listen(n) bounds the established connections the application has
not accepted yet to n + 1 (Linux's ``sk_acceptq_is_full``), also those the socket layer moved
out of the stack's accept queue to the listening descriptor: while the bound is reached a SYN
(and a handshake-completing ACK) is dropped and the peer retransmits; once the application
accepts, the peers get through.

The kernel is the referee (a namespace pair joined by a veth); the ioth stack runs on a TAP
whose other side is a kernel namespace.  The peers connect one after the other, each given
0.3 s to complete its handshake (the kernel does a handshake within the connect call; a
burst of SYNs that all arrive before the first handshake completes gets SYN-ACKs from
Linux too, so the pacing is what makes the bound visible from the peers' side).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.referee import DUT_IP, Side, sides

pytestmark = pytest.mark.interop

Factory = Callable[[], Any]
#: how long each paced connect is given to complete (was 0.3 s: a handshake on a loaded
#: machine may take longer); under the SYN's 1 s retransmission timeout, and a dropped SYN's
#: retransmission is dropped too while the backlog stays full
PACE = 0.9


def _setup(kind: str) -> contextlib.AbstractContextManager[tuple[Side, Side]]:
    """(peer, DUT): tests.support.referee.sides, IPv4 only."""
    return sides(kind, "pbl" if kind == "ioth" else "pb")


def _warm(peer: Factory, dut: Factory) -> None:
    """One connection to another listener first: both ends' link-layer addresses are resolved
    before the paced handshakes (the first one must not spend its PACE waiting for them)."""
    warm = dut()
    warm.bind((DUT_IP, 0))
    warm.listen(1)
    warm.settimeout(5)
    w = peer()
    w.settimeout(5)
    w.connect(warm.getsockname())
    warm.accept()[0].close()
    w.close()
    warm.close()


def _paced_connects(peer: Factory, port: int, n: int) -> tuple[list[Any], list[bool]]:
    """n non-blocking connects, each given :data:`PACE`: (sockets, completed within it)."""
    ks, done = [], []
    for _ in range(n):
        k = peer()
        k.setblocking(False)
        k.connect_ex((DUT_IP, port))
        _, w, _ = select.select([], [k], [], PACE)
        done.append(bool(w) and k.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
        ks.append(k)
    return ks, done


def backlog_bound(peer: Factory, dut: Factory, backlog: int, n: int) -> list[Any]:
    """listen(backlog), nobody accepting, n paced connects; then accept them all, each peer
    reading the byte its accepted socket sends (its handshake completed meanwhile)."""
    _warm(peer, dut)
    lst = dut()
    lst.bind((DUT_IP, 0))
    lst.listen(backlog)
    ks, done = _paced_connects(peer, lst.getsockname()[1], n)
    lst.settimeout(8)
    got = []
    for _ in range(n):
        a, _ = lst.accept()
        a.sendall(b"x")
        a.close()
    for k in ks:
        k.setblocking(True)
        k.settimeout(8)
        got.append(k.recv(1))
        k.close()
    lst.close()
    return [done, got]


def readable_while_bounded(peer: Factory, dut: Factory, backlog: int, n: int) -> list[Any]:
    """A non-blocking listener (selectors/asyncio style): readable while connections wait, a
    non-blocking accept takes them; after each accept a waiting peer gets in."""
    _warm(peer, dut)
    lst = dut()
    lst.bind((DUT_IP, 0))
    lst.listen(backlog)
    lst.setblocking(False)
    ks, done = _paced_connects(peer, lst.getsockname()[1], n)
    out: list[Any] = [done]
    accepted = 0
    deadline = time.monotonic() + 10
    while accepted < n and time.monotonic() < deadline:
        r, _, _ = select.select([lst], [], [], 0.5)
        if r:
            a, _ = lst.accept()
            a.close()
            accepted += 1
    out.append(accepted)
    for k in ks:
        k.close()
    lst.close()
    return out


CASES = [(backlog_bound, 1, 4), (backlog_bound, 2, 5), (readable_while_bounded, 1, 3)]
IDS = [f"{s.__name__}-{b}-{n}" for s, b, n in CASES]


@pytest.fixture(scope="module")
def oracle() -> dict[str, list[Any]]:
    with _setup("kernel") as (peer, dut):
        return {i: s(peer, dut, b, n) for i, (s, b, n) in zip(IDS, CASES, strict=True)}


@pytest.mark.parametrize("scenario,backlog,n", CASES, ids=IDS)
def test_backlog_as_linux(scenario: Callable[..., list[Any]], backlog: int, n: int,
                          oracle: dict[str, list[Any]], request: pytest.FixtureRequest
                          ) -> None:
    expected = oracle[request.node.callspec.id]
    assert expected[0] == [True] * (backlog + 1) + [False] * (n - backlog - 1)  # (the referee)
    with _setup("ioth") as (peer, dut):
        got = scenario(peer, dut, backlog, n)
    assert got == expected


def test_backlog_counts_what_the_descriptor_holds() -> None:
    """ioth side: the connections moved to the listening descriptor count (Listener.handed)
    until accepted; the stack dropped the third SYN."""
    with _setup("ioth") as (peer, dut):
        lst = dut()
        lst.bind((DUT_IP, 0))
        lst.listen(1)
        ks, done = _paced_connects(peer, lst.getsockname()[1], 3)
        lh = lst._listen
        listener = lh.listener
        assert done == [True, True, False]
        assert (len(listener.accept_queue), listener.handed, lh.in_sink) == (0, 2, 2)
        assert listener.syn_dropped >= 1
        lst.settimeout(5)
        for _ in range(3):
            lst.accept()[0].close()
        assert (listener.handed, lh.in_sink) == (0, 0)
        for k in ks:
            k.close()
        lst.close()


def test_accepted_in_another_process_stops_counting_when_it_writes() -> None:
    """A pre-forked worker accepts from the listening descriptor (not seen by this process):
    its first write releases the connection's place in the backlog, so long-lived
    connections accepted elsewhere do not block the listener."""
    with _setup("ioth") as (peer, dut):
        lst = dut()
        lst.bind((DUT_IP, 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        fd = lst.fileno()
        pids, ks = [], []
        try:
            for _ in range(4):
                pid = os.fork()
                if pid == 0:  # the worker: accept, greet, hold the connection until EOF
                    try:
                        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, os.dup(fd))
                        s.settimeout(10)
                        c, _ = s.accept()
                        c.settimeout(10)
                        c.sendall(b"w")
                        c.recv(1)
                    finally:
                        os._exit(0)
                pids.append(pid)
                k = peer()
                k.settimeout(5)
                k.connect((DUT_IP, port))
                ks.append(k)
                assert k.recv(1) == b"w"
            listener = lst._listen.listener
            assert listener.handed == 0
            assert listener.syn_dropped == listener.ack_dropped == 0  # never full
        finally:
            for k in ks:
                k.close()
            for pid in pids:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        time.sleep(0.2)  # (it reads the EOF and exits)
                        if os.waitpid(pid, os.WNOHANG)[0] == 0:
                            os.kill(pid, signal.SIGKILL)
                            os.waitpid(pid, 0)
            lst.close()


def test_unix_waiting_counts_the_connections_a_listening_descriptor_holds() -> None:
    """The kernel's count (sock_diag) that ListenHandle.recount trusts: pending connections of
    a listening AF_UNIX socket, down by one per accept; None for no such socket."""
    from ioth.sockets.stream_engine import _unix_waiting

    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind("")
    lst.listen(4)
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for c in clients:
            c.connect(lst.getsockname())
        ino = os.fstat(lst.fileno()).st_ino
        assert _unix_waiting(ino) == 3
        a, _ = lst.accept()
        a.close()
        assert _unix_waiting(ino) == 2
        c = clients[0]
        assert _unix_waiting(os.fstat(c.fileno()).st_ino) == 0  # (a connected one: nothing)
    finally:
        for c in clients:
            c.close()
        lst.close()
    assert _unix_waiting(ino) is None

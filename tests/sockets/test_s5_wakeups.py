"""Lost wake-ups between threads of one stack (session 5 flake hunt).

Each test forces one interleaving with events (no sleeps deciding the outcome): a thread that
looked at its connection and is about to wait must be woken by a change another thread makes
before it polls, whoever else waits or served meanwhile."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ioth.sockets import stream
from ioth.stack import runtime as rtmod
from tests.sockets.helpers import connected_pairs, network


def _wait_for(cond: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def _reader(sock: Any, out: list[Any]) -> None:
    try:
        out.append(sock.recv(100))
    except Exception as exc:  # (recorded for the assertion)
        out.append(exc)


@pytest.mark.parametrize("hold", [0, 1], ids=["hold0", "hold1"])
def test_a_kick_for_a_reader_about_to_wait_is_not_eaten_by_the_serving_reader(
        tmp_path: Path, monkeypatch: Any, hold: int) -> None:
    """Two threads read two unpaired sockets (LAZY_PAIR) of one stack.  Reader 1 serves the
    plugs inline, waiting on the layer's quiet descriptor.  Reader 2 looked at its connection
    (nothing), marked it held and is about to wait too (held back here, just before
    serve_until).  Its peer resets the connection, served by reader 1's thread: the layer
    kicks the quiet descriptor for reader 2; reader 1 wakes from it as well (it polls the same
    descriptor).  Reader 1 must not consume reader 2's kick: reader 2, once it polls, would
    sleep until its timeout (nothing else comes: no frame, no timer; reader 1 ends through a
    shutdown(SHUT_RD), which sends nothing)."""
    monkeypatch.setattr(stream, "LAZY_PAIR", 1)
    monkeypatch.setattr(rtmod, "HOLD_TIMERS", hold)
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7330, 2)
        assert c1._h.lazy and c2._h.lazy
        c2.settimeout(3)
        rt = a.runtime
        tcp = c1._tcp
        real = rt.serve_until
        at_serve = threading.Event()
        go = threading.Event()
        held_back: list[int] = []

        def serve_until(fd: int, events: int, deadline: float | None,
                        ready: Any = None) -> bool | None:
            if threading.current_thread().name == "reader2" and not held_back:
                held_back.append(fd)
                at_serve.set()
                go.wait(10)
            return real(fd, events, deadline, ready)

        monkeypatch.setattr(rt, "serve_until", serve_until)
        out1: list[Any] = []
        t1 = threading.Thread(target=_reader, args=(c1, out1), daemon=True)
        t1.start()
        _wait_for(lambda: rt._serving and c1._h.hold == t1.ident, "reader 1 serving")
        out2: list[Any] = []
        t2 = threading.Thread(target=_reader, args=(c2, out2), name="reader2", daemon=True)
        t2.start()
        assert at_serve.wait(10)
        assert held_back == [tcp.quiet] and c2._h.hold == t2.ident
        waits = rt.inline_waits
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s2.close()  # (a reset)
        # reader 1 serves the reset (kick), wakes from the kick and waits again
        _wait_for(lambda: rt.inline_waits > waits and c2._h.conn.error is not None,
                  "reader 1 woken by reader 2's kick")
        c1.shutdown(socket.SHUT_RD)
        t1.join(10)
        assert out1 == [b""]
        # reader 2's kick is still there for its poll (else only some later frame that its
        # thread happens to serve, or its timeout, would end its wait)
        poller = select.poll()
        poller.register(tcp.quiet, select.POLLIN)
        assert poller.poll(0), "reader 2's kick was consumed by reader 1"
        go.set()
        t2.join(10)
        assert not t2.is_alive()
        assert len(out2) == 1 and isinstance(out2[0], ConnectionResetError), out2
        assert not tcp.kicked
        assert not poller.poll(0)  # (no kick left behind)
        for x in (c1, s1, c2, srv):
            x.close()

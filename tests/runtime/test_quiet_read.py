"""Quiet reads (StackRuntime QUIET_READ): a datagram plug whose last read found one frame is
read one frame per wake-up, without probing for another.  Frames that arrive together must all
be served anyway, whoever polls the plug next: the thread serving inline (its next turn), the
engine (its next wake-up), or the engine once the lease of a thread that served one frame and
went away ends.  Each case also runs with quiet reads off (the same frames must come out)."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from pathlib import Path

import ioth
from ioth.net.dgram import DgramPlug
from ioth.stack import runtime as rt
from tests.runtime.conftest import A_IP, udp_frames

B_IP = "192.0.2.2"
PORT = 5500


def _frames(a: ioth.Stack, index: int, payloads: list[bytes]) -> list[bytes]:
    """Ethernet/IPv4/UDP frames from B_IP to the stack's A_IP:PORT."""
    return udp_frames(a, index, B_IP, A_IP, PORT, payloads)


def _force_quiet(a: ioth.Stack, index: int, quiet: int) -> None:
    """Quiet mode now (as after a read that found one frame), for many reads."""
    r = a.runtime
    if quiet:
        assert index in r._quiet, "a ptp plug should be read in quiet mode"
        r._quiet[index] = 1000
    else:
        assert index not in r._quiet


def _receiver(a: ioth.Stack) -> socket.socket:
    srv: socket.socket = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((A_IP, PORT))
    srv.settimeout(10)
    return srv


def _recv_all(srv: socket.socket, n: int) -> list[bytes]:
    return [srv.recv(2000) for _ in range(n)]


def _quiet_reads(a: ioth.Stack, index: int, quiet: int) -> int:
    with a.lock:  # (a read updates the state after it delivered its frames)
        return 1000 - a.runtime._quiet[index] if quiet else 0


def _state(a: ioth.Stack, index: int) -> tuple[int, int]:
    """(quiet reads left, next stretch), once the read in progress is over."""
    with a.lock:
        r = a.runtime
        return r._quiet[index], r._quiet_run.get(index, rt.QUIET_PROBE)


def _send_while_serving(a: ioth.Stack, b: DgramPlug, frames: list[bytes]) -> threading.Thread:
    """Send ``frames`` together (under the stack lock: nothing reads before all are queued)
    from another thread, once this thread serves the plugs inline: from then on the engine
    leaves the plug to it (see StackRuntime._on_input), whatever the scheduler does.  Frames
    queued before the wait began could be taken by the engine first, all of them on a busy
    machine (then the wait, never served a frame, would sit until its deadline)."""
    def run() -> None:
        deadline = time.monotonic() + 10
        while not a.runtime._serving and time.monotonic() < deadline:
            time.sleep(0.001)
        with a.lock:
            for f in frames:
                assert b.send(f)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_frames_arriving_together_are_all_served_by_the_engine(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    a, b, index = cable
    srv = _receiver(a)
    payloads = [b"one", b"two", b"three"]
    frames = _frames(a, index, payloads)
    with a.lock:  # the engine cannot read before all of them are queued
        _force_quiet(a, index, quiet)
        for f in frames:
            assert b.send(f)
    assert _recv_all(srv, 3) == payloads
    if quiet:
        assert _quiet_reads(a, index, quiet) >= 3  # one frame per read
    srv.close()


def test_frames_arriving_together_are_all_served_by_an_inline_wait(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    """The thread serving inline reads one frame, is not ready, polls again: the second
    frame (queued since before the first read) is served in the same wait."""
    a, b, index = cable
    srv = _receiver(a)
    plug = a.runtime.plugs[index]
    r, w = os.pipe()
    try:
        with a.lock:
            _force_quiet(a, index, quiet)
            base = plug.counters.rx_frames
        t = _send_while_serving(a, b, _frames(a, index, [b"first", b"second"]))
        got = a.runtime.serve_until(r, select.POLLIN, a.runtime.clock() + 10,
                                    lambda: plug.counters.rx_frames - base >= 2)
        t.join(10)
        assert got is True
        assert plug.counters.rx_frames - base == 2
        assert _recv_all(srv, 2) == [b"first", b"second"]
        if quiet:
            assert _quiet_reads(a, index, quiet) == 2
    finally:
        os.close(r)
        os.close(w)
        srv.close()


def test_a_frame_left_by_a_holder_that_went_away_is_served_when_its_lease_ends(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    """The serving thread reads the first of two frames queued together and is done: it
    never waits again; the engine (which the lease kept off the plug) serves the second."""
    a, b, index = cable
    srv = _receiver(a)
    plug = a.runtime.plugs[index]
    r, w = os.pipe()
    try:
        # a first inline wait makes the engine leave the plug to this thread (the lease)
        with a.lock:
            base = plug.counters.rx_frames
        t = _send_while_serving(a, b, _frames(a, index, [b"warm-up"]))
        assert a.runtime.serve_until(r, select.POLLIN, a.runtime.clock() + 10,
                                     lambda: plug.counters.rx_frames > base) is True
        t.join(10)
        with a.lock:
            _force_quiet(a, index, quiet)
            base = plug.counters.rx_frames
        seen: list[int] = []  # frames read when the wait ended (the engine is kept off the
        # plug while this thread serves; after, the lease's end gives the plug back to it)

        def ready() -> bool:
            seen.append(plug.counters.rx_frames - base)
            return seen[-1] > 0

        t = _send_while_serving(a, b, _frames(a, index, [b"served", b"left"]))
        assert a.runtime.serve_until(r, select.POLLIN, a.runtime.clock() + 10, ready) is True
        t.join(10)
        if quiet:
            assert seen[-1] == 1  # the other one is still queued
        # this thread does not wait again: the second frame comes in all the same
        assert _recv_all(srv, 3) == [b"warm-up", b"served", b"left"]
        assert not a.runtime._serving
    finally:
        os.close(r)
        os.close(w)
        srv.close()


def test_a_backlog_ends_quiet_mode(cable: tuple[ioth.Stack, DgramPlug, int],
                                   quiet: int) -> None:
    """Quiet mode probes with a full read every QUIET_PROBE reads: a burst is then drained
    in one read and the plug leaves quiet mode."""
    a, b, index = cable
    srv = _receiver(a)
    payloads = [b"%03d" % i for i in range(8)]  # (an AF_UNIX datagram queue holds 10)
    with a.lock:
        if quiet:
            a.runtime._quiet[index] = 2  # two quiet reads, then a full one
        for f in _frames(a, index, payloads):
            assert b.send(f)
    assert _recv_all(srv, 8) == payloads
    if quiet:
        assert _state(a, index) == (0, rt.QUIET_PROBE)  # the full read found many frames
    srv.close()


def test_quiet_stretches_grow_while_full_reads_find_single_frames(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    """One frame at a time: full reads (8 + 16 quiet reads apart, ...) keep finding a single
    frame, so the stretches of quiet reads between them double (up to QUIET_PROBE_MAX)."""
    a, b, index = cable
    srv = _receiver(a)
    for i in range(26):
        with a.lock:
            assert b.send(_frames(a, index, [b"%d" % i])[0])
        assert srv.recv(100) == b"%d" % i
    if quiet:
        left, run = _state(a, index)
        assert run >= 4 * rt.QUIET_PROBE and left > 0
    srv.close()


def test_the_engine_takes_quiet_reads_through_a_timer_wait(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    """Single frames spaced out (each wake-up finds one) go on being served, one per read,
    with the plug in quiet mode after the first."""
    a, b, index = cable
    srv = _receiver(a)
    out = []
    for i in range(5):
        with a.lock:
            assert b.send(_frames(a, index, [b"%d" % i])[0])
        out.append(srv.recv(100))
        time.sleep(0.005)
    assert out == [b"%d" % i for i in range(5)]
    if quiet:
        assert 0 < _state(a, index)[0] < rt.QUIET_PROBE
    srv.close()


def test_plugs_without_quiet_reads_are_drained(tmp_path: Path) -> None:
    """A plug that does not declare rx_quiet (a stream plug may hold frames back) is never
    read one frame at a time."""
    with ioth.Stack("null://", "eth,ip=192.0.2.1/24") as a:
        assert not a.runtime._quiet


def test_threads_agree_with_the_engine_on_who_serves(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    """Frames keep coming in pairs while a thread serves inline one wait after another and the
    engine serves between them: every frame arrives, in order."""
    a, b, index = cable
    srv = _receiver(a)
    plug = a.runtime.plugs[index]
    r, w = os.pipe()
    stop = threading.Event()

    def server() -> None:
        while not stop.is_set():
            seen = plug.counters.rx_frames
            a.runtime.serve_until(r, select.POLLIN, a.runtime.clock() + 0.01,
                                  lambda seen=seen: plug.counters.rx_frames > seen)

    t = threading.Thread(target=server, daemon=True)
    t.start()
    try:
        payloads = [b"%04d" % i for i in range(200)]
        for i in range(0, 200, 2):
            with a.lock:
                for f in _frames(a, index, payloads[i:i + 2]):
                    assert b.send(f)
            if i % 20 == 0:
                time.sleep(0.003)
            assert _recv_all(srv, 2) == payloads[i:i + 2]
    finally:
        stop.set()
        t.join(5)
        os.close(r)
        os.close(w)
        srv.close()

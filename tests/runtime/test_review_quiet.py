"""Adversarial review of quiet reads (StackRuntime QUIET_READ) and of the inline waits' lease
(session 4).  A quiet read takes one frame and leaves the rest to "the next poll of the plug";
these tests look for a frame that nobody polls: several plugs, a plug attached while a thread
serves, a stack served by the engine only, and waits that renew the lease without polling.
Each runs with quiet reads on and off; the xfail ones document a bug."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.net.dgram import DgramPlug
from ioth.net.registry import open_plug
from ioth.sockets import socket as isocket
from ioth.stack import runtime as rt
from tests.runtime.conftest import A_IP, udp_frames
from tests.sockets.helpers import network

B_IP = "192.0.2.2"
C_IP = "198.51.100.1"
D_IP = "198.51.100.2"
PORT = 5600


def _frames(a: ioth.Stack, index: int, src_ip: str, dst_ip: str,
            payloads: list[bytes]) -> list[bytes]:
    """Ethernet/IPv4/UDP frames src_ip:4000 -> dst_ip:PORT to interface ``index``'s MAC."""
    return udp_frames(a, index, src_ip, dst_ip, PORT, payloads)


def _receiver(a: ioth.Stack, ip: str) -> socket.socket:
    srv: socket.socket = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((ip, PORT))
    srv.settimeout(5)
    return srv


def _wait_for(cond: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def _warm_lease(a: ioth.Stack, b: DgramPlug, index: int, r: int) -> None:
    """One inline wait that serves a frame: the engine leaves the plug to waiting threads
    (the lease) from now on."""
    plug = a.runtime.plugs[index]
    with a.lock:
        base = plug.counters.rx_frames
        assert b.send(_frames(a, index, B_IP, A_IP, [b"warm-up"])[0])
    assert a.runtime.serve_until(r, select.POLLIN, a.runtime.clock() + 5,
                                 lambda: plug.counters.rx_frames > base) is True


# -- (was a bug) waits whose deadline already passed renewed the lease without polling ------
# serve_until with a deadline already past returned False at the top of its loop without
# polling the plugs, but its finally renewed the lease: a thread that kept calling it (a recv
# with a sub-microsecond timeout in a loop) kept the engine off the plugs forever while nobody
# read them.  Such a wait now polls once, without waiting, before it gives up.


def test_waits_that_never_poll_do_not_keep_the_plugs_forever(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread loops on waits whose deadline is already over (each returns False at
    once); a frame sent meanwhile must still be served within a generous bound: either the
    wait polls once before giving up, or the lease is not renewed by it.  (The lease is
    0.2 s here instead of 2 ms: with 2 ms the engine sometimes gets the plugs back when the
    spinning thread happens to lose the GIL for longer than a lease, which only makes the
    starvation random, not bounded.)"""
    monkeypatch.setattr(rt, "LEASE", 0.2)
    a, b, index = cable
    srv = _receiver(a, A_IP)
    plug = a.runtime.plugs[index]
    r, w = os.pipe()
    stop = threading.Event()
    try:
        _warm_lease(a, b, index, r)
        assert srv.recv(100) == b"warm-up"
        runtime = a.runtime

        def spinner() -> None:
            while not stop.is_set():
                runtime.serve_until(r, select.POLLIN, runtime.clock() - 1.0)

        t = threading.Thread(target=spinner, daemon=True)
        t.start()
        time.sleep(0.05)
        with a.lock:
            base = plug.counters.rx_frames
            assert b.send(_frames(a, index, B_IP, A_IP, [b"starved?"])[0])
        try:
            _wait_for(lambda: plug.counters.rx_frames > base, "the frame served", 2.0)
        finally:
            stop.set()
            t.join(5)
        assert srv.recv(100) == b"starved?"
    finally:
        stop.set()
        os.close(r)
        os.close(w)
        srv.close()


def test_tcp_recv_with_a_tiny_timeout_sees_data(tmp_path: Path, quiet: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Socket level: recv with a 1 ns timeout in a loop never returns the peer's bytes (a
    kernel socket returns them at the first call: see test_kernel_tiny_timeout_recv).
    (Lease 0.2 s, see above: with 2 ms the starvation is likely, not certain.)"""
    monkeypatch.setattr(rt, "LEASE", 0.2)
    with network(tmp_path, 2) as (a, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind((B_IP, 7620))
        srv.listen()
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect((B_IP, 7620))
        s, _ = srv.accept()
        c.settimeout(1e-9)
        threading.Timer(0.2, lambda: s.sendall(b"data")).start()
        got = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            try:
                got = c.recv(10)
                break
            except TimeoutError:
                pass
        c.settimeout(5)
        s.close()
        c.close()
        srv.close()
        assert got == b"data"


def test_kernel_tiny_timeout_recv() -> None:
    """The reference: a kernel TCP socket with a 1 ns timeout returns queued bytes."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c = socket.create_connection(lst.getsockname())
    s, _ = lst.accept()
    s.sendall(b"data")
    time.sleep(0.1)
    c.settimeout(1e-9)
    assert c.recv(10) == b"data"
    c.close()
    s.close()
    lst.close()


# -- what held: frames left by one-frame reads are always served by someone -------------------

@pytest.fixture
def two_cables(tmp_path: Path, quiet: int
               ) -> Iterator[tuple[ioth.Stack, list[DgramPlug], list[int]]]:
    """A stack with two interfaces (192.0.2.1 on vde0, 198.51.100.1 on vde1), each on a
    ptp:// cable whose other end is a bare plug."""
    a = ioth.Stack([f"ptp://{tmp_path / 'p0'}", f"ptp://{tmp_path / 'p1'}"],
                   f"eth,ip={A_IP}/24")
    peers: list[DgramPlug] = []
    try:
        idx = [a.if_nametoindex("vde0"), a.if_nametoindex("vde1")]
        a.linksetupdown(idx[1], True)
        a.ipaddr_add(socket.AF_INET, C_IP, 24, idx[1])
        for name in ("p0", "p1"):
            p = open_plug(f"ptp://{tmp_path / name}")
            assert isinstance(p, DgramPlug)
            peers.append(p)
        yield a, peers, idx
    finally:
        for p in peers:
            p.close()
        a.close()


def test_several_plugs_left_by_a_holder_are_all_served(
        two_cables: tuple[ioth.Stack, list[DgramPlug], list[int]], quiet: int) -> None:
    """Two frames queued on each of two plugs (quiet mode on both); the serving thread
    returns after its first frame and never waits again: the three others come in."""
    a, peers, idx = two_cables
    srv0 = _receiver(a, A_IP)
    srv1 = _receiver(a, C_IP)
    r, w = os.pipe()
    runtime = a.runtime
    try:
        # the lease first (the engine then leaves both plugs to waiting threads)
        _warm_lease(a, peers[0], idx[0], r)
        assert srv0.recv(100) == b"warm-up"
        plugs = [runtime.plugs[i] for i in idx]
        with a.lock:
            if quiet:
                for i in idx:
                    runtime._quiet[i] = 1000
            base = sum(p.counters.rx_frames for p in plugs)
            for f in _frames(a, idx[0], B_IP, A_IP, [b"0-a", b"0-b"]):
                assert peers[0].send(f)
            for f in _frames(a, idx[1], D_IP, C_IP, [b"1-a", b"1-b"]):
                assert peers[1].send(f)
        assert runtime.serve_until(
            r, select.POLLIN, runtime.clock() + 5,
            lambda: sum(p.counters.rx_frames for p in plugs) > base) is True
        assert [srv0.recv(100), srv0.recv(100)] == [b"0-a", b"0-b"]
        assert [srv1.recv(100), srv1.recv(100)] == [b"1-a", b"1-b"]
    finally:
        os.close(r)
        os.close(w)
        srv0.close()
        srv1.close()


def test_a_plug_attached_while_a_thread_serves_is_served(
        tmp_path: Path, quiet: int) -> None:
    """A thread sits in a long inline wait (its poll set made before the attach); frames on
    a plug attached meanwhile are served by the engine (the new interface is not among the
    waiting thread's)."""
    a = ioth.Stack(f"ptp://{tmp_path / 'p0'}", f"eth,ip={A_IP}/24")
    r, w = os.pipe()
    peer: DgramPlug | None = None
    srv = None
    stop = threading.Event()
    t = None
    try:
        runtime = a.runtime

        def waiter() -> None:
            while not stop.is_set():
                runtime.serve_until(r, select.POLLIN, runtime.clock() + 5)

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        _wait_for(lambda: runtime._serving, "the thread serving", 5)
        index = a.iplink_add_vde(-1, f"ptp://{tmp_path / 'p1'}")
        a.linksetupdown(index, True)
        a.ipaddr_add(socket.AF_INET, C_IP, 24, index)
        peer = open_plug(f"ptp://{tmp_path / 'p1'}")
        assert isinstance(peer, DgramPlug)
        srv = _receiver(a, C_IP)
        payloads = [b"new-%d" % i for i in range(5)]
        with a.lock:
            if quiet:
                runtime._quiet[index] = 1000
            for f in _frames(a, index, D_IP, C_IP, payloads):
                assert peer.send(f)
        assert [srv.recv(100) for _ in payloads] == payloads
    finally:
        stop.set()
        os.write(w, b"x")
        if t is not None:
            t.join(5)
        os.close(r)
        os.close(w)
        if srv is not None:
            srv.close()
        if peer is not None:
            peer.close()
        a.close()


def test_engine_only_stack_serves_a_burst_one_frame_per_read(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No inline serving at all (INLINE=0): the engine alone reads a burst in quiet mode,
    one frame per wake-up, and every frame arrives in order."""
    monkeypatch.setattr(rt, "INLINE", 0)
    a, b, index = cable
    srv = _receiver(a, A_IP)
    payloads = [b"%02d" % i for i in range(9)]
    with a.lock:
        if quiet:
            a.runtime._quiet[index] = 1000
        for f in _frames(a, index, B_IP, A_IP, payloads):
            assert b.send(f)
    assert [srv.recv(100) for _ in payloads] == payloads
    if quiet:
        assert 1000 - a.runtime._quiet[index] >= len(payloads)
    srv.close()


def test_detach_and_attach_while_frames_wait(
        cable: tuple[ioth.Stack, DgramPlug, int], quiet: int) -> None:
    """Frames queued in a quiet plug; the plug is detached and attached again: it starts
    with a full read and every frame comes in."""
    a, b, index = cable
    srv = _receiver(a, A_IP)
    runtime = a.runtime
    payloads = [b"d%d" % i for i in range(4)]
    with a.lock:
        if quiet:
            runtime._quiet[index] = 1000
        plug = runtime.detach(index)
        assert plug is not None
        for f in _frames(a, index, B_IP, A_IP, payloads):
            assert b.send(f)
        runtime.attach(index, plug)
        if quiet:
            assert runtime._quiet[index] == 0
    assert [srv.recv(100) for _ in payloads] == payloads
    srv.close()

"""The switch data thread's inline fast path (session 5): it applies the forwarding cache itself
and writes to the egress descriptor when the egress port has a single datagram endpoint.

Every test runs with the inline path on the descriptors (``FD_IO``) without the lock for hits
(``LOCK_FREE``) and with it, on the socket objects, and with the general receive function only
(``FAST_PATH=False``): all must give the same frames and counters.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from ioth.net.switch import server as server_mod
from ioth.net.switch.core import SwitchCore
from ioth.net.switch.server import SwitchServer
from tests.support.peers import wait_for

MODES = {
    "fd": {"FAST_PATH": True, "FD_IO": True},
    "fd-locked": {"FAST_PATH": True, "FD_IO": True, "LOCK_FREE": False},
    "sock": {"FAST_PATH": True, "FD_IO": False},
    "general": {"FAST_PATH": False},
}
A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")
BCAST = b"\xff" * 6
WAIT = 10.0  # seconds a frame that must come may take (a loaded 2-core CI machine)


def eth(dst: bytes, src: bytes, payload: bytes = bytes(46)) -> bytes:
    return dst + src + b"\x08\x00" + payload


@pytest.fixture(params=list(MODES))
def srv(request: pytest.FixtureRequest, tmp_path: os.PathLike[str],
        monkeypatch: pytest.MonkeyPatch) -> Iterator[SwitchServer]:
    for name, value in MODES[request.param].items():
        monkeypatch.setattr(server_mod, name, value)
    server = SwitchServer(os.path.join(str(tmp_path), "sw")).start()
    try:
        yield server
    finally:
        server.close()


def pair(server: SwitchServer, mtu: int = 1500, port: int | None = None
         ) -> tuple[socket.socket, int]:
    """A socketpair end plugged into ``server`` (on ``port`` if given): (our end, port)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.settimeout(WAIT)
    number = server.add_socket_port(theirs, mtu, f"test mtu={mtu}", port)
    return mine, number


def nothing(sock: socket.socket) -> bool:
    sock.settimeout(0.1)
    try:
        sock.recv(70000)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(WAIT)
    return False


def learn(a: socket.socket, b: socket.socket, *others: socket.socket) -> None:
    """A on ``a``'s port, B on ``b``'s; the floods drained from every socket."""
    a.send(eth(BCAST, A))
    assert b.recv(2000) == eth(BCAST, A)
    b.send(eth(BCAST, B))
    assert a.recv(2000) == eth(BCAST, B)
    for s in others:
        while not nothing(s):
            pass


def test_a_port_with_two_endpoints_gets_every_cached_frame_twice(srv: SwitchServer) -> None:
    """Hits to a port with two endpoints go to both (no single egress descriptor); once one
    leaves, the other alone gets them (the descriptor path), and the counters match a plain
    engine fed the same frames."""
    a, pa = pair(srv)
    b1, pb = pair(srv)
    b2, _ = pair(srv, port=pb)
    ref = SwitchCore()
    ref.add_port(pa, 1518)
    ref.add_port(pb, 1518)
    try:
        learn(a, b1, b2)
        ref.forward(pa, eth(BCAST, A), 0.0)
        ref.forward(pb, eth(BCAST, B), 0.0)
        for i in range(40):
            frame = eth(B, A, i.to_bytes(2, "big") * 23)
            a.send(frame)
            assert b1.recv(2000) == frame, i
            assert b2.recv(2000) == frame, i
            ref.forward(pa, frame, 1.0)
        with srv.lock:
            eps = [ep for ep in srv._endpoints[pb] if ep.sock is not None]
        srv.release(eps[1])  # the second endpoint (b2's) goes
        for i in range(40, 80):
            frame = eth(B, A, i.to_bytes(2, "big") * 23)
            a.send(frame)
            assert b1.recv(2000) == frame, i
            ref.forward(pa, frame, 1.0)
        assert nothing(b1) and nothing(b2) and nothing(a)
        with srv.lock:
            # b2's port saw each of the first 40 frames once per endpoint on the wire, but the
            # switch counts a frame once per port (as the engine does)
            for n in (pa, pb):
                assert srv.core.ports[n].counters.as_dict() == ref.ports[n].counters.as_dict()
            assert srv.core.counters.unicast == ref.counters.unicast
            assert srv.core.flow_cache_entries >= 1  # the flow was served from the cache
    finally:
        for s in (a, b1, b2):
            s.close()


def test_an_egress_limit_shrinking_under_a_cached_flow_drops_big_frames(srv: SwitchServer
                                                                        ) -> None:
    """A second endpoint with a smaller MTU joining the egress port lowers the port's limit:
    big frames of a flow served from the cache until then are dropped and counted."""
    a, _ = pair(srv, 9000)
    b, pb = pair(srv, 9000)
    try:
        learn(a, b)
        big = eth(B, A, bytes(4000))
        for _ in range(5):
            a.send(big)
            assert b.recv(9100) == big
        small, _ = pair(srv, 1500, port=pb)  # the port's limit is now 1518
        a.send(big)
        a.send(eth(B, A))
        assert b.recv(9100) == eth(B, A)  # the big one was dropped, not sent
        assert small.recv(9100) == eth(B, A)
        with srv.lock:
            assert srv.core.ports[pb].counters.drop_too_big == 1
            assert srv.core.ports[pb].counters.tx_frames == 5 + 1 + 1  # (+ the flood of A)
        small.close()
    finally:
        a.close()
        b.close()


def test_the_quiet_interval_grows_and_a_backlog_resets_it(srv: SwitchServer,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A quiet port drains after 8, 16, 32, 64, 64 ... single-frame wake-ups; a drain that finds
    a backlog goes back to draining and to an interval of 8; nothing is lost or reordered."""
    a, pa = pair(srv)
    b, _ = pair(srv)
    try:
        learn(a, b)
        sent = 0
        # (a loaded machine may let a drain find 2 frames: it resets to 8; so up to 20 rounds
        # until the interval is PROBE_MAX, 3 on the general path, which has no interval)
        for _ in range(20 if server_mod.FAST_PATH else 3):
            for i in range(300):  # one frame at a time: a wake-up finds one frame
                frame = eth(B, A, i.to_bytes(2, "big") * 23)
                a.send(frame)
                assert b.recv(2000) == frame
            sent += 300
            with srv.lock:
                (ep,) = srv._endpoints[pa]
                if ep.probe == server_mod.PROBE_MAX:
                    break
        with srv.lock:
            (ep,) = srv._endpoints[pa]
            assert ep.probe == server_mod.PROBE_MAX or not server_mod.FAST_PATH
        burst = [eth(B, A, i.to_bytes(2, "big") * 23) for i in range(3000)]
        for frame in burst:
            a.send(frame)
        assert [b.recv(2000) for _ in burst] == burst
        with srv.lock:
            assert srv.core.ports[pa].counters.rx_frames == 1 + sent + 3000
    finally:
        a.close()
        b.close()


def test_a_port_released_between_wakeups_is_never_written(srv: SwitchServer) -> None:
    """A port's descriptor may be reused by the next port as soon as it is released: frames of
    a flow to the old port must not reach the new one through a stale descriptor."""
    a, _ = pair(srv)
    b, pb = pair(srv)
    try:
        learn(a, b)
        for _ in range(3):
            a.send(eth(B, A))
            assert b.recv(2000) == eth(B, A)
        with srv.lock:
            (ep,) = srv._endpoints[pb]
        srv.release(ep)
        b.close()
        c, pc = pair(srv)  # likely the released descriptor number again
        a.send(eth(B, A))  # B is gone with its port: flooded to c, never "cached" to it
        assert c.recv(2000) == eth(B, A)
        with srv.lock:
            assert srv.core.lookup(B, 0, srv.engine.clock()) is None
            assert srv.core.ports[pc].counters.tx_frames == 1
        c.close()
    finally:
        a.close()



def test_a_released_port_socket_is_closed_by_the_data_thread(srv: SwitchServer) -> None:
    """A released port's socket is closed soon after (by the data thread between two batches
    when it serves hits without the lock), its client's sends are refused, and closing the
    server closes every socket of its ports."""
    a, _ = pair(srv)
    b, pb = pair(srv)
    try:
        learn(a, b)
        with srv.lock:
            (ep,) = srv._endpoints[pb]
            sock = ep.sock
        assert sock is not None
        srv.release(ep)
        wait_for(lambda: sock.fileno() == -1, WAIT, what="the released socket closed")
        with pytest.raises(OSError):
            for _ in range(100):
                b.send(eth(A, B))
        a.send(eth(B, A))  # B was on the released port: forgotten, flooded to nobody
        assert nothing(a)
        with srv.lock:
            (ep_a,) = srv._endpoints[next(iter(srv._endpoints))]
            sock_a = ep_a.sock
        assert sock_a is not None
        srv.close()
        assert sock_a.fileno() == -1
        assert not srv._data_closing
    finally:
        a.close()
        b.close()

"""Adversarial review (session 5): the ioth switch's datagram data path, on a real clock.

Session 5 trims the data thread's work per frame (threads, locks, clock calls).  These tests
look at what such trimming can break, in every data-path mode of the server (the knobs of
``MODES``):

* MAC ageing on the real clock: a station that went silent is aged out and frames to it are
  flooded again, while a station that keeps sending (through the cached flow, which refreshes
  the entry) stays learnt;
* counters: after a run of frames through a cached flow every port's counters add up (frames
  in = frames out + drops), the same in every mode;
* many ports: 40 clients each sending one unicast frame to every other learnt client get
  exactly their frames;
* malformed datagrams (empty, runts, > max frame) are dropped and counted, and the flow after
  them still switches;
* hub mode: every frame to every other port, before and after the stations are "known";
* a port released while a cached flow blasts into it: the server keeps switching for the
  others, and the released port's number, reused by a new client, gets no frame of the old
  station.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ioth.net.switch import server as server_mod
from ioth.net.switch.core import MAX_FRAME
from ioth.net.switch.server import SwitchServer
from tests.net.test_switch_datapath import MODES, Client
from tests.support.peers import wait_for

ETHER = b"\x08\x00"
BCAST = b"\xff" * 6
WAIT = 10.0  # seconds a frame that must come may take (a loaded 2-core CI machine)


def mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, i >> 8, i & 0xFF])


def frame(dst: bytes, src: bytes, tag: int = 0, size: int = 60) -> bytes:
    body = tag.to_bytes(4, "big")
    return dst + src + ETHER + body + bytes(max(0, size - 18))


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every data-path mode of test_switch_datapath (the inline fast path on descriptors, on
    socket objects, the general receive function)."""
    for name, value in MODES[request.param].items():
        monkeypatch.setattr(server_mod, name, value)
    return str(request.param)


@pytest.fixture
def swdir(tmp_path: Path) -> str:
    return os.path.join(str(tmp_path), "sw")


def _expect(c: Client, n: int) -> list[bytes]:
    """The next ``n`` frames of ``c`` (each may take :data:`WAIT`)."""
    return [c.recv(WAIT) for _ in range(n)]


def _floods(a: Client, b: Client, c: Client | None = None) -> None:
    """Take the floods of the two stations' first frames (B's, then A's): one each at A and
    B, both at C."""
    _expect(a, 1)
    _expect(b, 1)
    if c is not None:
        _expect(c, 2)


def _settle(done: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``done`` until it is true or ``timeout`` passes (the assertions after it tell
    what went wrong)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def _drain(c: Client) -> list[bytes]:
    """The frames ``c`` holds or gets within 50 ms of each other (for frames that may or may
    not come: read the ones that must come first)."""
    out = []
    c.data.settimeout(0.05)
    while True:
        try:
            out.append(c.data.recv(MAX_FRAME + 100))
        except TimeoutError:
            return out


def _blast(a: Client, stop: threading.Event, every: int, pause: float) -> threading.Thread:
    """A thread sending A's frames to B (mac 2) until ``stop``, pausing ``pause`` s every
    ``every`` frames (and 1 ms after a failed send)."""
    def run() -> None:
        i = 0
        while not stop.is_set():
            try:
                a.data.send(frame(mac(2), mac(1), i))
            except OSError:
                time.sleep(0.001)
            i += 1
            if i % every == 0:
                time.sleep(pause)

    t = threading.Thread(target=run)
    t.start()
    return t


def _empty(c: Client) -> bool:
    c.data.setblocking(False)
    try:
        c.data.recv(MAX_FRAME + 100)
    except BlockingIOError:
        return True
    return False


@pytest.mark.parametrize("mode", ["epoll-fast"], indirect=True)
def test_ageing_on_the_real_clock(mode: str, swdir: str) -> None:
    """Ageing 1 s (sweep every 1 s): A sends to B every 50 ms for 3.2 s while B stays silent
    after its first frame; C must start seeing A's frames (flooded: B aged out) within
    ageing + sweep, and must not see them in the first half second; A, which never stops
    sending through the cached flow, must still be learnt at the end (B's reply reaches A
    only)."""
    srv = SwitchServer(swdir, ageing=1.0).start()
    a, b, c = (Client(swdir, 1500) for _ in range(3))
    try:
        tb = time.monotonic()  # B's last frame: learnt at or after this
        b.data.send(frame(BCAST, mac(2)))
        a.data.send(frame(BCAST, mac(1)))
        _floods(a, b, c)
        sent_at: list[float] = []  # (when each tag was sent, after tb: a loaded machine
        t0 = time.monotonic()  # stretches the loop, so tags do not stand for times)
        while time.monotonic() - t0 < 3.2:
            sent_at.append(time.monotonic() - tb)
            a.data.send(frame(mac(2), mac(1), len(sent_at) - 1))
            time.sleep(0.05)
        i = len(sent_at)
        got_b = [int.from_bytes(f[14:18], "big") for f in _expect(b, i)]
        got_c = [int.from_bytes(f[14:18], "big") for f in _drain(c)]  # (switched with B's)
        assert got_b == list(range(i)), mode  # B gets every one of them (learnt, then flooded)
        early = [t for t in got_c if sent_at[t] < 0.5]  # sent within the first 0.5 s
        assert not early, (mode, early)
        # sent after ageing 1 s + sweep 1 s (and 0.25 s to spare): all flooded
        late_sent = [t for t in range(i) if sent_at[t] >= 2.25]
        late = [t for t in got_c if sent_at[t] >= 2.25]
        assert len(late) >= len(late_sent) - 2, (mode, got_c[:5], len(late), len(late_sent))
        b.data.send(frame(mac(1), mac(2), 999))
        assert a.recv(WAIT) == frame(mac(1), mac(2), 999)
        assert c.nothing(), mode  # A is still learnt: its cached flow kept the entry fresh
    finally:
        for x in (a, b, c):
            x.close()
        srv.close()


def test_counters_add_up_through_a_cached_flow(mode: str, swdir: str) -> None:
    srv = SwitchServer(swdir).start()
    a, b, c = (Client(swdir, 1500) for _ in range(3))
    try:
        b.data.send(frame(BCAST, mac(2)))
        a.data.send(frame(BCAST, mac(1)))
        _floods(a, b, c)
        n = 300
        for i in range(n):
            a.data.send(frame(mac(2), mac(1), i, 60 + i % 200))
        got = []
        while len(got) < n:
            got.append(b.recv(WAIT))
        assert [int.from_bytes(f[14:18], "big") for f in got] == list(range(n))
        assert c.nothing()

        def settled() -> bool:
            with srv.lock:
                return srv.core.ports[1].counters.rx_frames == n + 1
        wait_for(settled, WAIT, 0.01, "counters")
        with srv.lock:
            pa, pb, pc = (srv.core.ports[p].counters for p in (1, 2, 3))
            assert pa.rx_frames == n + 1
            assert pa.rx_bytes == 60 + sum(60 + i % 200 for i in range(n))
            assert pb.tx_frames == n + 1  # A's flood, then the n frames
            assert pb.tx_bytes == pa.rx_bytes
            assert pc.tx_frames == 2  # the two floods
            assert pb.rx_frames == 1
            for p in (pa, pb, pc):
                assert sum(p.drops().values()) == 0, p.as_dict()
            assert srv.recv_errors == 0
    finally:
        for x in (a, b, c):
            x.close()
        srv.close()


def test_many_ports_get_exactly_their_frames(mode: str, swdir: str) -> None:
    n = 40
    srv = SwitchServer(swdir, numports=64).start()
    clients = [Client(swdir, 1500) for _ in range(n)]
    try:
        for i, cl in enumerate(clients):
            cl.data.send(frame(BCAST, mac(i + 1)))
        for cl in clients:
            for _ in range(n - 1):
                assert cl.recv(WAIT)[:6] == BCAST
        for i, cl in enumerate(clients):
            for j in range(n):
                if j != i:
                    cl.data.send(frame(mac(j + 1), mac(i + 1), i))
        for j, cl in enumerate(clients):
            got = []
            while len(got) < n - 1:
                got.append(cl.recv(WAIT))
            assert all(f[:6] == mac(j + 1) for f in got), mode
            assert sorted(int.from_bytes(f[14:18], "big") for f in got) == \
                [i for i in range(n) if i != j]
        time.sleep(0.1)
        for cl in clients:
            assert _empty(cl), mode
    finally:
        for cl in clients:
            cl.close()
        srv.close()


def test_malformed_datagrams_are_counted_and_the_flow_goes_on(mode: str, swdir: str) -> None:
    srv = SwitchServer(swdir).start()
    a, b = Client(swdir, 1500), Client(swdir, 1500)
    try:
        b.data.send(frame(BCAST, mac(2)))
        a.data.send(frame(BCAST, mac(1)))
        _floods(a, b)
        a.data.send(frame(mac(2), mac(1), 1))
        assert b.recv(WAIT) == frame(mac(2), mac(1), 1)  # the flow is cached now
        bad = [b"", mac(2), mac(2) + mac(1), mac(2) + mac(1) + b"\x08",
               frame(mac(2), mac(1), 2, 1518 + 1),  # one byte over this port's max frame
               frame(mac(2), mac(1), 3, MAX_FRAME + 10)]  # over any frame
        for f in bad:
            a.data.send(f)
        a.data.send(frame(mac(2), mac(1), 4))
        assert b.recv(WAIT) == frame(mac(2), mac(1), 4), mode
        assert b.nothing()
        with srv.lock:
            pa, pb = srv.core.ports[1].counters, srv.core.ports[2].counters
            assert pa.drop_runt == 4, pa.as_dict()
            assert pb.drop_too_big == 1, pb.as_dict()
            assert srv.recv_errors == 1
    finally:
        a.close()
        b.close()
        srv.close()


def test_hub_floods_every_frame(mode: str, swdir: str) -> None:
    srv = SwitchServer(swdir, hub=True).start()
    cl = [Client(swdir, 1500) for _ in range(3)]
    try:
        for rnd in range(3):  # "learning" rounds change nothing in a hub
            for i, c in enumerate(cl):
                c.data.send(frame(mac(((i + 1) % 3) + 1), mac(i + 1), rnd))
            for i, c in enumerate(cl):
                got = sorted(c.recv(WAIT)[6:12] for _ in range(2))
                assert got == sorted(mac(j + 1) for j in range(3) if j != i), (mode, rnd, i)
        time.sleep(0.05)
        assert all(_empty(c) for c in cl), mode
    finally:
        for c in cl:
            c.close()
        srv.close()


def test_released_port_number_reused_gets_no_frame_of_the_old_station(
        mode: str, swdir: str) -> None:
    srv = SwitchServer(swdir).start()
    a, b = Client(swdir, 1500), Client(swdir, 1500)
    stop = threading.Event()
    try:
        b.data.send(frame(BCAST, mac(2)))
        a.data.send(frame(BCAST, mac(1)))
        _floods(a, b)
        t = _blast(a, stop, 64, 0.001)
        time.sleep(0.1)
        b.close()  # port 2 released while A's cached flow blasts into it
        wait_for(lambda: srv.active_ports() == [1], WAIT, 0.01, "port 2 released")
        c = Client(swdir, 1500)  # gets port 2 again
        try:
            assert srv.active_ports() == [1, 2]
            time.sleep(0.2)
            stop.set()
            t.join(5)
            got = _drain(c)
            # B's MAC was flushed with its port: A's frames to it are flooded to every port,
            # C's included, as unknown unicast; what must not happen is an error or a stall
            d = Client(swdir, 1500)
            try:
                d.data.send(frame(mac(1), mac(9), 7))
                assert a.recv(WAIT) == frame(mac(1), mac(9), 7), mode
            finally:
                d.close()
            assert all(f[:6] == mac(2) for f in got)
            with srv.lock:
                assert srv.core.lookup(mac(2), 0, srv.engine.clock()) is None
        finally:
            c.close()
    finally:
        stop.set()
        a.close()
        srv.close()


def test_a_released_ports_descriptor_number_reused_gets_no_frame(mode: str, swdir: str
                                                                  ) -> None:
    """The data path may write to a port's descriptor by number (session 5).  Port 2 is
    released while A's cached flow to it blasts; the test process at once takes the freed
    descriptor number (socketpairs): nothing may ever be written into it."""
    srv = SwitchServer(swdir).start()
    a, b = Client(swdir, 1500), Client(swdir, 1500)
    stop = threading.Event()
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        b.data.send(frame(BCAST, mac(2)))
        a.data.send(frame(BCAST, mac(1)))
        _floods(a, b)
        a.data.send(frame(mac(2), mac(1), 0))
        assert b.recv(WAIT) == frame(mac(2), mac(1), 0)
        with srv.lock:
            socks = [ep.sock for ep in srv._endpoints[2] if ep.sock is not None]
        old = {x.fileno() for x in socks}
        t = _blast(a, stop, 32, 0.0005)
        time.sleep(0.05)
        b.ctl.close()
        wait_for(lambda: srv.active_ports() == [1] and all(x.fileno() < 0 for x in socks),
                 WAIT, 0.001, "port 2 released and its socket closed")
        for _ in range(16):
            pairs.append(socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM))
        mine = {x.fileno() for p in pairs for x in p}
        time.sleep(0.3)
        stop.set()
        t.join(5)
        assert old & mine, (old, sorted(mine))  # (the number was taken again: a real check)
        for x, y in pairs:
            for s in (x, y):
                s.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s.recv(MAX_FRAME)
    finally:
        stop.set()
        for x, y in pairs:
            x.close()
            y.close()
        a.close()
        b.data.close()
        srv.close()


def test_ports_coming_and_going_leave_nothing_behind(mode: str, swdir: str) -> None:
    """150 clients join, exchange a unicast frame with a resident client (so flows are
    cached) and leave: the server's per-port tables and the process's descriptors are back
    to what they were."""
    srv = SwitchServer(swdir).start()
    home = Client(swdir, 1500)
    try:
        home.data.send(frame(BCAST, mac(1)))

        def sizes() -> dict[str, int]:
            with srv.lock:
                return {"endpoints": len(srv._endpoints), "data_eps": len(srv._data_eps),
                        "tx": len(srv._tx), "tx_fd": len(getattr(srv, "_tx_fd", {})),
                        "ports": len(srv.core.ports), "pending": len(srv._pending)}

        def fds() -> int:
            return len(os.listdir("/proc/self/fd"))

        base = {"endpoints": 1, "data_eps": 1, "tx": 1, "tx_fd": 1, "ports": 1, "pending": 0}
        if not hasattr(srv, "_tx_fd"):
            base["tx_fd"] = 0
        wait_for(lambda: sizes() == base, WAIT, 0.01, f"the resident client registered: {base}")
        fd0 = fds()
        for i in range(150):
            c = Client(swdir, 1500)
            c.data.send(frame(mac(1), mac(100 + i), i))
            assert home.recv(WAIT)[14:18] == i.to_bytes(4, "big")
            home.data.send(frame(mac(100 + i), mac(1), i))
            home.data.send(frame(mac(100 + i), mac(1), i))  # (the second one: a cached flow)
            assert c.recv(WAIT)[14:18] == i.to_bytes(4, "big")
            assert c.recv(WAIT)[14:18] == i.to_bytes(4, "big")
            c.close()
        wait_for(lambda: sizes() == base, WAIT, 0.01, f"tables back to {base}")
        wait_for(lambda: fds() <= fd0, WAIT, 0.01, "descriptors back")
        with srv.lock:
            assert srv.core.flow_cache_entries <= 2
    finally:
        home.close()
        srv.close()


def test_counters_add_up_when_two_threads_forward_to_one_port(mode: str, swdir: str) -> None:
    """A datagram port (the data thread) and a plug port (the engine thread) blast unicast
    frames to the same datagram port B at the same time: the egress counters and the switch's
    unicast counter count every frame exactly once (session 5's data thread serves cache hits
    without the server's lock, while the engine thread switches the plug's frames under it)."""
    from tests.net.memplug import MemPlug

    srv = SwitchServer(swdir).start()
    a, b = Client(swdir, 1500), Client(swdir, 1500)
    plug = MemPlug()
    n = 3000
    try:
        b.data.send(frame(BCAST, mac(2)))
        a.data.send(frame(BCAST, mac(1)))
        pport = srv.add_plug(plug)
        plug.inject(frame(BCAST, mac(3)))
        os.write(plug._w, b"x")  # (level-triggered: the engine polls the plug from now on)
        wait_for(lambda: srv.core.lookup(mac(3), 0, srv.engine.clock()) == pport, WAIT, 0.01,
                 "the plug's station learnt")
        _expect(a, 2)  # B's flood and the plug station's
        _expect(b, 2)  # A's and the plug station's
        with srv.lock:
            base = {p: (c.counters.tx_frames, c.counters.rx_frames)
                    for p, c in srv.core.ports.items()}
            unicast0 = srv.core.counters.unicast
        got = [0]
        done = threading.Event()

        def read_b() -> None:
            b.data.settimeout(1.0)
            while True:
                try:
                    b.data.recv(MAX_FRAME + 100)
                except TimeoutError:
                    if done.is_set():
                        return
                    continue
                got[0] += 1

        reader = threading.Thread(target=read_b)
        reader.start()
        plug.inject(*(frame(mac(2), mac(3), i) for i in range(n)))
        for i in range(n):
            a.data.send(frame(mac(2), mac(1), i))
            if i % 256 == 0:
                time.sleep(0.001)
        wait_for(lambda: not plug.inbox, WAIT, 0.01, "the plug's frames switched")

        def forwarded() -> int:
            with srv.lock:
                return srv.core.ports[2].counters.tx_frames - base[2][0]
        _settle(lambda: forwarded() >= 2 * n)  # (the data thread may still be at A's)
        done.set()
        reader.join(5)
        with srv.lock:
            pb = srv.core.ports[2].counters
            sent_to_b = pb.tx_frames - base[2][0]
            assert sent_to_b == 2 * n, (mode, sent_to_b)
            assert srv.core.counters.unicast - unicast0 == 2 * n, mode
            assert srv.core.ports[1].counters.rx_frames - base[1][1] == n
            assert got[0] + pb.drop_send == 2 * n, (got[0], pb.drop_send)
    finally:
        a.close()
        b.close()
        srv.close()


def test_closing_the_server_leaves_no_descriptor(mode: str, swdir: str) -> None:
    """Clients join, some leave just before the server closes (their sockets may still wait
    to be closed by the data thread), frames flow: after close, the process holds exactly
    the descriptors it held before the server existed (the clients' own aside), and the data
    thread is gone."""
    fd0 = len(os.listdir("/proc/self/fd"))
    srv = SwitchServer(swdir).start()
    clients = [Client(swdir, 1500) for _ in range(6)]
    for i, c in enumerate(clients):
        c.data.send(frame(BCAST, mac(i + 1)))
    for c in clients:
        for _ in range(5):
            c.recv(WAIT)
    for i in range(3):
        clients[0].data.send(frame(mac(2), mac(1), i))
    for c in clients[3:]:
        c.ctl.close()  # leaving: the switch releases their ports
    thread = srv._data_thread
    srv.close()
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()
    for c in clients:
        c.data.close()
        with contextlib.suppress(OSError):
            c.ctl.close()
    wait_for(lambda: len(os.listdir("/proc/self/fd")) <= fd0, WAIT, 0.01,
             "the server's descriptors closed")


def test_a_cached_flow_reaches_every_endpoint_of_a_port_that_gains_one(mode: str, swdir: str
                                                                        ) -> None:
    """A flow to a single-endpoint port is cached (and may be written straight to that
    endpoint's descriptor); a second client then joins the same port: the flow's next frames
    go to both endpoints (vde_switch: a port sends to all its endpoints); when the first
    leaves, to the second alone."""
    from tests.net.test_switch_server import RawClient

    srv = SwitchServer(swdir).start()
    a = RawClient(swdir, port=3)
    b1 = RawClient(swdir, port=7)
    b2 = None
    try:
        b1.send(frame(BCAST, mac(2)))
        a.send(frame(BCAST, mac(1)))
        assert a.recv(WAIT)[6:12] == mac(2)
        assert b1.recv(WAIT)[6:12] == mac(1)
        for i in range(3):
            a.send(frame(mac(2), mac(1), i))
            assert b1.recv(WAIT) == frame(mac(2), mac(1), i)
        b2 = RawClient(swdir, port=7)
        wait_for(lambda: len(srv.endpoints(7)) == 2, WAIT, 0.01, "the second endpoint")
        for i in range(3, 6):
            a.send(frame(mac(2), mac(1), i))
            assert b1.recv(WAIT) == frame(mac(2), mac(1), i), mode
            assert b2.recv(WAIT) == frame(mac(2), mac(1), i), mode
        b1.ctl.close()
        wait_for(lambda: len(srv.endpoints(7)) == 1, WAIT, 0.01, "the first endpoint gone")
        for i in range(6, 9):
            a.send(frame(mac(2), mac(1), i))
            assert b2.recv(WAIT) == frame(mac(2), mac(1), i), mode
    finally:
        for x in (a, b1, b2):
            if x is not None:
                x.data.close()
                with contextlib.suppress(OSError):
                    x.ctl.close()
        srv.close()

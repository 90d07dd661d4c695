"""The switch server's data paths agree with the sans-IO engine, frame by frame.

Datagram ports are served by one epoll data thread, which serves quiet ports inline through
the forwarding cache (``FAST_PATH``; on the descriptors, ``FD_IO``, or on the socket objects)
or through the general receive function.  Both modes must
deliver exactly the frames a plain :class:`SwitchCore` computes for the same input, to the same
ports, and end with the same counters; releasing a port must take it off the data thread, and
closing the server must end that thread.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from ioth.net.switch import server as server_mod
from ioth.net.switch.core import MAX_FRAME, SwitchCore
from ioth.net.switch.server import SwitchServer
from tests.support.peers import wait_for

MODES = {
    "epoll-fast": {"FAST_PATH": True},
    "epoll-fast-locked": {"FAST_PATH": True, "LOCK_FREE": False},
    # the inline path on the socket objects, a drain every 8 quiet wake-ups (as in session 4)
    "epoll-fast-sock": {"FAST_PATH": True, "FD_IO": False, "PROBE_MAX": 8},
    "epoll-general": {"FAST_PATH": False},
}
MACS = [bytes.fromhex(f"0200000000{i:02x}") for i in range(1, 6)]
BCAST = b"\xff" * 6
MCAST = bytes.fromhex("01005e000001")


class Client:
    """A minimal VDE client (protocol as in shared/specs/vde.md), blocking with timeouts."""

    seq = 0

    def __init__(self, directory: str, mtu: int) -> None:
        Client.seq += 1
        self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = f"{directory}/.dp{os.getpid()}-{Client.seq}"
        self.data.bind(path)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            self.data.setsockopt(socket.SOL_SOCKET, opt, 1 << 21)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.connect(os.path.join(directory, "ctl"))
        self.ctl.settimeout(5)
        sun = struct.pack("<H108s", socket.AF_UNIX, path.encode())
        self.ctl.sendall(struct.pack("<III", 0xFEEDFACE, 3, 0) + sun
                         + f"test: mtu={mtu}".encode())
        reply = b""
        while len(reply) < 110:
            chunk = self.ctl.recv(110 - len(reply))
            assert chunk, "switch closed the control connection"
            reply += chunk
        os.unlink(path)
        self.data.connect(reply[2:].rstrip(b"\0").decode())

    def recv(self, timeout: float = 2.0) -> bytes:
        self.data.settimeout(timeout)
        return self.data.recv(MAX_FRAME + 100)

    def nothing(self) -> bool:
        self.data.settimeout(0.1)
        try:
            self.data.recv(MAX_FRAME + 100)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.ctl.close()
        self.data.close()


@pytest.fixture(params=list(MODES))
def mode_server(request: pytest.FixtureRequest, tmp_path: os.PathLike[str],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, SwitchServer, str]]:
    for name, value in MODES[request.param].items():
        monkeypatch.setattr(server_mod, name, value)
    directory = os.path.join(str(tmp_path), "sw")
    srv = SwitchServer(directory).start()
    try:
        yield request.param, srv, directory
    finally:
        srv.close()


def _frame(rng: random.Random) -> bytes:
    dst = rng.choice([*MACS, BCAST, MCAST])
    src = rng.choice([*MACS, MCAST])
    kind = rng.random()
    size = rng.choice([14, 60, 200, 1514, 1518, 3000, 9018])
    if kind < 0.08:
        return b""  # an empty datagram
    if kind < 0.16:
        return dst + src[:rng.randrange(0, 6)]  # a runt
    if kind < 0.26:  # tagged: VID 0 (priority), 5 or 7
        vid = rng.choice([0, 5, 7])
        return dst + src + b"\x81\x00" + vid.to_bytes(2, "big") + b"\x08\x00" + b"t" * (size - 14)
    return dst + src + b"\x08\x00" + bytes([rng.randrange(256)]) * (size - 14)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_mode_delivers_what_the_engine_computes(
        mode_server: tuple[str, SwitchServer, str], seed: int) -> None:
    mode, srv, directory = mode_server
    mtus = [1500, 1500, 9000, 1500]
    clients = [Client(directory, mtu) for mtu in mtus]
    ref = SwitchCore()
    for number, mtu in enumerate(mtus, start=1):
        ref.add_port(number, mtu + 18)
    rng = random.Random(seed)
    try:
        # learning first, so that unicast flows (and the forwarding cache) get used
        frames = [(i, BCAST + MACS[i] + b"\x08\x00" + bytes(46)) for i in range(len(mtus))]
        frames += [(rng.randrange(len(mtus)), _frame(rng)) for _ in range(150)]
        # a learnt unicast flow, many times (cache hits), sizes up to the port limits
        frames += [(1, MACS[0] + MACS[1] + b"\x08\x00" + bytes(rng.choice([46, 1500, 1504])))
                   for _ in range(40)]
        for i, (sender, frame) in enumerate(frames):
            clients[sender].data.send(frame)
            expected = ref.forward(sender + 1, frame, 1.0 + i * 1e-3)
            # ports are separate sockets: let the switch take this frame before the next one
            # (which may come from another port) so that both see the same order
            wait_for(lambda s=sender: srv.core.ports[s + 1].counters.rx_frames  # type: ignore
                     == ref.ports[s + 1].counters.rx_frames, 5, 0.0005, f"frame {i} taken")
            for port, data in expected:
                assert clients[port - 1].recv() == data, (mode, i, port)
            # nothing else: the next expected frame of every client comes from the next send
        assert all(c.nothing() for c in clients), mode
        with srv.lock:
            for number in range(1, len(mtus) + 1):
                assert (srv.core.ports[number].counters.as_dict()
                        == ref.ports[number].counters.as_dict()), (mode, number)
            got = srv.core.counters
            assert (got.flooded, got.unicast, got.filtered, got.learned, got.moved) == (
                ref.counters.flooded, ref.counters.unicast, ref.counters.filtered,
                ref.counters.learned, ref.counters.moved), mode
    finally:
        for c in clients:
            c.close()


def test_oversize_datagram_is_dropped_and_counted(
        mode_server: tuple[str, SwitchServer, str]) -> None:
    mode, srv, directory = mode_server
    a, b = Client(directory, 65535), Client(directory, 65535)
    try:
        a.data.send(BCAST + MACS[0] + b"\x08\x00" + bytes(MAX_FRAME - 14 + 1))
        a.data.send(BCAST + MACS[0] + b"\x08\x00" + bytes(46))
        assert b.recv() == BCAST + MACS[0] + b"\x08\x00" + bytes(46), mode
        assert srv.recv_errors == 1, mode
        assert b.nothing()
    finally:
        a.close()
        b.close()


def test_a_burst_crosses_complete_and_in_order(mode_server: tuple[str, SwitchServer, str]
                                               ) -> None:
    mode, srv, directory = mode_server
    a, b = Client(directory, 1500), Client(directory, 1500)
    try:
        a.data.send(BCAST + MACS[0] + b"\x08\x00" + bytes(46))
        assert b.recv()
        b.data.send(BCAST + MACS[1] + b"\x08\x00" + bytes(46))
        assert a.recv()
        burst = [MACS[1] + MACS[0] + b"\x08\x00" + i.to_bytes(2, "big") * 30
                 for i in range(600)]
        for frame in burst:
            a.data.send(frame)
        assert [b.recv() for _ in burst] == burst, mode
        assert srv.core.ports[2].counters.tx_frames == 601
    finally:
        a.close()
        b.close()


def _data_threads(directory: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name == f"ioth-switch-data {directory}" and t.is_alive()]


def test_release_takes_the_port_off_the_data_thread(mode_server: tuple[str, SwitchServer, str]
                                                     ) -> None:
    mode, srv, directory = mode_server
    a, b = Client(directory, 1500), Client(directory, 1500)
    wait_for(lambda: len(srv._data_eps) == 2, 5, what="two datagram ports served")
    (thread,) = _data_threads(srv.directory)
    a.close()  # control EOF: the port goes, and its descriptor leaves the data thread
    wait_for(lambda: srv.active_ports() == [2] and len(srv._data_eps) == 1, 5,
             what="port 1 released")
    c = Client(directory, 1500)  # the survivor still works, on the same thread
    b.data.send(BCAST + MACS[1] + b"\x08\x00" + bytes(46))
    assert c.recv() == BCAST + MACS[1] + b"\x08\x00" + bytes(46), mode
    assert _data_threads(srv.directory) == [thread]
    srv.close()
    thread.join(5)
    assert not thread.is_alive()
    b.close()
    c.close()


def test_clients_come_and_go_under_traffic(mode_server: tuple[str, SwitchServer, str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Ports released while frames flow through them: no error, no thread left behind, and
    the ports that stay keep switching."""
    mode, srv, directory = mode_server
    stay_a, stay_b = Client(directory, 1500), Client(directory, 1500)
    stop = threading.Event()

    def blast(client: Client) -> None:
        frame = BCAST + MACS[0] + b"\x08\x00" + bytes(46)
        while not stop.is_set():
            try:
                client.data.send(frame)
            except OSError:
                return  # its port went away

    try:
        for _ in range(15):
            churn = [Client(directory, 1500) for _ in range(3)]
            blasters = [threading.Thread(target=blast, args=(c,)) for c in churn]
            for t in blasters:
                t.start()
            for c in churn:
                c.ctl.close()  # the switch releases the port while its client still sends
            wait_for(lambda: srv.active_ports() == [1, 2], 5, 0.01, "churned ports released")
            stop.set()
            for t in blasters:
                t.join(5)
            stop.clear()
            for c in churn:
                c.data.close()
            while not stay_b.nothing():  # the flood the churned ports made
                pass
        stay_a.data.send(BCAST + MACS[3] + b"\x08\x00" + bytes(46))
        assert stay_b.recv() == BCAST + MACS[3] + b"\x08\x00" + bytes(46), mode
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], mode
        assert len(srv._data_eps) == 2, mode  # only the two that stay are served
    finally:
        stop.set()
        stay_a.close()
        stay_b.close()


def test_a_slow_receiver_of_a_cached_flow_loses_frames_counted(
        mode_server: tuple[str, SwitchServer, str]) -> None:
    """Frames a full receiver cannot take are dropped, never waited for, and every one of them
    is counted."""
    mode, srv, directory = mode_server
    a, b, c = Client(directory, 9000), Client(directory, 9000), Client(directory, 9000)
    try:
        for x, mac in ((a, MACS[0]), (b, MACS[1])):
            x.data.send(BCAST + mac + b"\x08\x00" + bytes(46))
        for x in (a, b, c):
            while not x.nothing():
                pass
        frame = MACS[1] + MACS[0] + b"\x08\x00" + bytes(9000)
        for _ in range(1500):  # 13 MB: more than the switch's socket buffer (4 MB, doubled)
            a.data.send(frame)
        a.data.send(BCAST + MACS[0] + b"\x08\x00" + bytes(46))  # c sees it once all are through
        assert c.recv() == BCAST + MACS[0] + b"\x08\x00" + bytes(46), mode
        got = 0
        while not b.nothing():
            got += 1
        with srv.lock:
            counters = srv.core.ports[2].counters
            assert counters.drop_send > 0, mode
            # the broadcast is the last frame b was offered (it may have been dropped too)
            assert got + counters.drop_send == 1501, (mode, got, counters.drop_send)
    finally:
        for x in (a, b, c):
            x.close()


def test_a_forked_child_closing_the_server_leaves_the_parent_switching(tmp_path: os.PathLike[str]
                                                                      ) -> None:
    """A child process that closes its inherited copy of the server (a ``with`` block
    unwinding there) must not unlink the parent's sockets, drop the parent's epoll
    registrations or stop its threads."""
    directory = os.path.join(str(tmp_path), "sw")
    srv = SwitchServer(directory).start()
    try:
        a, b = Client(directory, 1500), Client(directory, 1500)
        wait_for(lambda: len(srv._data_eps) == 2, 5, what="two datagram ports served")
        pid = os.fork()
        if pid == 0:
            try:
                srv.close()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert os.path.exists(os.path.join(directory, "ctl"))
        frame = BCAST + MACS[0] + b"\x08\x00" + bytes(46)
        a.data.send(frame)
        assert b.recv() == frame
        c = Client(directory, 1500)  # the control socket still takes new clients
        c.data.send(BCAST + MACS[2] + b"\x08\x00" + bytes(46))
        assert a.recv() == BCAST + MACS[2] + b"\x08\x00" + bytes(46)
        for x in (a, b, c):
            x.close()
    finally:
        srv.close()

"""Robustness of the switch: garbage on the control and data sockets, clients vanishing at every
step of the handshake, a MAC flood; nothing leaks (directory entries, descriptors, memory)."""

from __future__ import annotations

import gc
import os
import random
import socket
import struct
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioth.net.switch.server import SwitchServer
from tests.net.test_switch_server import BCAST, RawClient, eth
from tests.support.peers import ioth_cmd, stop_process, wait_for

MAGIC = 0xFEEDFACE
A = bytes.fromhex("020000000a01")
B = bytes.fromhex("020000000b02")
F = bytes.fromhex("020000000f0f")


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def request(path: str, port: int = 0, description: bytes = b"robust: pid=1") -> bytes:
    sun = struct.pack("<H108s", socket.AF_UNIX, path.encode())
    return struct.pack("<III", MAGIC, 3, port << 8) + sun + description


def dir_entries(directory: str) -> set[str]:
    return set(os.listdir(directory))


def live_entries(directory: str, clients: list[RawClient]) -> set[str]:
    return {"ctl"} | {os.path.basename(c.switch_path) for c in clients}


def exchange(a: RawClient, b: RawClient, src: bytes, dst: bytes, tag: int) -> bool:
    """``a`` sends one unicast frame to ``b``; whether exactly it arrives."""
    frame = dst + src + b"\x08\x00" + tag.to_bytes(4, "big") + b"p" * 42
    a.send(frame)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            got = b.recv(0.5)
        except TimeoutError:
            continue
        if got == frame:
            return True
    return False


@pytest.fixture
def swdir(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "sw")


@pytest.fixture
def server(swdir: str) -> Iterator[SwitchServer]:
    srv = SwitchServer(swdir).start()
    try:
        yield srv
    finally:
        srv.close()


def settle(server: SwitchServer, directory: str, expected: set[str], fds: int) -> None:
    wait_for(lambda: dir_entries(directory) == expected and fd_count() == fds, 10,
             what=f"directory {expected} and {fds} descriptors "
                  f"(have {sorted(dir_entries(directory))}, {fd_count()})")


def test_random_bytes_and_truncated_requests_on_ctl(server: SwitchServer, swdir: str,
                                                    tmp_path: Path) -> None:
    rng = random.Random(0x5EED)
    base_fds = fd_count()
    client_path = str(tmp_path / "client.sock")
    valid = request(client_path)
    conns: list[socket.socket] = []
    for i in range(300):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(swdir, "ctl"))
        kind = i % 5
        if kind == 0:  # random bytes of any length
            payload = rng.randbytes(rng.randrange(0, 400))
        elif kind == 1:  # a valid request cut anywhere
            payload = valid[:rng.randrange(0, len(valid))]
        elif kind == 2:  # valid header, random rest
            payload = valid[:12] + rng.randbytes(rng.randrange(0, 300))
        elif kind == 3:  # valid request with random bytes flipped
            b = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            payload = bytes(b)
        else:  # bad magic / version / type
            payload = struct.pack("<III", rng.choice([MAGIC, 0, 0xFFFFFFFF]), rng.randrange(5),
                                  rng.randrange(1 << 32)) + valid[12:]
        try:
            s.sendall(payload)
        except OSError:
            pass  # the switch may already have refused us
        if rng.random() < 0.5:
            s.close()
        else:
            conns.append(s)  # kept open a while: the pending table fills
    for s in conns:
        s.close()
    # after all that the switch still serves, and nothing is left behind
    a, b = RawClient(swdir), RawClient(swdir)
    a.send(eth(BCAST, A))
    assert b.recv() == eth(BCAST, A)
    settle(server, swdir, live_entries(swdir, [a, b]), base_fds + 8)
    assert server.rejected > 0
    a.close()
    b.close()
    settle(server, swdir, {"ctl"}, base_fds)
    assert server.active_ports() == []


def test_many_silent_connections_do_not_lock_out_clients(server: SwitchServer,
                                                          swdir: str) -> None:
    base_fds = fd_count()
    silent = []
    for _ in range(100):  # more than the switch keeps pending
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(swdir, "ctl"))
        silent.append(s)
    for s in silent:
        s.close()
    settle(server, swdir, {"ctl"}, base_fds)
    a = RawClient(swdir)
    assert len(a.reply) == 110
    a.close()
    settle(server, swdir, {"ctl"}, base_fds)


def test_clients_vanishing_mid_handshake(server: SwitchServer, swdir: str,
                                         tmp_path: Path) -> None:
    base_fds = fd_count()
    ctl = os.path.join(swdir, "ctl")
    for i in range(40):
        step = i % 4
        data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = str(tmp_path / f"c{i}")
        data.bind(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(ctl)
        if step == 0:  # connect and close
            pass
        elif step == 1:  # half a request and close
            s.sendall(request(path)[:60])
        elif step == 2:  # a whole request, close before reading the reply
            s.sendall(request(path))
        else:  # the data socket disappears before the switch connects to it
            data.close()
            os.unlink(path)
            s.sendall(request(path))
        s.close()
        data.close()
        if os.path.exists(path):
            os.unlink(path)
    settle(server, swdir, {"ctl"}, base_fds)
    assert server.active_ports() == []
    assert server.core.ports == {} or all(not p.active for p in server.core.ports.values())
    a, b = RawClient(swdir), RawClient(swdir)
    assert exchange(a, b, A, BCAST, 1)
    a.close()
    b.close()
    settle(server, swdir, {"ctl"}, base_fds)


def test_random_frames_on_data_sockets(server: SwitchServer, swdir: str) -> None:
    rng = random.Random(1234)
    base_fds = fd_count()
    a, b, c = RawClient(swdir), RawClient(swdir), RawClient(swdir)
    a.data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    sizes = [0, 1, 5, 13, 14, 15, 59, 60, 1514, 1518, 1519, 9000, 65535, 65536, 100000]
    sizes += [rng.randrange(0, 2000) for _ in range(300)]
    sent_ok = 0
    for n in sizes:
        frame = rng.randbytes(n)
        try:
            a.send(frame)
            sent_ok += 1
        except OSError:
            pass  # larger than the kernel takes for a datagram
    # b and c only ever see frames no bigger than their port allows
    for peer in (b, c):
        peer.data.settimeout(0.3)
        while True:
            try:
                got = peer.data.recv(200000)
            except TimeoutError:
                break
            assert 14 <= len(got) <= 1518
    ctr = server.core.ports[1].counters.as_dict()
    assert sum(v for k, v in ctr.items() if k.startswith("drop")) + server.recv_errors > 0
    assert sent_ok > 0
    # still forwarding, from a too
    assert exchange(a, b, A, BCAST, 7)
    assert exchange(b, c, B, BCAST, 8)
    for peer in (a, b, c):
        peer.close()
    settle(server, swdir, {"ctl"}, base_fds)


def test_mac_flood_is_bounded(swdir: str) -> None:
    table = 1024
    srv = SwitchServer(swdir, table_size=table).start()
    try:
        base_fds = fd_count()
        a, b, f = RawClient(swdir), RawClient(swdir), RawClient(swdir)
        f.data.setblocking(True)
        f.data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        assert exchange(a, b, A, B, 0)  # a (A) and b (B) are known before the flood
        assert exchange(b, a, B, A, 0)
        f.send(eth(BCAST, F))  # F is learnt on f's port: the flood goes nowhere else
        for peer in (a, b):
            assert peer.recv() == eth(BCAST, F)
        gc.collect()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        n = 100_000
        done = threading.Event()

        def flood() -> None:
            payload = b"\x08\x00" + b"f" * 46
            for i in range(n):
                src = (0x020000000000 | (i + 0x100000)).to_bytes(6, "big")
                f.data.send(F + src + payload)
            done.set()

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        ok = during = 0
        tag = 1
        while not done.is_set() and tag < 200:
            assert exchange(a, b, A, B, tag)
            assert exchange(b, a, B, A, tag)
            during += 1
            tag += 1
        t.join(60)
        assert not t.is_alive()
        ctr = srv.core.counters
        wait_for(lambda: ctr.learned + ctr.table_full >= n, 30, what="flood processed")
        for tag in range(1000, 1010):
            ok += exchange(a, b, A, B, tag) and exchange(b, a, B, A, tag)
        assert ok == 10
        assert during > 0
        assert srv.core.table_entries <= table
        assert ctr.table_full >= n - table
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # 100,000 table entries would take well over 10 MB; the bounded table far less
        assert after - before < 4 << 20, (before, after)
        for peer in (a, b, f):
            peer.close()
        wait_for(lambda: dir_entries(swdir) == {"ctl"} and fd_count() == base_fds, 10,
                 what="clients gone")
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        srv.close()


def test_cli_switch_survives_garbage_and_flood(swdir: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(ioth_cmd("switch", swdir, "--hashsize", "512"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().startswith("ioth switch: switch on ")
        wait_for(lambda: os.path.exists(os.path.join(swdir, "ctl")), 5, what="ctl")
        base_fds = fd_count(proc.pid)
        rng = random.Random(99)
        ctl = os.path.join(swdir, "ctl")
        for i in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(ctl)
            if i % 2:
                s.sendall(rng.randbytes(rng.randrange(1, 300)))
            else:
                s.sendall(request(str(tmp_path / "gone"))[:rng.randrange(1, 200)])
            s.close()
        a, b, f = RawClient(swdir), RawClient(swdir), RawClient(swdir)
        assert exchange(a, b, A, B, 0)
        assert exchange(b, a, B, A, 0)
        f.send(eth(BCAST, F))
        a.recv()
        b.recv()

        def rss() -> int:
            with open(f"/proc/{proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
            raise AssertionError("no VmRSS")

        rss_before = rss()
        f.data.setblocking(True)
        payload = b"\x08\x00" + b"f" * 46
        for i in range(100_000):
            f.data.send(F + (0x020000000000 | (i + 0x200000)).to_bytes(6, "big") + payload)
            if i % 20_000 == 0:
                assert exchange(a, b, A, B, i + 1)
        time.sleep(0.5)
        for tag in range(5):
            assert exchange(a, b, A, B, 500 + tag)
            assert exchange(b, a, B, A, 500 + tag)
        assert rss() - rss_before < 32 << 20
        for peer in (a, b, f):
            peer.close()
        wait_for(lambda: dir_entries(swdir) == {"ctl"} and fd_count(proc.pid) == base_fds, 10,
                 what="clients gone from the ioth switch process")
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(10) == 0
        assert not os.path.exists(swdir)
    finally:
        stop_process(proc)

"""Adversarial review (session 6): the descriptor used directly, and a few system options.

Programs and C extensions that take ``fileno()`` and use it themselves: O_NONBLOCK set with
fcntl (not setblocking), os.read/os.write on it, interleaved with the socket methods; and
options that name the system: SO_BINDTODEVICE, IP_FREEBIND, SO_PEERCRED, IP_MTU.  The kernel
(a second namespace) is the oracle.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop
SOL = socket.SOL_SOCKET
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IP_MTU = getattr(socket, "IP_MTU", 14)


def fcntl_nonblocking(peer: Factory, dut: Factory) -> list[Any]:
    """O_NONBLOCK set on the descriptor with fcntl behind the socket object's back (it
    still thinks it is blocking): recv with nothing there raises BlockingIOError (EAGAIN)
    instead of waiting; with data it returns it."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    fd = d.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(tryit(lambda: d.recv(10))), daemon=True)
    t.start()
    t.join(1)
    out: list[Any] = [box[0] if box else "blocked"]
    k.sendall(b"now")  # (ends a blocked recv)
    t.join(3)
    time.sleep(0.2)
    if out[0] != "blocked":
        out.append(tryit(lambda: d.recv(10)))
    close_all(d, k, lst)
    return out


def os_write_order(peer: Factory, dut: Factory) -> list[Any]:
    """sendall, os.write on fileno(), sendall (a socket with a timeout) on 10 fresh
    connections: each peer gets the bytes in call order."""
    rounds = []
    for _ in range(10):
        lst, k, d = _conn(peer, dut)
        fd = d.fileno()
        d.sendall(b"one,")
        os.write(fd, b"two,")
        d.sendall(b"three")
        got = bytearray()
        k.settimeout(5)
        while len(got) < 13:
            chunk = k.recv(100)
            if not chunk:
                break
            got += chunk
        rounds.append(bytes(got))
        close_all(d, k, lst)
    return [all(r == b"one,two,three" for r in rounds)]


def mixed_send_calls(peer: Factory, dut: Factory) -> list[Any]:
    """send, sendmsg, sendfile, send with MSG_DONTWAIT, sendall, each a few bytes, back to
    back: the peer gets them in call order."""
    import tempfile
    lst, k, d = _conn(peer, dut)
    with tempfile.TemporaryFile() as f:
        f.write(b"[file]")
        f.seek(0)
        d.send(b"1")
        d.sendmsg([b"2", b"3"])
        d.send(b"4")
        d.sendfile(f)
        d.send(b"5", socket.MSG_DONTWAIT)
        d.sendall(b"6")
        d.sendmsg([b"7"])
        d.sendall(b"8")
    d.shutdown(socket.SHUT_WR)
    got = b""
    k.settimeout(5)
    while True:
        chunk = k.recv(100)
        if not chunk:
            break
        got += chunk
    out: list[Any] = [got]
    close_all(d, k, lst)
    return out


def os_read_mixed(peer: Factory, dut: Factory) -> list[Any]:
    """os.read on fileno() mixed with recv: the bytes in order; os.read at EOF gives b""."""
    lst, k, d = _conn(peer, dut)
    fd = d.fileno()
    k.sendall(b"abc")
    time.sleep(0.2)
    out: list[Any] = [os.read(fd, 2), d.recv(10)]
    k.sendall(b"xyz")
    k.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    out += [os.read(fd, 10), os.read(fd, 10)]
    close_all(d, k, lst)
    return out


def fromfd_names(peer: Factory, dut: Factory) -> list[Any]:
    """socket.fromfd(fileno(), AF_INET, SOCK_STREAM) (a dup of the descriptor, as libraries
    and child processes get it): the copy carries the connection's bytes.  (Linux's copy
    names the TCP connection; ioth's names the AF_UNIX pair, by design: see
    test_fromfd_names_the_application_end.)"""
    lst, k, d = _conn(peer, dut)
    n = socket.fromfd(d.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    n.settimeout(3)
    out: list[Any] = [n.family]
    k.sendall(b"dup")
    out.append(tryit(lambda: n.recv(10)))
    close_all(n, d, k, lst)
    return out


def bind_to_device(peer: Factory, dut: Factory) -> list[Any]:
    """SO_BINDTODEVICE to a device that does not exist: ENODEV; an empty name unbinds."""
    s = dut()
    out = [tryit(lambda: s.setsockopt(SOL, SO_BINDTODEVICE, b"nosuchdev0")),
           tryit(lambda: s.setsockopt(SOL, SO_BINDTODEVICE, b""))]
    close_all(s)
    return out


def freebind(peer: Factory, dut: Factory) -> list[Any]:
    """IP_FREEBIND lets a socket bind an address the host does not have (Linux); without
    it EADDRNOTAVAIL."""
    s = dut()
    out = [tryit(lambda: s.bind(("192.0.2.99", 0)))]
    close_all(s)
    s = dut()
    out += [tryit(lambda: s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)),
            tryit(lambda: s.getsockopt(socket.IPPROTO_IP, IP_FREEBIND)),
            tryit(lambda: s.bind(("192.0.2.99", 0)))]
    close_all(s)
    return out


def peer_credentials(peer: Factory, dut: Factory) -> list[Any]:
    """SO_PEERCRED of a TCP connection: Linux has no credentials for it (pid 0, uid and gid
    -1), not the credentials of some local process."""
    lst, k, d = _conn(peer, dut)
    raw = tryit(lambda: d.getsockopt(SOL, socket.SO_PEERCRED, 12))
    out = [raw if isinstance(raw, str) else list(
        int.from_bytes(raw[i:i + 4], "little", signed=True) for i in (0, 4, 8))]
    close_all(d, k, lst)
    return out


def path_mtu(peer: Factory, dut: Factory) -> list[Any]:
    """IP_MTU of a connected socket: the path MTU (1500 on this link); ENOTCONN unconnected."""
    s = dut()
    out: list[Any] = [tryit(lambda: s.getsockopt(socket.IPPROTO_IP, IP_MTU))]
    close_all(s)
    lst, k, d = _conn(peer, dut)
    out.append(tryit(lambda: d.getsockopt(socket.IPPROTO_IP, IP_MTU)))
    close_all(d, k, lst)
    return out


SCENARIOS: list[Scenario] = [fcntl_nonblocking, os_write_order, mixed_send_calls, os_read_mixed,
                             fromfd_names, bind_to_device,
                             freebind,
                             peer_credentials, path_mtu]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_descriptor_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)


def test_fromfd_names_the_application_end(envs: Envs) -> None:
    """A documented difference (see ioth.sockets.stream): socket.fromfd of an ioth TCP
    socket's descriptor is a plain socket object on the application's AF_UNIX end, so its
    getpeername/getsockname are the AF_UNIX pair's names (Linux: the TCP connection's
    addresses); the bytes and the end of stream are the connection's."""
    peer, dut = envs.get("ioth", False)
    lst, k, d = _conn(peer, dut)
    n = socket.fromfd(d.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        n.settimeout(5)
        k.settimeout(5)
        assert not isinstance(n.getpeername(), tuple)  # (an AF_UNIX name, not (host, port))
        assert not isinstance(n.getsockname(), tuple)
        k.sendall(b"in")
        assert n.recv(10) == b"in"
        n.sendall(b"out")
        assert k.recv(10) == b"out"
        n.close()
        d.close()
        assert k.recv(10) == b""
    finally:
        close_all(n, d, k, lst)

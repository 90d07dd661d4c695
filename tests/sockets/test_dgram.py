"""UDP and ICMP echo sockets with real descriptors: readiness, blocking modes, errors."""

from __future__ import annotations

import errno
import select
import selectors
import socket
import struct
from pathlib import Path

import pytest

import ioth
from ioth.sockets import DatagramSocket
from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, network


def test_is_a_socket_with_select_poll_selectors() -> None:
    with lone() as s, isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as a, \
            isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as b:
        assert isinstance(a, socket.socket) and a.fileno() >= 0
        assert a.type == socket.SOCK_DGRAM and a.family == socket.AF_INET
        a.bind(("127.0.0.1", 5000))
        assert select.select([a], [], [], 0)[0] == []
        p = select.poll()
        p.register(a, select.POLLIN)
        assert p.poll(0) == []
        b.sendto(b"one", ("127.0.0.1", 5000))
        assert select.select([a], [], [], 2)[0] == [a]
        assert p.poll(2000) == [(a.fileno(), select.POLLIN)]
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            assert len(sel.select(2)) == 1
            data, src = a.recvfrom(100)
            assert data == b"one" and src == ("127.0.0.1", b.getsockname()[1])
            assert sel.select(0) == []


def test_timeouts_and_nonblocking() -> None:
    with lone() as s, isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as a:
        a.bind(("127.0.0.1", 0))
        a.settimeout(0.05)
        with pytest.raises(TimeoutError):
            a.recv(10)
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            a.recvfrom(10)
        with isocket(s, socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as nb:
            assert nb.gettimeout() == 0.0
            with pytest.raises(BlockingIOError):
                nb.recv(1)


def test_recv_variants_truncation_and_peek() -> None:
    with lone() as s, isocket(s, socket.AF_INET6, socket.SOCK_DGRAM) as a, \
            isocket(s, socket.AF_INET6, socket.SOCK_DGRAM) as b:
        a.bind(("::1", 7000))
        a.settimeout(2)
        port = None
        for payload in (b"abcdef", b"ghijkl", b"mnopqr", b"stuvwx"):
            b.sendto(payload, ("::1", 7000))
            port = b.getsockname()[1]
        assert a.recv(3) == b"abc"  # truncated like UDP: the rest is lost
        assert a.recv(100, socket.MSG_PEEK) == b"ghijkl"
        buf = bytearray(10)
        n, src = a.recvfrom_into(buf)
        assert buf[:n] == b"ghijkl" and src[:2] == ("::1", port)
        assert a.recv_into(buf, 4) == 4 and buf[:4] == b"mnop"
        data, anc, _flags, src = a.recvmsg(100)
        assert data == b"stuvwx" and anc == [] and src[0] == "::1"


def test_connected_udp_errors_match_the_kernel() -> None:
    with lone() as s, isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as a, \
            isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 6000))
        with pytest.raises(OSError) as exc:
            b.bind(("127.0.0.1", 6000))
        assert exc.value.errno == errno.EADDRINUSE
        b.connect(("127.0.0.1", 6001))  # nobody: ICMP port unreachable -> ECONNREFUSED
        b.send(b"x")
        assert select.select([b], [], [], 2)[0] == [b]
        with pytest.raises(ConnectionRefusedError):
            b.recv(10)
        with pytest.raises(OSError) as exc:
            b.sendto(b"x", ("255.255.255.255", 9))
        assert exc.value.errno == errno.EACCES
        with pytest.raises(OSError) as exc:
            b.sendto(b"x" * 70000, ("127.0.0.1", 6000))
        assert exc.value.errno == errno.EMSGSIZE
        assert b.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert b.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM


def test_between_stacks_broadcast_and_unreachable(tmp_path: Path) -> None:
    with network(tmp_path, 3) as (a, b, c):
        rx = [isocket(x, socket.AF_INET, socket.SOCK_DGRAM) for x in (b, c)]
        for r in rx:
            r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            r.bind(("", 6666))
            r.settimeout(5)
        tx = isocket(a, socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        tx.sendto(b"all", ("192.0.2.255", 6666))
        for r in rx:
            assert r.recvfrom(10) == (b"all", ("192.0.2.1", tx.getsockname()[1]))
        with pytest.raises(OSError) as exc:
            tx.sendto(b"x", ("198.51.100.1", 1))
        assert exc.value.errno == errno.ENETUNREACH
        for x in (*rx, tx):
            x.close()


def test_icmp_echo_socket(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, _b), \
            isocket(a, socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as p:
        p.settimeout(5)
        p.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 7) + b"ping", ("192.0.2.2", 0))
        assert select.select([p], [], [], 5)[0] == [p]
        reply, src = p.recvfrom(100)
        assert reply[0] == 0 and reply[8:] == b"ping" and src[0] == "192.0.2.2"


def test_close_releases_port_and_stack_close_closes_sockets() -> None:
    s = ioth.Stack()
    a = isocket(s, socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 5555))
    a.close()
    b = isocket(s, socket.AF_INET, socket.SOCK_DGRAM)
    b.bind(("127.0.0.1", 5555))
    assert isinstance(b, DatagramSocket)
    s.close()
    assert b.fileno() == -1


def test_ipv6_multicast_group_join(tmp_path: Path) -> None:
    with network(tmp_path, 2, v6=True) as (a, b):
        rx = isocket(b, socket.AF_INET6, socket.SOCK_DGRAM)
        rx.bind(("::", 7777))
        group = socket.inet_pton(socket.AF_INET6, "ff15::1234")
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                      group + struct.pack("@I", b.if_nametoindex("vde0")))
        rx.settimeout(5)
        tx = isocket(a, socket.AF_INET6, socket.SOCK_DGRAM)
        tx.sendto(b"to the group", ("ff15::1234", 7777, 0, a.if_nametoindex("vde0")))
        data, src = rx.recvfrom(100)
        assert data == b"to the group" and src[0] == "2001:db8::1"
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP,
                      group + struct.pack("@I", b.if_nametoindex("vde0")))
        tx.sendto(b"nobody", ("ff15::1234", 7777, 0, a.if_nametoindex("vde0")))
        assert select.select([rx], [], [], 0.3)[0] == []
        rx.close()
        tx.close()


def test_ipv4_multicast_group_join(tmp_path: Path) -> None:
    with network(tmp_path, 3) as (a, b, c):
        rx = [isocket(x, socket.AF_INET, socket.SOCK_DGRAM) for x in (b, c)]
        mreq = socket.inet_aton("239.1.2.3") + socket.inet_aton("0.0.0.0")
        for r in rx:
            r.bind(("", 5007))
            r.settimeout(5)
        rx[0].setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        with pytest.raises(OSError) as exc:
            rx[0].setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        assert exc.value.errno == errno.EADDRINUSE
        tx = isocket(a, socket.AF_INET, socket.SOCK_DGRAM)
        tx.sendto(b"group", ("239.1.2.3", 5007))
        assert rx[0].recvfrom(100) == (b"group", ("192.0.2.1", tx.getsockname()[1]))
        assert select.select([rx[1]], [], [], 0.3)[0] == []  # c did not join
        rx[0].setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
        tx.sendto(b"again", ("239.1.2.3", 5007))
        assert select.select([rx[0]], [], [], 0.3)[0] == []
        for x in (*rx, tx):
            x.close()


def test_udp_errors_match_a_kernel_socket() -> None:
    def errnos(s: socket.socket) -> list[int]:
        out = []
        s.setblocking(False)
        for call in (lambda: s.send(b"x"), lambda: s.recv(1), s.getpeername,
                     lambda: s.sendto(b"x", ("127.0.0.1", 0)),
                     lambda: s.bind(("198.51.100.1", 0)), lambda: s.listen(), s.accept,
                     lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)):
            try:
                call()
                out.append(0)
            except OSError as exc:
                out.append(exc.errno or -1)
        return out

    with lone() as st, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as kernel, \
            isocket(st, socket.AF_INET, socket.SOCK_DGRAM) as ours:
        assert errnos(ours) == errnos(kernel)

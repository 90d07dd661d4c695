"""IPv6 dual-stack UDP sockets (IPV6_V6ONLY=0, Linux's default): IPv4 datagrams reach an AF_INET6
socket with IPv4-mapped source addresses, replies to ::ffff:a.b.c.d go out as IPv4, and
IPV6_V6ONLY=1 turns all of that off.  Two stacks on an in-process ioth switch."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, network


def test_v4_client_reaches_dualstack_server_and_gets_the_reply(tmp_path: Path) -> None:
    with network(tmp_path, v6=True) as (a, b), \
            isocket(a, socket.AF_INET6, socket.SOCK_DGRAM) as srv, \
            isocket(b, socket.AF_INET, socket.SOCK_DGRAM) as cli, \
            isocket(b, socket.AF_INET6, socket.SOCK_DGRAM) as cli6:
        assert srv.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        srv.bind(("::", 5353))
        srv.settimeout(5)
        cli.settimeout(5)
        cli6.settimeout(5)
        cli.sendto(b"hello4", ("192.0.2.1", 5353))
        data, src = srv.recvfrom(100)
        assert data == b"hello4"
        assert src == ("::ffff:192.0.2.2", cli.getsockname()[1], 0, 0)
        assert srv.sendto(b"reply4", src) == 6
        assert cli.recvfrom(100) == (b"reply4", ("192.0.2.1", 5353))
        # the same socket still serves IPv6
        cli6.sendto(b"hello6", ("2001:db8::1", 5353))
        data, src6 = srv.recvfrom(100)
        assert data == b"hello6" and src6[0] == "2001:db8::2"
        srv.sendto(b"reply6", src6)
        assert cli6.recvfrom(100) == (b"reply6", ("2001:db8::1", 5353, 0, 0))


def test_dualstack_client_sends_to_mapped_and_connects(tmp_path: Path) -> None:
    with network(tmp_path, v6=True) as (a, b), \
            isocket(a, socket.AF_INET, socket.SOCK_DGRAM) as srv, \
            isocket(b, socket.AF_INET6, socket.SOCK_DGRAM) as cli:
        srv.bind(("192.0.2.1", 6000))
        srv.settimeout(5)
        cli.settimeout(5)
        cli.connect(("::ffff:192.0.2.1", 6000))
        assert cli.getpeername() == ("::ffff:192.0.2.1", 6000, 0, 0)
        cli.send(b"x")
        data, src = srv.recvfrom(10)
        assert data == b"x" and src[0] == "192.0.2.2"
        srv.sendto(b"y", src)
        assert cli.recvfrom(10) == (b"y", ("::ffff:192.0.2.1", 6000, 0, 0))
        # a connected dual-stack socket learns ICMP port unreachable like an IPv4 one
        cli.connect(("::ffff:192.0.2.1", 6001))
        cli.send(b"z")
        with pytest.raises(ConnectionRefusedError):
            cli.recv(10)


def test_v6only_server_does_not_get_ipv4(tmp_path: Path) -> None:
    with network(tmp_path, v6=True) as (a, b), \
            isocket(a, socket.AF_INET6, socket.SOCK_DGRAM) as srv, \
            isocket(b, socket.AF_INET, socket.SOCK_DGRAM) as cli, \
            isocket(b, socket.AF_INET6, socket.SOCK_DGRAM) as cli6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        assert srv.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        srv.bind(("::", 5354))
        srv.settimeout(5)
        cli.settimeout(5)
        cli.connect(("192.0.2.1", 5354))
        cli.send(b"lost")
        with pytest.raises(ConnectionRefusedError):  # port unreachable: nobody has it on IPv4
            cli.recv(10)
        cli6.sendto(b"v6", ("2001:db8::1", 5354))
        assert srv.recvfrom(10)[0] == b"v6"
        with pytest.raises(OSError) as exc:
            srv.sendto(b"no", ("::ffff:192.0.2.2", 9))
        assert exc.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as exc:  # V6ONLY cannot change once bound
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        assert exc.value.errno == errno.EINVAL
        # an IPv4 socket can share the port with the IPv6-only one
        with isocket(a, socket.AF_INET, socket.SOCK_DGRAM) as srv4:
            srv4.bind(("", 5354))
            srv4.settimeout(5)
            cli.connect(("192.0.2.1", 5354))
            cli.send(b"v4")
            assert srv4.recv(10) == b"v4"


def test_bind_mapped_address_is_ipv4_only(tmp_path: Path) -> None:
    with network(tmp_path, v6=True) as (a, b), \
            isocket(a, socket.AF_INET6, socket.SOCK_DGRAM) as srv, \
            isocket(b, socket.AF_INET, socket.SOCK_DGRAM) as cli, \
            isocket(b, socket.AF_INET6, socket.SOCK_DGRAM) as cli6:
        srv.bind(("::ffff:192.0.2.1", 5355))
        assert srv.getsockname() == ("::ffff:192.0.2.1", 5355, 0, 0)
        srv.settimeout(5)
        cli.settimeout(5)
        cli6.settimeout(5)
        cli.sendto(b"in", ("192.0.2.1", 5355))
        data, src = srv.recvfrom(10)
        assert data == b"in" and src[0] == "::ffff:192.0.2.2"
        srv.sendto(b"out", src)
        assert cli.recv(10) == b"out"
        cli6.connect(("2001:db8::1", 5355))
        cli6.send(b"v6")
        with pytest.raises(ConnectionRefusedError):
            cli6.recv(10)
        with pytest.raises(OSError) as exc:  # an IPv4-bound socket cannot reach IPv6
            srv.sendto(b"no", ("2001:db8::2", 9))
        assert exc.value.errno == errno.EAFNOSUPPORT


def test_ipv4_socket_wins_over_dualstack_one() -> None:
    with lone() as s, isocket(s, socket.AF_INET6, socket.SOCK_DGRAM) as s6, \
            isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as s4, \
            isocket(s, socket.AF_INET, socket.SOCK_DGRAM) as cli:
        for x in (s6, s4):
            x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            x.settimeout(5)
        s6.bind(("::", 7070))
        s4.bind(("0.0.0.0", 7070))
        cli.sendto(b"a", ("127.0.0.1", 7070))
        assert s4.recv(10) == b"a"
        s4.close()
        cli.sendto(b"b", ("127.0.0.1", 7070))
        assert s6.recvfrom(10) == (b"b", ("::ffff:127.0.0.1", cli.getsockname()[1], 0, 0))


# (first bind, second bind) -> errnos, as Linux gives them (checked live against the kernel by
# tests/interop/test_udp_dualstack_kernel.py).  Entries: (family, host, v6only).
A4, A6 = "127.0.0.1", "::1"
CONFLICTS: list[tuple[tuple[int, str, int], tuple[int, str, int], tuple[int, int]]] = [
    ((4, "", 0), (6, "", 0), (0, errno.EADDRINUSE)),
    ((6, "", 0), (4, "", 0), (0, errno.EADDRINUSE)),
    ((6, "", 1), (4, "", 0), (0, 0)),
    ((4, "", 0), (6, "", 1), (0, 0)),
    ((4, A4, 0), (6, "", 0), (0, errno.EADDRINUSE)),
    ((6, "", 0), (4, A4, 0), (0, errno.EADDRINUSE)),
    ((6, "", 1), (4, A4, 0), (0, 0)),
    ((6, A6, 0), (4, "", 0), (0, 0)),
    ((4, "", 0), (6, A6, 0), (0, 0)),
    ((6, "::ffff:" + A4, 0), (4, A4, 0), (0, errno.EADDRINUSE)),
    ((4, A4, 0), (6, "::ffff:" + A4, 0), (0, errno.EADDRINUSE)),
    ((6, "::ffff:" + A4, 0), (6, "", 0), (0, errno.EADDRINUSE)),
    ((6, "::ffff:" + A4, 0), (6, "", 1), (0, 0)),
    ((6, "", 1), (6, "::ffff:" + A4, 0), (0, 0)),
    ((6, "", 1), (6, "", 0), (0, errno.EADDRINUSE)),
    ((6, "::ffff:0.0.0.0", 0), (4, A4, 0), (0, errno.EADDRINUSE)),
    ((6, "::ffff:0.0.0.0", 0), (6, A6, 0), (0, 0)),
    ((6, "::ffff:" + A4, 1), (4, A4, 0), (errno.EINVAL, 0)),
]


@pytest.mark.parametrize(("first", "second", "expected"), CONFLICTS)
def test_bind_conflicts_like_linux(first: tuple[int, str, int], second: tuple[int, str, int],
                                   expected: tuple[int, int]) -> None:
    with lone() as s:
        socks = []
        got = []
        try:
            for fam, host, only in (first, second):
                x = isocket(s, socket.AF_INET if fam == 4 else socket.AF_INET6,
                            socket.SOCK_DGRAM)
                socks.append(x)
                if only:
                    x.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    x.bind((host, 7171))
                    got.append(0)
                except OSError as exc:
                    got.append(exc.errno or -1)
        finally:
            for x in socks:
                x.close()
    assert tuple(got) == expected

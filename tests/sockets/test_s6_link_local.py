"""IPv6 link-local TCP between two ioth stacks: a connect without the scope id is EINVAL
(Linux: which link?), unless SO_BINDTODEVICE names the interface; the connection's names
(getsockname, getpeername, accept's address) carry the interface's scope id."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from ioth.sockets import socket as isocket
from tests.sockets.helpers import network


def _ll(stack: object) -> str:
    local = stack.core.ip6.local  # type: ignore[attr-defined]
    return next(socket.inet_ntop(socket.AF_INET6, a) for a in local if a[:2] == b"\xfe\x80")


def test_link_local_names_and_scope(tmp_path: Path) -> None:
    with network(tmp_path, 2, v6=True) as (a, b):
        lst = isocket(b, socket.AF_INET6, socket.SOCK_STREAM)
        lst.bind(("::", 0))
        lst.listen()
        port = lst.getsockname()[1]
        ll_b, ll_a = _ll(b), _ll(a)
        ia, ib = a.if_nametoindex("vde0"), b.if_nametoindex("vde0")
        c = isocket(a, socket.AF_INET6, socket.SOCK_STREAM)
        c.settimeout(5)
        assert c.connect_ex((ll_b, port)) == errno.EINVAL
        c.connect((ll_b, port, 0, ia))
        assert c.getpeername() == (ll_b, port, 0, ia)
        assert c.getsockname()[0] == ll_a and c.getsockname()[3] == ia
        d, addr = lst.accept()
        assert addr == (ll_a, c.getsockname()[1], 0, ib)
        assert d.getsockname() == (ll_b, port, 0, ib)
        assert d.getpeername() == addr
        c.sendall(b"ll")
        assert d.recv(10) == b"ll"
        for s in (c, d):
            s.close()
        # SO_BINDTODEVICE gives the link
        e = isocket(a, socket.AF_INET6, socket.SOCK_STREAM)
        e.settimeout(5)
        e.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"vde0")
        e.connect((ll_b, port))
        assert e.getpeername() == (ll_b, port, 0, ia)
        f, _ = lst.accept()
        for s in (e, f, lst):
            s.close()

"""Adversarial review (session 6): IPv6 TCP sockets of ioth, the kernel as oracle.

A dual-stack listener (``::``) accepting an IPv4 client (``::ffff:a.b.c.d`` 4-tuples), the
address tuples of getsockname/getpeername (flowinfo, scope_id), IPV6_V6ONLY (default, effect,
when it may be set), v4-mapped connects and binds, port sharing between the families.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.review_s6.oracle import (
    DUT6,
    PEER6,
    Envs,
    Factory,
    Scenario,
    close_all,
    params,
    run,
    tryit,
)

pytestmark = pytest.mark.interop
V4_PEER, V4_DUT = "192.0.2.1", "192.0.2.2"
V6 = socket.IPPROTO_IPV6


def _listen(make: Factory, family: int, addr: tuple[Any, ...]) -> Any:
    s = make(family)
    s.bind(addr)
    s.listen(4)
    s.settimeout(5)
    return s


def dual_stack_accepts_v4(peer: Factory, dut: Factory) -> list[Any]:
    """A listener on ("::", port) takes an IPv4 client: v4-mapped 4-tuples everywhere."""
    lst = _listen(dut, socket.AF_INET6, ("::", 0))
    port = lst.getsockname()[1]
    k = peer(socket.AF_INET)
    k.settimeout(5)
    k.connect((V4_DUT, port))
    d, addr = lst.accept()
    kport = k.getsockname()[1]
    out: list[Any] = [("listener", lst.getsockname()[0], lst.getsockname()[2:]),
                      ("accept addr", addr == ("::ffff:" + V4_PEER, kport, 0, 0)),
                      ("sockname", d.getsockname() == ("::ffff:" + V4_DUT, port, 0, 0)),
                      ("peername", d.getpeername() == ("::ffff:" + V4_PEER, kport, 0, 0)),
                      ("family", d.family)]
    k.sendall(b"v4")
    d.settimeout(5)
    out.append(("data", d.recv(10)))
    close_all(d, k, lst)
    return out


def v6_names(peer: Factory, dut: Factory) -> list[Any]:
    """IPv6 both ways: 4-tuples with flowinfo 0 and scope_id 0, accepted and connected."""
    lst = _listen(dut, socket.AF_INET6, (DUT6, 0))
    k = peer(socket.AF_INET6)
    k.settimeout(5)
    k.connect((DUT6, lst.getsockname()[1], 0, 0))
    d, addr = lst.accept()
    out: list[Any] = [("accept", addr == k.getsockname()),
                      ("sockname", d.getsockname() == (DUT6, lst.getsockname()[1], 0, 0)),
                      ("peername", d.getpeername() == k.getsockname()),
                      ("listener", lst.getsockname()[0], lst.getsockname()[2:])]
    close_all(d, k, lst)
    plst = _listen(peer, socket.AF_INET6, (PEER6, 0))
    c = dut(socket.AF_INET6)
    c.settimeout(5)
    c.connect((PEER6, plst.getsockname()[1]))
    a, _ = plst.accept()
    out += [("client peername", c.getpeername() == (PEER6, plst.getsockname()[1], 0, 0)),
            ("client sockname", c.getsockname() == a.getpeername()),
            ("client name tuple", len(c.getsockname()), c.getsockname()[0])]
    close_all(a, c, plst)
    fresh = dut(socket.AF_INET6)
    out.append(("fresh", tryit(lambda: fresh.getsockname())))
    fresh.bind(("::", 0))
    out.append(("bound any", fresh.getsockname()[0], fresh.getsockname()[2:]))
    close_all(fresh)
    return out


def v6only_option(peer: Factory, dut: Factory) -> list[Any]:
    """IPV6_V6ONLY: 0 by default; set before bind; EINVAL after bind (Linux); ENOPROTOOPT
    at the IPPROTO_IPV6 level of an AF_INET socket."""
    s = dut(socket.AF_INET6)
    out: list[Any] = [tryit(lambda: s.getsockopt(V6, socket.IPV6_V6ONLY)),
                      tryit(lambda: s.setsockopt(V6, socket.IPV6_V6ONLY, 1)),
                      tryit(lambda: s.getsockopt(V6, socket.IPV6_V6ONLY))]
    s.bind(("::", 0))
    out += [tryit(lambda: s.setsockopt(V6, socket.IPV6_V6ONLY, 0)),
            tryit(lambda: s.getsockopt(V6, socket.IPV6_V6ONLY))]
    close_all(s)
    f = dut(socket.AF_INET)
    out.append(tryit(lambda: f.setsockopt(V6, socket.IPV6_V6ONLY, 1)))
    close_all(f)
    return out


def v6only_get_on_v4(peer: Factory, dut: Factory) -> list[Any]:
    """getsockopt(IPPROTO_IPV6, IPV6_V6ONLY) of an AF_INET socket: Linux EOPNOTSUPP."""
    f = dut(socket.AF_INET)
    out = [tryit(lambda: f.getsockopt(V6, socket.IPV6_V6ONLY))]
    close_all(f)
    return out


def v6only_refuses_v4(peer: Factory, dut: Factory) -> list[Any]:
    """A V6ONLY listener on "::": an IPv4 client is refused, an IPv6 one accepted."""
    s = dut(socket.AF_INET6)
    s.setsockopt(V6, socket.IPV6_V6ONLY, 1)
    s.bind(("::", 0))
    s.listen(4)
    s.settimeout(5)
    port = s.getsockname()[1]
    k4 = peer(socket.AF_INET)
    k4.settimeout(3)
    k6 = peer(socket.AF_INET6)
    k6.settimeout(3)
    out = [tryit(lambda: k4.connect((V4_DUT, port))), tryit(lambda: k6.connect((DUT6, port)))]
    close_all(k4, k6, s)
    return out


def families_share_ports(peer: Factory, dut: Factory) -> list[Any]:
    """A dual-stack "::" listener holds the IPv4 port too (EADDRINUSE for 0.0.0.0 and for
    the address); a V6ONLY one does not; an IPv4 listener blocks a later dual "::" bind."""
    out: list[Any] = []
    for v6only in (0, 1):
        s = dut(socket.AF_INET6)
        s.setsockopt(V6, socket.IPV6_V6ONLY, v6only)
        s.bind(("::", 0))
        s.listen(2)
        port = s.getsockname()[1]
        for host in ("0.0.0.0", V4_DUT):
            f = dut(socket.AF_INET)
            out.append((v6only, host, tryit(lambda f=f, h=host, p=port: f.bind((h, p)))))
            close_all(f)
        close_all(s)
    f = dut(socket.AF_INET)
    f.bind(("0.0.0.0", 0))
    f.listen(2)
    s = dut(socket.AF_INET6)
    out.append(("dual after v4", tryit(lambda: s.bind(("::", f.getsockname()[1])))))
    s6 = dut(socket.AF_INET6)
    s6.setsockopt(V6, socket.IPV6_V6ONLY, 1)
    out.append(("v6only after v4", tryit(lambda: s6.bind(("::", f.getsockname()[1])))))
    close_all(f, s, s6)
    return out


def mapped_connect(peer: Factory, dut: Factory) -> list[Any]:
    """An AF_INET6 socket connects to ::ffff:192.0.2.1 (the peer's IPv4 listener): the
    connection is IPv4, the names v4-mapped."""
    plst = _listen(peer, socket.AF_INET, (V4_PEER, 0))
    port = plst.getsockname()[1]
    c = dut(socket.AF_INET6)
    c.settimeout(5)
    out: list[Any] = [tryit(lambda: c.connect(("::ffff:" + V4_PEER, port)))]
    if out[0] is None:
        a, addr = plst.accept()
        out += [addr[0], c.getpeername() == ("::ffff:" + V4_PEER, port, 0, 0),
                c.getsockname()[0], c.getsockname()[1] == addr[1]]
        a.sendall(b"m")
        out.append(c.recv(10))
        close_all(a)
    close_all(c, plst)
    return out


def mapped_bind(peer: Factory, dut: Factory) -> list[Any]:
    """An AF_INET6 socket bound to ::ffff:192.0.2.2 listens for IPv4 clients only."""
    s = dut(socket.AF_INET6)
    out: list[Any] = [tryit(lambda: s.bind(("::ffff:" + V4_DUT, 0)))]
    s.listen(2)
    s.settimeout(5)
    out.append(s.getsockname()[0])
    k = peer(socket.AF_INET)
    k.settimeout(3)
    out.append(tryit(lambda: k.connect((V4_DUT, s.getsockname()[1]))))
    if out[-1] is None:
        d, addr = s.accept()
        out.append(addr[0])
        close_all(d)
    close_all(k, s)
    return out


def v6only_mapped_bind(peer: Factory, dut: Factory) -> list[Any]:
    """A V6ONLY socket cannot bind a v4-mapped address (Linux: EINVAL)."""
    m = dut(socket.AF_INET6)
    m.setsockopt(V6, socket.IPV6_V6ONLY, 1)
    out = [tryit(lambda: m.bind(("::ffff:" + V4_DUT, 0)))]
    close_all(m)
    return out


def wrong_family_addresses(peer: Factory, dut: Factory) -> list[Any]:
    """An IPv6 address to an AF_INET socket and an IPv4 one to an AF_INET6 socket."""
    s4 = dut(socket.AF_INET)
    s6 = dut(socket.AF_INET6)
    out = [type(tryit(lambda: s4.bind((DUT6, 0)))).__name__,
           type(tryit(lambda: s4.connect((PEER6, 9)))).__name__]
    close_all(s4, s6)
    return out


def v4_address_to_v6_socket(peer: Factory, dut: Factory) -> list[Any]:
    """An IPv4 literal to an AF_INET6 socket's bind/connect: Python's resolver says
    EAI_ADDRFAMILY (socket.gaierror -9)."""
    s6 = dut(socket.AF_INET6)
    out = [tryit(lambda: s6.bind((V4_DUT, 0))), tryit(lambda: s6.connect((V4_PEER, 9)))]
    close_all(s6)
    return out


def v6_connect_refused_and_reset(peer: Factory, dut: Factory) -> list[Any]:
    """IPv6: a refused connect, then SO_ERROR; a reset connection."""
    probe = peer(socket.AF_INET6)
    probe.bind((PEER6, 0))
    port = probe.getsockname()[1]
    probe.close()
    c = dut(socket.AF_INET6)
    c.settimeout(3)
    out: list[Any] = [tryit(lambda: c.connect((PEER6, port))),
                      tryit(lambda: c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))]
    close_all(c)
    return out


SCENARIOS: list[Scenario] = [dual_stack_accepts_v4, v6_names, v6only_option, v6only_refuses_v4,
                             families_share_ports, mapped_connect, mapped_bind,
                             wrong_family_addresses, v6_connect_refused_and_reset,
                             v6only_get_on_v4, v6only_mapped_bind, v4_address_to_v6_socket]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_ipv6_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

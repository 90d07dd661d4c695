"""Adversarial review (session 6): IPv6 link-local TCP (scope_id), the kernel as oracle.

A connect to the peer's fe80:: address needs the interface (scope_id; without it Linux says
EINVAL); the connection's names carry the scope_id; the DUT's source address is its own
link-local address; a listener on "::" sees the peer's link-local address with the scope.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.net.nsutil import inside
from tests.review_s6.oracle import Envs, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop


def link_local_without_scope(peer: Any, dut: Any) -> list[Any]:
    """A connect to a link-local address without scope_id: Linux EINVAL (which link?)."""
    ll = peer.link_local()
    lst = peer(socket.AF_INET6)
    lst.bind(("::", 0))
    lst.listen(4)
    c = dut(socket.AF_INET6)
    c.settimeout(3)
    out = [tryit(lambda: c.connect((ll, lst.getsockname()[1])))]
    close_all(c, lst)
    return out


def link_local_connect(peer: Any, dut: Any) -> list[Any]:
    """DUT -> peer over fe80:: with the scope_id: names with the scope, the DUT's own
    link-local address as the source."""
    ll = peer.link_local()
    lst = peer(socket.AF_INET6)
    lst.bind(("::", 0))
    lst.listen(4)
    lst.settimeout(5)
    port = lst.getsockname()[1]
    out: list[Any] = []
    c = dut(socket.AF_INET6)
    c.settimeout(3)
    r = tryit(lambda: c.connect((ll, port, 0, dut.ifindex)))
    out.append(("scoped", r))
    if r is None:
        a, addr = lst.accept()
        name = c.getsockname()
        out += [("peername", c.getpeername() == (ll, port, 0, dut.ifindex)),
                ("sockname scope", name[3] == dut.ifindex),
                ("source link-local", name[0].startswith("fe80:")),
                ("peer sees", addr[0] == name[0], addr[1] == name[1])]
        c.sendall(b"ll")
        out.append(a.recv(10))
        close_all(a)
    close_all(c, lst)
    return out


def link_local_accept(peer: Any, dut: Any) -> list[Any]:
    """Peer -> DUT listener on "::": the DUT's link-local address (asked of the accepted
    socket by the peer) and the scope_id of the accepted socket's names."""
    lst = dut(socket.AF_INET6)
    lst.bind(("::", 0))
    lst.listen(4)
    lst.settimeout(5)
    port = lst.getsockname()[1]
    # the DUT's link-local address: the source of a connection it makes to the peer
    ll = peer.link_local()
    plst = peer(socket.AF_INET6)
    plst.bind(("::", 0))
    plst.listen(2)
    plst.settimeout(5)
    c = dut(socket.AF_INET6)
    c.settimeout(3)
    out: list[Any] = [tryit(lambda: c.connect((ll, plst.getsockname()[1], 0, dut.ifindex)))]
    if out[0] is not None:
        close_all(c, plst, lst)
        return out
    dut_ll = c.getsockname()[0]
    close_all(c, plst.accept()[0], plst)
    k = peer(socket.AF_INET6)
    k.settimeout(3)
    with inside(peer.ns.name):
        peer_if = socket.if_nametoindex(peer.dev)
    out.append(tryit(lambda: k.connect((dut_ll, port, 0, peer_if))))
    if out[-1] is None:
        d, addr = lst.accept()
        out += [addr[0] == ll, addr[3] == dut.ifindex, d.getsockname()[0] == dut_ll,
                d.getsockname()[3] == dut.ifindex]
        close_all(d)
    close_all(k, lst)
    return out


SCENARIOS: list[Scenario] = [link_local_without_scope, link_local_connect, link_local_accept]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_link_local_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

"""Linux parity (session 5): a bind conflicts with the port's connections too, also those whose
socket is gone (orphaned, TIME-WAIT), as Linux's ``inet_csk_bind_conflict`` walks the port's
bind bucket: a TIME-WAIT counts as bound with its closed socket's SO_REUSEADDR (inherited from
the listener by accepted connections) and IPV6_V6ONLY; SO_REUSEADDR on both sides lets a bind
share with a socket that is not listening; the wildcard address conflicts with every address
of its family (and, dual-stack, of the other).

Each scenario runs with the DUT's sockets made by a Linux kernel (a namespace pair joined by
a veth: the referee) and by an ioth stack (on a TAP whose other side is a kernel namespace);
what the application sees must be the same.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.referee import Factory, Side, sides

pytestmark = pytest.mark.interop

PEER = {4: "192.0.2.1", 6: "2001:db8::1"}
DUT = {4: "192.0.2.2", 6: "2001:db8::2"}
FAM = {4: socket.AF_INET, 6: socket.AF_INET6}


def _try(fn: Callable[[], Any]) -> Any:
    try:
        r = fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return r


def _bind(dut: Factory, family: int, addr: str, port: int, reuse: bool,
          v6only: bool | None = None) -> Any:
    """Bind a fresh DUT socket to addr:port: None or the errno's name (the socket closed)."""
    s = dut(family)
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if v6only is not None:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        return _try(lambda: s.bind((addr, port)))
    finally:
        s.close()


def _probe(dut: Factory, v: int, port: int) -> list[Any]:
    """Binds of ``port`` that a connection on DUT[v]:port decides: the address itself and the
    wildcard, with and without SO_REUSEADDR, and the other family's wildcard (v6only and not:
    Linux's dual-stack rules)."""
    out = []
    for reuse in (True, False):
        out += [_bind(dut, FAM[v], DUT[v], port, reuse), _bind(dut, FAM[v], "", port, reuse)]
    if v == 4:
        out += [_bind(dut, socket.AF_INET6, "", port, False, v6only=True),
                _bind(dut, socket.AF_INET6, "", port, False, v6only=False)]
    else:
        out.append(_bind(dut, socket.AF_INET, "", port, False))
    return out


def _socket(dut: Side, v: int, reuse: bool, v6only: bool) -> Any:
    """A DUT socket of IPv``v``, with SO_REUSEADDR and IPV6_V6ONLY set where asked."""
    s = dut(FAM[v])
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return s


def _listener(peer: Factory, v: int) -> tuple[Any, int]:
    lst = peer(FAM[v])
    lst.bind((PEER[v], 0))
    lst.listen(8)
    lst.settimeout(5)
    return lst, lst.getsockname()[1]


def client_time_wait(peer: Factory, dut: Side, v: int, reuse: bool,
                     v6only: bool) -> list[Any]:
    """The DUT's client (explicitly bound, SO_REUSEADDR or not) closes first: TIME-WAIT."""
    lst, port = _listener(peer, v)
    c = _socket(dut, v, reuse, v6only)
    c.bind((DUT[v], 0))
    cport = c.getsockname()[1]
    c.settimeout(5)
    c.connect((PEER[v], port))
    a, _ = lst.accept()
    c.close()
    out: list[Any] = [_try(lambda: a.recv(1))]
    a.close()
    dut.wait_time_wait(cport, port)  # (the peer's FIN, the DUT's last ACK)
    out += _probe(dut, v, cport)
    lst.close()
    return out


def server_time_wait(peer: Factory, dut: Side, v: int, reuse: bool,
                     v6only: bool) -> list[Any]:
    """The DUT's server closes an accepted connection first (TIME-WAIT, the listener's
    SO_REUSEADDR inherited), then its listener: can the server start again on its port?"""
    lst = _socket(dut, v, reuse, v6only)
    lst.bind((DUT[v], 0))
    port = lst.getsockname()[1]
    lst.listen(8)
    lst.settimeout(5)
    k = peer(FAM[v])
    k.settimeout(5)
    k.connect((DUT[v], port))
    kport = k.getsockname()[1]
    a, _ = lst.accept()
    a.close()
    out: list[Any] = [_try(lambda: k.recv(1))]
    k.close()
    dut.wait_time_wait(port, kport)  # (the peer's FIN reaches the DUT)
    lst.close()
    out += _probe(dut, v, port)
    again = dut(FAM[v])
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    out.append(_try(lambda: again.bind((DUT[v], port))))
    out.append(_try(lambda: again.listen(8)))
    again.close()
    return out


def open_and_orphaned(peer: Factory, dut: Side, v: int, reuse: bool,
                      v6only: bool) -> list[Any]:
    """A connection from an ephemeral port (no bind; SO_REUSEADDR or not set before connect)
    holds its port while open, and after close() while the peer keeps its half open
    (FIN-WAIT-2, no socket)."""
    lst, port = _listener(peer, v)
    c = _socket(dut, v, reuse, v6only)
    c.settimeout(5)
    c.connect((PEER[v], port))
    cport = c.getsockname()[1]
    a, _ = lst.accept()
    out = _probe(dut, v, cport)
    c.close()
    out.append(_try(lambda: a.recv(1)))
    dut.wait_states(lambda st: st == ["FIN-WAIT-2"], cport, port, "FIN-WAIT-2")  # (its ACK)
    out += _probe(dut, v, cport)
    a.close()
    lst.close()
    return out


SCENARIOS = [client_time_wait, server_time_wait, open_and_orphaned]
CASES = [(s, v, reuse, v6only) for s in SCENARIOS for v in (4, 6) for reuse in (True, False)
         for v6only in ((False, True) if v == 6 else (False,))]


@pytest.fixture(scope="module")
def oracle() -> dict[tuple[str, int, bool, bool], list[Any]]:
    """Every case's outcome with a kernel DUT (one namespace pair for all)."""
    with sides("kernel", "pb", v6=True) as (peer, dut):
        return {(s.__name__, v, r, o): s(peer, dut, v, r, o) for s, v, r, o in CASES}


@pytest.fixture(scope="module")
def ioth_dut() -> Iterator[tuple[Side, Side]]:
    """One ioth stack for all cases (each uses ports of its own)."""
    with sides("ioth", "pbi") as pair:
        yield pair


@pytest.mark.parametrize("scenario,v,reuse,v6only", CASES, ids=[
    f"{s.__name__}-v{v}-{'reuse' if r else 'noreuse'}{'-v6only' if o else ''}"
    for s, v, r, o in CASES])
def test_bind_conflicts_as_linux(scenario: Callable[..., list[Any]], v: int, reuse: bool,
                                 v6only: bool, oracle: dict[tuple[str, int, bool, bool],
                                                            list[Any]],
                                 ioth_dut: tuple[Side, Side]) -> None:
    peer, dut = ioth_dut
    got = scenario(peer, dut, v, reuse, v6only)
    assert got == oracle[(scenario.__name__, v, reuse, v6only)]

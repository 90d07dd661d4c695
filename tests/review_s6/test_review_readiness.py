"""Adversarial review (session 6): readiness (poll masks) and SO_ERROR, the kernel as oracle.

What ``poll`` reports (POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP) for a TCP socket at each
stage of its life: a fresh and a listening socket, a connection established, after the peer's
FIN and reset, after each of our shutdowns, a non-blocking connect in progress and refused.
Event loops (asyncio, selectors, trio, gevent) decide from these bits whether to read, write or
tear down, so an ioth socket must show the kernel's.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, PEER_IP, _conn
from tests.review_s6.oracle import (
    Envs,
    Factory,
    Scenario,
    close_all,
    full_listener,
    mask,
    mask_when,
    params,
    run,
    tryit,
)

pytestmark = pytest.mark.interop
LINGER0 = struct.pack("ii", 1, 0)
SETTLE = 0.3


def _so_error(s: Any) -> Any:
    return tryit(lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))


def listener_stages(peer: Factory, dut: Factory) -> list[Any]:
    """A fresh socket, bound, listening with nothing pending, a connection pending, accepted."""
    s = dut()
    out: list[Any] = [("fresh", mask(s))]
    s.bind((DUT_IP, 0))
    out.append(("bound", mask(s)))
    s.listen(4)
    out.append(("listening", mask(s)))
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, s.getsockname()[1]))
    out.append(("pending", mask(s, 2)))
    s.settimeout(5)
    d, _ = s.accept()
    out += [("accepted: listener", mask(s)), ("accepted: conn", mask(d))]
    close_all(d, k, s)
    return out


def established_then_peer_fin(peer: Factory, dut: Factory) -> list[Any]:
    """Accepted and connected ends of the DUT: writable; readable with data; the peer's FIN."""
    out: list[Any] = []
    for client in (False, True):
        if client:
            lst = peer()
            lst.bind((PEER_IP, 0))
            lst.listen(4)
            d = dut()
            d.settimeout(5)
            d.connect((PEER_IP, lst.getsockname()[1]))
            lst.settimeout(5)
            k, _ = lst.accept()
        else:
            lst, k, d = _conn(peer, dut)
        out.append(("idle", mask(d)))
        k.sendall(b"data")
        out.append(("data", mask_when(d, select.POLLIN)))
        k.shutdown(socket.SHUT_WR)
        time.sleep(SETTLE)
        out.append(("data+fin", mask(d)))
        out.append(("read", tryit(lambda d=d: d.recv(100))))
        out.append(("fin", mask(d)))
        out.append(("eof", tryit(lambda d=d: d.recv(100))))
        d.shutdown(socket.SHUT_WR)
        time.sleep(SETTLE)
        out.append(("both shut", mask(d)))
        close_all(d, k, lst)
    return out


def peer_reset(peer: Factory, dut: Factory) -> list[Any]:
    """The peer resets: POLLERR (with HUP, IN, OUT, RDHUP) and SO_ERROR ECONNRESET, cleared by
    reading it (POLLERR goes with it)."""
    lst, k, d = _conn(peer, dut)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    time.sleep(SETTLE)
    out = [("reset", mask(d)), ("SO_ERROR", _so_error(d)), ("SO_ERROR again", _so_error(d)),
           ("after SO_ERROR", mask(d)), ("recv", tryit(lambda: d.recv(10)))]
    close_all(d, lst)
    return out


def peer_reset_so_error(peer: Factory, dut: Factory) -> list[Any]:
    """The peer resets: SO_ERROR ECONNRESET once, then 0; recv then says end of stream."""
    lst, k, d = _conn(peer, dut)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    time.sleep(SETTLE)
    out = [("SO_ERROR", _so_error(d)), ("SO_ERROR again", _so_error(d)),
           ("recv", tryit(lambda: d.recv(10))), ("send", tryit(lambda: d.send(b"x")))]
    close_all(d, lst)
    return out


def peer_reset_then_recv(peer: Factory, dut: Factory) -> list[Any]:
    """The peer resets; recv reports it; the mask and SO_ERROR afterwards."""
    lst, k, d = _conn(peer, dut)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    time.sleep(SETTLE)
    out = [("recv", tryit(lambda: d.recv(10))), ("after recv", mask(d)),
           ("SO_ERROR", _so_error(d)), ("send", tryit(lambda: d.send(b"x")))]
    close_all(d, lst)
    return out


def reset_seen_by_each_mode(peer: Factory, dut: Factory) -> list[Any]:
    """The peer sends a few bytes and resets; the DUT reads in each mode (non-blocking, a
    timeout, blocking, through select first): the bytes?, then ECONNRESET, then b""."""
    out: list[Any] = []
    for mode in ("nonblocking", "timeout", "blocking", "select"):
        lst, k, d = _conn(peer, dut)
        if mode == "nonblocking":
            d.setblocking(False)
        elif mode == "timeout":
            d.settimeout(1)
        else:
            d.settimeout(None)
        k.sendall(b"last")
        time.sleep(0.1)
        k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        k.close()
        time.sleep(SETTLE)
        if mode == "select":
            out.append(bool(select.select([d], [], [], 1)[0]))
        out.append((mode, [tryit(lambda d=d: d.recv(10)) for _ in range(3)]))
        close_all(d, lst)
    return out


def fin_seen_by_each_mode(peer: Factory, dut: Factory) -> list[Any]:
    """The peer sends a few bytes and shuts down: each mode reads them, then b"" twice."""
    out: list[Any] = []
    for mode in ("nonblocking", "timeout", "blocking"):
        lst, k, d = _conn(peer, dut)
        if mode == "nonblocking":
            d.setblocking(False)
        elif mode == "timeout":
            d.settimeout(1)
        else:
            d.settimeout(None)
        k.sendall(b"last")
        k.shutdown(socket.SHUT_WR)
        time.sleep(SETTLE)
        out.append((mode, [tryit(lambda d=d: d.recv(10)) for _ in range(3)]))
        close_all(d, k, lst)
    return out


def own_shutdowns(peer: Factory, dut: Factory) -> list[Any]:
    """SHUT_WR, SHUT_RD, SHUT_RDWR of the DUT (each on its own connection), peer idle."""
    out: list[Any] = []
    for how, name in ((socket.SHUT_WR, "WR"), (socket.SHUT_RD, "RD"),
                      (socket.SHUT_RDWR, "RDWR")):
        lst, k, d = _conn(peer, dut)
        d.settimeout(0.5)  # (SHUT_WR: the recv below waits for the idle peer)
        d.shutdown(how)
        time.sleep(SETTLE)
        out += [(name, mask(d)), (name + " recv", tryit(lambda d=d: d.recv(10))),
                (name + " send", tryit(lambda d=d: d.send(b"x")))]
        close_all(d, k, lst)
    return out


def shut_rd_then_data(peer: Factory, dut: Factory) -> list[Any]:
    """SHUT_RD, then the peer sends: Linux's recv goes on returning b"" (the bytes are
    dropped, the window stays open), and the peer can go on sending."""
    lst, k, d = _conn(peer, dut)
    d.shutdown(socket.SHUT_RD)
    k.sendall(b"after")
    time.sleep(SETTLE)
    out = [("mask", mask(d)), ("recv", tryit(lambda: d.recv(10))),
           ("peer send", tryit(lambda: k.send(b"more")))]
    time.sleep(SETTLE)
    out += [("recv again", tryit(lambda: d.recv(10))), ("send", tryit(lambda: d.send(b"x")))]
    out.append(("peer got", tryit(lambda: k.recv(10))))
    close_all(d, k, lst)
    return out


def _refused(peer: Factory) -> Any:
    probe = peer()
    probe.bind((PEER_IP, 0))
    refused = probe.getsockname()
    probe.close()
    return refused


def nonblocking_connect_in_progress(peer: Factory, dut: Factory) -> list[Any]:
    """A non-blocking connect that hears nothing: EINPROGRESS, no event, EALREADY, ..."""
    lst, fill = full_listener(peer, PEER_IP)
    addr = (PEER_IP, lst.getsockname()[1])
    c = dut()
    c.setblocking(False)
    out: list[Any] = [("connect_ex", tryit(lambda: c.connect_ex(addr)))]
    out += [("in progress", mask(c, 0.3)), ("SO_ERROR in progress", _so_error(c)),
            ("connect_ex again", tryit(lambda: c.connect_ex(addr))),
            ("recv in progress", tryit(lambda: c.recv(1))),
            ("send in progress", tryit(lambda: c.send(b"x"))),
            ("getpeername in progress", tryit(lambda: c.getpeername()))]
    close_all(c, *fill, lst)
    return out


def nonblocking_connect_refused(peer: Factory, dut: Factory) -> list[Any]:
    """A non-blocking connect refused: writable, SO_ERROR ECONNREFUSED once, then 0."""
    refused = _refused(peer)
    c = dut()
    c.setblocking(False)
    out: list[Any] = [("connect_ex", tryit(lambda: c.connect_ex(refused)))]
    out += [("writable", bool(select.select([], [c], [], 2)[1])), ("SO_ERROR", _so_error(c)),
            ("SO_ERROR again", _so_error(c)), ("recv", tryit(lambda: c.recv(1)))]
    close_all(c)
    return out


def nonblocking_connect_refused_mask(peer: Factory, dut: Factory) -> list[Any]:
    """The poll mask of a refused non-blocking connect: Linux IN|OUT|ERR|HUP|RDHUP, then
    without ERR once SO_ERROR was read."""
    refused = _refused(peer)
    c = dut()
    c.setblocking(False)
    c.connect_ex(refused)
    out = [("refused", mask_when(c, select.POLLOUT)), ("SO_ERROR", _so_error(c)),
           ("after SO_ERROR", mask(c))]
    close_all(c)
    return out


def nonblocking_connect_established(peer: Factory, dut: Factory) -> list[Any]:
    """A non-blocking connect that succeeds: writable, SO_ERROR 0; Linux's next connect
    returns 0 (the completion check of the classic idiom), the one after EISCONN."""
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(4)
    addr = (PEER_IP, lst.getsockname()[1])
    c = dut()
    c.setblocking(False)
    out: list[Any] = [("connect_ex", tryit(lambda: c.connect_ex(addr)))]
    out += [("established", mask_when(c, select.POLLOUT)), ("SO_ERROR", _so_error(c)),
            ("getpeername", tryit(lambda: c.getpeername()) == addr)]
    close_all(c, lst)
    return out


def nonblocking_connect_completion_check(peer: Factory, dut: Factory) -> list[Any]:
    """connect_ex again once the socket is writable: Linux 0 (the connect completes now),
    then EISCONN; ioth: EISCONN at once."""
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(4)
    addr = (PEER_IP, lst.getsockname()[1])
    c = dut()
    c.setblocking(False)
    c.connect_ex(addr)
    select.select([], [c], [], 2)
    out = [tryit(lambda: c.connect_ex(addr)), tryit(lambda: c.connect_ex(addr))]
    close_all(c, lst)
    return out


def blocking_connect_timeout(peer: Factory, dut: Factory) -> list[Any]:
    """connect with a timeout to a peer that drops the SYN: TimeoutError after the timeout."""
    lst, fill = full_listener(peer, PEER_IP)
    c = dut()
    c.settimeout(0.4)
    t0 = time.monotonic()
    out: list[Any] = [("connect", tryit(lambda: c.connect((PEER_IP, lst.getsockname()[1]))))]
    out += [("took about 0.4 s", 0.3 < time.monotonic() - t0 < 1.5),
            ("SO_ERROR", _so_error(c)), ("getpeername", tryit(lambda: c.getpeername()))]
    close_all(c, *fill, lst)
    return out


def connect_timeout_leaves_it_connecting(peer: Factory, dut: Factory) -> list[Any]:
    """After a connect's TimeoutError Linux's socket is still connecting: poll reports
    nothing, a second connect fails at once with EALREADY."""
    lst, fill = full_listener(peer, PEER_IP)
    addr = (PEER_IP, lst.getsockname()[1])
    c = dut()
    c.settimeout(0.4)
    tryit(lambda: c.connect(addr))
    t0 = time.monotonic()
    out = [("mask", mask(c)), ("connect again", tryit(lambda: c.connect(addr))),
           ("at once", time.monotonic() - t0 < 0.2)]
    close_all(c, *fill, lst)
    return out


SCENARIOS: list[Scenario] = [
    listener_stages, established_then_peer_fin, peer_reset, peer_reset_so_error,
    reset_seen_by_each_mode, fin_seen_by_each_mode,
    peer_reset_then_recv, own_shutdowns, shut_rd_then_data, nonblocking_connect_in_progress,
    nonblocking_connect_refused, nonblocking_connect_refused_mask,
    nonblocking_connect_established, nonblocking_connect_completion_check,
    blocking_connect_timeout, connect_timeout_leaves_it_connecting]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_readiness_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)

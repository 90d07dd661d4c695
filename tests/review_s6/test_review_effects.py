"""Adversarial review (session 6): options and calls whose effect (not read-back) differs.

SO_RCVLOWAT (a read waits for that many bytes, poll too), TCP_DEFER_ACCEPT (accept waits
for the first data), a socket connecting to its own address and port (TCP simultaneous open
with itself), a 1 MB MSG_WAITALL read, buffers recv_into cannot write; the kernel (a second
namespace) is the oracle.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, mask, params, run, tryit

pytestmark = pytest.mark.interop


def rcvlowat_effect(peer: Factory, dut: Factory) -> list[Any]:
    """SO_RCVLOWAT 10, 4 bytes arrive: not readable, a recv with a timeout times out;
    6 more: readable, recv returns the 10 bytes."""
    lst, k, d = _conn(peer, dut)
    out: list[Any] = [tryit(lambda: d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 10))]
    k.sendall(b"four")
    time.sleep(0.3)
    d.settimeout(0.5)
    out += [mask(d), tryit(lambda: d.recv(100))]
    k.sendall(b"sixsix")
    time.sleep(0.3)
    out += [mask(d), tryit(lambda: d.recv(100))]
    close_all(d, k, lst)
    return out


def defer_accept_effect(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_DEFER_ACCEPT 2 on the listener: a peer that connects and says nothing is not
    accepted yet (no POLLIN, accept times out); once it sends, accept returns it with the
    data."""
    lst = dut()
    out: list[Any] = [tryit(lambda: lst.setsockopt(socket.IPPROTO_TCP,
                                                   socket.TCP_DEFER_ACCEPT, 2))]
    lst.bind((DUT_IP, 0))
    lst.listen(4)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    time.sleep(0.3)
    lst.settimeout(0.5)
    out += [mask(lst), tryit(lambda: lst.accept())]
    k.sendall(b"now")
    time.sleep(0.3)
    lst.settimeout(2)
    a = tryit(lambda: lst.accept())
    out.append(type(a).__name__)
    if isinstance(a, tuple):
        a[0].settimeout(2)
        out.append(tryit(lambda: a[0].recv(10)))
        close_all(a[0])
    close_all(k, lst)
    return out


def self_connect(peer: Factory, dut: Factory) -> list[Any]:
    """A socket bound to a port connects to that same address and port: Linux completes a
    simultaneous open with itself; what it sends it reads back."""
    s = dut()
    s.bind((DUT_IP, 0))
    s.settimeout(3)
    out: list[Any] = [tryit(lambda: s.connect(s.getsockname()))]
    if out[0] is None:
        out.append(s.getpeername() == s.getsockname())
        s.sendall(b"echo")
        out.append(tryit(lambda: s.recv(10)))
    close_all(s)
    return out


def waitall_big(peer: Factory, dut: Factory) -> list[Any]:
    """recv(1 MB, MSG_WAITALL) while the peer sends 1 MB in 4 kB pieces: one call, all."""
    lst, k, d = _conn(peer, dut)
    blob = bytes(i % 251 for i in range(1 << 20))

    def send() -> None:
        for i in range(0, len(blob), 4096):
            k.sendall(blob[i:i + 4096])
    t = threading.Thread(target=send)
    t.start()
    d.settimeout(None)  # (blocking: a timeout makes the descriptor non-blocking, and
    #                     MSG_WAITALL on a non-blocking socket returns what is there)
    got = tryit(lambda: d.recv(1 << 20, socket.MSG_WAITALL))
    t.join(10)
    out = [got == blob]
    close_all(d, k, lst)
    return out


def unwritable_buffers(peer: Factory, dut: Factory) -> list[Any]:
    """recv_into a bytes object (read-only): TypeError; into a memoryview slice: the bytes
    land in the slice."""
    lst, k, d = _conn(peer, dut)
    k.sendall(b"abcdef")
    time.sleep(0.2)
    try:
        d.recv_into(b"xxxx")  # type: ignore[arg-type]
        out: list[Any] = ["wrote into bytes?"]
    except TypeError:
        out = ["TypeError"]
    buf = bytearray(b"........")
    n = d.recv_into(memoryview(buf)[2:6])
    out += [n, bytes(buf)]
    out.append(bool(select.select([d], [], [], 0)[0]))
    out.append(d.recv(10))
    close_all(d, k, lst)
    return out


SCENARIOS: list[Scenario] = [rcvlowat_effect, defer_accept_effect, self_connect, waitall_big,
                             unwritable_buffers]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_effects_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)

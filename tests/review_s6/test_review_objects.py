"""Adversarial review (session 6): the socket object's life, the kernel as oracle.

CPython closes a socket when its last reference goes (with a ResourceWarning) and keeps it
open while a makefile() object still uses it; code that leaks sockets or closes the socket
before its file objects relies on both.  The kernel (a second namespace) is the oracle.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop


def dropped_socket_closes(peer: Factory, dut: Factory) -> list[Any]:
    """An accepted socket and a connected one, dropped without close(): once collected,
    the peer sees EOF (CPython's finalizer closes the descriptor)."""
    out: list[Any] = []
    lst, k, d = _conn(peer, dut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del d
        gc.collect()
    k.settimeout(2)
    out.append(tryit(lambda: k.recv(10)))
    close_all(k)
    c = dut()
    c.settimeout(3)
    c.connect((DUT_IP, lst.getsockname()[1]))
    a, _ = lst.accept()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del c
        gc.collect()
    a.settimeout(2)
    out.append(tryit(lambda: a.recv(10)))
    close_all(a, lst)
    return out


def dropped_listener_closes(peer: Factory, dut: Factory) -> list[Any]:
    """A listener dropped without close(): once collected, connects are refused."""
    lst = dut()
    lst.bind((DUT_IP, 0))
    lst.listen(2)
    addr = lst.getsockname()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del lst
        gc.collect()
    k = peer()
    k.settimeout(2)
    out = [tryit(lambda: k.connect(addr))]
    close_all(k)
    return out


def close_with_a_file_open(peer: Factory, dut: Factory) -> list[Any]:
    """close() while a makefile() object is open: the connection stays (the file reads and
    writes), the peer sees EOF only once the file is closed too."""
    lst, k, d = _conn(peer, dut)
    f = d.makefile("rwb")
    d.close()
    k.sendall(b"line\n")
    out: list[Any] = [f.readline()]
    f.write(b"reply\n")
    f.flush()
    out.append(tryit(lambda: k.recv(10)))
    k.settimeout(0.3)
    out.append(tryit(lambda: k.recv(10)))
    f.close()
    k.settimeout(2)
    out.append(tryit(lambda: k.recv(10)))
    close_all(k, lst)
    return out


def context_manager(peer: Factory, dut: Factory) -> list[Any]:
    """with socket: ... closes at the end (fileno -1, EBADF after, the peer sees EOF)."""
    lst, k, d = _conn(peer, dut)
    with d as same:
        out: list[Any] = [same is d]
        d.sendall(b"in")
    out += [d.fileno(), tryit(lambda: d.send(b"x")), tryit(lambda: k.recv(10)),
            tryit(lambda: k.recv(10))]
    close_all(k, lst)
    return out


SCENARIOS: list[Scenario] = [dropped_socket_closes, dropped_listener_closes,
                             close_with_a_file_open, context_manager]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_objects_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)

"""Adversarial review (session 6): TLS (the stdlib ssl module) over a DUT TCP socket.

ssl.SSLContext.wrap_socket builds a new socket object on the TCP socket's descriptor: its
names, family, timeout, reads and writes, unwrap and close must be the TCP connection's, as
with a kernel socket.  The TLS server runs in the peer's namespace (trustme certificates);
the kernel (a second namespace) is the oracle.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest

from tests.review_s6.oracle import Envs, Scenario, close_all, params, run, tryit
from tests.sockets.helpers import require_module

pytestmark = pytest.mark.interop
PEER4 = "192.0.2.1"


def tls_client(peer: Any, dut: Any) -> list[Any]:
    """A TLS client on the DUT: handshake, names, a request and a reply, then EOF."""
    trustme = require_module("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("peer.test")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(sctx)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(cctx)
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(2)
    lst.settimeout(5)
    result: list[Any] = []

    def serve() -> None:
        a, _ = lst.accept()
        with sctx.wrap_socket(a, server_side=True) as t:
            t.settimeout(5)
            result.append(t.recv(100))
            t.sendall(b"tls reply")
    th = threading.Thread(target=serve)
    th.start()
    c = dut(socket.AF_INET)
    c.settimeout(5)
    c.connect(lst.getsockname())
    name = c.getsockname()
    t = cctx.wrap_socket(c, server_hostname="peer.test")
    out: list[Any] = [t.family, t.type, t.gettimeout(), tryit(lambda: t.getpeername()) ==
                      lst.getsockname(), tryit(lambda: t.getsockname()) == name,
                      t.version() is not None,
                      tryit(lambda: c.fileno())]
    t.sendall(b"tls request")
    out.append(tryit(lambda: t.recv(100)))
    out.append(tryit(lambda: t.recv(100)))
    th.join(5)
    out.append(result)
    close_all(t, lst)
    return out


SCENARIOS: list[Scenario] = [tls_client]
BUGS: dict[Scenario, str] = {
    tls_client: "the SSLSocket that wrap_socket builds on an ioth socket's descriptor names "
                "the AF_UNIX pair: getpeername b'\\x00354d9'-like, getsockname '' (Linux: "
                "the TCP connection's addresses)",
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_tls_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

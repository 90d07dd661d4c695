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
    """A TLS client on the DUT: handshake, a request and a reply, then EOF.  (Linux's
    SSLSocket names the TCP connection; ioth's names the AF_UNIX pair, by design: see
    test_tls_names_the_application_end.)"""
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
    t = cctx.wrap_socket(c, server_hostname="peer.test")
    out: list[Any] = [t.family, t.type, t.gettimeout(), t.version() is not None,
                      tryit(lambda: c.fileno())]
    t.sendall(b"tls request")
    out.append(tryit(lambda: t.recv(100)))
    out.append(tryit(lambda: t.recv(100)))
    th.join(5)
    out.append(result)
    close_all(t, lst)
    return out


SCENARIOS: list[Scenario] = [tls_client]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_tls_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)


def test_tls_names_the_application_end(envs: Envs) -> None:
    """A documented difference (see ioth.sockets.stream): ssl's wrap_socket builds its
    SSLSocket on the descriptor of an ioth TCP socket (and detaches the socket object), so
    the SSLSocket's getpeername/getsockname are the application's AF_UNIX end's names
    (Linux: the TCP connection's addresses); family, type, timeout, the handshake, the bytes
    and the end of stream are the connection's (tls_client compares them with the kernel)."""
    trustme = require_module("trustme")
    ca = trustme.CA()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("peer.test").configure_cert(sctx)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(cctx)
    peer, dut = envs.get("ioth", True)
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(2)
    lst.settimeout(5)

    def serve() -> None:
        a, _ = lst.accept()
        with sctx.wrap_socket(a, server_side=True) as s:
            s.settimeout(5)
            s.sendall(s.recv(100))
    th = threading.Thread(target=serve)
    th.start()
    c = dut(socket.AF_INET)
    c.settimeout(5)
    c.connect(lst.getsockname())
    t = cctx.wrap_socket(c, server_hostname="peer.test")
    try:
        assert t.family == socket.AF_INET
        assert not isinstance(t.getpeername(), tuple)  # (an AF_UNIX name, not (host, port))
        assert not isinstance(t.getsockname(), tuple)
        t.sendall(b"echo")
        assert t.recv(100) == b"echo"
    finally:
        th.join(5)
        close_all(t, lst)

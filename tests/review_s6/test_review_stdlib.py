"""Adversarial review (session 6): unmodified stdlib code on the DUT, the kernel as oracle.

Under ``ioth.use(stack)`` the stdlib's own socket calls make ioth sockets, so an unmodified
program's create_connection, create_server (dual-stack too), socketserver and http.client
run on the stack; the same code runs in the kernel DUT's namespace for the oracle.  The
peer side runs in the peer's namespace.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import socketserver
import threading
from typing import Any

import pytest

from tests.net.nsutil import inside
from tests.review_s6.oracle import Envs, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop
PEER4, DUT4 = "192.0.2.1", "192.0.2.2"


def _peer_listener(peer: Any) -> Any:
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(8)
    lst.settimeout(5)
    return lst


def create_connection_paths(peer: Any, dut: Any) -> list[Any]:
    """create_connection: connected (family, timeout kept, names), refused
    (ConnectionRefusedError), with source_address."""
    lst = _peer_listener(peer)
    port = lst.getsockname()[1]
    probe = peer(socket.AF_INET)  # (peer sockets are made outside the ambient context)
    probe.bind((PEER4, 0))
    refused = probe.getsockname()
    probe.close()
    with dut.ambient():
        c = socket.create_connection((PEER4, port), timeout=3)
        out: list[Any] = [c.family, c.type, c.gettimeout(), c.getpeername() == (PEER4, port),
                          isinstance(c, socket.socket)]
        a, _ = lst.accept()
        c.sendall(b"hi")
        out.append(a.recv(10))
        close_all(a, c)
        try:
            socket.create_connection(refused, timeout=3)
            out.append("connected?")
        except OSError as exc:
            out.append(type(exc).__name__)
        s = socket.create_connection((PEER4, port), timeout=3, source_address=(DUT4, 0))
        out.append(s.getsockname()[0])
        close_all(s)
    lst.accept()[0].close()
    close_all(lst)
    return out


def create_server_dualstack(peer: Any, dut: Any) -> list[Any]:
    """create_server on "" with dualstack_ipv6 (has_dualstack_ipv6 asked on the DUT): an
    IPv4 and an IPv6 client both reach it, addresses v4-mapped and plain."""
    with dut.ambient():
        dual = socket.has_dualstack_ipv6()
        srv = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    srv.settimeout(5)
    port = srv.getsockname()[1]
    out: list[Any] = [dual, srv.family, srv.getsockopt(socket.IPPROTO_IPV6,
                                                       socket.IPV6_V6ONLY)]
    for fam, host in ((socket.AF_INET, DUT4), (socket.AF_INET6, "2001:db8::2")):
        k = peer(fam)
        k.settimeout(5)
        k.connect((host, port))
        a, addr = srv.accept()
        out.append(addr[0])
        close_all(a, k)
    close_all(srv)
    return out


def create_server_reuse_port(peer: Any, dut: Any) -> list[Any]:
    """create_server(reuse_port=True) twice on one port: both listen (Linux)."""
    with dut.ambient():
        a = socket.create_server((DUT4, 0), reuse_port=True)
        port = a.getsockname()[1]
        b = tryit(lambda: socket.create_server((DUT4, port), reuse_port=True))
    out = [b if isinstance(b, str) else b.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]
    close_all(a, b)
    return out


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline()
        self.wfile.write(b"echo " + line)


def socketserver_threading(peer: Any, dut: Any) -> list[Any]:
    """A ThreadingTCPServer (serve_forever in a thread, selectors on the listener) serves
    three clients, then shutdown() stops it promptly and server_close frees the port."""
    with dut.ambient():
        srv = socketserver.ThreadingTCPServer((DUT4, 0), _Echo)
    srv.daemon_threads = True
    port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1})
    t.start()
    out: list[Any] = []
    try:
        for i in range(3):
            k = peer(socket.AF_INET)
            k.settimeout(5)
            k.connect((DUT4, port))
            k.sendall(b"line %d\n" % i)
            got = b""
            while not got.endswith(b"\n"):
                chunk = k.recv(100)
                if not chunk:
                    break
                got += chunk
            out.append(got)
            out.append(tryit(lambda k=k: k.recv(10)))
            close_all(k)
    finally:
        srv.shutdown()
        t.join(5)
        srv.server_close()
    out.append(t.is_alive())
    k = peer(socket.AF_INET)
    k.settimeout(3)
    out.append(tryit(lambda: k.connect((DUT4, port))))
    close_all(k)
    return out


def http_client_to_peer(peer: Any, dut: Any) -> list[Any]:
    """http.client on the DUT against an http.server in the peer's namespace: a GET with
    a body, keep-alive for a second request, then a HEAD."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"x" * 70_000 + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with inside(peer.ns.name):
        srv = http.server.ThreadingHTTPServer((PEER4, 0), Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1})
    t.start()
    out: list[Any] = []
    try:
        with dut.ambient():
            conn = http.client.HTTPConnection(PEER4, srv.server_address[1], timeout=5)
            for path in ("/one", "/two"):
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                out += [r.status, len(body), body.endswith(path.encode())]
            conn.request("HEAD", "/")
            r = conn.getresponse()
            out += [r.status, r.read()]
            conn.close()
    finally:
        srv.shutdown()
        t.join(5)
        srv.server_close()
    return out


def constructor_flags(peer: Any, dut: Any) -> list[Any]:
    """socket.socket() as a program calls it: SOCK_NONBLOCK (type, blocking, timeout),
    the defaults, inheritance and close-on-exec, and the same of an accepted socket."""
    import fcntl

    def cloexec(s: Any) -> bool:
        return bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    with dut.ambient():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        s2 = socket.socket()
        lst = socket.socket(socket.AF_INET6)
    out: list[Any] = [s.type, s.getblocking(), s.gettimeout(), s.get_inheritable(),
                      cloexec(s), s2.family, s2.type, s2.proto, s2.get_inheritable(),
                      tryit(lambda: s2.connect_ex((PEER4, 1)))]
    lst.bind(("::", 0))
    lst.listen(1)
    lst.settimeout(3)
    k = peer(socket.AF_INET)
    k.settimeout(3)
    k.connect((DUT4, lst.getsockname()[1]))
    a, _ = lst.accept()
    out += [a.get_inheritable(), cloexec(a), a.proto, a.type, a.family, a.gettimeout(),
            a.getblocking()]
    close_all(s, s2, lst, k, a)
    return out


SCENARIOS: list[Scenario] = [constructor_flags, create_connection_paths, create_server_dualstack,
                             create_server_reuse_port, socketserver_threading,
                             http_client_to_peer]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_stdlib_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

"""Default stacks: unmodified stdlib code (and requests) on ioth stacks through ioth.use();
two threads on two virtual networks with the same addresses plus the kernel, at once."""

from __future__ import annotations

import http.client
import http.server
import socket
import socketserver
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioth
from ioth.sockets import StreamSocket, resolver_for
from tests.sockets.helpers import lone, network, require_module


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        host = str(self.server.server_address[0])  # type: ignore[index]
        body = f"{host} says hi to {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(stack: ioth.Stack | None, addr: tuple[str, int]) -> http.server.ThreadingHTTPServer:
    with ioth.use(stack):
        srv = http.server.ThreadingHTTPServer(addr, _Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_use_is_context_local_and_none_is_the_kernel() -> None:
    with lone() as s:
        plain0 = socket.socket()
        assert not isinstance(plain0, StreamSocket)
        plain0.close()
        with ioth.use(s):
            class Derived(socket.socket):  # defined while a stack is in use: still a socket
                pass

            d = Derived(socket.AF_INET, socket.SOCK_STREAM)
            assert type(d) is Derived and isinstance(d, socket.socket)
            d.close()
            k = socket.socket()
            assert isinstance(k, StreamSocket) and isinstance(k, socket.socket)
            k.close()
            with ioth.use(None):
                plain = socket.socket()
                assert not isinstance(plain, StreamSocket)
                plain.close()
            seen: list[bool] = []
            t = threading.Thread(target=lambda: seen.append(isinstance(socket.socket(),
                                                                       StreamSocket)))
            t.start()
            t.join()
            assert seen == [False]  # a new thread starts with the process default: the kernel
        ioth.set_default_stack(s)
        try:
            seen.clear()
            t = threading.Thread(target=lambda: seen.append(isinstance(socket.socket(),
                                                                       StreamSocket)))
            t.start()
            t.join()
            assert seen == [True]
        finally:
            ioth.set_default_stack(None)


def test_resolution_per_stack() -> None:
    with lone() as s:
        resolver_for(s).add("www.example.test", "127.0.0.1", "::1")
        resolver_for(s).load_hosts("127.0.0.1 alias.test other.test # comment\n")
        with ioth.use(s):
            assert socket.gethostbyname("www.example.test") == "127.0.0.1"
            assert socket.gethostbyname("other.test") == "127.0.0.1"
            infos = socket.getaddrinfo("www.example.test", 80, type=socket.SOCK_STREAM)
            assert [(i[0], i[4][0]) for i in infos] == [(socket.AF_INET, "127.0.0.1"),
                                                        (socket.AF_INET6, "::1")]
            assert socket.getaddrinfo("192.0.2.9", "http")[0][4] == ("192.0.2.9", 80)
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo("nowhere.test", 80)
            assert socket.gethostbyaddr("127.0.0.1")[0] == "localhost"
        with pytest.raises(socket.gaierror):  # the kernel does not know these names
            socket.getaddrinfo("www.example.test", 80)


@pytest.fixture
def two_nets(tmp_path: Path) -> Iterator[tuple[list[ioth.Stack], list[ioth.Stack]]]:
    with network(tmp_path, 2, name="red") as red, network(tmp_path, 2, name="blue") as blue:
        yield red, blue


def test_two_threads_two_networks_and_the_kernel(
        two_nets: tuple[list[ioth.Stack], list[ioth.Stack]]) -> None:
    red, blue = two_nets
    servers = [_serve(red[1], ("192.0.2.2", 8000)), _serve(blue[1], ("192.0.2.2", 8000))]
    kernel_srv = _serve(None, ("127.0.0.1", 0))
    kport = kernel_srv.server_address[1]
    results: dict[str, object] = {}

    def client(name: str, stack: ioth.Stack, hostname: str) -> None:
        resolver_for(stack).add(hostname, "192.0.2.2")
        with ioth.use(stack):
            try:
                body = urllib.request.urlopen(f"http://{hostname}:8000/", timeout=10).read()
                results[name] = (body, socket.gethostbyname(hostname))
                urllib.request.urlopen(f"http://127.0.0.1:{kport}/", timeout=2)
                results[name + "-kernel"] = "reachable!?"
            except OSError as exc:
                results.setdefault(name + "-kernel", type(exc).__name__)

    threads = [threading.Thread(target=client, args=("red", red[0], "red.test")),
               threading.Thread(target=client, args=("blue", blue[0], "blue.test"))]
    for t in threads:
        t.start()
    kbody = urllib.request.urlopen(f"http://127.0.0.1:{kport}/", timeout=10).read()
    for t in threads:
        t.join(20)
    assert results["red"] == (b"192.0.2.2 says hi to 192.0.2.1", "192.0.2.2")
    assert results["blue"] == (b"192.0.2.2 says hi to 192.0.2.1", "192.0.2.2")
    assert results["red-kernel"] == results["blue-kernel"] == "URLError"  # refused: own loopback
    assert kbody == b"127.0.0.1 says hi to 127.0.0.1"
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("red.test", 80)
    for srv in (*servers, kernel_srv):
        srv.shutdown()
        srv.server_close()
    assert red[1].interfaces()[1]["rx_frames"] > 0 and blue[1].interfaces()[1]["rx_frames"] > 0


def test_http_client_requests_and_socketserver(tmp_path: Path) -> None:
    requests = require_module("requests")

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline().upper())

    with network(tmp_path, 2) as (a, b):
        web = _serve(b, ("", 8080))
        with ioth.use(b):
            echo = socketserver.ThreadingTCPServer(("192.0.2.2", 7), Echo)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        with ioth.use(a):
            c = http.client.HTTPConnection("192.0.2.2", 8080, timeout=10)
            c.request("GET", "/x")
            r = c.getresponse()
            assert r.status == 200 and r.read() == b"0.0.0.0 says hi to 192.0.2.1"
            c.close()
            with requests.Session() as sess:
                resp = sess.get("http://192.0.2.2:8080/", timeout=10)
                assert resp.status_code == 200 and resp.text.endswith("192.0.2.1")
            with socket.create_connection(("192.0.2.2", 7), timeout=10) as sock:
                sock.sendall(b"ping\n")
                assert sock.makefile("rb").readline() == b"PING\n"
            with socket.create_server(("192.0.2.1", 9000)) as lst:
                assert isinstance(lst, StreamSocket) and lst.getsockname() == ("192.0.2.1",
                                                                               9000)
        web.shutdown()
        web.server_close()
        echo.shutdown()
        echo.server_close()


def test_forking_tcp_server(tmp_path: Path) -> None:
    class Upper(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline().upper())

    with network(tmp_path, 2) as (a, b):
        with ioth.use(b):
            srv = socketserver.ForkingTCPServer(("192.0.2.2", 2323), Upper)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
        t.start()
        try:
            with ioth.use(a):
                for word in (b"one", b"two"):
                    with socket.create_connection(("192.0.2.2", 2323), timeout=10) as c:
                        c.sendall(word + b"\n")
                        assert c.makefile("rb").readline() == word.upper() + b"\n"
        finally:
            srv.shutdown()
            t.join(10)
            srv.server_close()

"""ioth sockets against the Linux kernel and real programs (issue 6 acceptance).

* ``curl`` in a namespace fetches from ``ioth run --vnl tap://...[netns=NS/up] -m http.server``
  (IPv4 and IPv6, the server is the unmodified stdlib module on a dual-stack ioth socket);
* a kernel TCP server and client (socat, python in the namespace) exchange data with ioth
  sockets, and the errnos ioth gives are the ones the kernel gives for the same situations;
* a gateway program forwards TCP between a kernel socket and an ioth stack.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioth
import ioth.sockets
from tests.sockets.helpers import _tcp_ready
from tests.support.peers import (
    Netns,
    ioth_cmd,
    kernel_lan,
    netns,
    require_root,
    require_tools,
    stop_process,
    wait_for_link,
)

pytestmark = pytest.mark.interop


def tapname() -> str:
    return "is" + secrets.token_hex(4)


@pytest.fixture
def lan() -> Iterator[tuple[Netns, ioth.Stack, str]]:
    """Kernel 192.0.2.1 / 2001:db8::1 in a namespace, ioth 192.0.2.2 / 2001:db8::2 on its TAP."""
    with kernel_lan("isk") as (ns, stack, tap):
        yield ns, _tcp_ready(stack), tap


def test_curl_fetches_from_ioth_run_http_server(tmp_path: Path) -> None:
    require_root()
    require_tools("curl", "ip")
    (tmp_path / "hello.txt").write_text("served by ioth\n")
    with netns("isr") as ns:
        tap = tapname()
        proc = subprocess.Popen(
            ioth_cmd("run", "--vnl", f"tap://{tap}[netns={ns.name}/up]",
                     "--config", "eth,ip=192.0.2.2/24,ip=2001:db8::2/64",
                     "-m", "http.server", "8000"),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            wait_for_link(ns, tap)
            ns.sh(f"ip addr add 192.0.2.1/24 dev {tap}; "
                  f"ip addr add 2001:db8::1/64 dev {tap} nodad; ip link set {tap} up")
            for url in ("http://192.0.2.2:8000/hello.txt", "http://[2001:db8::2]:8000/hello.txt"):
                out = ""
                for _ in range(40):  # the server needs a moment to start (and DAD)
                    r = ns.run(["curl", "-sS", "--max-time", "5", url], check=False)
                    out = r.stdout
                    if r.returncode == 0:
                        break
                    time.sleep(0.25)
                assert out == "served by ioth\n", r.stderr
            listing = ns.run(["curl", "-sS", "--max-time", "5", "http://192.0.2.2:8000/"]).stdout
            assert "hello.txt" in listing
        finally:
            stop_process(proc)
        log = proc.stdout.read().decode() if proc.stdout else ""
        assert '"GET /hello.txt HTTP/1.1" 200' in log, log
        assert "::ffff:192.0.2.1 - -" in log and "2001:db8::1 - -" in log, log


def _kernel_python(ns: Netns, code: str) -> subprocess.Popen[bytes]:
    return ns.popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)


def test_ioth_and_kernel_exchange_data_both_ways(lan: tuple[Netns, ioth.Stack, str]) -> None:
    ns, stack, _ = lan
    blob = os.urandom(2_000_000)
    # kernel server, ioth client
    srv = _kernel_python(ns, (
        "import socket,hashlib\n"
        "s=socket.create_server(('192.0.2.1',7001)); c,_=s.accept(); h=hashlib.sha256()\n"
        "while d:=c.recv(65536): h.update(d)\n"
        "c.sendall(h.hexdigest().encode()); c.close()\n"))
    try:
        with ioth.use(stack):
            sock = None
            for _ in range(50):
                try:
                    sock = socket.create_connection(("192.0.2.1", 7001), timeout=5)
                    break
                except ConnectionRefusedError:
                    time.sleep(0.1)
            assert sock is not None
            with sock:
                sock.sendall(blob)
                sock.shutdown(socket.SHUT_WR)
                digest = b""
                while d := sock.recv(100):
                    digest += d
        import hashlib

        assert digest.decode() == hashlib.sha256(blob).hexdigest()
        assert srv.wait(10) == 0
    finally:
        stop_process(srv)
    # ioth server (IPv6, dual-stack), kernel client over IPv4 and IPv6
    with ioth.use(stack):
        lst = socket.create_server(("", 7002), family=socket.AF_INET6, dualstack_ipv6=True)
    peers: list[tuple[str, ...]] = []

    def serve() -> None:
        for _ in range(2):
            c, addr = lst.accept()
            peers.append(addr)
            with c, c.makefile("rb") as f:
                c.sendall(f.readline()[:-1][::-1] + b"\n")

    t = threading.Thread(target=serve)
    t.start()
    for host in ("192.0.2.2", "2001:db8::2"):
        r = ns.run([sys.executable, "-c",
                    f"import socket\nc=socket.create_connection(('{host}',7002),timeout=5)\n"
                    "c.sendall(b'olleh\\n'); print(c.makefile().readline(), end='')"])
        assert r.stdout == "hello\n"
    t.join(10)
    lst.close()
    assert peers[0][0] == "::ffff:192.0.2.1" and peers[1][0] == "2001:db8::1"


def _errno_of(fn: object) -> int:
    try:
        fn()  # type: ignore[operator]
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_errors_match_the_kernel(lan: tuple[Netns, ioth.Stack, str]) -> None:
    ns, stack, _ = lan
    code = (
        "import socket,errno,sys\n"
        "def e(f):\n"
        "    try: f()\n"
        "    except OSError as x: return x.errno\n"
        "    return 0\n"
        "def refused():\n"
        "    socket.create_connection(('192.0.2.2', 9), timeout=5)\n"
        "def unreach():\n"
        "    socket.create_connection(('203.0.113.9', 80), timeout=5)\n"
        "def inuse():\n"
        "    a=socket.create_server(('192.0.2.1',7100)); socket.create_server(('192.0.2.1',7100))\n"
        "def notavail():\n"
        "    socket.socket().bind(('198.51.100.1', 0))\n"
        "print(e(refused), e(unreach), e(inuse), e(notavail))\n")
    kernel = [int(x) for x in ns.run([sys.executable, "-c", code]).stdout.split()]
    # the same situations, mirrored, from the ioth side
    with ioth.use(stack):
        def refused() -> None:
            socket.create_connection(("192.0.2.1", 9), timeout=5)

        def unreach() -> None:
            socket.create_connection(("203.0.113.9", 80), timeout=5)

        def inuse() -> None:
            a = socket.create_server(("192.0.2.2", 7100))
            try:
                socket.create_server(("192.0.2.2", 7100))
            finally:
                a.close()

        def notavail() -> None:
            socket.socket().bind(("198.51.100.1", 0))

        ours = [_errno_of(f) for f in (refused, unreach, inuse, notavail)]
    assert kernel == [errno.ECONNREFUSED, errno.ENETUNREACH, errno.EADDRINUSE,
                      errno.EADDRNOTAVAIL]
    assert ours == kernel
    # EPIPE after the peer's reset is reported like the kernel does (ECONNRESET then EPIPE)
    srv = _kernel_python(ns, (
        "import socket,struct\n"
        "s=socket.create_server(('192.0.2.1',7003)); c,_=s.accept()\n"
        "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii',1,0)); c.close()\n"))
    try:
        with ioth.use(stack):
            sock = None
            for _ in range(50):
                try:
                    sock = socket.create_connection(("192.0.2.1", 7003), timeout=5)
                    break
                except ConnectionRefusedError:
                    time.sleep(0.1)
            assert sock is not None
            srv.wait(10)
            errs = set()
            for _ in range(50):
                try:
                    sock.sendall(b"x" * 1000)
                    time.sleep(0.02)
                except OSError as exc:
                    errs.add(exc.errno)
                    if exc.errno == errno.EPIPE:
                        break
            assert errs & {errno.ECONNRESET, errno.EPIPE}
            sock.close()
    finally:
        stop_process(srv)


def test_gateway_kernel_socket_to_ioth_stack(lan: tuple[Netns, ioth.Stack, str]) -> None:
    """A forwarder in this process: a kernel listener on loopback relays to a kernel server
    in the namespace, reached through the ioth stack."""
    ns, stack, _ = lan
    srv = _kernel_python(ns, (
        "import socket\n"
        "s=socket.create_server(('192.0.2.1',7004)); c,_=s.accept()\n"
        "c.sendall(c.makefile('rb').readline().upper()); c.close()\n"))
    front = socket.create_server(("127.0.0.1", 0))  # the kernel side (this namespace)

    def relay(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while d := src.recv(65536):
                dst.sendall(d)
            dst.shutdown(socket.SHUT_WR)

    def gateway() -> None:
        c, _ = front.accept()
        back = None
        for _ in range(50):
            try:
                back = ioth.sockets.socket(stack, socket.AF_INET, socket.SOCK_STREAM)
                back.settimeout(5)
                back.connect(("192.0.2.1", 7004))
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert back is not None
        back.settimeout(None)
        t = threading.Thread(target=relay, args=(back, c))
        t.start()
        relay(c, back)
        t.join(10)
        c.close()
        back.close()

    g = threading.Thread(target=gateway)
    g.start()
    try:
        with socket.create_connection(front.getsockname(), timeout=10) as cli:
            cli.sendall(b"through the gateway\n")
            assert cli.makefile("rb").readline() == b"THROUGH THE GATEWAY\n"
        g.join(10)
    finally:
        front.close()
        stop_process(srv)


def test_names_from_dnsmasq_over_the_stack(lan: tuple[Netns, ioth.Stack, str],
                                           tmp_path: Path) -> None:
    require_tools("dnsmasq")
    ns, stack, _ = lan
    dns = ns.popen(["dnsmasq", "-k", "-u", "root", "--no-resolv", "--no-hosts",
                    "--bind-interfaces", "--listen-address=192.0.2.1",
                    f"--pid-file={tmp_path / 'dnsmasq.pid'}",
                    "--address=/www.ioth.test/192.0.2.77",
                    "--host-record=v6.ioth.test,2001:db8::77"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stack.config("dns=192.0.2.1")
        with ioth.use(stack):
            addr = ""
            for _ in range(40):  # dnsmasq needs a moment to bind
                try:
                    addr = socket.gethostbyname("www.ioth.test")
                    break
                except socket.gaierror:
                    time.sleep(0.1)
            assert addr == "192.0.2.77"
            infos = socket.getaddrinfo("v6.ioth.test", 80, socket.AF_INET6, socket.SOCK_STREAM)
            assert infos[0][4][:2] == ("2001:db8::77", 80)
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo("missing.ioth.test", 80)
        assert ioth.sockets.resolver_for(stack).dns_queries >= 3
    finally:
        stop_process(dns)

"""TCP sockets with real descriptors: readiness of connects and accepts, data, EOF, resets,
kernel errnos, makefile/sendfile, a descriptor handed to a child process."""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ioth.sockets import StreamSocket
from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, loopback_pair, network


def test_connect_accept_echo_and_eof() -> None:
    with lone() as s:
        srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        assert isinstance(srv, socket.socket) and isinstance(srv, StreamSocket)
        srv.bind(("127.0.0.1", 8080))
        srv.listen(5)
        assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert select.select([srv], [], [], 0)[0] == []
        cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        cli.settimeout(5)
        cli.connect(("127.0.0.1", 8080))
        assert select.select([srv], [], [], 5)[0] == [srv]
        conn, addr = srv.accept()
        assert addr == cli.getsockname() and conn.getpeername() == addr
        assert cli.getpeername() == ("127.0.0.1", 8080)
        payload = os.urandom(300_000)
        cli.sendall(payload)
        conn.settimeout(5)
        got = bytearray()
        while len(got) < len(payload):
            got += conn.recv(65536)
        assert got == payload
        cli.shutdown(socket.SHUT_WR)
        assert select.select([conn], [], [], 5)[0] == [conn]  # EOF is readable
        assert conn.recv(10) == b""  # our FIN
        conn.sendall(b"bye")
        conn.close()
        assert cli.recv(10) == b"bye" and cli.recv(10) == b""
        cli.close()
        srv.close()


def test_nonblocking_connect_readiness_and_so_error() -> None:
    with lone() as s:
        srv = isocket(s, socket.AF_INET6, socket.SOCK_STREAM)
        srv.bind(("::1", 0))
        srv.listen()
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()
        cli = isocket(s, socket.AF_INET6, socket.SOCK_STREAM)
        cli.setblocking(False)
        assert cli.connect_ex(srv.getsockname()) == errno.EINPROGRESS
        with selectors.DefaultSelector() as sel:
            sel.register(cli, selectors.EVENT_WRITE)
            assert len(sel.select(5)) == 1
        assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        conn, _ = srv.accept()
        cli.send(b"x")
        conn.settimeout(5)
        assert conn.recv(1) == b"x"
        # refused, non-blocking: writable, then SO_ERROR says ECONNREFUSED
        bad = isocket(s, socket.AF_INET6, socket.SOCK_STREAM)
        bad.setblocking(False)
        rc = bad.connect_ex(("::1", 9))
        if rc == errno.EINPROGRESS:
            assert select.select([], [bad], [], 5)[1] == [bad]
            rc = bad.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert rc == errno.ECONNREFUSED
        for x in (bad, conn, cli, srv):
            x.close()


def test_errors_match_the_kernel(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, _b):
        tcp = getattr(a.core, "tcp")  # noqa: B009 (attribute the TCP hook adds)
        tcp.policy = tcp.policy.replace(syn_retries=1, initial_rto=0.2)
        s1 = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        s1.bind(("192.0.2.1", 7000))
        s1.listen()
        s2 = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(OSError) as exc:
            s2.bind(("", 7000))
        assert exc.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as exc:
            s2.bind(("198.51.100.7", 7001))
        assert exc.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(ConnectionRefusedError):
            s2.connect(("192.0.2.2", 80))  # b answers RST
        s3 = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(OSError) as exc:
            s3.connect(("198.51.100.7", 80))
        assert exc.value.errno == errno.ENETUNREACH
        s4 = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        assert s4.connect_ex(("192.0.2.99", 80)) == errno.ETIMEDOUT  # nobody answers ARP/SYN
        s5 = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        s5.settimeout(0.1)
        with pytest.raises(TimeoutError):
            s5.connect(("192.0.2.99", 80))
        for x in (s1, s2, s3, s4, s5):
            x.close()


def test_reset_and_epipe() -> None:
    with lone() as s:
        srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()  # linger 0: RST
        assert select.select([cli], [], [], 5)[0] == [cli]  # the error makes it readable
        with pytest.raises(ConnectionResetError):
            while cli.recv(10):
                pass
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                cli.sendall(b"x" * 1000)
        cli.close()
        srv.close()


def test_makefile_sendfile_and_threads(tmp_path: Path) -> None:
    with lone() as s:
        srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        blob = tmp_path / "blob"
        blob.write_bytes(os.urandom(200_000))

        def serve() -> None:
            conn, _ = srv.accept()
            with conn, conn.makefile("rb") as f:
                line = f.readline()
                assert line == b"GET\n"
                with blob.open("rb") as src:
                    conn.sendfile(src)

        t = threading.Thread(target=serve)
        t.start()
        cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        with cli.makefile("rwb") as f:
            f.write(b"GET\n")
            f.flush()
            assert f.read() == blob.read_bytes()
        t.join(5)
        cli.close()
        srv.close()


def test_descriptor_handed_to_a_child_process() -> None:
    with lone() as s:
        srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        fd = conn.fileno()
        cli.sendall(b"hello")
        child = subprocess.run(
            [sys.executable, "-c",
             f"import os; d = os.read({fd}, 5); os.write({fd}, d[::-1] + b'!')"],
            pass_fds=[fd], timeout=20, check=True)
        assert child.returncode == 0
        got = b""
        while len(got) < 6:
            got += cli.recv(10)
        assert got == b"olleh!"
        conn.close()
        cli.close()
        srv.close()


def test_buffer_and_timeout_options() -> None:
    with lone() as s:
        srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 16384  # doubled (Linux)
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cli.connect(srv.getsockname())
        assert isinstance(cli, StreamSocket) and cli._h is not None
        conn = cli._h.conn
        assert conn.policy.recv_buffer == 16384 and conn.policy.send_buffer == 16384
        assert conn.nodelay and cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
        with pytest.raises(BlockingIOError):  # what the kernel gives on SO_RCVTIMEO expiry
            cli.recv(10)
        peer, _ = srv.accept()
        peer.sendall(b"z" * 100_000)  # more than the small window: flows as the app reads
        got = 0
        cli.settimeout(5)
        while got < 100_000:
            got += len(cli.recv(65536))
        for x in (peer, cli, srv):
            x.close()


def test_unconnected_socket_errors_match_a_kernel_socket() -> None:
    def errnos(s: socket.socket) -> list[int]:
        out = []
        for call in (lambda: s.send(b"x"), lambda: s.recv(1), s.getpeername,
                     lambda: s.shutdown(socket.SHUT_RDWR), lambda: s.sendall(b"x"),
                     lambda: s.accept()):
            try:
                call()
                out.append(0)
            except OSError as exc:
                out.append(exc.errno or -1)
        return out

    with lone() as st, socket.socket() as kernel, \
            isocket(st, socket.AF_INET, socket.SOCK_STREAM) as ours:
        assert errnos(ours) == errnos(kernel)
        assert ours.getsockname() == kernel.getsockname() == ("0.0.0.0", 0)


def test_no_descriptor_leaks_across_stacks() -> None:
    import gc

    import ioth

    def nfds() -> int:
        return len(os.listdir("/proc/self/fd"))

    base = 0
    for i in range(12):
        st = ioth.Stack(own_thread=True)
        u = isocket(st, socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 9))
        lst = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 80))
        lst.listen()
        c = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        c.connect(("127.0.0.1", 80))  # never accepted by the application
        st.close()
        del st, u, lst, c
        gc.collect()
        if i == 3:
            base = nfds()
    assert nfds() <= base


def test_shut_rd_does_not_reset_the_connection() -> None:
    with lone() as s:
        srv, cli, conn = loopback_pair(s)
        cli.shutdown(socket.SHUT_RD)
        assert cli.recv(10) == b""
        conn.sendall(b"ignored")  # like Linux: no reset, the sender is not told
        cli.sendall(b"still writing")
        assert conn.recv(100) == b"still writing"
        cli.shutdown(socket.SHUT_RDWR)
        assert conn.recv(100) == b""
        for x in (conn, cli, srv):
            x.close()


def test_closing_the_stack_aborts_a_blocked_connect(tmp_path: Path) -> None:
    with network(tmp_path, 1) as (a,):
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        result: list[int] = []

        def connect() -> None:
            try:
                c.connect(("192.0.2.50", 80))  # nobody there: the SYN goes unanswered
                result.append(0)
            except OSError as exc:
                result.append(exc.errno or -1)

        t = threading.Thread(target=connect)
        t.start()
        t.join(0.3)
        a.close()
        t.join(5)
        assert result == [errno.ECONNABORTED]


def test_concurrent_blocking_connects_get_their_own_connections(tmp_path: Path) -> None:
    """Threads connecting at once (some serving the plugs inline, the others waiting for the
    engine) each get the connection they made: the shared rendezvous pairs the right ends."""
    with network(tmp_path, 2) as (a, b):
        srv = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.1", 7100))
        srv.listen(64)
        total = 6 * 5
        served: list[int] = []

        def server() -> None:
            srv.settimeout(10)
            for _ in range(total):
                conn, peer = srv.accept()
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(100)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(data + str(peer[1]).encode())
                conn.close()
                served.append(1)

        errors: list[str] = []

        def client(k: int) -> None:
            for j in range(5):
                c = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
                c.settimeout(10)
                c.connect(("192.0.2.1", 7100))
                token = f"{k}-{j}\n".encode()
                c.sendall(token)
                got = b""
                while True:
                    chunk = c.recv(100)
                    if not chunk:
                        break
                    got += chunk
                port = c.getsockname()[1]
                if got != token + str(port).encode():
                    errors.append(f"{token!r}: {got!r} (local port {port})")
                c.close()

        st = threading.Thread(target=server)
        st.start()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        st.join(30)
        srv.close()
        assert errors == []
        assert len(served) == total

"""Per-socket TCP policy: TCP_CONGESTION and TCP_KEEPIDLE/INTVL/CNT override the stack's."""

from __future__ import annotations

import errno
import socket
import tempfile

import pytest

import ioth
from ioth.net.switch.server import SwitchServer


def test_congestion_and_keepalive_options_per_socket() -> None:
    with tempfile.TemporaryDirectory() as d:
        switch = SwitchServer(f"{d}/sw").start()
        try:
            with ioth.Stack(f"vde://{switch.directory}", "eth,ip=192.0.2.1/24") as a, \
                    ioth.Stack(f"vde://{switch.directory}",
                               "eth,ip=192.0.2.2/24,tcp_cc=cubic") as b:
                server = a.socket(socket.AF_INET, socket.SOCK_STREAM)
                server.bind(("192.0.2.1", 9100))
                server.listen()
                c = b.socket(socket.AF_INET, socket.SOCK_STREAM)
                assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16) == \
                    b"cubic".ljust(16, b"\0")
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"newreno")
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
                assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 75
                with pytest.raises(OSError) as exc:
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"vegas")
                assert exc.value.errno == errno.ENOENT  # as Linux for an unknown algorithm
                c.settimeout(10)
                c.connect(("192.0.2.1", 9100))
                conn, _ = server.accept()
                rows = [r for r in b.tcp_connections() if r.get("state") == "ESTABLISHED"]
                assert rows and rows[0]["cc"] == "newreno"
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")  # live switch
                rows = [r for r in b.tcp_connections() if r.get("state") == "ESTABLISHED"]
                assert rows[0]["cc"] == "cubic"
                c.sendall(b"x" * 1000)
                assert len(conn.recv(2000)) > 0
                for s in (c, conn, server):
                    s.close()
        finally:
            switch.close()

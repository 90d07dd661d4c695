"""benchmarks/bare_wire.py (the floor of a Python switch, ``BENCH_TCP_SWITCH=bare``): two ioth
stacks plugged into it with ``vde://`` exchange TCP data through it both ways."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from ioth import Stack
from ioth.sockets import socket as isocket
from tests.sockets.helpers import _tcp_ready

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bare_wire.py")


def test_two_stacks_talk_tcp_through_the_bare_wire(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "sw")
    wire = subprocess.Popen([sys.executable, PATH, d])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(d, "ctl")):
            assert wire.poll() is None, "bare_wire exited"
            assert time.monotonic() < deadline, "bare_wire made no control socket"
            time.sleep(0.02)
        with Stack(f"vde://{d}", "eth,ip=198.51.100.1/24") as a, \
                Stack(f"vde://{d}", "eth,ip=198.51.100.2/24") as b:
            _tcp_ready(a)
            _tcp_ready(b)
            srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
            srv.bind(("198.51.100.2", 7000))
            srv.listen(4)
            got: list[bytes] = []

            def serve() -> None:
                conn, _ = srv.accept()
                with conn:
                    data = b""
                    while len(data) < 100_000:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    got.append(data)
                    conn.sendall(data[::-1][:1000])

            t = threading.Thread(target=serve)
            t.start()
            cli = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            cli.settimeout(10)
            cli.connect(("198.51.100.2", 7000))
            payload = os.urandom(100_000)
            cli.sendall(payload)
            back = b""
            while len(back) < 1000:
                chunk = cli.recv(4096)
                assert chunk, "connection closed early"
                back += chunk
            cli.close()
            t.join(10)
            srv.close()
            assert got == [payload]
            assert back == payload[::-1][:1000]
    finally:
        wire.terminate()
        wire.wait(5)

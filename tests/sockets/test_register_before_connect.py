"""A selector registration made before ``connect`` keeps working, as with a kernel socket."""

from __future__ import annotations

import selectors
import socket
import tempfile

import ioth
from ioth.net.switch.server import SwitchServer


def test_selector_registered_before_nonblocking_connect() -> None:
    with tempfile.TemporaryDirectory() as d:
        switch = SwitchServer(f"{d}/sw").start()
        try:
            with ioth.Stack(f"vde://{switch.directory}", "eth,ip=192.0.2.1/24") as a, \
                    ioth.Stack(f"vde://{switch.directory}", "eth,ip=192.0.2.2/24") as b:
                server = a.socket(socket.AF_INET, socket.SOCK_STREAM)
                server.bind(("192.0.2.1", 9000))
                server.listen()
                client = b.socket(socket.AF_INET, socket.SOCK_STREAM)
                client.setblocking(False)
                sel = selectors.DefaultSelector()
                sel.register(client, selectors.EVENT_WRITE)  # before connect
                assert client.connect_ex(("192.0.2.1", 9000)) in (0, 115)  # EINPROGRESS
                events = sel.select(10)
                assert events and events[0][1] & selectors.EVENT_WRITE
                assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                conn, _ = server.accept()
                sel.modify(client, selectors.EVENT_READ)
                conn.sendall(b"ping")
                events = sel.select(10)
                assert events and events[0][1] & selectors.EVENT_READ
                assert client.recv(10) == b"ping"
                sel.close()
                for s in (client, conn, server):
                    s.close()
        finally:
            switch.close()

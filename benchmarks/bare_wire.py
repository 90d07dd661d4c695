"""The floor of a Python switch: a bare two-port VDE wire (benchmark instrument, not a product).

It speaks the VDE switch protocol (a control socket ``DIR/ctl``, one datagram socket per port,
like ``ioth switch`` and Debian's ``vde_switch``) and forwards every frame of one port to the
other port with the least Python a forwarding loop can have: one ``epoll.poll``, one
``os.read`` and one ``os.write`` per frame, no MAC learning, no counters, no lock, no thread
(the main thread does everything). ``bench_tcp.py`` runs it in place of a switch
(``BENCH_TCP_SWITCH=bare``) to tell what part of the ioth switch's cost per hop is its own and
what part any Python forwarding loop pays.

Usage: ``python3 benchmarks/bare_wire.py DIR`` (exits on SIGTERM).
"""
from __future__ import annotations

import os
import select
import signal
import socket
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
sys.path.insert(0, SRC)

from ioth.net.plugs.vde import (  # noqa: E402
    REQ_HEADER,
    SOCKADDR_UN_LEN,
    SWITCH_MAGIC,
    pack_sockaddr_un,
)

REQ_MIN = REQ_HEADER.size + SOCKADDR_UN_LEN
MAX_READ = 65536 + 18


def open_port(ctl: socket.socket, d: str, n: int) -> tuple[socket.socket, socket.socket]:
    """Accept one client on the control socket; (control connection, data socket)."""
    conn, _ = ctl.accept()
    req = b""
    while len(req) < REQ_MIN:
        chunk = conn.recv(256)
        if not chunk:
            raise SystemExit("bare_wire: a client left before its request")
        req += chunk
    magic, version, _ = REQ_HEADER.unpack_from(req)
    if magic != SWITCH_MAGIC or version != 3:
        raise SystemExit(f"bare_wire: bad request magic {magic:#x} version {version}")
    client = os.fsdecode(req[14:REQ_MIN].split(b"\0", 1)[0])
    data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    data.connect(client)
    path = os.path.join(d, f"{n:03d}.data")
    data.bind(path)
    conn.sendall(pack_sockaddr_un(path))
    return conn, data


def main() -> None:
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(os.path.join(d, "ctl"))
    ctl.listen(4)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ports = [open_port(ctl, d, n) for n in (1, 2)]  # (the control connections stay open)
    a, b = ports[0][1], ports[1][1]
    fa, fb = a.fileno(), b.fileno()
    other = {fa: fb, fb: fa}
    ep = select.epoll()
    ep.register(fa, select.EPOLLIN)
    ep.register(fb, select.EPOLLIN)
    wait, read, write = ep.poll, os.read, os.write
    while True:
        for fd, _ in wait(None, 8):
            try:
                write(other[fd], read(fd, MAX_READ))
            except OSError:
                pass


if __name__ == "__main__":
    main()

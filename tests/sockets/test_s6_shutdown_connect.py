"""shutdown() of a socket whose connect is under way (SYN_SENT: the peer never answers),
as Linux's inet_shutdown: the attempt is dropped, a connect blocked in another thread fails
with ECONNRESET at once, and the socket is unconnected (a second shutdown: ENOTCONN); in each
descriptor mode (unpaired, paired) and for a non-blocking connect (SO_ERROR)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import ioth.sockets.stream as stream
from ioth.sockets import socket as isocket
from tests.sockets.helpers import network

SILENT = ("192.0.2.99", 9)  # (nobody answers its ARP: the SYN never leaves)


@pytest.mark.parametrize("lazy", [1, 0])
@pytest.mark.parametrize("how", [socket.SHUT_RDWR, socket.SHUT_WR])
def test_shutdown_fails_a_blocked_connect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          lazy: int, how: int) -> None:
    monkeypatch.setattr(stream, "LAZY_PAIR", lazy)
    with network(tmp_path, 1) as (st,):
        c = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(10)
        box: list[Any] = []

        def go() -> None:
            try:
                c.connect(SILENT)
                box.append(0)
            except OSError as exc:
                box.append(exc.errno)

        t = threading.Thread(target=go, daemon=True)
        t.start()
        time.sleep(0.2)
        c.shutdown(how)
        t.join(3)
        assert box == [errno.ECONNRESET]
        with pytest.raises(OSError) as got:
            c.shutdown(how)
        assert got.value.errno == errno.ENOTCONN
        c.close()


def test_shutdown_of_a_nonblocking_connect(tmp_path: Path) -> None:
    with network(tmp_path, 1) as (st,):
        c = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        assert c.connect_ex(SILENT) == errno.EINPROGRESS
        c.shutdown(socket.SHUT_RDWR)
        assert c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET
        c.close()

"""Adversarial review (session 5): nothing is held back ("fewer flush passes").

Session 5 trims the runtime's and the socket layer's flush passes.  A skipped flush leaves a
frame in an interface's transmit queue (or the TCP layer's outbox) until something else
flushes: a timer, the next wake-up; the exchange still completes, only later, so no functional
test notices.  These checks do, deterministically:

* whenever another thread can take a stack's lock, the stack has no frame waiting in an
  interface's ``txq`` or in ``tcp.outbox`` (every path that queues frames flushes them before
  it lets go of the lock): a watcher thread samples both stacks under their locks all through
  a cps run (paired and unpaired sockets);
* on the unpaired path (the default), when ``sendall`` returns the request is out of the
  send buffer (no unsent byte), and when ``close`` returns the FIN has been sent.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.sockets import socket as isocket
from ioth.sockets import stream
from tests.sockets.helpers import network


@pytest.mark.parametrize("lazy", [1, 0], ids=["unpaired", "paired"])
def test_no_frame_waits_while_the_lock_is_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               lazy: int) -> None:
    monkeypatch.setattr(stream, "LAZY_PAIR", lazy)
    with network(tmp_path) as (a, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.2", 80))
        srv.listen()

        def serve() -> None:
            while True:
                try:
                    c, _ = srv.accept()
                except OSError:
                    return
                c.settimeout(5)
                c.sendall(c.recv(64))
                c.close()

        threading.Thread(target=serve, daemon=True).start()
        stop = threading.Event()
        waiting: list[Any] = []
        samples = [0]

        def watch() -> None:
            while not stop.is_set():
                for st in (a, b):
                    with st.lock:
                        samples[0] += 1
                        queued = [len(i.txq) for i in st.core.ifaces.values()]
                        if any(queued) or st.core.tcp.outbox:
                            waiting.append((st is a, queued, len(st.core.tcp.outbox)))
                time.sleep(0)

        watcher = threading.Thread(target=watch)
        watcher.start()
        held: list[Any] = []
        try:
            for i in range(300):
                c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
                c.settimeout(5)
                c.connect(("192.0.2.2", 80))
                c.sendall(bytes([i % 256]) * 64)
                conn = c._h.conn if c._h is not None else None
                if lazy and conn is not None:
                    held += _unsent(a, conn, "request")
                got = b""
                while len(got) < 64:
                    chunk = c.recv(64)
                    assert chunk
                    got += chunk
                c.close()
                if lazy and conn is not None:
                    held += _fin_unsent(a, conn)
        finally:
            stop.set()
            watcher.join(5)
            srv.close()
        assert samples[0] > 100
        assert not waiting, waiting[:5]
        assert not held, held[:5]


def _unsent(st: ioth.Stack, conn: Any, what: str) -> list[Any]:
    with st.lock:
        unsent = conn.send_queue - min(conn.snd_nxt - conn.snd_una, conn.send_queue)
    return [(what, unsent)] if unsent else []


def _fin_unsent(st: ioth.Stack, conn: Any) -> list[Any]:
    with st.lock:
        if conn.state.name == "CLOSED" or not conn._fin_queued:
            return []
        return [("fin", conn.state.name)] if conn.snd_nxt <= conn._fin_seq else []

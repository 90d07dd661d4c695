"""Bytes written through the descriptor are never overtaken by a later direct send."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

from tests.sockets.helpers import lone, loopback_pair


def test_mark_dirty_waits_for_an_engine_drain_in_progress() -> None:
    """The race behind a reordering seen in `ioth demo`: the engine thread has drained the
    engine end and is about to clear ``dirty`` (stack lock held) while the application writes
    more bytes through its descriptor.  Marking them must wait for the lock, so ``dirty`` is
    set after the engine clears it; otherwise the next direct send overtakes those bytes."""
    with lone() as s:
        srv, cli, conn = loopback_pair(s, 7101)
        h = cli._h  # type: ignore[attr-defined]
        assert h is not None
        with s.lock:  # the engine, mid-drain: dirty still set from an earlier write
            h.dirty = True
            marker = threading.Thread(target=cli._mark_dirty)  # type: ignore[attr-defined]
            marker.start()
            marker.join(0.3)
            assert marker.is_alive(), "_mark_dirty returned without taking the stack lock"
            h.dirty = False  # the engine found the engine end empty
        marker.join(5)
        assert h.dirty, "bytes written after the engine's drain are not marked"
        for x in (cli, conn, srv):
            x.close()


def test_sendall_mix_of_descriptor_and_direct_sends_keeps_order() -> None:
    """Many sendall calls, some forced through the descriptor (send buffer full), arrive in
    order (SHA-256 of the stream)."""
    with lone() as s:
        srv, cli, conn = loopback_pair(s, 7102, timeout=10)
        digest_rx = hashlib.sha256()
        got = [0]

        def sink() -> None:
            buf = bytearray(1 << 16)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    return
                digest_rx.update(buf[:n])
                got[0] += n

        th = threading.Thread(target=sink)
        th.start()
        digest_tx = hashlib.sha256()
        total = 0
        for _ in range(120):
            chunk = os.urandom(50_000)
            cli.sendall(chunk)
            digest_tx.update(chunk)
            total += len(chunk)
        cli.shutdown(socket.SHUT_WR)
        th.join(30)
        assert not th.is_alive()
        assert got[0] == total
        assert digest_rx.hexdigest() == digest_tx.hexdigest()
        for x in (cli, conn, srv):
            x.close()

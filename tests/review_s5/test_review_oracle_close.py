"""Adversarial review (session 5): how connections end, the Linux kernel as the oracle.

The machinery of test_review_oracle (a kernel peer in a namespace; the device under test an
ioth stack on a TAP, or the kernel of a second namespace) with the closing paths the session's
close/crossing-FIN work touches: a half-closed DUT that goes on receiving, data arriving after
the DUT closed, a close with unread data, an abortive close (SO_LINGER 0), both ends closing
with data still unread on the other side.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import (
    DUT_IP,
    PEER_IP,
    Scenario,
    _bound,
    _close_all,
    _conn,
    _try,
    ioth_matches_the_kernel,
)
from tests.support.referee import (
    Side,
    wait_all_acked,
    wait_kernel_state,
    wait_received,
)

pytestmark = pytest.mark.interop
LINGER0 = struct.pack("ii", 1, 0)


def _read_all(s: Any, limit: int = 1 << 22) -> Any:
    buf = bytearray()
    while len(buf) < limit:
        try:
            chunk = s.recv(65536)
        except OSError as exc:
            return (bytes(buf), type(exc).__name__)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def half_closed_dut_keeps_receiving(peer: Side, dut: Side) -> list[Any]:
    """The DUT shuts down its side at once; the peer sees EOF, then sends 300 kB and closes;
    the DUT reads all of it, then EOF; its sends fail with EPIPE."""
    lst, k, d = _conn(peer, dut)
    d.shutdown(socket.SHUT_WR)
    out: list[Any] = [_try(lambda: k.recv(10))]
    blob = bytes(i % 253 for i in range(300_000))
    t = threading.Thread(target=lambda: (k.sendall(blob), k.close()))
    t.start()
    got = _read_all(d)
    t.join(10)
    out += [got == blob, _try(lambda: d.send(b"x"))]
    _close_all(d, lst)
    return out


def data_after_the_dut_closed(peer: Side, dut: Side) -> list[Any]:
    """The DUT closes (FIN); the peer, still open, sends: the DUT answers with a reset, the
    peer's next calls see it."""
    lst, k, d = _conn(peer, dut)
    d.close()
    out: list[Any] = [_try(lambda: k.recv(10))]  # b'': the FIN
    out.append(_try(lambda: k.send(b"late")))
    wait_kernel_state(k, "CLOSED")  # (the DUT's reset)
    out += [_try(lambda: k.recv(10)), _try(lambda: k.send(b"x"))]
    _close_all(k, lst)
    return out


def close_with_unread_data_resets(peer: Side, dut: Side) -> list[Any]:
    """Linux: close() with unread bytes in the receive queue sends a reset, not a FIN."""
    lst, k, d = _conn(peer, dut)
    k.sendall(b"unread")
    wait_all_acked(k)  # (in the DUT's receive queue)
    d.close()
    wait_kernel_state(k, "CLOSED")  # (the DUT's reset)
    out = [_try(lambda: k.recv(10)), _try(lambda: k.recv(10)), _try(lambda: k.send(b"x"))]
    _close_all(k, lst)
    return out


def abortive_close(peer: Side, dut: Side) -> list[Any]:
    """SO_LINGER {1, 0} then close: a reset at once, with data queued or not."""
    out: list[Any] = []
    for queued in (b"", b"pending"):
        lst, k, d = _conn(peer, dut)
        if queued:
            d.sendall(queued)
            wait_received(k, len(queued))
        d.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        d.close()
        wait_kernel_state(k, "CLOSED")  # (the DUT's reset)
        out += [_try(lambda k=k: k.recv(100)), _try(lambda k=k: k.recv(100))]
        _close_all(k, lst)
    return out


def both_close_with_data_in_flight(peer: Side, dut: Side) -> list[Any]:
    """Each end sends 64 bytes and closes at once (cps with a close that does not wait for
    the reply): each side's close happens with the other's bytes unread or in flight; the
    listener is still usable afterwards."""
    lst, k, d = _conn(peer, dut)
    go = threading.Barrier(2)

    def end(s: Any) -> None:
        go.wait(5)
        s.sendall(b"q" * 64)
        s.close()

    ts = [threading.Thread(target=end, args=(s,)) for s in (k, d)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    time.sleep(0.3)
    k2 = peer()
    k2.settimeout(5)
    k2.connect((DUT_IP, lst.getsockname()[1]))
    d2, _ = lst.accept()
    d2.sendall(b"fine")
    out = [_try(lambda: k2.recv(10))]
    _close_all(k2, d2, lst)
    return out


def cps_again_and_again_from_one_bound_port(peer: Side, dut: Side) -> list[Any]:
    """The DUT is the client of the cps exchange from one explicitly bound port (with
    SO_REUSEADDR), 5 times in a row: each time the FINs cross or the client closes last, so
    the 4-tuple sits in TIME-WAIT at one end or both; Linux connects again at once each time
    (its own TIME-WAIT taken over for a bound port with timestamps, the server's reopened by
    a SYN with a newer timestamp)."""
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(8)
    lst.settimeout(5)
    port = lst.getsockname()[1]
    out: list[Any] = []
    cport = 0
    for i in range(5):
        c, cport = _bound(dut, DUT_IP, cport)
        r = _try(lambda c=c: c.connect((PEER_IP, port)))
        out += [r, r is not None or dut.retransmissions(c) == 0]  # (at once: one SYN)
        if r is not None:
            c.close()
            continue
        a, _ = lst.accept()
        c.sendall(bytes([i]) * 64)
        a.sendall(a.recv(64))
        a.close()
        out.append(_try(lambda c=c: c.recv(64)))
        c.close()
        # (the FINs crossed or one end closed last: each end TIME-WAIT or nothing)
        dut.wait_states(_only_time_wait, cport, port, what="TIME-WAIT or nothing")
        peer.wait_states(_only_time_wait, port, cport, what="TIME-WAIT or nothing")
    lst.close()
    return out


def _only_time_wait(states: list[str]) -> bool:
    return all(st == "TIME-WAIT" for st in states)


SCENARIOS = [half_closed_dut_keeps_receiving, data_after_the_dut_closed,
             close_with_unread_data_resets, abortive_close, both_close_with_data_in_flight,
             cps_again_and_again_from_one_bound_port]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_ioth_ends_connections_as_the_kernel(scenario: Scenario) -> None:
    ioth_matches_the_kernel(scenario)

"""A connection reset right after its handshake, before anyone accepts it (review s6,
accept_after_the_peer_left against the kernel): Linux queues the connection when the ACK of
its SYN-ACK comes and the reset finds it in the accept queue, so accept still gives it and
its first read raises ECONNRESET.  When the ACK and the reset arrive in one input batch the
connection never looks ESTABLISHED at the end of the batch; it must be queued all the same.
A reset that comes before the ACK of our SYN ends the half-open connection only."""

from __future__ import annotations

import errno

from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.layer import Listener
from tests.stack.tcp.harness import Link


def _listen_and_connect(link: Link) -> tuple[Listener, TcpConnection]:
    listener = link.b.listen(80)
    client = link.a.connect(link.addr_a, link.addr_b, 80, link.now)
    return listener, client


def test_ack_and_reset_in_one_batch_leave_the_connection_to_accept() -> None:
    link = Link(batch=True)
    listener, client = _listen_and_connect(link)
    link.run_until(lambda: client.state is State.ESTABLISHED)
    assert not listener.accept_queue  # (the handshake's ACK is still on the link)
    client.abort()  # the RST leaves at the same instant: both arrive in one batch
    link.a.flush(client, link.now)
    link.run_until(lambda: not link._events)
    assert len(listener.accept_queue) == 1
    conn = listener.accept()
    assert conn is not None
    assert conn.state is State.CLOSED
    assert conn.error == errno.ECONNRESET
    assert not link.b.connections  # (closed: out of the table all the same)


def test_ack_and_reset_one_after_the_other_also_leave_it_to_accept() -> None:
    link = Link(batch=True)
    listener, client = _listen_and_connect(link)
    link.run_until(lambda: bool(listener.accept_queue))
    client.abort()
    link.a.flush(client, link.now)
    link.run_until(lambda: not link._events)
    conn = listener.accept()
    assert conn is not None and conn.error == errno.ECONNRESET


def test_a_reset_before_the_ack_of_our_syn_ends_the_request_only() -> None:
    link = Link(batch=True)
    listener, client = _listen_and_connect(link)
    held: list[bytes] = []

    def drop_the_handshake_ack(src: bytes, dst: bytes, data: bytes) -> bool:
        if src == link.addr_a and not held:
            held.append(data)  # the client's ACK of the SYN-ACK never arrives
            return False
        return True

    link.run_until(lambda: client.state is State.SYN_SENT and link.sent >= 1)
    link.tap = drop_the_handshake_ack
    link.run_until(lambda: client.state is State.ESTABLISHED)
    link.tap = None
    client.abort()
    link.a.flush(client, link.now)
    link.run_until(lambda: not link._events)
    assert held
    assert not listener.accept_queue
    assert not listener.syn_queue

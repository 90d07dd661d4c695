"""Adversarial review (session 6), second pass: the edges of the first pass's fixes.

SO_LINGER on a non-blocking socket, options an accepted socket takes from its listener
beyond the first pass's, SO_REUSEPORT listener groups when one member closes, the fields of
TCP_INFO a program reads, a blocked connect or accept woken by another thread's shutdown;
the kernel (a second namespace) is the oracle.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, PEER_IP, _conn
from tests.review_s6.oracle import (
    Envs,
    Factory,
    Scenario,
    close_all,
    full_listener,
    params,
    run,
    tryit,
)

pytestmark = pytest.mark.interop
SOL, TCP, IP = socket.SOL_SOCKET, socket.IPPROTO_TCP, socket.IPPROTO_IP
TCP_INFO = getattr(socket, "TCP_INFO", 11)


def _fill(d: Any, limit: int = 8 << 20) -> int:
    """Send without blocking until the buffers are full (the peer does not read)."""
    d.setblocking(False)
    sent = 0
    chunk = b"f" * 65536
    while sent < limit:
        try:
            sent += d.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += d.send(chunk)
            except BlockingIOError:
                break
    return sent


def linger_nonblocking_close(peer: Factory, dut: Factory) -> list[Any]:
    """SO_LINGER {1, 1} on a non-blocking socket with unsent data: Linux's close still
    waits (inet_release takes the linger time whatever O_NONBLOCK says)."""
    lst, k, d = _conn(peer, dut)
    k.setsockopt(SOL, socket.SO_RCVBUF, 4096)
    _fill(d)
    d.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 1))
    t0 = time.monotonic()
    r = tryit(lambda: d.close())
    took = time.monotonic() - t0
    out = [r, "waited" if took > 0.7 else "at once"]
    close_all(k, lst)
    return out


def linger_timeout_then_data(peer: Factory, dut: Factory) -> list[Any]:
    """SO_LINGER {1, 1}, close with unsent data returns after the linger time; the data
    is not thrown away: a peer reading afterwards gets all of it, then EOF."""
    lst, k, d = _conn(peer, dut)
    blob = bytes(i % 239 for i in range(1 << 20))
    k.setsockopt(SOL, socket.SO_RCVBUF, 65536)
    d.settimeout(5)
    sent = 0
    d.setblocking(False)
    while sent < len(blob):
        try:
            sent += d.send(blob[sent:sent + 65536])
        except BlockingIOError:
            break
    d.setblocking(True)
    d.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 1))
    d.close()
    got = bytearray()
    k.settimeout(5)
    while True:
        try:
            chunk = k.recv(1 << 16)
        except OSError as exc:
            got += b"<%s>" % type(exc).__name__.encode()
            break
        if not chunk:
            break
        got += chunk
    out = [bytes(got) == blob[:sent]]
    close_all(k, lst)
    return out


def accepted_inherits_more(peer: Factory, dut: Factory) -> list[Any]:
    """Linux clones the listener: SO_LINGER, TCP_KEEPINTVL/CNT, IP_TOS, IP_TTL, TCP_MAXSEG
    (the user's), SO_RCVTIMEO and TCP_USER_TIMEOUT arrive on the accepted socket."""
    lst = dut()
    sets = [(SOL, socket.SO_LINGER, struct.pack("ii", 1, 3)), (TCP, socket.TCP_KEEPINTVL, 7),
            (TCP, socket.TCP_KEEPCNT, 4), (IP, socket.IP_TOS, 0x20), (IP, socket.IP_TTL, 33),
            (TCP, socket.TCP_MAXSEG, 1200),
            (SOL, socket.SO_RCVTIMEO, struct.pack("@ll", 2, 0)),
            (TCP, socket.TCP_USER_TIMEOUT, 1500)]
    out: list[Any] = [tryit(lambda lv=lv, o=o, v=v: lst.setsockopt(lv, o, v))
                      for lv, o, v in sets]
    lst.bind((DUT_IP, 0))
    lst.listen(2)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    for lv, o, v in sets:
        size = len(v) if isinstance(v, bytes) else 0
        out.append(tryit(lambda lv=lv, o=o, size=size: d.getsockopt(lv, o, size) if size
                         else d.getsockopt(lv, o)))
    close_all(d, k, lst)
    return out


def reuseport_member_closes(peer: Factory, dut: Factory) -> list[Any]:
    """Two SO_REUSEPORT listeners; 12 connections queue on them; one listener closes
    without accepting: its queued connections are reset (Linux, no migration), the other
    listener's are accepted, and new connections all go to the one left."""
    a = dut()
    a.setsockopt(SOL, socket.SO_REUSEPORT, 1)
    a.bind((DUT_IP, 0))
    a.listen(32)
    b = dut()
    b.setsockopt(SOL, socket.SO_REUSEPORT, 1)
    addr = a.getsockname()
    b.bind(addr)
    b.listen(32)
    ks = []
    for _ in range(12):
        k = peer()
        k.settimeout(5)
        k.connect(addr)
        ks.append(k)
    time.sleep(0.3)
    a.close()
    time.sleep(0.3)
    b.setblocking(False)
    accepted = []
    while True:
        try:
            c, addr = b.accept()
        except BlockingIOError:
            break
        accepted.append(addr)
        c.close()
    reset = 0
    for k in ks:
        k.settimeout(1)
        r = tryit(lambda k=k: k.recv(1))
        if r == "ECONNRESET":
            reset += 1
    out: list[Any] = [len(accepted) + reset == 12, 0 < len(accepted) < 12]
    k2 = peer()
    k2.settimeout(3)
    out.append(tryit(lambda: k2.connect(addr)))
    b.settimeout(3)
    got = tryit(lambda: b.accept())
    out.append(type(got).__name__)
    if isinstance(got, tuple):
        got[0].close()
    close_all(k2, b, *ks)
    return out


def tcp_info_fields(peer: Factory, dut: Factory) -> list[Any]:
    """struct tcp_info after a 100 kB exchange on an idle connection: state, ca_state,
    retransmits, options (timestamps, SACK, window scaling), snd_mss, rcv_mss, unacked,
    rtt (non-zero), total_retrans, bytes_acked and bytes_received (Linux 4.1+)."""
    lst, k, d = _conn(peer, dut)
    d.sendall(b"a" * 100_000)
    got = 0
    while got < 100_000:
        got += len(k.recv(1 << 16))
    k.sendall(b"b" * 5000)
    rec = 0
    while rec < 5000:
        rec += len(d.recv(1 << 16))
    time.sleep(0.3)
    raw = d.getsockopt(TCP, TCP_INFO, 232)
    state, ca_state, retransmits, _probes, _backoff, options = struct.unpack_from("6B", raw)
    snd_mss, rcv_mss, unacked = struct.unpack_from("3I", raw, 16)
    rtt, = struct.unpack_from("I", raw, 68)
    total_retrans, = struct.unpack_from("I", raw, 100)
    bytes_acked, bytes_received = struct.unpack_from("QQ", raw, 120)
    out = [len(raw), state, ca_state, retransmits, options & 0x7, snd_mss, rcv_mss, unacked,
           rtt > 0, total_retrans, bytes_acked, bytes_received]
    close_all(d, k, lst)
    return out


def tcp_info_states(peer: Factory, dut: Factory) -> list[Any]:
    """tcpi_state through a connection's life: SYN_SENT (2) while connecting, CLOSE_WAIT
    (8) after the peer's FIN, LAST_ACK (9) after our FIN, FIN_WAIT2 (5) after our FIN is
    acknowledged, TIME_WAIT?  (Linux reports the socket's state; a closed one is 7)."""
    out: list[Any] = []
    lst, fill = full_listener(peer, PEER_IP)
    c = dut()
    c.setblocking(False)
    c.connect_ex(lst.getsockname())
    time.sleep(0.1)
    out.append(("connecting", c.getsockopt(TCP, TCP_INFO, 8)[0]))
    close_all(c, *fill, lst)
    lst2, k, d = _conn(peer, dut)
    k.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    out.append(("peer fin", d.getsockopt(TCP, TCP_INFO, 8)[0]))
    d.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    out.append(("both fin", d.getsockopt(TCP, TCP_INFO, 8)[0]))
    close_all(d, k, lst2)
    lst3, k, d = _conn(peer, dut)
    d.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    out.append(("our fin acked", d.getsockopt(TCP, TCP_INFO, 8)[0]))
    k.close()
    time.sleep(0.2)
    out.append(("then peer's", d.getsockopt(TCP, TCP_INFO, 8)[0]))
    close_all(d, lst3)
    return out


def shutdown_wakes_a_blocked_connect(peer: Factory, dut: Factory) -> list[Any]:
    """A thread blocked in connect (the peer drops the SYN); another thread's
    shutdown(SHUT_RDWR): Linux aborts the attempt, the connect fails at once."""
    lst, fill = full_listener(peer, PEER_IP)
    c = dut()
    c.settimeout(4)
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(tryit(lambda: c.connect(lst.getsockname()))),
                         daemon=True)
    t.start()
    time.sleep(0.3)
    out: list[Any] = [tryit(lambda: c.shutdown(socket.SHUT_RDWR))]
    t.join(1.5)
    out.append(box[0] if box else "still blocked")
    t.join(4)
    close_all(c, *fill, lst)
    return out


def sndbuf_bounds_a_nonblocking_sender(peer: Factory, dut: Factory) -> list[Any]:
    """SO_SNDBUF 4096 set before connect, the peer (4 kB receive buffer) not reading: a
    non-blocking sender gets EAGAIN after a few tens of kB (Linux: ~48 kB: the peer's
    window plus the send buffer), the backpressure event loops rely on; on an accepted
    socket (the option set on the listener) likewise (~13 kB)."""
    lst = peer()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lst.bind((PEER_IP, 0))
    lst.listen(2)
    lst.settimeout(5)
    c = dut()
    c.setsockopt(SOL, socket.SO_SNDBUF, 4096)
    c.settimeout(5)
    c.connect(lst.getsockname())
    a, _ = lst.accept()
    out: list[Any] = [_fill(c) < 256 << 10]
    close_all(c, a, lst)
    dl = dut()
    dl.setsockopt(SOL, socket.SO_SNDBUF, 4096)
    dl.bind((DUT_IP, 0))
    dl.listen(2)
    k = peer()
    k.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    k.settimeout(5)
    k.connect(dl.getsockname())
    dl.settimeout(5)
    d, _ = dl.accept()
    out.append(_fill(d) < 256 << 10)
    close_all(d, k, dl)
    return out


def rcvbuf_bounds_the_peer(peer: Factory, dut: Factory) -> list[Any]:
    """SO_RCVBUF 4096 on the listener, the accepted socket polled but not read: the peer's
    non-blocking sends stop after a few tens of kB (Linux ~13 kB: the window closes)."""
    lst = dut()
    lst.setsockopt(SOL, socket.SO_RCVBUF, 4096)
    lst.bind((DUT_IP, 0))
    lst.listen(2)
    k = peer()
    k.setsockopt(SOL, socket.SO_SNDBUF, 4096)
    k.settimeout(5)
    k.connect(lst.getsockname())
    d, _ = lst.accept()
    d.settimeout(5)
    select.select([d], [], [], 0)  # (the descriptor in use, as by any event loop)
    out = [_fill(k) < 256 << 10]
    close_all(d, k, lst)
    return out


SCENARIOS: list[Scenario] = [
    linger_nonblocking_close, linger_timeout_then_data, accepted_inherits_more,
    reuseport_member_closes, tcp_info_fields, tcp_info_states,
    shutdown_wakes_a_blocked_connect, sndbuf_bounds_a_nonblocking_sender,
    rcvbuf_bounds_the_peer]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_depth_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)

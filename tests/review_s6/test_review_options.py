"""Adversarial review (session 6): socket options of ioth TCP sockets, the kernel as oracle.

What getsockopt reads back after setsockopt (Linux doubles SO_SNDBUF/SO_RCVBUF and clamps
them), the defaults a program may print or rely on, keepalive and TCP_NODELAY readback,
SO_LINGER (readback; a non-zero linger on a close with unsent data), TCP_MAXSEG, IP_TOS/IP_TTL,
SO_REUSEADDR against SO_REUSEPORT listeners.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, PEER_IP, _conn
from tests.review_s6.oracle import PEER6, Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop
SOL, TCP, IP = socket.SOL_SOCKET, socket.IPPROTO_TCP, socket.IPPROTO_IP


def _get(s: Any, level: int, opt: int, buflen: int = 0) -> Any:
    return tryit(lambda: s.getsockopt(level, opt, buflen) if buflen else s.getsockopt(level, opt))


def _set(s: Any, level: int, opt: int, value: Any) -> Any:
    return tryit(lambda: s.setsockopt(level, opt, value))


def _table(s: Any, rows: list[tuple[str, int, int]]) -> list[Any]:
    return [(name, _get(s, level, opt)) for name, level, opt in rows]


def _buffers(dut: Factory, values: tuple[int, ...]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        s = dut()
        out += [(value, _set(s, SOL, socket.SO_SNDBUF, value), _get(s, SOL, socket.SO_SNDBUF),
                 _set(s, SOL, socket.SO_RCVBUF, value), _get(s, SOL, socket.SO_RCVBUF))]
        close_all(s)
    return out


def buffer_sizes(peer: Factory, dut: Factory) -> list[Any]:
    """SO_SNDBUF/SO_RCVBUF set to 4096 and 65536: read back doubled."""
    return _buffers(dut, (4096, 65536))


def _maxima(s: Any) -> tuple[int, int]:
    """The largest SO_SNDBUF / SO_RCVBUF a socket may ask: the kernel's net.core.wmem_max /
    rmem_max (the machine's: not always Linux's default 212992), ioth's stack policy's
    ``wmem_max`` / ``rmem_max`` (Linux's defaults unless the stack says otherwise)."""
    from ioth.sockets.stream import StreamSocket

    if isinstance(s, StreamSocket):
        policy = s._tcp.layer.policy
        return policy.wmem_max, policy.rmem_max
    with open("/proc/sys/net/core/wmem_max") as w, open("/proc/sys/net/core/rmem_max") as r:
        return int(w.read()), int(r.read())


def buffer_size_bounds(peer: Factory, dut: Factory) -> list[Any]:
    """SO_SNDBUF/SO_RCVBUF set to 1, 0 and 2300 (Linux: the minimum, 4608 / 2304), and to
    1e8 and -1 (clamped to twice the maximum: net.core.wmem_max / rmem_max, in ioth the stack
    policy's, compared as "twice the maximum")."""
    out = _buffers(dut, (1, 0, 2300))
    for value in (100_000_000, -1):
        s = dut()
        wmax, rmax = _maxima(s)
        out += [(value, _set(s, SOL, socket.SO_SNDBUF, value),
                 _get(s, SOL, socket.SO_SNDBUF) == 2 * wmax,
                 _set(s, SOL, socket.SO_RCVBUF, value), _get(s, SOL, socket.SO_RCVBUF) == 2 * rmax)]
        close_all(s)
    return out


def buffer_defaults(peer: Factory, dut: Factory) -> list[Any]:
    """SO_SNDBUF/SO_RCVBUF of a fresh socket, set, and read back: the defaults differ on
    purpose (below); the doubling of a value set is Linux's.

    Deliberate: Linux's fresh socket reads tcp_wmem[1] / tcp_rmem[1] (16384 / 131072); an
    ioth socket reads its stack's TCP policy (``send_buffer`` / ``recv_buffer``, 1 MiB unless
    the stack is configured otherwise): the buffer sizes are per stack (the issue asks for
    per-stack buffers), what a program reads is what its connections will use.  So the
    scenario reports the default as "the stack's" (the kernel: the sysctl's second value)."""
    s = dut()
    from ioth.sockets.stream import StreamSocket

    if isinstance(s, StreamSocket):
        policy = s._tcp.layer.policy
        want = (policy.send_buffer, policy.recv_buffer)
    else:
        with open("/proc/sys/net/ipv4/tcp_wmem") as w, open("/proc/sys/net/ipv4/tcp_rmem") as r:
            want = (int(w.read().split()[1]), int(r.read().split()[1]))
    out: list[Any] = [("defaults are the stack's", (_get(s, SOL, socket.SO_SNDBUF),
                                                    _get(s, SOL, socket.SO_RCVBUF)) == want)]
    out += [_set(s, SOL, socket.SO_SNDBUF, 50_000), _get(s, SOL, socket.SO_SNDBUF),
            _get(s, SOL, socket.SO_RCVBUF) == want[1]]
    close_all(s)
    return out


def keepalive_options(peer: Factory, dut: Factory) -> list[Any]:
    """SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT: defaults, set, read back, bad values."""
    s = dut()
    rows = [("SO_KEEPALIVE", SOL, socket.SO_KEEPALIVE), ("IDLE", TCP, socket.TCP_KEEPIDLE),
            ("INTVL", TCP, socket.TCP_KEEPINTVL), ("CNT", TCP, socket.TCP_KEEPCNT)]
    out: list[Any] = _table(s, rows)
    out += [_set(s, SOL, socket.SO_KEEPALIVE, 1), _set(s, TCP, socket.TCP_KEEPIDLE, 30),
            _set(s, TCP, socket.TCP_KEEPINTVL, 5), _set(s, TCP, socket.TCP_KEEPCNT, 3)]
    out += _table(s, rows)
    out += [_set(s, SOL, socket.SO_KEEPALIVE, 7), _get(s, SOL, socket.SO_KEEPALIVE)]
    close_all(s)
    return out


def keepalive_bad_values(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_KEEPIDLE/INTVL/CNT out of Linux's ranges (0, 32768, 256): EINVAL."""
    s = dut()
    out = [_set(s, TCP, socket.TCP_KEEPIDLE, 0), _set(s, TCP, socket.TCP_KEEPIDLE, 32768),
           _set(s, TCP, socket.TCP_KEEPINTVL, 32768), _set(s, TCP, socket.TCP_KEEPCNT, 128),
           _set(s, TCP, socket.TCP_KEEPCNT, 256), _set(s, TCP, socket.TCP_KEEPIDLE, 32767),
           _get(s, TCP, socket.TCP_KEEPIDLE)]
    close_all(s)
    return out


def nodelay_readback(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_NODELAY: 0 by default, 1 after setting 1 (or 5: Linux stores a boolean), on a
    fresh and on a connected socket; an accepted socket inherits the listener's."""
    s = dut()
    out: list[Any] = [_get(s, TCP, socket.TCP_NODELAY), _set(s, TCP, socket.TCP_NODELAY, 5),
                      _get(s, TCP, socket.TCP_NODELAY), _set(s, TCP, socket.TCP_NODELAY, 0),
                      _get(s, TCP, socket.TCP_NODELAY)]
    close_all(s)
    lst, k, d = _conn(peer, dut)
    out += [_get(d, TCP, socket.TCP_NODELAY), _set(d, TCP, socket.TCP_NODELAY, 1),
            _get(d, TCP, socket.TCP_NODELAY)]
    close_all(d, k, lst)
    return out


def accepted_inherits_options(peer: Factory, dut: Factory) -> list[Any]:
    """Options set on the listener before the connection arrive on the accepted socket
    (Linux clones the listener: TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, SO_RCVBUF...)."""
    lst = dut()
    lst.setsockopt(TCP, socket.TCP_NODELAY, 1)
    lst.setsockopt(SOL, socket.SO_KEEPALIVE, 1)
    lst.setsockopt(TCP, socket.TCP_KEEPIDLE, 42)
    lst.bind((DUT_IP, 0))
    lst.listen(2)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    out = _table(d, [("NODELAY", TCP, socket.TCP_NODELAY),
                     ("KEEPALIVE", SOL, socket.SO_KEEPALIVE),
                     ("KEEPIDLE", TCP, socket.TCP_KEEPIDLE)])
    close_all(d, k, lst)
    return out


def accepted_inherits_bufsize(peer: Factory, dut: Factory) -> list[Any]:
    """SO_RCVBUF/SO_SNDBUF set on the listener are the accepted socket's (Linux)."""
    lst = dut()
    lst.setsockopt(SOL, socket.SO_RCVBUF, 32768)
    lst.setsockopt(SOL, socket.SO_SNDBUF, 32768)
    lst.bind((DUT_IP, 0))
    lst.listen(2)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    out = [_get(d, SOL, socket.SO_RCVBUF), _get(d, SOL, socket.SO_SNDBUF)]
    close_all(d, k, lst)
    return out


def accepted_inherits_more(peer: Factory, dut: Factory) -> list[Any]:
    """More of the listener's options on the accepted socket (Linux): SO_RCVLOWAT, IP_TOS,
    IP_TTL, TCP_MAXSEG (the connection's MSS follows it), SO_LINGER; SO_PRIORITY is not
    inherited (0)."""
    lst = dut()
    lst.setsockopt(SOL, socket.SO_RCVLOWAT, 7)
    lst.setsockopt(SOL, socket.SO_PRIORITY, 3)
    lst.setsockopt(IP, socket.IP_TOS, 0x20)
    lst.setsockopt(IP, socket.IP_TTL, 9)
    lst.setsockopt(TCP, socket.TCP_MAXSEG, 1000)
    lst.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 4))
    lst.bind((DUT_IP, 0))
    lst.listen(2)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    out = [_get(d, SOL, socket.SO_RCVLOWAT), _get(d, SOL, socket.SO_PRIORITY),
           _get(d, IP, socket.IP_TOS), _get(d, IP, socket.IP_TTL), _get(d, TCP, socket.TCP_MAXSEG),
           _get(k, TCP, socket.TCP_MAXSEG), _get(d, SOL, socket.SO_LINGER, 8)]
    d.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 0, 0))
    close_all(d, k, lst)
    return out


def linger_readback(peer: Factory, dut: Factory) -> list[Any]:
    """SO_LINGER read back as struct linger (buflen 8) and as an int (l_onoff)."""
    s = dut()
    out: list[Any] = [_get(s, SOL, socket.SO_LINGER, 8), _get(s, SOL, socket.SO_LINGER),
                      _set(s, SOL, socket.SO_LINGER, struct.pack("ii", 1, 5)),
                      _get(s, SOL, socket.SO_LINGER, 8), _get(s, SOL, socket.SO_LINGER)]
    close_all(s)
    return out


def linger_waits_for_unsent_data(peer: Factory, dut: Factory) -> list[Any]:
    """SO_LINGER {1, 1} and close with 4 MB unsent to a peer that does not read: Linux's
    close blocks about 1 s (then returns; the data still goes out); with a peer reading it
    returns once everything is acknowledged, the peer has every byte."""
    out: list[Any] = []
    blob = bytes(i % 251 for i in range(1 << 20)) * 4
    lst, k, d = _conn(peer, dut)
    k.setsockopt(SOL, socket.SO_RCVBUF, 4096)
    d.setblocking(False)
    sent = 0
    while sent < len(blob):
        try:
            sent += d.send(blob[sent:sent + 65536])
        except BlockingIOError:
            break
    d.setblocking(True)
    d.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 1))
    t0 = time.monotonic()
    d.close()
    took = time.monotonic() - t0
    out.append(("close blocked ~1 s", 0.7 < took < 3))
    close_all(k, lst)
    return out


def linger_with_reader(peer: Factory, dut: Factory) -> list[Any]:
    """SO_LINGER {1, 5}, 1 MB sent, the peer reading slowly (64 kB every 20 ms): close
    returns once the data is acknowledged (before 5 s), the peer has every byte."""
    blob = bytes(i % 251 for i in range(1 << 20))
    lst, k, d = _conn(peer, dut)
    got = bytearray()

    def reader() -> None:
        time.sleep(0.3)
        while True:
            chunk = k.recv(65536)
            if not chunk:
                break
            got.extend(chunk)
            time.sleep(0.02)
    t = threading.Thread(target=reader)
    t.start()
    d.sendall(blob)
    d.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 5))
    t0 = time.monotonic()
    d.close()
    took = time.monotonic() - t0
    t.join(10)
    # (how long it waits depends on how fast the peer's window opens: a kernel peer's buffer
    # may take the whole MB at once; the wait itself is linger_waits_for_unsent_data's)
    out = [("close returned before the linger time", took < 4.5), ("all", bytes(got) == blob)]
    close_all(k, lst)
    return out


def identity_options(peer: Factory, dut: Factory) -> list[Any]:
    """SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN (fresh, listening), SO_ERROR."""
    s = dut()
    rows = [("TYPE", SOL, socket.SO_TYPE), ("DOMAIN", SOL, socket.SO_DOMAIN),
            ("PROTOCOL", SOL, socket.SO_PROTOCOL), ("ACCEPTCONN", SOL, socket.SO_ACCEPTCONN),
            ("ERROR", SOL, socket.SO_ERROR)]
    out: list[Any] = _table(s, rows)
    s.bind((DUT_IP, 0))
    s.listen(2)
    out += _table(s, rows)
    close_all(s)
    return out


def reuse_readback(peer: Factory, dut: Factory) -> list[Any]:
    """SO_REUSEADDR and SO_REUSEPORT: independent flags, read back as set."""
    s = dut()
    rows = [("REUSEADDR", SOL, socket.SO_REUSEADDR), ("REUSEPORT", SOL, socket.SO_REUSEPORT)]
    out: list[Any] = _table(s, rows)
    out.append(_set(s, SOL, socket.SO_REUSEPORT, 1))
    out += _table(s, rows)
    out += [_set(s, SOL, socket.SO_REUSEADDR, 1), _set(s, SOL, socket.SO_REUSEPORT, 0)]
    out += _table(s, rows)
    close_all(s)
    return out


def two_listeners_one_port(peer: Factory, dut: Factory) -> list[Any]:
    """A second listener on a listening port: EADDRINUSE with SO_REUSEADDR on both (Linux
    allows it only while the first is not listening); allowed with SO_REUSEPORT on both."""
    out: list[Any] = []
    for opt in (socket.SO_REUSEADDR, socket.SO_REUSEPORT):
        a = dut()
        a.setsockopt(SOL, opt, 1)
        a.bind((DUT_IP, 0))
        a.listen(2)
        b = dut()
        b.setsockopt(SOL, opt, 1)
        out.append(tryit(lambda a=a, b=b: b.bind(a.getsockname())))
        out.append(tryit(lambda b=b: b.listen(2)))
        close_all(a, b)
    return out


def reuseport_spreads_connections(peer: Factory, dut: Factory) -> list[Any]:
    """Two SO_REUSEPORT listeners on one port: 16 connections from different ports are
    spread over both (Linux hashes the 4-tuple), each accepted exactly once."""
    a = dut()
    a.setsockopt(SOL, socket.SO_REUSEPORT, 1)
    a.bind((DUT_IP, 0))
    a.listen(32)
    b = dut()
    b.setsockopt(SOL, socket.SO_REUSEPORT, 1)
    r = tryit(lambda: b.bind(a.getsockname()))
    if r is not None:
        close_all(a, b)
        return ["bind", r]
    b.listen(32)
    ks = []
    for _ in range(16):
        k = peer()
        k.settimeout(5)
        k.connect(a.getsockname())
        ks.append(k)
    time.sleep(0.3)
    counts = []
    for s in (a, b):
        s.setblocking(False)
        n = 0
        while True:
            try:
                c, _ = s.accept()
            except BlockingIOError:
                break
            c.close()
            n += 1
        counts.append(n)
    close_all(a, b, *ks)
    return [sum(counts), all(c > 0 for c in counts)]


def maxseg(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_MAXSEG: unconnected, then connected over a 1500-byte MTU with timestamps."""
    s = dut()
    out: list[Any] = [_get(s, TCP, socket.TCP_MAXSEG)]
    close_all(s)
    lst, k, d = _conn(peer, dut)
    out += [_get(d, TCP, socket.TCP_MAXSEG), _get(k, TCP, socket.TCP_MAXSEG)]
    close_all(d, k, lst)
    return out


def maxseg_set_before_connect(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_MAXSEG 1000 before connect: the connection's segments are at most that (Linux
    reads back the value less the timestamp option), the peer's too (it is in the SYN)."""
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(2)
    c = dut()
    out: list[Any] = [_set(c, TCP, socket.TCP_MAXSEG, 1000), _get(c, TCP, socket.TCP_MAXSEG)]
    c.settimeout(5)
    c.connect(lst.getsockname())
    lst.settimeout(5)
    k, _ = lst.accept()
    out += [_get(c, TCP, socket.TCP_MAXSEG), _get(k, TCP, socket.TCP_MAXSEG)]
    close_all(c, k, lst)
    return out


def tos_readback(peer: Factory, dut: Factory) -> list[Any]:
    """IP_TOS: 0 by default, 0x10 after setting it."""
    s = dut()
    out = [_get(s, IP, socket.IP_TOS), _set(s, IP, socket.IP_TOS, 0x10),
           _get(s, IP, socket.IP_TOS)]
    close_all(s)
    return out


def ttl_readback(peer: Factory, dut: Factory) -> list[Any]:
    """IP_TTL: 64 by default, 10 after setting it."""
    s = dut()
    out = [_get(s, IP, socket.IP_TTL), _set(s, IP, socket.IP_TTL, 10), _get(s, IP, socket.IP_TTL)]
    close_all(s)
    return out


def misc_defaults(peer: Factory, dut: Factory) -> list[Any]:
    """Less common SOL_SOCKET/TCP options a library may read: their Linux defaults."""
    s = dut()
    rows = [("RCVLOWAT", SOL, socket.SO_RCVLOWAT), ("SNDLOWAT", SOL, socket.SO_SNDLOWAT),
            ("OOBINLINE", SOL, socket.SO_OOBINLINE), ("BROADCAST", SOL, socket.SO_BROADCAST),
            ("PRIORITY", SOL, socket.SO_PRIORITY), ("DONTROUTE", SOL, socket.SO_DONTROUTE),
            ("USER_TIMEOUT", TCP, socket.TCP_USER_TIMEOUT),
            ("QUICKACK", TCP, socket.TCP_QUICKACK), ("CORK", TCP, socket.TCP_CORK),
            ("SYNCNT", TCP, socket.TCP_SYNCNT), ("DEFER_ACCEPT", TCP, socket.TCP_DEFER_ACCEPT),
            ("NOTSENT_LOWAT", TCP, socket.TCP_NOTSENT_LOWAT)]
    out = _table(s, rows)
    close_all(s)
    return out


def timeo_readback(peer: Factory, dut: Factory) -> list[Any]:
    """SO_RCVTIMEO/SO_SNDTIMEO: a struct timeval, zero by default, read back as set."""
    s = dut()
    tv = struct.pack("@ll", 1, 500_000)
    out = [_get(s, SOL, socket.SO_RCVTIMEO, 16), _set(s, SOL, socket.SO_RCVTIMEO, tv),
           _get(s, SOL, socket.SO_RCVTIMEO, 16), _set(s, SOL, socket.SO_SNDTIMEO, tv),
           _get(s, SOL, socket.SO_SNDTIMEO, 16)]
    close_all(s)
    return out


def unknown_options(peer: Factory, dut: Factory) -> list[Any]:
    """Options Linux does not know (a program probing for support relies on the error):
    ENOPROTOOPT for set and get; an unknown level too; a bad SO_LINGER length EINVAL."""
    s = dut()
    out = [_set(s, SOL, 999, 1), _get(s, SOL, 999), _set(s, TCP, 999, 1), _get(s, TCP, 999),
           _set(s, 999, 1, 1), _get(s, 999, 1), _set(s, SOL, socket.SO_LINGER, b"\1")]
    close_all(s)
    return out


def tcp_info(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_INFO (the first bytes of struct tcp_info: state, ca_state, retransmits, probes,
    backoff, options): a fresh socket is TCP_CLOSE (7), a connected one ESTABLISHED (1),
    a listener LISTEN (10)."""
    s = dut()
    info = getattr(socket, "TCP_INFO", 11)
    out: list[Any] = []
    r = _get(s, TCP, info, 104)
    out.append(r[0] if isinstance(r, bytes) else r)
    close_all(s)
    lst, k, d = _conn(peer, dut)
    for x in (d, lst):
        r = _get(x, TCP, info, 104)
        out += [r[0] if isinstance(r, bytes) else r, len(r) if isinstance(r, bytes) else r]
    close_all(d, k, lst)
    return out


def misc_set_readback(peer: Factory, dut: Factory) -> list[Any]:
    """Setting the less common options: accepted values read back as Linux keeps them
    (booleans as 0/1, SO_RCVLOWAT 0 as 1, TCP_DEFER_ACCEPT rounded to SYN-ACK retransmission
    times), bad values EINVAL, SO_SNDLOWAT ENOPROTOOPT, SO_LINGER as an int EINVAL."""
    s = dut()
    out: list[Any] = []
    rows = [(SOL, socket.SO_RCVLOWAT), (SOL, socket.SO_OOBINLINE), (SOL, socket.SO_BROADCAST),
            (SOL, socket.SO_PRIORITY), (SOL, socket.SO_DONTROUTE), (TCP, socket.TCP_USER_TIMEOUT),
            (TCP, socket.TCP_QUICKACK), (TCP, socket.TCP_CORK), (TCP, socket.TCP_SYNCNT),
            (TCP, socket.TCP_DEFER_ACCEPT), (TCP, socket.TCP_NOTSENT_LOWAT)]
    for level, opt in rows:
        for value in (5, 0, 1):
            out.append((opt, value, _set(s, level, opt, value), _get(s, level, opt)))
    out += [_set(s, SOL, socket.SO_SNDLOWAT, 5), _get(s, SOL, socket.SO_SNDLOWAT),
            _set(s, TCP, socket.TCP_USER_TIMEOUT, -1), _set(s, TCP, socket.TCP_SYNCNT, 128),
            _set(s, TCP, socket.TCP_DEFER_ACCEPT, 200), _get(s, TCP, socket.TCP_DEFER_ACCEPT),
            _set(s, TCP, socket.TCP_MAXSEG, 87), _set(s, TCP, socket.TCP_MAXSEG, 32768),
            _set(s, SOL, socket.SO_LINGER, 1), _get(s, SOL, socket.SO_LINGER, 8)]
    close_all(s)
    return out


def ip_header_options(peer: Factory, dut: Factory) -> list[Any]:
    """IP_TTL (1..255, -1: the default again) and IP_TOS (the ECN bits cleared), then both
    on a connection: the peer's accepted socket reads the TOS of the DUT's handshake-ending
    ACK (IP_RECVTOS + IP_PKTOPTIONS), so the option is in the packets, not only read back."""
    s = dut()
    out: list[Any] = [_set(s, IP, socket.IP_TTL, 0), _set(s, IP, socket.IP_TTL, 256),
                      _set(s, IP, socket.IP_TTL, 200), _get(s, IP, socket.IP_TTL),
                      _set(s, IP, socket.IP_TTL, -1), _get(s, IP, socket.IP_TTL),
                      _set(s, IP, socket.IP_TOS, 0x13), _get(s, IP, socket.IP_TOS),
                      _set(s, IP, socket.IP_TOS, 0x1FF), _get(s, IP, socket.IP_TOS),
                      _get(s, socket.IPPROTO_IPV6, socket.IPV6_TCLASS)]
    close_all(s)
    lst = peer()
    lst.setsockopt(IP, socket.IP_RECVTOS, 1)
    lst.bind((PEER_IP, 0))
    lst.listen(2)
    c = dut()
    c.setsockopt(IP, socket.IP_TOS, 0x28)
    c.setsockopt(IP, socket.IP_TTL, 33)
    c.settimeout(5)
    c.connect(lst.getsockname())
    lst.settimeout(5)
    k, _ = lst.accept()
    raw = k.getsockopt(IP, getattr(socket, "IP_PKTOPTIONS", 9), 64)
    tos = None
    off = 0
    while off + 16 <= len(raw):  # struct cmsghdr: len (size_t), level, type; then the data
        clen, level, ctype = struct.unpack_from("@Qii", raw, off)
        if level == IP and ctype == socket.IP_TOS:
            tos = raw[off + 16]
        off += (clen + 7) & ~7 or len(raw)
    out += [("peer saw TOS", tos), _get(c, IP, socket.IP_TTL), _get(c, IP, socket.IP_TOS)]
    close_all(c, k, lst)
    return out


def tcp_info_fields(peer: Factory, dut: Factory) -> list[Any]:
    """TCP_INFO of a connection that moved 100 kB: state, options (timestamps, SACK, window
    scaling: both ends offer them), snd_mss and rcv_mss, unacked 0 once acknowledged, a
    positive rtt and rto, cwnd at least 10 segments; 'ss'-like readers use these offsets."""
    lst, k, d = _conn(peer, dut)
    d.sendall(bytes(100_000))
    got = 0
    while got < 100_000:
        got += len(k.recv(65536))
    k.sendall(b"x" * 2000)
    want = 2000
    while want:
        want -= len(d.recv(want))
    time.sleep(0.2)  # (the last ACKs)
    info = d.getsockopt(TCP, getattr(socket, "TCP_INFO", 11), 104)
    state, _ca, _rtx, _probes, _backoff, opts = struct.unpack_from("6B", info)
    rto, _ato, snd_mss, rcv_mss, unacked = struct.unpack_from("5I", info, 8)
    rtt, _rttvar, _ssthresh, cwnd = struct.unpack_from("4I", info, 8 + 4 * 15)
    out = [state, opts & 7, snd_mss, rcv_mss, unacked, rtt > 0, rto >= 200_000, cwnd >= 10,
           len(info)]
    close_all(d, k, lst)
    return out


def ipv6_header_options(peer: Factory, dut: Factory) -> list[Any]:
    """IPV6_TCLASS (-1..255, -1: 0; ECN bits cleared) and IPV6_UNICAST_HOPS (-1..255, -1:
    the default, 64) on an AF_INET6 socket, then both on a connection: the peer's accepted
    socket reads the traffic class and hop limit of the last packet from the DUT
    (IPV6_RECVTCLASS / IPV6_RECVHOPLIMIT + IPV6_2292PKTOPTIONS)."""
    s = dut()
    v6 = socket.IPPROTO_IPV6
    out: list[Any] = [_get(s, v6, socket.IPV6_TCLASS), _get(s, v6, socket.IPV6_UNICAST_HOPS),
                      _set(s, v6, socket.IPV6_TCLASS, 0x13), _get(s, v6, socket.IPV6_TCLASS),
                      _set(s, v6, socket.IPV6_TCLASS, 256), _set(s, v6, socket.IPV6_TCLASS, -1),
                      _get(s, v6, socket.IPV6_TCLASS), _set(s, v6, socket.IPV6_UNICAST_HOPS, 0),
                      _get(s, v6, socket.IPV6_UNICAST_HOPS),
                      _set(s, v6, socket.IPV6_UNICAST_HOPS, 256),
                      _set(s, v6, socket.IPV6_UNICAST_HOPS, -1),
                      _get(s, v6, socket.IPV6_UNICAST_HOPS), _get(s, IP, socket.IP_TTL)]
    close_all(s)
    lst = peer()
    lst.setsockopt(v6, socket.IPV6_RECVTCLASS, 1)
    lst.setsockopt(v6, socket.IPV6_RECVHOPLIMIT, 1)
    lst.bind((PEER6, 0))
    lst.listen(2)
    c = dut()
    c.setsockopt(v6, socket.IPV6_TCLASS, 0x28)
    c.setsockopt(v6, socket.IPV6_UNICAST_HOPS, 7)
    c.settimeout(5)
    c.connect(lst.getsockname()[:2])
    lst.settimeout(5)
    k, _ = lst.accept()
    c.sendall(b"hello")
    k.settimeout(5)
    k.recv(5)
    raw = k.getsockopt(v6, 6, 128)  # IPV6_2292PKTOPTIONS: cmsgs of the last packet
    seen = {}
    off = 0
    while off + 16 <= len(raw):
        clen, level, ctype = struct.unpack_from("@Qii", raw, off)
        if level == v6 and clen >= 20:
            seen[ctype] = struct.unpack_from("@i", raw, off + 16)[0]
        off += (clen + 7) & ~7 or len(raw)
    out += [("peer saw", seen.get(socket.IPV6_TCLASS), seen.get(socket.IPV6_HOPLIMIT)),
            _get(c, v6, socket.IPV6_TCLASS), _get(c, v6, socket.IPV6_UNICAST_HOPS)]
    close_all(c, k, lst)
    return out


SCENARIOS: list[Scenario] = [
    buffer_sizes, buffer_size_bounds, buffer_defaults, keepalive_options, keepalive_bad_values,
    nodelay_readback,
    accepted_inherits_options, accepted_inherits_bufsize, accepted_inherits_more,
    linger_readback,
    linger_waits_for_unsent_data, linger_with_reader, identity_options, reuse_readback,
    two_listeners_one_port, reuseport_spreads_connections, maxseg, maxseg_set_before_connect,
    tos_readback, ttl_readback, misc_defaults, timeo_readback, tcp_info, misc_set_readback,
    ip_header_options, tcp_info_fields]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_options_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)


V6_SCENARIOS: list[Scenario] = [ipv6_header_options]


@pytest.mark.parametrize(("scenario", "kind"), params(V6_SCENARIOS, {}))
def test_v6_options_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

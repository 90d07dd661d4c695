"""Urgent data (MSG_OOB) of ioth TCP sockets against the Linux kernel, both ways, IPv4 and
IPv6: each scenario runs with a kernel DUT (a second namespace: the oracle) and with an ioth
DUT (a stack on a TAP), the peer always a kernel socket, and what the application sees must
be the same: POLLPRI, recv(MSG_OOB) and MSG_PEEK|MSG_OOB, ordinary reads stopping at the mark
and skipping the urgent byte, SIOCATMARK, SO_OOBINLINE (set, inherited from a listener, set
after the byte came), a newer urgent byte returning the older to the stream, EINVAL without
urgent data; send(MSG_OOB) and sendall(MSG_OOB) of one and of many bytes (only the last is
urgent; the kernel peer sees it with the urgent pointer one past it), non-blocking, empty.
The DUT both accepts (a paired socket) and connects (an unpaired one, LAZY_PAIR)."""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import _conn
from tests.review_s6.oracle import Envs, Factory, close_all, mask, mask_when, tryit

pytestmark = pytest.mark.interop

OOB = socket.MSG_OOB
SIOCATMARK = 0x8905
ADDRS = {socket.AF_INET: ("192.0.2.1", "192.0.2.2"),
         socket.AF_INET6: ("2001:db8::1", "2001:db8::2")}
_ORACLE: dict[str, list[Any]] = {}


@pytest.fixture(scope="module")
def envs() -> Any:
    e = Envs()
    try:
        yield e
    finally:
        e.close()


def atmark(s: Any) -> int:
    """SIOCATMARK on the socket's descriptor."""
    raw = fcntl.ioctl(s.fileno(), SIOCATMARK, bytes(4))
    return int(struct.unpack("i", raw)[0])


def accepted(peer: Factory, dut: Factory, family: int,
             before: Callable[[Any], None] | None = None) -> tuple[Any, Any, Any]:
    """(DUT listener, peer client, DUT's accepted socket); ``before``: called on the
    listener before the connection comes (options to inherit)."""
    return _conn(peer, dut, family, ADDRS[family][1], before)


def connected(peer: Factory, dut: Factory, family: int) -> tuple[Any, Any, Any]:
    """(peer listener, peer's accepted socket, DUT client): the DUT connects (blocking: an
    ioth socket stays unpaired until its descriptor is needed)."""
    paddr, _ = ADDRS[family]
    lst = peer(family)
    lst.bind((paddr, 0))
    lst.listen(8)
    d = dut(family)
    d.connect((paddr, lst.getsockname()[1]))
    lst.settimeout(5)
    k, _ = lst.accept()
    k.settimeout(5)
    return lst, k, d


def _settle() -> None:
    time.sleep(0.2)


# -- the peer sends urgent data, the DUT receives it -------------------------------------------

def recv_basic(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family)
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.sendall(b"cd")
    out = [mask_when(d, 0x2)]  # (POLLPRI)
    out += [atmark(d), tryit(lambda: d.recv(1, OOB | socket.MSG_PEEK)),
            tryit(lambda: d.recv(1, OOB)), mask(d), tryit(lambda: d.recv(10)), atmark(d),
            tryit(lambda: d.recv(10, socket.MSG_DONTWAIT))]
    d.setblocking(False)  # (CPython's recv with a timeout would poll POLLIN first)
    out.append(tryit(lambda: d.recv(1, OOB)))
    close_all(d, k, lst)
    return out


def recv_ordinary_first(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """Ordinary reads stop at the mark, then skip the unread urgent byte (gone)."""
    lst, k, d = accepted(peer, dut, family)
    k.sendall(b"abcdef")
    k.send(b"!", OOB)
    k.sendall(b"gh")
    mask_when(d, 0x2)
    _settle()
    buf = bytearray(100)
    out = [tryit(lambda: d.recv(3)), atmark(d), tryit(lambda: d.recv_into(buf)),
           bytes(buf[:3]), atmark(d), mask(d), tryit(lambda: d.recv(100)), mask(d)]
    d.setblocking(False)
    out.append(tryit(lambda: d.recv(1, OOB)))
    close_all(d, k, lst)
    return out


def recv_only_urgent(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """Only the urgent byte queued (the poll mask then differs: see
    test_only_urgent_byte_polls_readable; a non-blocking read, as CPython's recv with a
    timeout polls for POLLIN first)."""
    lst, k, d = accepted(peer, dut, family)
    k.send(b"!", OOB)
    mask_when(d, 0x2)
    d.setblocking(False)
    out = [atmark(d), tryit(lambda: d.recv(1, OOB)),
           tryit(lambda: d.recv(10, socket.MSG_DONTWAIT)), mask(d)]
    d.setblocking(True)
    k.sendall(b"later")
    out.append(tryit(lambda: d.recv(10)))
    close_all(d, k, lst)
    return out


def recv_oobinline(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family)
    d.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.sendall(b"cd")
    out = [mask_when(d, 0x2)]
    _settle()
    out += [tryit(lambda: d.recv(1, OOB)), tryit(lambda: d.recv(10)), atmark(d),
            tryit(lambda: d.recv(10)), d.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE)]
    close_all(d, k, lst)
    return out


def recv_oobinline_inherited(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family, lambda s: s.setsockopt(
        socket.SOL_SOCKET, socket.SO_OOBINLINE, 1))
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.sendall(b"cd")
    mask_when(d, 0x2)
    _settle()
    out = [d.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE), tryit(lambda: d.recv(1, OOB)),
           tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def recv_oobinline_late(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """SO_OOBINLINE set after the urgent byte came: it is read in line."""
    lst, k, d = accepted(peer, dut, family)
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.sendall(b"cd")
    mask_when(d, 0x2)
    _settle()
    d.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    out = [tryit(lambda: d.recv(1, OOB)), tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def recv_newer_replaces(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family)
    k.sendall(b"ab")
    k.send(b"XY", OOB)
    k.sendall(b"cd")
    _settle()
    k.send(b"Z", OOB)
    k.sendall(b"ef")
    _settle()
    out = [mask(d), tryit(lambda: d.recv(1, OOB)), tryit(lambda: d.recv(100)), atmark(d),
           tryit(lambda: d.recv(100))]
    close_all(d, k, lst)
    return out


def recv_read_then_newer(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """The reader took the urgent byte, then a newer one comes."""
    lst, k, d = accepted(peer, dut, family)
    d.setblocking(False)
    k.sendall(b"ab")
    k.send(b"X", OOB)
    mask_when(d, 0x2)
    out = [tryit(lambda: d.recv(10)), tryit(lambda: d.recv(1, OOB))]
    k.sendall(b"cd")
    k.send(b"Z", OOB)
    k.sendall(b"ef")
    mask_when(d, 0x2)
    _settle()
    out += [tryit(lambda: d.recv(1, OOB)), tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def recv_then_reset(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """The peer's urgent byte, then its reset, back to back."""
    lst, k, d = accepted(peer, dut, family)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.close()
    _settle()
    d.setblocking(False)
    out = [tryit(lambda: d.recv(1, OOB)), tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10)),
           tryit(lambda: d.recv(10))]
    close_all(d, lst)
    return out


def recv_big(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """The peer's send(MSG_OOB) of 150 kB in one call (a big send buffer: sendall would
    send in pieces, each with an urgent byte of its own, and which of those a reader meets
    depends on timing, on Linux too): its urgent pointer runs ahead of the bytes (65535
    while it is too far); the DUT's ordinary reads stop at the mark, then recv(MSG_OOB)
    takes the last byte."""
    lst, k, d = accepted(peer, dut, family)
    blob = bytes(range(251)) * 600
    k.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    assert k.send(blob, OOB) == len(blob)
    data = b""
    deadline = time.monotonic() + 5
    while len(data) < len(blob) - 1 and time.monotonic() < deadline:
        data += d.recv(1 << 20)
    mask_when(d, 0x2)  # (not compared: only the urgent byte is queued, see below)
    d.setblocking(False)  # (CPython's recv with a timeout would poll POLLIN first)
    out = [len(data), data == blob[:-1], atmark(d), tryit(lambda: d.recv(1, OOB))]
    d.setblocking(True)
    k.sendall(b"end")
    out.append(tryit(lambda: d.recv(10)))
    close_all(d, k, lst)
    return out


def recv_without_urgent(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family)
    k.sendall(b"ab")
    _settle()
    out = [tryit(lambda: d.recv(1, OOB)), mask(d), atmark(d), tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def recv_on_connected(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """The DUT connected (unpaired ioth socket): a blocking read meets the urgent data."""
    lst, k, d = connected(peer, dut, family)
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.sendall(b"cd")
    _settle()
    out = [tryit(lambda: d.recv(10)), tryit(lambda: d.recv(1, OOB)), mask(d),
           tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def recv_oob_first_on_connected(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = connected(peer, dut, family)
    k.sendall(b"ab")
    k.send(b"!", OOB)
    k.sendall(b"cd")
    _settle()
    out = [tryit(lambda: d.recv(1, OOB)), tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


# -- the DUT sends urgent data, the kernel peer receives it ------------------------------------

def _peer_view(k: Any) -> list[Any]:
    """What the kernel peer sees of a DUT's urgent send followed by its FIN (the bytes
    are few: all of them and the FIN are there once the peer polls POLLRDHUP)."""
    out = [mask_when(k, select.POLLRDHUP), atmark(k), tryit(lambda: k.recv(1, OOB)),
           atmark(k)]
    k.setblocking(False)
    data = b""
    while True:
        got = tryit(lambda: k.recv(1 << 20))
        if not isinstance(got, bytes) or not got:
            break
        data += got
    return [*out, data, got]


def send_one(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family)
    out = [tryit(lambda: d.send(b"ab")), tryit(lambda: d.send(b"!", OOB))]
    _settle()
    out += [mask(k), tryit(lambda: k.recv(1, OOB)), tryit(lambda: k.recv(10))]
    close_all(d, k, lst)
    return out


def send_many(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """send(MSG_OOB) of several bytes: only the last one is urgent."""
    lst, k, d = accepted(peer, dut, family)
    out = [tryit(lambda: d.send(b"ab")), tryit(lambda: d.send(b"XYZ", OOB)),
           tryit(lambda: d.send(b"cd"))]
    d.shutdown(socket.SHUT_WR)
    out += _peer_view(k)
    close_all(d, k, lst)
    return out


def send_big(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """sendall(MSG_OOB) of 150 kB (many segments: the pointer runs ahead of them): the peer
    reads the ordinary bytes, which stop at the mark, then the urgent byte."""
    lst, k, d = accepted(peer, dut, family)
    blob = bytes(range(251)) * 600
    out = [tryit(lambda: d.sendall(blob, OOB))]
    d.shutdown(socket.SHUT_WR)
    data = b""
    deadline = time.monotonic() + 5
    while len(data) < len(blob) - 1 and time.monotonic() < deadline:
        data += k.recv(1 << 20)
    out += [len(data), data == blob[:-1], atmark(k), mask_when(k, select.POLLRDHUP),
            tryit(lambda: k.recv(1, OOB)), tryit(lambda: k.recv(10))]
    close_all(d, k, lst)
    return out


def send_from_connected(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """The DUT connected (unpaired ioth socket) sends urgent data."""
    lst, k, d = connected(peer, dut, family)
    out = [tryit(lambda: d.sendall(b"hello")), tryit(lambda: d.send(b"!", OOB)),
           tryit(lambda: d.sendall(b"world"))]
    d.shutdown(socket.SHUT_WR)
    out += _peer_view(k)
    close_all(d, k, lst)
    return out


def send_nonblocking_and_empty(peer: Factory, dut: Factory, family: int) -> list[Any]:
    lst, k, d = accepted(peer, dut, family)
    d.setblocking(False)
    out = [tryit(lambda: d.send(b"", OOB)), tryit(lambda: d.send(b"ab!", OOB)),
           tryit(lambda: d.send(b"c", OOB | socket.MSG_DONTWAIT))]
    _settle()
    out += [mask(k), tryit(lambda: k.recv(1, OOB)), tryit(lambda: k.recv(10))]
    close_all(d, k, lst)
    return out


def send_after_descriptor_writes(peer: Factory, dut: Factory, family: int) -> list[Any]:
    """Bytes written through the descriptor (os.write) keep their place around the urgent
    byte and a later send."""
    import os
    lst, k, d = accepted(peer, dut, family)
    os.write(d.fileno(), b"first")
    out = [tryit(lambda: d.send(b"!", OOB))]
    os.write(d.fileno(), b"mid")
    out.append(tryit(lambda: d.send(b"last")))
    d.shutdown(socket.SHUT_WR)
    out += _peer_view(k)
    close_all(d, k, lst)
    return out


SCENARIOS = [recv_basic, recv_ordinary_first, recv_only_urgent, recv_oobinline,
             recv_oobinline_inherited, recv_oobinline_late, recv_newer_replaces,
             recv_read_then_newer, recv_then_reset, recv_big, recv_without_urgent,
             recv_on_connected, recv_oob_first_on_connected,
             send_one, send_many, send_big, send_from_connected,
             send_nonblocking_and_empty,
             send_after_descriptor_writes]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_urgent_as_the_kernel(scenario: Callable[..., list[Any]], family: int,
                              envs: Envs) -> None:
    key = f"{scenario.__name__}/{int(family)}"
    if key not in _ORACLE:
        _ORACLE[key] = scenario(*envs.get("kernel", True), family)
    want = _ORACLE[key]
    got = scenario(*envs.get("ioth", True), family)
    diff = [f"  [{i}] kernel {w!r} ioth {g!r}" for i, (w, g) in
            enumerate(zip(want, got, strict=False)) if w != g]
    assert got == want, "ioth differs from the kernel:\n" + "\n".join(
        diff or [f"  kernel {want!r}", f"  ioth   {got!r}"])


def test_only_urgent_byte_polls_readable(envs: Envs) -> None:
    """A documented difference (ioth.sockets.stream): with nothing queued but an unread
    urgent byte, Linux's TCP socket polls POLLPRI without POLLIN (select: not readable), the
    ioth socket's AF_UNIX descriptor POLLIN|POLLPRI, as an AF_UNIX stream whose urgent byte
    waits in its receive queue; a read then finds nothing in both (EAGAIN), the urgent byte
    is read with MSG_OOB in both."""
    for kind, want in (("kernel", "PRI|OUT"), ("ioth", "IN|PRI|OUT")):
        _only_urgent(envs, kind, want)


def _only_urgent(envs: Envs, kind: str, want: str) -> None:
    peer, dut = envs.get(kind, True)
    lst, k, d = accepted(peer, dut, socket.AF_INET6)
    k.send(b"!", OOB)
    assert mask_when(d, 0x2) == want, kind
    d.setblocking(False)
    assert tryit(lambda: d.recv(1, OOB | socket.MSG_PEEK)) == b"!", kind
    assert tryit(lambda: d.recv(1, OOB)) == b"!", kind
    # read: Linux polls nothing to read, the AF_UNIX end still POLLIN (its urgent byte's
    # place in the queue), until a read passes it
    assert mask(d) == ("OUT" if kind == "kernel" else "IN|OUT"), kind
    assert tryit(lambda: d.recv(10)) == "EAGAIN", kind
    assert mask(d) == "OUT", kind
    close_all(d, k, lst)


def test_blocking_urgent_send_bigger_than_the_buffers(envs: Envs) -> None:
    """ioth only (Linux marks an urgent byte at each push of a send that waits for buffer
    space, so where its peer's reads stop depends on timing): a blocking send(MSG_OOB) far
    bigger than the buffers returns once all is queued, everything but its last byte
    ordinary, the last one urgent; a blocking send(MSG_OOB) of one byte waits for room when
    the buffers are full (the peer reads nothing for a while)."""
    peer, dut = envs.get("ioth", True)
    lst, k, d = accepted(peer, dut, socket.AF_INET)
    blob = bytes(range(253)) * 12000  # 3 MB
    box: list[Any] = []

    def sender() -> None:
        box.append(tryit(lambda: d.send(blob, OOB)))
        d.setblocking(False)
        filled = 0
        idle = 0
        while idle < 3:  # fill every buffer up, until the engine moves nothing more
            got = tryit(lambda: d.send(bytes(65536)))
            if isinstance(got, int):
                filled += got
                idle = 0
            else:
                idle += 1
                time.sleep(0.1)
        box.append(filled)
        d.setblocking(True)
        box.append(tryit(lambda: d.send(b"!", OOB)))

    t = threading.Thread(target=sender)
    t.start()
    time.sleep(0.5)
    assert not box  # (blocked: the buffers are full, the peer reads nothing yet)
    data = bytearray()
    deadline = time.monotonic() + 20
    while len(data) < len(blob) - 1 and time.monotonic() < deadline:
        data += k.recv(1 << 20)
    assert len(data) == len(blob) - 1 and data == blob[:-1]
    # (the urgent byte goes in a segment of its own after the rest: the peer may have read
    # everything before it first; SIOCATMARK once its pointer is known: POLLPRI)
    select.select([], [], [k], 5)
    assert atmark(k) == 1
    k.setblocking(False)
    assert tryit(lambda: k.recv(1, OOB)) == blob[-1:]
    # the sender fills the buffers, then (usually: unless a late window update of the peer
    # makes room) waits with its urgent byte
    deadline = time.monotonic() + 10
    while len(box) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box[0] == len(blob) and box[1] > 0, box
    k.setblocking(True)
    filler = bytearray()
    while len(filler) < box[1]:
        filler += k.recv(1 << 20)
    t.join(5)
    assert box[2:] == [1] and filler == bytes(box[1])
    assert tryit(lambda: k.recv(1, OOB)) == b"!"
    close_all(d, k, lst)


def test_newer_urgent_byte_while_reading_at_the_older(envs: Envs) -> None:
    """A documented difference (ioth.sockets.stream): a newer urgent byte comes while the
    reader sits at an older one it did not take: Linux's TCP drops the older byte
    (tcp_check_urg), the ioth socket's AF_UNIX descriptor returns it to the stream."""
    for kind, want in (("kernel", b"cd"), ("ioth", b"Xcd")):
        _reader_at_older(envs, kind, want)


def _reader_at_older(envs: Envs, kind: str, want: bytes) -> None:
    peer, dut = envs.get(kind, True)
    lst, k, d = accepted(peer, dut, socket.AF_INET)
    d.setblocking(False)
    k.sendall(b"ab")
    k.send(b"X", OOB)
    mask_when(d, 0x2)
    assert tryit(lambda: d.recv(10)) == b"ab", kind
    assert atmark(d) == 1, kind
    k.sendall(b"cd")
    k.send(b"Z", OOB)
    k.sendall(b"ef")
    _settle()
    assert tryit(lambda: d.recv(1, OOB)) == b"Z", kind
    assert tryit(lambda: d.recv(10)) == want, kind
    assert tryit(lambda: d.recv(10)) == b"ef", kind
    close_all(d, k, lst)


def test_urgent_byte_written_through_the_descriptor_stays_in_the_stream(envs: Envs) -> None:
    """ioth only (a documented difference): send(MSG_OOB) on a socket object built on the
    ioth socket's descriptor (an AF_UNIX stream) reaches the peer as an ordinary byte, in
    its place, instead of being skipped by the engine end's reads."""
    import os
    peer, dut = envs.get("ioth", True)
    lst, k, d = accepted(peer, dut, socket.AF_INET)
    raw = socket.socket(fileno=os.dup(d.fileno()))
    raw.sendall(b"ab")
    raw.send(b"!", OOB)
    raw.sendall(b"cd")
    raw.close()
    d.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        got = k.recv(100)
        if not got:
            break
        data += got
    assert data == b"ab!cd"
    close_all(d, k, lst)

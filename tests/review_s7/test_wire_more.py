"""Adversarial review (session 7): odd and hostile segments, the kernel as the oracle.

Flag combinations no stack sends (SYN+FIN, SYN+RST), wrong checksums, malformed and unknown
TCP options (a length below 2, an option overrunning the header: Linux stops parsing there
and keeps the segment), tiny MSS values, sequence numbers and timestamps wrapping around
2^32, a FIN out of order, overlapping data with different contents, a RST carrying data.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Env,
    Envs,
    Flow,
    Scenario,
    read,
    read_all,
    run,
    syn_opts,
)
from tests.review_s7.test_wire_handshake import drain

pytestmark = pytest.mark.interop

MSS1400 = b"\x02\x04\x05\x78"


def listener_odd_flags(env: Env) -> list[Any]:
    """A listener given SYN+FIN, SYN+RST, SYN+FIN+PSH with data: dropped silently (Linux:
    "tcp: drop SYN+FIN messages"); a SYN with a wrong checksum: dropped; the listener then
    accepts a plain SYN."""
    lst = env.listener()
    port = lst.getsockname()[1]
    out: list[Any] = []
    for flags, data, bad in ((SYN | FIN, b"", False), (SYN | RST, b"", False),
                             (SYN | FIN | PSH, b"x", False), (SYN, b"", True)):
        f = Flow(env.wire, port)
        f.send(flags, seq=0, data=data, opts=syn_opts(), window=65535, bad_sum=bad)
        out += [f.quiet(0.3), env.states(f)]
    f = Flow(env.wire, port)
    out.append(f.connect())
    d, _ = lst.accept()
    close_all(d, lst)
    return out


def bad_checksum_established(env: Env) -> list[Any]:
    """ESTABLISHED: a RST and data with wrong checksums are dropped silently; the
    connection lives on and the data sent again (right checksum) is read."""
    lst, d, f, _ = env.accepted()
    f.send(RST, bad_sum=True)
    f.send(ACK | PSH, data=b"bad", bad_sum=True)
    out: list[Any] = [f.quiet(0.3), env.states(f), read(d, 0.2)]
    f.data(b"good")
    out += [f.ask(), read(d)]
    close_all(d, lst)
    return out


def syn_malformed_options(env: Env) -> list[Any]:
    """SYNs whose options go wrong after an MSS of 1400: a Timestamps option of length 0,
    a window scale overrunning the header, an unknown option (kind 99) before SACK-permitted:
    Linux answers each, with the options it could read before the fault (the unknown one
    skipped)."""
    lst = env.listener()
    port = lst.getsockname()[1]
    out: list[Any] = []
    for opts in (MSS1400 + b"\x08\x00\x00\x00", MSS1400 + b"\x01\x03\x08\x07",
                 MSS1400 + b"\x63\x04\xab\xcd\x01\x01\x04\x02"):
        f = Flow(env.wire, port)
        f.send(SYN, seq=0, opts=opts, window=65535)
        out.append(f.ask(1.0))
        f.send(RST, seq=1, opts=b"")
    close_all(lst)
    return out


def data_malformed_options(env: Env) -> list[Any]:
    """ESTABLISHED: data whose options are malformed (a Timestamps option of length 0), or
    unknown (kind 99), or an MSS option (meaningless outside a SYN): Linux takes the data
    and acknowledges it."""
    lst, d, f, _ = env.accepted()
    f.ecr = False
    out: list[Any] = []
    for opts in (b"\x08\x00\x01\x01", b"\x63\x04\xab\xcd", MSS1400):
        f.send(ACK | PSH, data=b"abc", opts=opts)
        f.nxt += 3
        out += [f.ask(1.0), read(d, 0.5)]
    close_all(d, lst)
    return out


def tiny_mss(env: Env) -> list[Any]:
    """A SYN's MSS of 0 (ignored: the default 536 then), 100 (segments of 88 bytes with
    timestamps), 10 (below both stacks' floors, which are policy: Linux's
    net.ipv4.tcp_min_snd_mss 48 less the options, ioth 64; compared: a floor exists)."""
    out: list[Any] = []
    for mss in (0, 100, 10):
        lst = env.listener()
        f = Flow(env.wire, lst.getsockname()[1])
        out.append(f.connect(opts=syn_opts(mss=mss)))
        d, _ = lst.accept()
        # (in a thread: with tiny segments the kernel's send buffer fills at once)
        t = threading.Thread(target=d.sendall, args=(b"t" * 2000,), daemon=True)
        t.start()
        biggest, done = drain(f, 2000, 4.0)
        t.join(2)
        out.append([biggest if mss != 10 else 10 < biggest <= 64, done])
        close_all(d, lst)
    return out


def sequence_wrap(env: Env) -> list[Any]:
    """The peer's sequence numbers wrap around 2^32 in the middle of its data, with a
    segment out of order across the wrap: SACK blocks and ACKs are right, the application
    reads everything in order."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1], iss=0xFFFFFE00)
    f.connect()
    d, _ = lst.accept()
    data = bytes(range(256)) * 4
    out: list[Any] = []
    for i in (1, 3, 0, 2):  # (bytes 512.. cross the wrap: ISN + 1 + 511 = 2^32)
        f.send(ACK | PSH, seq=1 + i * 256, data=data[i * 256:(i + 1) * 256])
        out.append(f.ask())
    f.nxt = 1 + 1024
    out.append(read_all(d, 1024, 4096) == data)
    close_all(d, lst)
    return out


def tsval_wrap(env: Env) -> list[Any]:
    """The peer's TSval wraps around 2^32 (0xFFFFFFF0 then 0x10: newer, RFC 7323 5.2's
    modular order): the data after the wrap is taken, and echoed; then an old TSval
    (0xFFFFFF00, older than 0x10): PAWS drops it with an ACK."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1], tsval=0xFFFFFFF0)
    f.connect()
    d, _ = lst.accept()
    f.tsval = 0x10
    f.data(b"after")
    out: list[Any] = [f.ask(), read(d)]
    f.send(ACK | PSH, data=b"stale", ts=(0xFFFFFF00, f.their_ts or 0))
    out += [f.ask(), read(d, 0.3)]
    close_all(d, lst)
    return out


def fin_out_of_order(env: Env) -> list[Any]:
    """Data with FIN comes before the data in front of it: a duplicate ACK whose SACK
    block holds it (Linux counts the FIN in the block); the missing data: everything and
    the FIN acknowledged; the application reads all then end of file (CLOSE-WAIT)."""
    lst, d, f, _ = env.accepted()
    f.send(FIN | ACK | PSH, seq=6, data=b"world")
    out: list[Any] = [f.ask()]
    f.send(ACK | PSH, seq=1, data=b"hello")
    f.nxt = 12
    out += [f.ask(), read(d), read(d), env.states(f)]
    close_all(d, lst)
    return out


def overlapping_contents(env: Env) -> list[Any]:
    """Overlaps with different contents: an out-of-order segment, then another copy of it
    with other bytes, then what goes in front: the application reads the first copy (a
    D-SACK for the second); then a segment half old (other bytes), half new: the new half
    only is added."""
    lst, d, f, _ = env.accepted()
    f.ecr = False
    f.send(ACK | PSH, seq=5, data=b"AAAA")
    out: list[Any] = [f.ask()]
    f.send(ACK | PSH, seq=5, data=b"BBBB")
    out.append(f.ask())
    f.send(ACK | PSH, seq=1, data=b"1234")
    out += [f.ask(), read(d)]
    f.send(ACK | PSH, seq=5, data=b"zzzzCCCC")
    out += [f.ask(), read(d)]
    close_all(d, lst)
    return out


def rst_with_data(env: Env) -> list[Any]:
    """A RST at RCV.NXT carrying data (RFC 9293 3.5.3 allows diagnostic text): the
    connection is reset; the text is not delivered."""
    lst, d, f, _ = env.accepted()
    f.send(RST | ACK, data=b"diagnostic")
    env.dut.wait_gone(f.dport, f.sport)
    out: list[Any] = [f.quiet(0.2), read(d)]
    close_all(d, lst)
    return out


SCENARIOS: list[Scenario] = [
    listener_odd_flags, bad_checksum_established, syn_malformed_options,
    data_malformed_options, tiny_mss, sequence_wrap, tsval_wrap, fin_out_of_order,
    overlapping_contents, rst_with_data]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_more_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)

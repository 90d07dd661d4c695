"""Adversarial review (session 6): one socket used by several threads, the kernel as oracle.

Threads sharing a connected socket: small send() calls from several threads (each call's
bytes stay together on Linux: a send smaller than the buffer is not split), a reader and a
writer thread at once, several readers at once (every byte read exactly once).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run

pytestmark = pytest.mark.interop
MSG = 100
COUNT = 500


def concurrent_small_sends(peer: Factory, dut: Factory) -> list[Any]:
    """4 threads, each 500 send() calls of 100 bytes of its own letter: the peer reads
    200,000 bytes in which every 100-byte record is one letter."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    sent: list[int] = []
    go = threading.Barrier(4)

    def writer(letter: bytes) -> None:
        go.wait(5)
        n = 0
        for _ in range(COUNT):
            n += d.send(letter * MSG)
        sent.append(n)
    ts = [threading.Thread(target=writer, args=(bytes([65 + i]),)) for i in range(4)]
    for t in ts:
        t.start()
    got = bytearray()
    k.settimeout(5)
    while len(got) < 4 * COUNT * MSG:
        chunk = k.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    for t in ts:
        t.join(10)
    records = [bytes(got[i:i + MSG]) for i in range(0, len(got), MSG)]
    out = [sum(sent), len(got), all(r == r[:1] * MSG for r in records),
           sorted({r[:1] for r in records})]
    close_all(d, k, lst)
    return out


def concurrent_readers(peer: Factory, dut: Factory) -> list[Any]:
    """3 threads recv() from one socket while the peer sends 300 kB and closes: together
    they read every byte exactly once (each thread's pieces are slices of the stream)."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(5)
    blob = bytes(i % 256 for i in range(300_000))
    total: list[int] = []
    lock = threading.Lock()

    def reader() -> None:
        n = 0
        while True:
            try:
                chunk = d.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            n += len(chunk)
        with lock:
            total.append(n)
    ts = [threading.Thread(target=reader) for _ in range(3)]
    for t in ts:
        t.start()
    k.sendall(blob)
    k.close()
    for t in ts:
        t.join(10)
    out = [sum(total), len(total)]
    close_all(d, lst)
    return out


def reader_and_writer_threads(peer: Factory, dut: Factory) -> list[Any]:
    """One thread reads while another writes 1 MB each way at once (full duplex)."""
    lst, k, d = _conn(peer, dut)
    blob = bytes(i % 241 for i in range(1 << 20))
    res: dict[str, Any] = {}

    def read(name: str, s: Any) -> None:
        buf = bytearray()
        while len(buf) < len(blob):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
        res[name] = bytes(buf) == blob
    ts = [threading.Thread(target=read, args=("d", d)),
          threading.Thread(target=read, args=("k", k)),
          threading.Thread(target=d.sendall, args=(blob,)),
          threading.Thread(target=k.sendall, args=(blob,))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    out = [res.get("d"), res.get("k")]
    close_all(d, k, lst)
    return out


SCENARIOS: list[Scenario] = [concurrent_small_sends, concurrent_readers,
                             reader_and_writer_threads]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_threads_sharing_a_socket_as_the_kernel(scenario: Scenario, kind: str, envs: Envs
                                                ) -> None:
    run(scenario, kind, envs)

"""Adversarial review (session 5): per-connection state does not accumulate.

The cps pattern of bench_tcp.py (a new connection each time, 64-byte request and reply, the
client closes on the reply, the server closes after replying: the FINs cross) is run through
ioth sockets on two stacks joined by an in-process ioth switch (``switch://`` + ``vde://``).
After a warm-up, every table, queue and heap of the objects a connection touches (the TCP
layer, the socket layer, the stack runtime and its engine, the pump, the switch server and
its core) must have the same size after another batch of connections as before it: only the
TIME-WAIT table may grow (bounded by ``max_tw_buckets``).  The process's descriptors must not
grow either.  A leak of one entry per connection shows as a difference of hundreds.
"""

from __future__ import annotations

import collections
import gc
import importlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.sockets import socket as isocket
from ioth.sockets.base import layer_for
from tests.sockets.helpers import network
from tests.support.peers import wait_for

#: attributes allowed to grow with the number of connections (bounded elsewhere)
GROWING = {"time_wait", "_tw_queues", "port_use"}
#: connections per batch (the general-path knob sets: 3/5 of it)
BATCH = 250


def _sizes(obj: Any, prefix: str, out: dict[str, int], depth: int = 0,
           seen: set[int] | None = None) -> None:
    """``out[path] = len(container)`` for every container attribute reachable from ``obj``
    through the project's own objects (two levels of objects deep)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 2:
        return
    seen.add(id(obj))
    try:
        attrs = vars(obj)
    except TypeError:
        slots = getattr(type(obj), "__slots__", ())
        attrs = {s: getattr(obj, s) for s in slots if hasattr(obj, s)}
    for name, value in attrs.items():
        path = f"{prefix}.{name}"
        if isinstance(value, (dict, list, set, frozenset, collections.deque, bytearray)):
            if name not in GROWING:
                out[path] = len(value)
        elif type(value).__module__.startswith("ioth."):
            _sizes(value, path, out, depth + 1, seen)


def _snapshot(stacks: list[ioth.Stack]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, st in enumerate(stacks):
        with st.lock:
            _sizes(st, f"stack{i}", out)
            _sizes(st.core.tcp, f"stack{i}.tcp", out)
            _sizes(st.runtime, f"stack{i}.runtime", out)
            _sizes(st.runtime.engine, f"stack{i}.engine", out)
            layer = layer_for(st)
            _sizes(layer.tcp, f"stack{i}.socks", out)
            _sizes(layer.pump, f"stack{i}.pump", out)
            for plug in st.runtime.plugs.values():
                server = getattr(plug, "server", None)
                if server is not None:
                    _sizes(server, f"stack{i}.switch", out)
                    _sizes(server.core, f"stack{i}.switchcore", out)
                    _sizes(server.engine, f"stack{i}.switchengine", out)
    return out


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


#: knob sets: the defaults, then the general paths of the socket layer, runtime and switch
KNOB_SETS = {
    "default": {},
    "sockets-general": {"ioth.sockets.stream": {"LAZY_FD": 0, "LAZY_PAIR": 0,
                                               "DIRECT_ACCEPT": 0},
                        "ioth.sockets.stream_engine": {"NOTIFY_FAST": 0}},
    "runtime-general": {"ioth.stack.runtime": {"INLINE": 0, "GUARD": 0, "QUIET_READ": 0,
                                              "HOLD_TIMERS": 0, "KEEP_WAITED": 0},
                        "ioth.net.dgram": {"ONE_FAST": 0},
                        "ioth.net.switch.server": {"FAST_PATH": False}},
}


@pytest.mark.parametrize("knobs", list(KNOB_SETS))
def test_cps_pattern_leaves_no_per_connection_state(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    knobs: str) -> None:
    for module, values in KNOB_SETS[knobs].items():
        mod = importlib.import_module(module)
        for name, value in values.items():
            assert hasattr(mod, name), (module, name)
            monkeypatch.setattr(mod, name, value)
    batch = BATCH if knobs == "default" else BATCH * 3 // 5
    with network(tmp_path) as (cli_stack, srv_stack):
        srv = isocket(srv_stack, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.2", 8080))
        srv.listen(64)
        errors: list[BaseException] = []

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                try:
                    conn.settimeout(5)
                    data = conn.recv(64)
                    conn.sendall(data)
                    conn.close()
                except BaseException as exc:
                    errors.append(exc)
                    conn.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()

        def one(i: int) -> None:
            c = isocket(cli_stack, socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect(("192.0.2.2", 8080))
            msg = i.to_bytes(4, "big") * 16
            c.sendall(msg)
            got = b""
            while len(got) < 64:
                chunk = c.recv(64)
                assert chunk, f"connection {i}: EOF after {len(got)} bytes"
                got += chunk
            assert got == msg
            c.close()

        def quiesce() -> None:
            def idle() -> bool:
                for st in (cli_stack, srv_stack):
                    with st.lock:
                        tcp = st.core.tcp
                        if any(c.state.name not in ("LISTEN",) for c in tcp.connections.values()):
                            return False
                return True
            wait_for(idle, 10, what="every connection closed (TIME-WAIT compacted)")
            gc.collect()

        for i in range(batch):
            one(i)
        quiesce()
        before, fds0 = _snapshot([cli_stack, srv_stack]), _fds()
        tx0 = [st.core.tcp.tx_segments for st in (cli_stack, srv_stack)]
        for i in range(batch):
            one(batch + i)
        quiesce()
        after, fds1 = _snapshot([cli_stack, srv_stack]), _fds()
        assert not errors, errors
        # 9 frames per connection (SYN, SYN-ACK, ACK, request, reply, 2 crossing FINs, 2 ACKs),
        # 8 when the server's FIN arrives before the client closes (its FIN carries the ACK);
        # Linux sends 9-11: no more, and no reset or segment to a closed port
        frames = sum(st.core.tcp.tx_segments - t for st, t in zip((cli_stack, srv_stack), tx0,
                                                                   strict=True))
        assert 8 * batch <= frames <= 11 * batch, f"{frames / batch:.2f} frames per connection"
        for st in (cli_stack, srv_stack):
            assert st.core.tcp.resets_sent == 0
            assert st.core.tcp.rx_no_socket == 0
        # (an engine's timer heap keeps cancelled timers until they come up: a few dozen
        # either way; a leak per connection would be hundreds)
        grown = {k: (before.get(k, 0), v) for k, v in after.items()
                 if v > before.get(k, 0) + (32 if k.endswith("._timers") else 8)}
        assert not grown, f"tables grown over {batch} connections: {grown}"
        assert fds1 <= fds0 + 4, f"descriptors {fds0} -> {fds1} over {batch} connections"
        for st in (cli_stack, srv_stack):
            with st.lock:
                tw = len(st.core.tcp.time_wait)
                use = getattr(st.core.tcp, "port_use", None)
                if use is not None:  # (3304786: per-port counts of connections + TIME-WAITs)
                    want = collections.Counter(k[1] for k in st.core.tcp.connections)
                    want.update(k[1] for k in st.core.tcp.time_wait)
                    assert {p: n for p, n in use.items() if n} == dict(want)
            assert tw <= 2 * batch + 8
        srv.close()
        server.join(0.5)  # (a blocking accept may stay in the kernel after close: Linux too)

"""Stacks for socket tests: nodes on an in-process ioth switch (or a ptp cable)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ioth


def _tcp_ready(stack: ioth.Stack) -> ioth.Stack:
    """The stack, its TCP layer created (so tests fail early if the stack has none)."""
    assert stack.core.tcp is not None
    return stack


@contextlib.contextmanager
def network(tmp_path: Path, n: int = 2, net: str = "192.0.2", v6: bool = False,
            name: str = "sw") -> Iterator[list[ioth.Stack]]:
    """``n`` stacks on one switch: addresses NET.1 .. NET.n (and 2001:db8::1.. with v6)."""
    sw = tmp_path / name
    stacks: list[ioth.Stack] = []
    try:
        for i in range(1, n + 1):
            vnl = f"switch://{sw}" if i == 1 else f"vde://{sw}"
            conf = f"eth,ip={net}.{i}/24" + (f",ip=2001:db8::{i}/64" if v6 else "")
            stacks.append(_tcp_ready(ioth.Stack(vnl, conf)))
        if v6:
            for s in stacks:
                assert s.wait_dad()
        yield stacks
    finally:
        for s in reversed(stacks):
            s.close()


@contextlib.contextmanager
def lone() -> Iterator[ioth.Stack]:
    """A stack with only the loopback interface."""
    s = _tcp_ready(ioth.Stack())
    try:
        yield s
    finally:
        s.close()


def require_module(name: str) -> Any:
    """Import a real-program peer (requests, aiohttp, trustme): fail under CI, skip elsewhere."""
    import importlib

    from tests.support.peers import missing

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"python package {name} is not installed")
        raise


def loopback_pair(stack: ioth.Stack, port: int = 0, timeout: float = 5.0
                  ) -> tuple[Any, Any, Any]:
    """``(listener, client, accepted)``: a TCP connection over ``stack``'s loopback
    (127.0.0.1:``port``, 0 = any); client and accepted socket have ``timeout``."""
    import socket

    from ioth.sockets import socket as isocket

    srv = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    cli = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    cli.settimeout(timeout)
    cli.connect(srv.getsockname())
    conn, _ = srv.accept()
    conn.settimeout(timeout)
    return srv, cli, conn


def connected_pairs(a: ioth.Stack, b: ioth.Stack, port: int, count: int,
                    addr: str = "192.0.2.2") -> tuple[Any, list[tuple[Any, Any]]]:
    """``count`` TCP connections from stack ``a`` to a listener of stack ``b`` on
    ``addr:port``, each end with a 10 s timeout: (listener, [(client, accepted)])."""
    import socket

    from ioth.sockets import socket as isocket
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((addr, port))
    srv.listen(max(count, 64))
    srv.settimeout(10)
    pairs = []
    for _ in range(count):
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect((addr, port))
        s, _ = srv.accept()
        s.settimeout(10)
        pairs.append((c, s))
    return srv, pairs

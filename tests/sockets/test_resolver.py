"""The per-stack getaddrinfo answers exactly like glibc's for literal addresses (every
combination of host, port, family, type and flags), so programs see no difference."""

from __future__ import annotations

import itertools
import socket
from typing import Any

from ioth.sockets import getaddrinfo
from tests.sockets.helpers import lone

HOSTS = ("127.0.0.1", "::1", "192.0.2.9", "2001:db8::1", None, "")
PORTS: tuple[Any, ...] = (80, "http", "0", None)
FAMILIES = (0, socket.AF_INET, socket.AF_INET6)
TYPES = (0, socket.SOCK_STREAM, socket.SOCK_DGRAM)
FLAGS = (0, socket.AI_PASSIVE, socket.AI_NUMERICHOST)


def _answer(fn: Any, *args: Any) -> Any:
    try:
        return sorted(fn(*args))
    except socket.gaierror as exc:
        return ("gaierror", exc.errno)


def test_getaddrinfo_matches_glibc_for_literals() -> None:
    with lone() as s:
        diffs = []
        for host, port, fam, typ, flags in itertools.product(HOSTS, PORTS, FAMILIES, TYPES,
                                                             FLAGS):
            for proto in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
                args = (host, port, fam, typ, proto, flags)
                kernel = _answer(socket.getaddrinfo, *args)
                ours = _answer(lambda *a: getaddrinfo(s, *a), *args)
                if kernel != ours:
                    diffs.append((args, kernel, ours))
        assert diffs == []

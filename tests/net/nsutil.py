"""Run in-process code inside a test network namespace (``setns`` on the calling thread).

Sockets created inside :func:`inside` stay in that namespace after the thread switches back, so
a test can open plugs in a namespace and drive them from the test body.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def inside(ns_name: str) -> Iterator[None]:
    """Switch this thread into network namespace ``ns_name``, and back afterwards."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{ns_name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def multicast_ready(ns: object, cidr: str = "198.18.5.1/24", cidr6: str = "fd00:1::1/64") -> None:
    """Give ``ns`` a veth pair ``va``/``vb`` (both inside it) with ``cidr`` on ``va`` and the
    IPv4 multicast route through ``va``; IPv6 multicast needs ``if=va``."""
    sh = ns.sh  # type: ignore[attr-defined]
    sh(f"ip link add va type veth peer name vb && ip addr add {cidr} dev va && "
       f"ip -6 addr add {cidr6} dev va nodad && ip link set va up && ip link set vb up && "
       f"ip route add 224.0.0.0/4 dev va")


def veth_between(ns1: object, ns2: object, cidr1: str = "198.18.0.1/24",
                 cidr2: str = "198.18.0.2/24") -> None:
    """Join ``ns1`` (interface ``va``) and ``ns2`` (``vb``) by a veth pair, with addresses and
    the IPv4 multicast route through the pair on both sides."""
    n2 = ns2.name  # type: ignore[attr-defined]
    ns1.sh(f"ip link add va type veth peer name vb netns {n2} && "  # type: ignore[attr-defined]
           f"ip addr add {cidr1} dev va && ip link set va up && "
           f"ip route add 224.0.0.0/4 dev va")
    ns2.sh(f"ip addr add {cidr2} dev vb && ip link set vb up && "  # type: ignore[attr-defined]
           f"ip route add 224.0.0.0/4 dev vb")

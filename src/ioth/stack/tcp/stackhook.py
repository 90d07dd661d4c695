"""Glue between a :class:`~ioth.stack.core.StackCore` and its :class:`TcpLayer`.

The stack core keeps this tiny: it creates the layer lazily with :func:`make_layer` (so a stack
that never uses TCP draws nothing from its random generator), hands protocol-6 payloads of
IPv4/IPv6 packets addressed to it to ``layer.input``, folds ``layer.poll_at()`` into its next
deadline and calls ``layer.on_timer(now)`` from its poll.  Everything else lives here.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

PROTO_TCP = 6


class _Glue:
    """Output and MTU callbacks of one core's TcpLayer."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self.layer: TcpLayer | None = None

    def output(self, src: bytes, dst: bytes, segment: bytes) -> None:
        """Send a segment through the core's IPv4 (DF set) or IPv6 output."""
        core = self.core
        now = self.layer.now if self.layer is not None else 0.0
        try:
            if len(dst) == 4:
                core.ip4.output(src, dst, PROTO_TCP, segment, now, df=True)
            else:
                core.ip6.output(src, dst, PROTO_TCP, segment, now)
        except OSError:
            core.counters["tcp.tx_no_route"] += 1

    def mtu(self, remote: bytes) -> int:
        """The route MTU towards ``remote``, lowered by a cached path MTU."""
        core = self.core
        v6 = len(remote) == 16
        try:
            iface, _ = (core.ip6 if v6 else core.ip4).route(remote)
        except OSError:
            return 1280 if v6 else 576
        value = iface.mtu
        if core.pmtu:
            pmtu = core.pmtu_get(remote, self.layer.now if self.layer is not None else 0.0)
            if pmtu is not None and pmtu < value:
                value = pmtu
        return value


def make_layer(core: StackCore, policy: TcpPolicy | None = None) -> TcpLayer:
    """The TcpLayer of ``core``: output through the core's IPv4/IPv6 output, MSS from routes."""
    glue = _Glue(core)
    layer = TcpLayer(random.Random(core.rng.getrandbits(64)), policy, glue.output, glue.mtu)
    glue.layer = layer
    return layer


def icmp_error(core: StackCore, layer: TcpLayer, local: bytes, remote: bytes,
               quoted: bytes | memoryview, fatal: bool, now: float) -> None:
    """An ICMP/ICMPv6 error quoting a TCP segment we sent: PMTU update or hard error."""
    pmtu = core.pmtu_get(remote, now) if core.pmtu else None
    layer.icmp_error(local, remote, quoted, fatal, now, mtu=pmtu)

"""Two TCP layers back to back (no IP, no interface), on a virtual clock.

The session-5 TCP tests of TIME-WAIT reuse and of ``TcpLayer.port_use`` drive two
:class:`ioth.stack.tcp.layer.TcpLayer` objects whose outboxes feed each other.
"""

from __future__ import annotations

import random

from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy


class LayerPair:
    """Layers ``a`` (seed 1) and ``b`` (seed 2) with ``policy``; :meth:`run` moves segments
    until both outboxes stay empty, each segment 1 ms after the one before."""

    def __init__(self, policy: TcpPolicy) -> None:
        self.a = TcpLayer(random.Random(1), policy)
        self.b = TcpLayer(random.Random(2), policy)
        self.now = 10.0

    def seen(self, src: TcpLayer, data: bytes) -> None:
        """Called with each segment before its destination gets it (nothing here)."""

    def after_round(self) -> None:
        """Called after each round over both outboxes (nothing here)."""

    def run(self) -> None:
        """Deliver segments both ways until none is left."""
        moved = True
        while moved:
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                out = list(src.outbox)
                src.outbox.clear()
                for s, d, data in out:
                    moved = True
                    self.now += 0.001
                    self.seen(src, data)
                    dst.input(s, d, data, self.now)
            self.after_round()

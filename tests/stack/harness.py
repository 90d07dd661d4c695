"""Virtual-clock test harness: stack cores joined by in-memory hubs with seeded impairments."""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
from dataclasses import dataclass, field

from ioth.stack.core import StackCore
from ioth.stack.interface import Interface


@dataclass
class Hub:
    """A broadcast segment with seeded loss, duplication, reordering (jitter) and delay."""

    loss: float = 0.0
    dup: float = 0.0
    jitter: float = 0.0
    delay: float = 0.0001
    ports: list[tuple[StackCore, int]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)  # every frame seen (a capture)


class VirtualNet:
    """Several stack cores, hubs between them, one virtual clock."""

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.hubs: list[Hub] = []
        self.cores: list[StackCore] = []
        self._inflight: list[tuple[float, int, StackCore, int, bytes]] = []
        self._seq = itertools.count()
        self._where: dict[tuple[int, int], Hub] = {}
        self._macs = 0

    def hub(self, **kw: float) -> Hub:
        h = Hub(**kw)
        self.hubs.append(h)
        return h

    def stack(self, seed: int | None = None) -> StackCore:
        core = StackCore(random.Random(self.rng.random() if seed is None else seed))
        self.cores.append(core)
        return core

    def attach(self, core: StackCore, hub: Hub, mac: bytes | None = None, mtu: int = 1500,
               name: str | None = None) -> Interface:
        if mac is None:
            self._macs += 1
            mac = bytes([0x02, 0x00, 0x00, 0x00, self._macs >> 8, self._macs & 0xFF])
        n = sum(1 for i in core.ifaces.values() if not i.loopback)
        iface = core.add_interface(name or f"vde{n}", mac, mtu)
        core.set_up(iface.index, True, self.now)
        hub.ports.append((core, iface.index))
        self._where[(id(core), iface.index)] = hub
        return iface

    def pump(self) -> None:
        for core in self.cores:
            for iface in core.ifaces.values():
                if iface.loopback:
                    continue
                hub = self._where.get((id(core), iface.index))
                while iface.txq:
                    frame = iface.txq.popleft()
                    if hub is None:
                        continue
                    hub.frames.append(frame)
                    for other, idx in hub.ports:
                        if other is core and idx == iface.index:
                            continue
                        if self.rng.random() < hub.loss:
                            continue
                        copies = 2 if self.rng.random() < hub.dup else 1
                        for _ in range(copies):
                            t = self.now + hub.delay + self.rng.random() * hub.jitter
                            heapq.heappush(self._inflight,
                                           (t, next(self._seq), other, idx, frame))

    def run(self, duration: float) -> None:
        end = self.now + duration
        while True:
            self.pump()
            deadlines = [d for c in self.cores if (d := c.next_deadline()) is not None]
            if self._inflight:
                deadlines.append(self._inflight[0][0])
            if not deadlines:
                self.now = end
                return
            t = min(deadlines)
            if t > end:
                self.now = end
                return
            self.now = max(self.now, t)
            while self._inflight and self._inflight[0][0] <= self.now:
                _, _, core, idx, frame = heapq.heappop(self._inflight)
                core.input_frame(idx, frame, self.now)
            for c in self.cores:
                d = c.next_deadline()
                if d is not None and d <= self.now:
                    c.poll(self.now)


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed

"""The switch engine: a sans-IO learning Ethernet switch (or hub) with 802.1Q VLANs.

Rules of this module (it is the per-frame hot path of every ioth switch):

* Pure: :meth:`SwitchCore.forward` takes the ingress port, the frame and ``now`` (seconds, any
  monotonic clock) and returns the frames to transmit as ``[(port, frame), ...]``.  No sockets,
  no clock, no threads here; the runtime (:mod:`ioth.net.switch.server`) does the I/O.
* Ports are small integers.  Each port has a largest frame it accepts (``max_frame``, 1518 for a
  classic VDE client); a frame is only ever sent to ports whose ``max_frame`` allows it, anything
  else is dropped and counted on that port (``drop_too_big``).  Frames of up to
  :data:`MAX_FRAME` bytes (MTU 65535 plus header and one tag) are switched.
* MAC learning is keyed by (MAC, VLAN).  Entries expire after ``ageing`` seconds (default 120 s,
  like vdeplug4's ``switch://``; Debian's vde_switch uses 100 s).  The table holds at most
  ``table_size`` entries (default 4096): when it is full and no entry has expired, the new
  address is simply not learnt (frames to it are flooded) and ``table_full`` counts it.
  Multicast source addresses are never learnt.  A frame is never sent back to its ingress port.
* Broadcast, multicast and unknown destinations are flooded to the ports of the frame's VLAN.
  In hub mode every frame goes, unchanged, to every other port (no VLAN processing).
* VLANs (IEEE 802.1Q, TPID 0x8100, VIDs 1..4094; VLAN 0 is the untagged default):

  - every port has one *untagged* VLAN (default 0, or None for no untagged traffic) and a set of
    *tagged* memberships;
  - a port with no VLAN configuration at all (untagged VLAN 0, no tagged memberships) is a
    **trunk**: it carries every VLAN 1..4094 tagged, so tagged frames cross the switch as they
    are (vde_switch drops them unless configured);
  - an untagged frame belongs to the untagged VLAN of its ingress port; a tagged frame is accepted
    only if the ingress port is a member of its VLAN (VID 0, a priority tag, counts as untagged);
    anything else is dropped (``drop_vlan``).  A frame never leaves its VLAN;
  - on egress the tag is added when the VLAN is tagged on the egress port and stripped when it is
    the egress port's untagged VLAN.  Tagged frames that stay tagged keep their priority bits.

  Changing a port's VLAN configuration flushes the MAC entries learnt on that port.
* Forwarding cache: a learnt unicast flow (untagged in, untagged out, source already learnt on
  the ingress port) is remembered by its first 12 bytes (destination and source MAC) as a
  :data:`Flow` tuple (ingress port, the counters and MAC entries it touches, the egress port's
  size limit and number), so the next frame of the flow skips the classification.  A hit still
  refreshes the source entry, checks the destination's age and the egress port's size limit,
  and counts like the full path (:meth:`SwitchCore.forward_cached`; a runtime may apply the
  same rule to :attr:`SwitchCore.flows` itself, see there).  The cache is bounded
  (:data:`FLOW_CACHE_SIZE`) and emptied by anything that could change a flow's outcome: a MAC
  moving, entries expiring or being flushed, any port or VLAN change, a port's size limit.
* Counters are plain integers: per port (:class:`PortCounters`) and per switch
  (:class:`SwitchCounters`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ioth.errors import IothUserError

ETH_HLEN = 14
VLAN_HLEN = 4
#: Largest MTU (Ethernet payload) on an ioth switch.
MAX_MTU = 65535
#: Largest frame switched: MTU 65535 + Ethernet header + one 802.1Q tag.
MAX_FRAME = MAX_MTU + ETH_HLEN + VLAN_HLEN
#: Largest frame of a classic VDE port (MTU 1500 + header + tag), vde_switch's limit.
DEFAULT_MAX_FRAME = 1518
DEFAULT_AGEING = 120.0
DEFAULT_TABLE_SIZE = 4096
#: VLAN ids usable for tagged traffic; 0 is the untagged default and 4095 is reserved.
MAX_VID = 4094
#: Minimum interval between two full sweeps of the MAC table triggered by a full table.
_SWEEP_INTERVAL = 1.0
#: Flows (destination + source MAC) the forwarding cache holds before it starts over.
FLOW_CACHE_SIZE = 1024

Output = list[tuple[int, bytes]]


class SwitchConfigError(IothUserError):
    """A switch configuration request was refused; ``errno`` says why (as vde_switch does)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class PortCounters:
    """Counters of one port: frames/bytes each way and drops by reason."""

    __slots__ = ("drop_runt", "drop_send", "drop_too_big", "drop_vlan", "rx_bytes",
                 "rx_frames", "tx_bytes", "tx_frames")

    #: reasons a frame may be dropped, in the order :meth:`drops` reports them
    DROP_REASONS = ("runt", "vlan", "too_big", "send")

    def __init__(self) -> None:
        self.rx_frames = 0  # frames received on the port (all of them, dropped ones included)
        self.rx_bytes = 0
        self.tx_frames = 0  # frames the switch forwarded to the port
        self.tx_bytes = 0
        self.drop_runt = 0  # received frames shorter than an Ethernet (or tagged) header
        self.drop_vlan = 0  # received frames of a VLAN the port is not a member of
        self.drop_too_big = 0  # frames for this port larger than its max_frame
        self.drop_send = 0  # frames the runtime could not hand over (EAGAIN, ENOBUFS, gone)

    def drops(self) -> dict[str, int]:
        """Drop counters by reason."""
        return {reason: getattr(self, "drop_" + reason) for reason in self.DROP_REASONS}

    def as_dict(self) -> dict[str, int]:
        """Every counter as a dictionary."""
        return {name: getattr(self, name) for name in sorted(self.__slots__)}

    def reset(self) -> None:
        """Zero every counter."""
        for name in self.__slots__:
            setattr(self, name, 0)


@dataclass
class SwitchCounters:
    """Counters of the whole switch."""

    flooded: int = 0  # frames flooded (broadcast, multicast, unknown destination)
    unicast: int = 0  # frames sent to one learnt port
    filtered: int = 0  # frames whose destination lives on the ingress port (not sent back)
    learned: int = 0  # new table entries
    moved: int = 0  # MAC addresses seen moving to another port
    expired: int = 0  # entries removed by ageing
    table_full: int = 0  # addresses not learnt because the table was full
    unknown_port: int = 0  # frames from a port the switch does not have


class Port:
    """One switch port: its size limit, VLAN membership and counters."""

    __slots__ = ("active", "counters", "description", "max_frame", "number", "tagged",
                 "untagged_vlan")

    def __init__(self, number: int, max_frame: int, description: str = "") -> None:
        self.number = number
        self.max_frame = max_frame
        self.description = description
        self.untagged_vlan: int | None = 0
        self.tagged: set[int] = set()
        self.counters = PortCounters()
        #: an inactive port keeps its configuration but gets no frames (nobody is plugged in)
        self.active = True

    @property
    def trunk(self) -> bool:
        """True for a port without VLAN configuration: it carries every VLAN tagged."""
        return self.untagged_vlan == 0 and not self.tagged

    def carries_tagged(self, vlan: int) -> bool:
        """Whether frames of ``vlan`` leave this port tagged."""
        if vlan == self.untagged_vlan or vlan == 0:
            return False
        return vlan in self.tagged or self.trunk

    def member(self, vlan: int) -> bool:
        """Whether the port belongs to ``vlan`` (tagged or untagged)."""
        return vlan == self.untagged_vlan or self.carries_tagged(vlan)


class MacEntry:
    """A learnt address: the port it lives on and when it was last seen."""

    __slots__ = ("port", "seen")

    def __init__(self, port: Port, seen: float) -> None:
        self.port = port
        self.seen = seen


#: A forwarding cache entry: (ingress port number, ingress counters, source entry, destination
#: entry, egress counters, egress max_frame, egress port number)
Flow = tuple[int, PortCounters, MacEntry, MacEntry, PortCounters, int, int]


@dataclass(frozen=True)
class TableRow:
    """One row of :meth:`SwitchCore.table` (for management output)."""

    mac: bytes
    vlan: int
    port: int
    age: float


def format_mac(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


def _check_vlan(vlan: int) -> None:
    if not 0 <= vlan <= MAX_VID:
        raise SwitchConfigError(errno.EINVAL, f"VLAN {vlan} out of range 0..{MAX_VID}")


class SwitchCore:
    """A learning switch (or, with ``hub=True``, a hub).  See the module docstring for rules."""

    def __init__(self, *, hub: bool = False, table_size: int = DEFAULT_TABLE_SIZE,
                 ageing: float = DEFAULT_AGEING) -> None:
        if table_size < 1:
            raise SwitchConfigError(errno.EINVAL, f"MAC table size {table_size} must be >= 1")
        if ageing <= 0:
            raise SwitchConfigError(errno.EINVAL, f"ageing time {ageing} must be > 0")
        self.hub = hub
        self.table_size = table_size
        self.ageing = float(ageing)
        self.ports: dict[int, Port] = {}
        #: VLANs defined for configuration (0 always exists); trunks carry any VID regardless.
        self.vlans: set[int] = {0}
        self.counters = SwitchCounters()
        # MAC table: one dict per VLAN, mac bytes -> entry; _entries counts them all
        self._tables: dict[int, dict[bytes, MacEntry]] = {}
        self._entries = 0
        self._last_sweep = float("-inf")
        # flood lists per VLAN: (ports where it is untagged, ports where it is tagged)
        self._flood: dict[int, tuple[tuple[Port, ...], tuple[Port, ...]]] = {}
        self._all_ports: tuple[Port, ...] = ()
        # forwarding cache: dst + src MAC -> Flow; emptied (in place: the dict object stays
        # the same for the switch's life) by every change that could alter a flow
        self._flows: dict[bytes, Flow] = {}

    # -- ports and VLANs ----------------------------------------------------------------------
    def add_port(self, number: int, max_frame: int = DEFAULT_MAX_FRAME,
                 description: str = "", active: bool = True) -> Port:
        """Create port ``number``; EEXIST if it exists."""
        if number < 0:
            raise SwitchConfigError(errno.EINVAL, f"port number {number} must be >= 0")
        if number in self.ports:
            raise SwitchConfigError(errno.EEXIST, f"port {number} already exists")
        if not ETH_HLEN <= max_frame <= MAX_FRAME:
            raise SwitchConfigError(
                errno.EINVAL, f"max frame {max_frame} out of range {ETH_HLEN}..{MAX_FRAME}")
        port = Port(number, max_frame, description)
        port.active = active
        self.ports[number] = port
        self._changed()
        return port

    def remove_port(self, number: int) -> None:
        """Delete port ``number`` and every address learnt on it."""
        self._port(number)
        self.flush_port(number)
        del self.ports[number]
        self._changed()

    def set_active(self, number: int, active: bool) -> None:
        """Activate or deactivate port ``number`` (an inactive port forgets its addresses)."""
        port = self._port(number)
        if port.active != active:
            port.active = active
            if not active:
                self.flush_port(number)
            self._changed()

    def set_max_frame(self, number: int, max_frame: int) -> None:
        """Change the largest frame port ``number`` accepts."""
        if not ETH_HLEN <= max_frame <= MAX_FRAME:
            raise SwitchConfigError(
                errno.EINVAL, f"max frame {max_frame} out of range {ETH_HLEN}..{MAX_FRAME}")
        port = self._port(number)
        if port.max_frame != max_frame:
            port.max_frame = max_frame
            self._flows.clear()  # (flows hold their egress port's limit)

    def create_vlan(self, vlan: int) -> None:
        """Define ``vlan`` (1..4094) for configuration; EEXIST if it is defined."""
        if not 1 <= vlan <= MAX_VID:
            raise SwitchConfigError(errno.EINVAL, f"VLAN {vlan} out of range 1..{MAX_VID}")
        if vlan in self.vlans:
            raise SwitchConfigError(errno.EEXIST, f"VLAN {vlan} already exists")
        self.vlans.add(vlan)

    def remove_vlan(self, vlan: int) -> None:
        """Undefine ``vlan``; EADDRINUSE while a port is configured on it."""
        if not 1 <= vlan <= MAX_VID:
            raise SwitchConfigError(errno.EINVAL, f"VLAN {vlan} out of range 1..{MAX_VID}")
        if vlan not in self.vlans:
            raise SwitchConfigError(errno.ENXIO, f"VLAN {vlan} does not exist")
        for port in self.ports.values():
            if port.untagged_vlan == vlan or vlan in port.tagged:
                raise SwitchConfigError(errno.EADDRINUSE,
                                        f"VLAN {vlan} is in use on port {port.number}")
        self.vlans.discard(vlan)

    def set_untagged_vlan(self, number: int, vlan: int | None) -> None:
        """Make ``vlan`` the untagged VLAN of port ``number`` (None: no untagged traffic)."""
        port = self._port(number)
        if vlan is not None:
            _check_vlan(vlan)
            if vlan not in self.vlans:
                raise SwitchConfigError(errno.ENXIO, f"VLAN {vlan} does not exist")
            port.tagged.discard(vlan)
        port.untagged_vlan = vlan
        self.flush_port(number)
        self._changed()

    def add_tagged_vlan(self, number: int, vlan: int) -> None:
        """Make port ``number`` a tagged member of ``vlan``."""
        port = self._port(number)
        if not 1 <= vlan <= MAX_VID:
            raise SwitchConfigError(errno.EINVAL, f"VLAN {vlan} out of range 1..{MAX_VID}")
        if vlan not in self.vlans:
            raise SwitchConfigError(errno.ENXIO, f"VLAN {vlan} does not exist")
        if vlan == port.untagged_vlan:
            return  # already carried untagged, as vde_switch does
        port.tagged.add(vlan)
        self.flush_port(number)
        self._changed()

    def remove_tagged_vlan(self, number: int, vlan: int) -> None:
        """Remove port ``number`` from the tagged members of ``vlan``."""
        port = self._port(number)
        _check_vlan(vlan)
        if vlan not in self.vlans:
            raise SwitchConfigError(errno.ENXIO, f"VLAN {vlan} does not exist")
        if vlan == port.untagged_vlan:
            raise SwitchConfigError(errno.EADDRINUSE,
                                    f"VLAN {vlan} is the untagged VLAN of port {number}")
        port.tagged.discard(vlan)
        self.flush_port(number)
        self._changed()

    def vlan_members(self, vlan: int) -> list[tuple[int, bool]]:
        """Ports of ``vlan`` as (port, tagged), sorted by port."""
        out: list[tuple[int, bool]] = []
        for number in sorted(self.ports):
            port = self.ports[number]
            if port.untagged_vlan == vlan:
                out.append((number, False))
            elif vlan in port.tagged:
                out.append((number, True))
        return out

    def _port(self, number: int) -> Port:
        port = self.ports.get(number)
        if port is None:
            raise SwitchConfigError(errno.ENXIO, f"port {number} does not exist")
        return port

    def _changed(self) -> None:
        self._flows.clear()
        self._flood.clear()
        self._all_ports = tuple(self.ports[n] for n in sorted(self.ports)
                                if self.ports[n].active)

    def _flood_lists(self, vlan: int) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        lists = self._flood.get(vlan)
        if lists is None:
            ports = self._all_ports
            untagged = tuple(p for p in ports if p.untagged_vlan == vlan)
            tagged = tuple(p for p in ports if p.carries_tagged(vlan))
            lists = self._flood[vlan] = (untagged, tagged)
        return lists

    # -- MAC table ----------------------------------------------------------------------------
    def flush_port(self, number: int) -> int:
        """Forget the addresses learnt on port ``number``; returns how many."""
        self._flows.clear()
        removed = 0
        for table in self._tables.values():
            stale = [mac for mac, entry in table.items() if entry.port.number == number]
            for mac in stale:
                del table[mac]
            removed += len(stale)
        self._entries -= removed
        return removed

    def flush(self) -> None:
        """Forget every learnt address."""
        self._flows.clear()
        self._tables.clear()
        self._entries = 0

    def expire(self, now: float) -> int:
        """Remove entries older than the ageing time; returns how many.  Call it now and then."""
        limit = now - self.ageing
        removed = 0
        for table in self._tables.values():
            stale = [mac for mac, entry in table.items() if entry.seen < limit]
            for mac in stale:
                del table[mac]
            removed += len(stale)
        if removed:
            self._flows.clear()
        self._entries -= removed
        self.counters.expired += removed
        self._last_sweep = now
        return removed

    def set_ageing(self, seconds: float) -> None:
        """Change the ageing time."""
        if seconds <= 0:
            raise SwitchConfigError(errno.EINVAL, f"ageing time {seconds} must be > 0")
        self.ageing = float(seconds)

    def lookup(self, mac: bytes, vlan: int, now: float) -> int | None:
        """The port where ``mac`` lives on ``vlan``, or None."""
        entry = self._tables.get(vlan, {}).get(bytes(mac))
        if entry is None or now - entry.seen > self.ageing:
            return None
        return entry.port.number

    def table(self, now: float) -> list[TableRow]:
        """The live entries of the MAC table, sorted by VLAN then MAC."""
        rows = [TableRow(mac, vlan, entry.port.number, now - entry.seen)
                for vlan, table in self._tables.items() for mac, entry in table.items()
                if now - entry.seen <= self.ageing]
        rows.sort(key=lambda r: (r.vlan, r.mac))
        return rows

    @property
    def flows(self) -> dict[bytes, Flow]:
        """The forwarding cache, for a runtime's inline fast path (read it, never write it).

        A frame of 14 bytes or more whose first 12 bytes are a key, whose bytes 12-13 are not
        an 802.1Q TPID (0x8100), that arrives on the flow's ingress port while ``now -
        destination.seen <= ageing`` and fits the egress limit is a hit: set ``source.seen =
        now``, add one frame and ``len(frame)`` bytes to the ingress ``rx_`` and egress ``tx_``
        counters, ``counters.unicast += 1``, and send the frame unchanged to the egress port.
        Anything else: call :meth:`forward_uncached`.  This is exactly
        :meth:`forward_cached`.  The dict is the same object for the switch's life (emptied in
        place), so a runtime may keep a reference."""
        return self._flows

    @property
    def flow_cache_entries(self) -> int:
        """Number of flows in the forwarding cache."""
        return len(self._flows)

    @property
    def table_entries(self) -> int:
        """Number of entries in the MAC table (live or not yet swept)."""
        return self._entries

    def _learn(self, table: dict[bytes, MacEntry], mac: bytes, port: Port, now: float) -> None:
        if self._entries >= self.table_size:
            if now - self._last_sweep >= _SWEEP_INTERVAL:
                self.expire(now)
            if self._entries >= self.table_size:
                self.counters.table_full += 1
                return
        table[mac] = MacEntry(port, now)
        self._entries += 1
        self.counters.learned += 1

    # -- the hot path -------------------------------------------------------------------------
    def forward_cached(self, ingress: int, frame: bytes, now: float) -> int | None:
        """Switch ``frame`` if it belongs to a cached flow: returns the egress port number (the
        frame goes out unchanged) after counting and refreshing exactly as :meth:`forward`
        would, or None without touching anything (the caller then calls
        :meth:`forward_uncached`).  The rule is spelt out at :attr:`flows`."""
        flow = self._flows.get(frame[:12])
        if flow is None:
            return None
        f_port, f_rx, f_src, f_dst, f_tx, f_max, egress = flow
        n = len(frame)
        if (f_port != ingress or n < ETH_HLEN or (frame[12] == 0x81 and frame[13] == 0)
                or now - f_dst.seen > self.ageing or n > f_max):
            return None
        f_src.seen = now
        f_rx.rx_frames += 1
        f_rx.rx_bytes += n
        f_tx.tx_frames += 1
        f_tx.tx_bytes += n
        self.counters.unicast += 1
        return egress

    def forward(self, ingress: int, frame: bytes | bytearray | memoryview, now: float
                ) -> Output:
        """Switch one frame received on port ``ingress`` at time ``now``.

        Returns the frames to send as ``[(port, frame), ...]``; frames that go nowhere give [].
        """
        if type(frame) is not bytes:
            frame = bytes(frame)
        # a cached flow: the same outcome as the classification, without it
        egress = self.forward_cached(ingress, frame, now)
        if egress is not None:
            return [(egress, frame)]
        return self.forward_uncached(ingress, frame, now)

    def forward_uncached(self, ingress: int, frame: bytes, now: float) -> Output:
        """:meth:`forward` after :meth:`forward_cached` returned None for ``frame`` (bytes):
        the full classification (callers that tried the cache already skip a second try)."""
        n = len(frame)
        port = self.ports.get(ingress)
        if port is None or not port.active:
            self.counters.unknown_port += 1
            return []
        pc = port.counters
        pc.rx_frames += 1
        pc.rx_bytes += n
        if n < ETH_HLEN:
            pc.drop_runt += 1
            return []
        out: Output = []
        if self.hub:
            for p in self._all_ports:
                if p is not port:
                    if n <= p.max_frame:
                        out.append((p.number, frame))
                        c = p.counters
                        c.tx_frames += 1
                        c.tx_bytes += n
                    else:
                        p.counters.drop_too_big += 1
            self.counters.flooded += 1
            return out

        # -- classify: which VLAN, and is the frame tagged now?
        if frame[12] == 0x81 and frame[13] == 0:
            if n < ETH_HLEN + VLAN_HLEN:
                pc.drop_runt += 1
                return []
            vlan = ((frame[14] & 0x0F) << 8) | frame[15]
            if vlan == 0:  # priority tag: the frame belongs to the port's untagged VLAN
                untagged_vlan = port.untagged_vlan
                if untagged_vlan is None:
                    pc.drop_vlan += 1
                    return []
                vlan = untagged_vlan
                tagged_frame: bytes | None = None
                plain_frame: bytes | None = frame[:12] + frame[16:]
            elif vlan == port.untagged_vlan or (vlan <= MAX_VID and (
                    vlan in port.tagged or (port.untagged_vlan == 0 and not port.tagged))):
                tagged_frame = frame
                plain_frame = None
            else:
                pc.drop_vlan += 1
                return []
        else:
            untagged_vlan = port.untagged_vlan
            if untagged_vlan is None:
                pc.drop_vlan += 1
                return []
            vlan = untagged_vlan
            tagged_frame = None
            plain_frame = frame

        # -- learn the source (never a multicast one)
        table = self._tables.get(vlan)
        if table is None:
            table = self._tables[vlan] = {}
        src_entry: MacEntry | None = None
        if not frame[6] & 1:
            src = frame[6:12]
            src_entry = table.get(src)
            if src_entry is None:
                self._learn(table, src, port, now)
            else:
                if src_entry.port is not port:
                    src_entry.port = port
                    self.counters.moved += 1
                    self._flows.clear()
                src_entry.seen = now

        # -- unicast to a learnt port
        if not frame[0] & 1:
            entry = table.get(frame[:6])
            if entry is not None and now - entry.seen <= self.ageing:
                dest = entry.port
                if dest is port:
                    self.counters.filtered += 1
                    return out
                if dest.untagged_vlan == vlan:
                    if plain_frame is None:
                        assert tagged_frame is not None
                        plain_frame = tagged_frame[:12] + tagged_frame[16:]
                    data = plain_frame
                else:
                    if tagged_frame is None:
                        assert plain_frame is not None
                        tagged_frame = (plain_frame[:12] + b"\x81\x00" + vlan.to_bytes(2, "big")
                                        + plain_frame[12:])
                    data = tagged_frame
                c = dest.counters
                if len(data) <= dest.max_frame:
                    out.append((dest.number, data))
                    c.tx_frames += 1
                    c.tx_bytes += len(data)
                    if data is frame and plain_frame is frame and src_entry is not None:
                        # untagged in and out, source learnt here: remember the flow
                        flows = self._flows
                        if len(flows) >= FLOW_CACHE_SIZE:
                            flows.clear()
                        flows[frame[:12]] = (ingress, pc, src_entry, entry, c,
                                             dest.max_frame, dest.number)
                else:
                    c.drop_too_big += 1
                self.counters.unicast += 1
                return out

        # -- flood within the VLAN
        self.counters.flooded += 1
        lists = self._flood.get(vlan)
        if lists is None:
            lists = self._flood_lists(vlan)
        untagged_ports, tagged_ports = lists
        if untagged_ports:
            if plain_frame is None:
                assert tagged_frame is not None
                plain_frame = tagged_frame[:12] + tagged_frame[16:]
            size = len(plain_frame)
            for p in untagged_ports:
                if p is not port:
                    c = p.counters
                    if size <= p.max_frame:
                        out.append((p.number, plain_frame))
                        c.tx_frames += 1
                        c.tx_bytes += size
                    else:
                        c.drop_too_big += 1
        if tagged_ports:
            if tagged_frame is None:
                assert plain_frame is not None
                tagged_frame = (plain_frame[:12] + b"\x81\x00" + vlan.to_bytes(2, "big")
                                + plain_frame[12:])
            size = len(tagged_frame)
            for p in tagged_ports:
                if p is not port:
                    c = p.counters
                    if size <= p.max_frame:
                        out.append((p.number, tagged_frame))
                        c.tx_frames += 1
                        c.tx_bytes += size
                    else:
                        c.drop_too_big += 1
        return out

    def count_send_drop(self, number: int) -> None:
        """Record that the runtime could not deliver a frame to port ``number``."""
        port = self.ports.get(number)
        if port is not None:
            port.counters.drop_send += 1


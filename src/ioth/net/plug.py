"""The plug API: one object per attachment to a virtual Ethernet network.

A plug moves whole Ethernet frames (destination MAC, source MAC, type, payload; no FCS).  Plugs are
the only code in ioth that touches file descriptors of the network.

Contract, shared by every plug:

* ``send(frame)`` never blocks.  It returns True when the frame was handed to the medium and False
  when it was dropped (EAGAIN, ENOBUFS, too big for this plug, plug closed); every drop is counted.
* ``recv_frames(limit)`` never blocks.  It drains up to ``limit`` frames that are ready and returns
  them (possibly none).  Frames shorter than 14 bytes are counted as errors and not returned.  When
  the peer is gone it raises :class:`~ioth.errors.PlugClosedError` (after the frames already read
  were returned by earlier calls).
* ``fileno()`` is readable when ``recv_frames`` may have something to do; ``filenos()`` lists every
  descriptor to watch (some plugs also watch a control socket).
* ``mtu`` is the largest Ethernet payload (L3 MTU) the plug carries; ``max_frame`` is the largest
  frame it accepts (``mtu`` + 14 + 4 for one VLAN tag).
* ``counters`` counts frames and bytes each way, and what was dropped and why.
* ``poll_at()`` is a monotonic time (``time.monotonic``) at which the owner must call
  ``recv_frames`` even if no descriptor is readable (plugs that hold frames back, like the
  impairment wrapper, release them then), or None.  Owners (bridge, switch, stack runtime)
  honour it after every call into the plug.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ioth.net.vnl import VNL, Style

ETH_HLEN = 14
VLAN_HLEN = 4
MIN_FRAME = 14


@dataclass
class PlugCounters:
    """Per-plug counters; plain integers, cheap to bump on the hot path."""

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0  # malformed or undersized frames received and dropped
    rx_dropped: int = 0  # frames read but dropped by the plug (filtering, decryption, ...)
    tx_dropped: int = 0  # frames not sent: EAGAIN/ENOBUFS, too big, closed

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dictionary."""
        return asdict(self)


class Plug(abc.ABC):
    """Base class of every plug.  Subclasses set the class attributes describing their VNL."""

    #: VNL argument style of this plug (see :mod:`ioth.net.vnl`).
    STYLE: ClassVar[Style] = "bracket"
    #: Known option keys (abbreviable).
    KEYS: ClassVar[tuple[str, ...]] = ()
    #: Whether bare tokens that are not keys are accepted (e.g. vde://DIR[3]).
    BARE_ARGS: ClassVar[bool] = False
    #: Default MTU (Ethernet payload) of this plug type.
    DEFAULT_MTU: ClassVar[int] = 1500
    #: True when every frame :meth:`recv_frames` returns has IPv4/TCP/UDP/ICMP checksums known
    #: to be right (built or validated by the local kernel, e.g. a TAP whose virtio header says
    #: so): a stack on this plug may skip verifying them.  Plugs that cannot promise it leave
    #: it False and the stack verifies every checksum.
    rx_csum_trusted: bool = False
    #: Transmit offloads (0 / False for plugs without them): the largest IP packet (header
    #: included) of a TCP super-segment the plug accepts and has cut into segments below its
    #: link MTU (TSO/GSO), and whether it accepts TCP frames whose checksum is only partial.
    #: Both apply only to frames handed over as :class:`OffloadFrame`; plain frames must fit
    #: the link and carry complete checksums as always.
    gso_max_size: int = 0
    tx_csum_offload: bool = False

    mtu: int
    counters: PlugCounters
    vnl: str

    def __init__(self, vnl: str = "", mtu: int | None = None) -> None:
        self.vnl = vnl
        self.mtu = mtu if mtu is not None else self.DEFAULT_MTU
        self.counters = PlugCounters()
        self.closed = False

    @classmethod
    @abc.abstractmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> Plug:
        """Open a plug from a parsed VNL."""

    @property
    def max_frame(self) -> int:
        """Largest frame accepted by :meth:`send` (header and one VLAN tag included)."""
        return self.mtu + ETH_HLEN + VLAN_HLEN

    @abc.abstractmethod
    def fileno(self) -> int:
        """A descriptor that is readable when frames may be waiting."""

    def filenos(self) -> list[int]:
        """Every descriptor an engine should watch for this plug."""
        return [self.fileno()]

    @abc.abstractmethod
    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Send one frame without blocking; False (and a counted drop) if it could not go."""

    @abc.abstractmethod
    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Drain up to ``limit`` ready frames without blocking."""

    def poll_at(self) -> float | None:
        """When ``recv_frames`` must be called again regardless of readiness (or None)."""
        return None

    def close(self) -> None:
        """Release the plug's resources; idempotent."""
        self.closed = True

    def __enter__(self) -> Plug:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One-line description for tables."""
        return self.vnl

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.vnl!r} mtu={self.mtu}>"


class WrapperPlug(Plug):
    """A plug that transforms frames of a nested plug (vlan, agno, impair, capture)."""

    STYLE: ClassVar[Style] = "wrapper"

    def __init__(self, inner: Plug, vnl: str = "", mtu: int | None = None) -> None:
        super().__init__(vnl, mtu if mtu is not None else inner.mtu)
        self.inner = inner

    def fileno(self) -> int:
        return self.inner.fileno()

    def filenos(self) -> list[int]:
        return self.inner.filenos()

    def poll_at(self) -> float | None:
        return self.inner.poll_at()

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


class OffloadFrame(bytearray):
    """A frame with transmit offload requests, for plugs that declare them.

    Only a plug whose :attr:`Plug.tx_csum_offload` is True (or :attr:`Plug.gso_max_size` is
    non-zero, for ``gso_size``) may be handed one.  ``csum_start`` is the offset in the frame
    of a TCP header whose checksum field (at ``csum_start + csum_offset``) holds only the
    folded pseudo-header sum; the plug (or its kernel) completes it over ``csum_start`` to the
    end.  ``gso_size`` > 0 asks for segmentation of the TCP super-segment into segments of
    ``gso_size`` payload bytes each (the last one shorter), with the TSO rules (sequence
    numbers, IPv4 IDs, CWR on the first and FIN/PSH on the last segment).
    """

    __slots__ = ("csum_offset", "csum_start", "gso_size")

    def __init__(self, data: bytes | bytearray | memoryview = b"", csum_start: int = 0,
                 csum_offset: int = 0, gso_size: int = 0) -> None:
        super().__init__(data)
        self.csum_start = csum_start
        self.csum_offset = csum_offset
        self.gso_size = gso_size


FrameHandler = Callable[[bytes], None]

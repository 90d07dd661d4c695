"""``vlan://N[untag=U/tag=a:b-c/trunk/qinq]{nested}``: 802.1Q tagging done by the plug.

Compatible with ``libvdeplug_vlan`` (vdeplug_vlan 0.1).  Terms: *user side* is the program using
this plug, *network side* is the nested plug.  ``N`` is the VLAN the user is connected to
untagged (0 = none); options (aliases of the C module in brackets):

``untag=U`` (``u``)   untagged network traffic is shown to the user tagged with U (0 = never)
``tag=LIST`` (``t``)  VLANs the user is connected to tagged; ``:`` or ``.`` separated items, an
                      item ``a-b`` remaps user VLAN a to network VLAN b (and back)
``trunk`` (``x``)     tagged traffic of VLANs not listed passes unchanged (VLANs 1..4094)
``qinq`` (``q``, ``ad``)  use TPID 0x88a8 (802.1ad) instead of 0x8100 for the tags this
                      plug adds, strips and matches: ``vlan://4{vlan://5[qinq]{...}}`` puts
                      VLAN 4 inside service VLAN 5

Sending (user -> network):
* tagged with VLAN ``untag``: the tag is removed;
* tagged with a listed VLAN (or any valid VLAN with ``trunk``): sent with the remapped VID;
* untagged: sent tagged with N when N is set; sent as is when neither N nor untag is set;
  otherwise (or N = 4095) dropped;
* anything else is dropped (counted in ``tx_dropped``).

Receiving (network -> user):
* tagged with N: the tag is removed;
* tagged with a listed VLAN (or with ``trunk``): delivered with the remapped VID;
* untagged: tagged with ``untag`` if set; dropped if N is set; else delivered as is;
* anything else is dropped (counted in ``rx_dropped``).

Both option forms are accepted: ``vlan://3[untag=4/trunk]{...}`` and ``vlan://3/untag=4/trunk{...}``.
The Debian build of the C module (0.1.0) only understands the slash form (with brackets its
options end up inside the VLAN number and are ignored), so use that form for VNLs shared with
it.  Differences from the C module, checked against it: it writes the bare VID when it remaps a
tag (priority bits cleared) while this plug keeps PCP and DEI; and for frames it retags on
receive it returns its whole 9234-byte buffer (stale bytes after the frame), this plug returns
the frame.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from ioth.errors import VNLError
from ioth.net.plug import ETH_HLEN, MIN_FRAME, Plug, WrapperPlug
from ioth.net.vnl import VNL, Style, parse_options

TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
VLAN_MASK = 0x0FFF

_ALIASES = {"u": "untag", "t": "tag", "x": "trunk", "q": "qinq", "ad": "qinq"}


def vlan_ok(vid: int) -> bool:
    """VLAN ids 0, 1 and 4095 are reserved for this purpose (as in the C module)."""
    return ((vid + 1) & 0xFFF) > 2


def parse_tags(text: str, vnl_text: str) -> tuple[dict[int, int], dict[int, int]]:
    """``a:b-c`` -> (user VID -> network VID, network VID -> user VID)."""
    lr: dict[int, int] = {}
    rl: dict[int, int] = {}
    for item in text.replace(".", ":").split(":"):
        if not item:
            continue
        left, dash, right = item.partition("-")
        try:
            user = int(left, 0) & VLAN_MASK
            net = int(right, 0) & VLAN_MASK if dash else user
        except ValueError:
            raise VNLError(f"VNL {vnl_text!r}: bad VLAN list item {item!r}") from None
        lr.setdefault(user, net)
        rl.setdefault(net, user)
    return lr, rl


class VlanPlug(WrapperPlug):
    """802.1Q / 802.1ad tagging wrapper."""

    STYLE: ClassVar[Style] = "wrapper"
    KEYS: ClassVar[tuple[str, ...]] = ("untag", "tag", "trunk", "qinq", "u", "t", "x", "q",
                                       "ad")

    def __init__(self, inner: Plug, untagged: int = 0, untag: int = 0, tags: str = "",
                 trunk: bool = False, qinq: bool = False, vnl: str = "") -> None:
        super().__init__(inner, vnl, inner.mtu)
        self.untagged = untagged & VLAN_MASK
        self.tag2untag = untag & VLAN_MASK
        self.map_lr, self.map_rl = parse_tags(tags, vnl)
        self.trunk = trunk
        self.tpid = TPID_8021AD if qinq else TPID_8021Q
        self._tpid_bytes = struct.pack("!H", self.tpid)

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> VlanPlug:
        """Open ``vlan://N[options]{nested}``."""
        from ioth.net.registry import open_plug

        address = vnl.address
        options = dict(vnl.options)
        if "/" in address:
            address, _, extra = address.partition("/")
            more, _ = parse_options(extra, cls.KEYS, vnl.text)
            options.update(more)
        for short, full in _ALIASES.items():
            if short in options:
                options[full] = options.pop(short)

        def number(text: str, what: str) -> int:
            text = text.strip()
            if not text:
                return 0
            try:
                return int(text, 0)
            except ValueError:
                raise VNLError(f"VNL {vnl.text!r}: {what} {text!r} is not a number") from None

        untagged = number(address, "VLAN")
        untag = number(options.get("untag", ""), "untag")
        assert vnl.nested is not None
        inner = open_plug(vnl.nested, **kwargs)
        return cls(inner, untagged, untag, options.get("tag", ""), "trunk" in options,
                   "qinq" in options, vnl.text)

    def _remap(self, vid: int, table: dict[int, int]) -> int:
        mapped = table.get(vid, 0)
        if mapped == 0 and self.trunk and vlan_ok(vid):
            mapped = vid
        return mapped if vlan_ok(mapped) else 0

    def _tag(self, frame: bytes | bytearray | memoryview, vid: int) -> bytes:
        return b"".join((frame[:12], self._tpid_bytes, struct.pack("!H", vid), frame[12:]))

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Tag, retag, untag or drop one frame going to the network."""
        n = len(frame)
        if n < MIN_FRAME or self.closed:
            self.counters.tx_dropped += 1
            return False
        out: bytes | bytearray | memoryview | None = None
        if frame[12:14] == self._tpid_bytes and n >= ETH_HLEN + 4:
            tci = (frame[14] << 8) | frame[15]
            vid = tci & VLAN_MASK
            if vid == self.tag2untag:
                out = b"".join((frame[:12], frame[16:]))
            else:
                mapped = self._remap(vid, self.map_lr)
                if mapped:
                    out = b"".join((frame[:14], struct.pack("!H", (tci & 0xF000) | mapped),
                                    frame[16:]))
        elif self.untagged == 0:
            if self.tag2untag == 0:
                out = frame
        elif self.untagged != VLAN_MASK:
            out = self._tag(frame, self.untagged)
        if out is None:
            self.counters.tx_dropped += 1
            return False
        if not self.inner.send(out):
            self.counters.tx_dropped += 1
            return False
        self.counters.tx_frames += 1
        self.counters.tx_bytes += n
        return True

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Frames from the network, untagged/retagged for the user; others dropped."""
        out: list[bytes] = []
        counters = self.counters
        tpid = self._tpid_bytes
        for frame in self.inner.recv_frames(limit):
            result: bytes | None = None
            if len(frame) < MIN_FRAME:
                counters.rx_errors += 1
                continue
            if frame[12:14] == tpid and len(frame) >= ETH_HLEN + 4:
                tci = (frame[14] << 8) | frame[15]
                vid = tci & VLAN_MASK
                if vid == self.untagged:
                    result = frame[:12] + frame[16:]
                else:
                    mapped = self._remap(vid, self.map_rl)
                    if mapped:
                        result = b"".join((frame[:14],
                                           struct.pack("!H", (tci & 0xF000) | mapped),
                                           frame[16:]))
            elif self.tag2untag:
                result = self._tag(frame, self.tag2untag)
            elif self.untagged == 0:
                result = frame
            if result is None:
                counters.rx_dropped += 1
                continue
            counters.rx_frames += 1
            counters.rx_bytes += len(result)
            out.append(result)
        return out

    def describe(self) -> str:
        return f"vlan {self.untagged} over {self.inner.describe()}"

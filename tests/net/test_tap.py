"""TapPlug: opening, options, errors, counters, the virtio-net header and checksum completion.

Everything that creates an interface does it inside a namespace the test creates.
"""

from __future__ import annotations

import errno
import os
import pathlib
import secrets
import select
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from ioth.errors import IothUserError, PlugClosedError, VNLError
from ioth.net.plug import OffloadFrame
from ioth.net.plugs import tap as tapmod
from ioth.net.plugs.tap import (
    TapPlug,
    checksums_ok,
    finish_checksum,
    gso_header,
    offload_header,
    segment_tcp,
)
from ioth.net.registry import open_plug
from tests.support.peers import Netns, require_root

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def ifname() -> str:
    """A random interface name (tests of other helpers run at the same time)."""
    return "tt" + secrets.token_hex(4)


def link_info(ns: Netns, name: str) -> str:
    """``ip -o link show NAME`` inside ``ns``."""
    return ns.run(["ip", "-o", "link", "show", name]).stdout


def link_exists(ns: Netns, name: str) -> bool:
    """True if ``name`` exists in ``ns``."""
    return ns.run(["ip", "link", "show", name], check=False).returncode == 0


# -- pure helpers -------------------------------------------------------------------------------

def tcp4(payload_len: int, options: list[tuple[str, object]] | None = None, flags: str = "A"
         ) -> bytes:
    """An Ethernet/IPv4/TCP frame with a payload of ``payload_len`` bytes."""
    data = (bytes(range(256)) * (payload_len // 256 + 1))[:payload_len]
    pkt = (Ether(src=MAC_A, dst=MAC_B) / IP(src="198.51.100.2", dst="198.51.100.1", flags="DF")
           / TCP(sport=1234, dport=80, flags=flags, options=options or []) / data)
    return bytes(pkt)


def test_gso_header_small_frame_is_plain() -> None:
    assert gso_header(tcp4(1000), 1500) == bytes(12)
    assert gso_header(tcp4(1460), 1500) == bytes(12)  # exactly 1514 bytes


def test_gso_header_tcpv4() -> None:
    frame = tcp4(30000)
    flags, gso_type, hdr_len, gso_size, cs, co, nb = struct.unpack("=BBHHHHH",
                                                                   gso_header(frame, 1500))
    assert (flags, gso_type, hdr_len, gso_size, cs, co, nb) == (0, 1, 54, 1460, 0, 0, 0)


def test_gso_header_tcp_options_and_link_mtu() -> None:
    frame = tcp4(20000, options=[("Timestamp", (1, 2)), ("NOP", None), ("NOP", None)])
    _, gso_type, hdr_len, gso_size, *_ = struct.unpack("=BBHHHHH", gso_header(frame, 9000))
    assert gso_type == tapmod.VIRTIO_NET_HDR_GSO_TCPV4
    assert hdr_len == 14 + 20 + 32
    assert gso_size == 9000 - 20 - 32


def test_gso_header_tcpv6_vlan_and_ecn() -> None:
    pkt = (Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5)
           / IPv6(src="2001:db8::2", dst="2001:db8::1") / TCP(flags="AC") / (b"x" * 5000))
    _, gso_type, hdr_len, gso_size, *_ = struct.unpack("=BBHHHHH", gso_header(bytes(pkt), 1500))
    assert gso_type == tapmod.VIRTIO_NET_HDR_GSO_TCPV6 | tapmod.VIRTIO_NET_HDR_GSO_ECN
    assert hdr_len == 18 + 40 + 20
    assert gso_size == 1500 - 40 - 20


def test_gso_header_big_udp_is_plain() -> None:
    pkt = Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP() / (b"u" * 8000)
    assert gso_header(bytes(pkt), 1500) == bytes(12)


@pytest.mark.parametrize("link_mtu", [1500, 1499, 9000])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("vlan", [False, True], ids=["untagged", "vlan"])
def test_segment_tcp_matches_scapy(link_mtu: int, v6: bool, vlan: bool) -> None:
    data = secrets.token_bytes(30001)
    ip = (IPv6(src="2001:db8::2", dst="2001:db8::1") if v6
          else IP(src="198.51.100.2", dst="198.51.100.1", flags="DF", id=65530))
    l2 = Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=7) if vlan else Ether(src=MAC_A, dst=MAC_B)
    seq0 = 2**32 - 5000  # wraps around inside the super-frame
    pkt = l2 / ip / TCP(sport=1, dport=2, seq=seq0, ack=9, flags="FPAC",
                        options=[("NOP", None), ("NOP", None), ("Timestamp", (5, 6))]) / data
    segments = segment_tcp(bytes(pkt), link_mtu)
    assert segments is not None
    mss = link_mtu - (40 if v6 else 20) - 32
    assert len(segments) == -(-len(data) // mss)
    joined = b""
    for i, seg in enumerate(segments):
        assert len(seg) <= link_mtu + 14 + (4 if vlan else 0)
        p = Ether(seg)
        tcp = p[TCP]
        assert tcp.seq == (seq0 + len(joined)) % 2**32
        assert tcp.ack == 9 and tcp.options == pkt[TCP].options
        assert ("C" in tcp.flags) == (i == 0)
        assert ("F" in tcp.flags) == ("P" in tcp.flags) == (i == len(segments) - 1)
        assert "A" in tcp.flags
        clone = p.copy()
        del clone[TCP].chksum
        if v6:
            assert p[IPv6].plen == len(seg) - (18 if vlan else 14) - 40
        else:
            assert p[IP].id == (65530 + i) % 65536 and p[IP].flags == "DF"
            assert p[IP].len == len(seg) - (18 if vlan else 14)
            del clone[IP].chksum
            assert Ether(bytes(clone))[IP].chksum == p[IP].chksum
        assert Ether(bytes(clone))[TCP].chksum == tcp.chksum
        joined += bytes(tcp.payload)
    assert joined == data


def test_segment_tcp_rejects_and_ignores_padding() -> None:
    udp = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP()
                / (b"u" * 5000))
    assert segment_tcp(udp, 1500) is None
    frame = tcp4(5000)
    assert segment_tcp(frame[:-1], 1500) is None  # IP length beyond the frame
    segments = segment_tcp(frame + b"\0" * 7, 1500)  # Ethernet padding after the IP packet
    assert segments is not None
    joined = b"".join(bytes(Ether(s)[TCP].payload) for s in segments)
    assert joined == bytes(Ether(frame)[TCP].payload)


def _seed_partial(frame: bytearray, start: int, offset: int, pseudo: int) -> None:
    """Put a folded pseudo-header sum in the checksum field, like the kernel does."""
    while pseudo >> 16:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    struct.pack_into("!H", frame, start + offset, pseudo)


@pytest.mark.parametrize("size", [0, 1, 7, 400, 457, 458, 459, 460, 1000, 1461, 65000])
def test_finish_checksum_tcp4_matches_scapy(size: int) -> None:
    good = tcp4(size)
    want = struct.unpack_from("!H", good, 14 + 20 + 16)[0]
    frame = bytearray(good)
    tcp_len = len(frame) - 34
    pseudo = (0xC633 + 0x6402 + 0xC633 + 0x6401) + 6 + tcp_len
    _seed_partial(frame, 34, 16, pseudo)
    assert struct.unpack_from("!H", frame, 34 + 16)[0] != want  # the field really was partial
    finish_checksum(frame, 34, len(frame), 16)
    assert bytes(frame) == good


@pytest.mark.parametrize("size", [0, 3, 500, 1200, 4097])
def test_finish_checksum_udp6_matches_scapy(size: int) -> None:
    good = bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                 / UDP(sport=7, dport=9)
                 / (b"\xa5" * size))
    frame = bytearray(good)
    udp_len = len(frame) - 54
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    pseudo = sum(struct.unpack("!16H", src + dst)) + 17 + udp_len
    _seed_partial(frame, 54, 6, pseudo)
    finish_checksum(frame, 54, len(frame), 6)
    assert bytes(frame) == good
    assert UDP in Ether(bytes(frame))


def reference_checksum(data: bytes) -> int:
    """RFC 1071 the slow, obvious way (test oracle only)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@settings(max_examples=300, deadline=None)
@given(prefix=st.binary(max_size=9), region=st.binary(min_size=2, max_size=3000),
       offset_words=st.integers(min_value=0, max_value=1000))
def test_finish_checksum_property(prefix: bytes, region: bytes, offset_words: int) -> None:
    offset = min(offset_words, (len(region) - 2) // 2) * 2
    buf = bytearray(prefix + region)
    start = len(prefix)
    finish_checksum(buf, start, len(buf), offset)
    seeded = bytes(region)
    # The field's original content is part of the sum; the result replaces it.
    want = reference_checksum(seeded)
    if want == 0 and offset == 6:
        want = 0xFFFF
    assert struct.unpack_from("!H", buf, start + offset)[0] == want
    assert buf[:start] == prefix
    # With the field zeroed first (a zero pseudo-header sum), the completed region verifies.
    zeroed = bytearray(region)
    zeroed[offset: offset + 2] = b"\0\0"
    finish_checksum(zeroed, 0, len(zeroed), offset)
    assert reference_checksum(bytes(zeroed)) == 0


def test_finish_checksum_udp_zero_becomes_ffff() -> None:
    # A UDP segment whose data sums to 0xffff (words 0xff00 + 0x00ff) with a zero pseudo sum.
    buf = bytearray(b"\xff\x00\x00\xff" + b"\x00\x00\x00\x00")  # checksum field at 6
    finish_checksum(buf, 0, 8, 6)
    assert buf[6:8] == b"\xff\xff"


# -- argument checking --------------------------------------------------------------------------

def test_name_too_long_is_vnl_error() -> None:
    with pytest.raises(VNLError, match="abcdefghijklmnop"):
        open_plug("tap://abcdefghijklmnop")


def test_empty_name_is_vnl_error() -> None:
    with pytest.raises(VNLError, match="interface name"):
        open_plug("tap://")


def test_bad_mtu_is_vnl_error() -> None:
    with pytest.raises(VNLError, match="mtu=70000"):
        open_plug("tap://t0[mtu=70000]")
    with pytest.raises(VNLError, match="mtu"):
        open_plug("tap://t0[mtu=big]")


def test_unknown_key_is_vnl_error() -> None:
    with pytest.raises(VNLError, match="colour"):
        open_plug("tap://t0[colour=red]")


def test_missing_netns_is_user_error() -> None:
    name = "nons-" + secrets.token_hex(4)
    with pytest.raises(IothUserError, match=name):
        open_plug(f"tap://t0[netns={name}]")


def test_missing_tun_device_is_clear_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tapmod, "TUN_DEVICE", "/nonexistent/dev/net/tun")
    with pytest.raises(OSError, match="missing"):
        TapPlug("t0")


# -- real interfaces, inside namespaces ---------------------------------------------------------

def test_open_sets_mtu_up_and_close_removes(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    name = ifname()
    plug = open_plug(f"tap://{name}[netns={ns.name}/up/mtu=9000]")
    assert isinstance(plug, TapPlug)
    try:
        assert plug.ifname == name
        assert plug.mtu == 9000 and plug.link_mtu == 9000
        flags = ns.run(["cat", f"/sys/class/net/{name}/tun_flags"]).stdout.strip()
        assert int(flags, 16) == 0x1002  # IFF_TAP | IFF_NO_PI
        info = link_info(ns, name)
        assert "mtu 9000" in info and ",UP" in info
        # not created in our own namespace
        assert subprocess.run(["ip", "link", "show", name], capture_output=True).returncode != 0
    finally:
        plug.close()
    assert not link_exists(ns, name)
    plug.close()  # idempotent


def test_default_mtu_down_and_offload_mtu(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    name = ifname()
    with open_plug(f"tap://{name}[netns={ns.name}/offload]") as plug:
        assert isinstance(plug, TapPlug)
        assert plug.link_mtu == 1500
        assert plug.mtu == 65535
        assert plug.max_frame >= 65535 + 14
        info = link_info(ns, name)
        assert "mtu 1500" in info and "UP" not in info.split(">")[0]
        # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR as the kernel reports them
        flags = ns.run(["cat", f"/sys/class/net/{name}/tun_flags"]).stdout.strip()
        assert int(flags, 16) == 0x5002


def test_keyword_mtu_and_name_pattern(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    with open_plug(f"tap://iotht%d[netns={ns.name}]", mtu=4000) as plug:
        assert isinstance(plug, TapPlug)
        assert plug.ifname.startswith("iotht") and "%" not in plug.ifname
        assert plug.link_mtu == 4000
        assert "mtu 4000" in link_info(ns, plug.ifname)


def test_busy_interface_is_clear_oserror(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    name = ifname()
    with open_plug(f"tap://{name}[netns={ns.name}]"), pytest.raises(OSError, match="busy"):
        open_plug(f"tap://{name}[netns={ns.name}]")


def test_kernel_frames_are_received(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    name = ifname()
    with open_plug(f"tap://{name}[netns={ns.name}/up]") as plug:
        ns.run(["ip", "addr", "add", "198.51.100.1/24", "dev", name])
        # an ARP request for a neighbour that does not exist
        ns.run(["ping", "-c", "1", "-W", "1", "198.51.100.9"], check=False)
        frames: list[bytes] = []
        for _ in range(40):
            select.select([plug.fileno()], [], [], 0.1)
            frames += plug.recv_frames()
            if any(f[12:14] == b"\x08\x06" for f in frames):
                break
        arps = [Ether(f) for f in frames if f[12:14] == b"\x08\x06"]
        assert arps, f"no ARP among {len(frames)} frames"
        assert arps[0].pdst == "198.51.100.9"
        assert plug.counters.rx_frames == len(frames)
        assert plug.counters.rx_bytes == sum(map(len, frames))


def test_send_counts_and_drops(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    name = ifname()
    frame = bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / IP(src="198.51.100.2",
                                                               dst="198.51.100.1") / UDP())
    with open_plug(f"tap://{name}[netns={ns.name}]") as plug:
        # interface down: the kernel refuses the write (EIO); counted, not raised
        assert plug.send(frame) is False
        assert plug.counters.tx_dropped == 1
        ns.run(["ip", "link", "set", name, "up"])
        assert plug.send(frame) is True
        assert plug.counters.tx_frames == 1 and plug.counters.tx_bytes == len(frame)
        assert plug.send(b"short") is False
        assert plug.send(frame + bytes(2000)) is False  # bigger than max_frame
        assert plug.counters.tx_dropped == 3
        rx = ns.run(["cat", f"/sys/class/net/{name}/statistics/rx_packets"]).stdout
        assert int(rx) == 1
    assert plug.send(frame) is False  # closed


def test_interface_deleted_raises_plug_closed(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    name = ifname()
    with open_plug(f"tap://{name}[netns={ns.name}/up]") as plug:
        ns.run(["ip", "link", "del", name])
        with pytest.raises(PlugClosedError):
            for _ in range(50):
                select.select([plug.fileno()], [], [], 0.1)
                plug.recv_frames()


def test_no_permission_is_clear_oserror(tmp_path: pathlib.Path) -> None:
    """Without CAP_NET_ADMIN (or without access to the device) the OSError says what is missing."""
    require_root()
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    locked = tmp_path / "tun"
    locked.write_bytes(b"")
    locked.chmod(0)
    code = ("import sys\n"
            "from ioth.net.plugs import tap\n"
            "if sys.argv[1:]: tap.TUN_DEVICE = sys.argv[1]\n"
            "try:\n"
            "    tap.TapPlug('ttnoperm0')\n"
            "except OSError as e:\n"
            "    print(type(e).__name__, e)\n")
    outputs = []
    for extra in ([], [str(locked)]):
        proc = subprocess.run(
            ["setpriv", "--bounding-set=-net_admin,-dac_override,-dac_read_search",
             "--inh-caps=-all", sys.executable, "-c", code, *extra],
            capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0].startswith("PermissionError") and "CAP_NET_ADMIN" in outputs[0]
    assert outputs[1].startswith("PermissionError") and "no permission" in outputs[1]


def test_frames_before_a_read_error_are_returned_first(make_netns: Callable[[], Netns],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    ns = make_netns()
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP())
    script: list[bytes | OSError] = [frame, frame, OSError(errno.EBADFD, "gone")]

    def fake_read(fd: int, size: int) -> bytes:
        item = script.pop(0) if script else BlockingIOError()
        if isinstance(item, OSError):
            raise item
        return item

    with open_plug(f"tap://{ifname()}[netns={ns.name}]") as plug:
        monkeypatch.setattr(os, "read", fake_read)
        assert plug.recv_frames() == [frame, frame]
        with pytest.raises(PlugClosedError):
            plug.recv_frames()


def test_call_in_netns_runs_in_that_namespace_only(make_netns: Callable[[], Netns]) -> None:
    from ioth.net.netns import call_in_netns

    require_root()
    ns = make_netns()
    inside = ns.run(["readlink", "/proc/self/ns/net"]).stdout.strip()
    ours = os.readlink("/proc/thread-self/ns/net")
    assert inside != ours
    assert call_in_netns(ns.name, lambda: os.readlink("/proc/thread-self/ns/net")) == inside
    assert call_in_netns(f"/run/netns/{ns.name}",
                         lambda: os.readlink("/proc/thread-self/ns/net")) == inside
    assert os.readlink("/proc/thread-self/ns/net") == ours

    def boom() -> None:
        raise KeyError("raised inside")

    with pytest.raises(KeyError, match="raised inside"):
        call_in_netns(ns.name, boom)
    with pytest.raises(IothUserError, match="not a network namespace"):
        call_in_netns("/proc/self/ns/uts", lambda: None)


def test_attach_to_persistent_tap(make_netns: Callable[[], Netns]) -> None:
    """A TAP made persistent by ``ip tuntap`` is attached, and survives the plug's close."""
    require_root()
    ns = make_netns()
    name = ifname()
    ns.run(["ip", "tuntap", "add", "mode", "tap", "name", name])
    with open_plug(f"tap://{name}[netns={ns.name}/up/mtu=2000]") as plug:
        assert isinstance(plug, TapPlug) and plug.link_mtu == 2000
        assert "mtu 2000" in link_info(ns, name)
    assert link_exists(ns, name)
    ns.run(["ip", "tuntap", "del", "mode", "tap", "name", name])


def test_existing_non_tap_interface_is_clear_oserror(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    with pytest.raises(OSError, match="not a TAP"):
        open_plug(f"tap://lo[netns={ns.name}]")


# -- transmit offload requests and receive checksum checks ---------------------------------------

ETH = Ether(src=MAC_A, dst=MAC_B)


def test_offload_header_partial_checksum_and_gso() -> None:
    frame = tcp4(30000, options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    big = OffloadFrame(frame, 34, 16, 1448)
    assert struct.unpack("=BBHHHHH", offload_header(big, 1500) or b"") == (
        tapmod.VIRTIO_NET_HDR_F_NEEDS_CSUM, tapmod.VIRTIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16, 0)
    small = OffloadFrame(tcp4(100), 34, 16, 1448)  # fits the link: no GSO, partial checksum
    assert struct.unpack("=BBHHHHH", offload_header(small, 1500) or b"") == (
        tapmod.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16, 0)
    assert offload_header(OffloadFrame(tcp4(100)), 1500) == bytes(12)
    full = OffloadFrame(frame, 0, 0, 1000)  # complete checksum, cut at 1000 bytes
    assert struct.unpack("=BBHHHHH", offload_header(full, 1500) or b"")[:4] == (
        0, tapmod.VIRTIO_NET_HDR_GSO_TCPV4, 66, 1000)
    udp = bytes(ETH / IP(src="192.0.2.1", dst="192.0.2.2") / UDP() / (b"u" * 3000))
    assert offload_header(OffloadFrame(udp, 0, 0, 1000), 1500) is None


def test_checksums_ok() -> None:
    good = [tcp4(1000), tcp4(0, flags="S"),
            bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"hello"),
            bytes(ETH / Dot1Q(vlan=3) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP() / b"x"),
            bytes(ETH / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP() / b"ping")]
    for frame in good:
        assert checksums_ok(frame)
        bad = bytearray(frame)
        bad[-1] ^= 0x40
        assert not checksums_ok(bad)
    broken_ip = bytearray(tcp4(10))
    broken_ip[14 + 8] ^= 1  # TTL changed, header checksum not
    assert not checksums_ok(broken_ip)
    frag = bytearray(bytes(ETH
                           / IP(src="192.0.2.1", dst="192.0.2.2", flags="MF")
                           / UDP() / (b"x" * 100)))
    frag[-1] ^= 1  # the datagram's checksum cannot be checked from one fragment
    assert checksums_ok(frag)
    nocsum = bytearray(bytes(ETH / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(chksum=0)
                             / b"x"))
    assert checksums_ok(nocsum)
    assert checksums_ok(bytes(Ether(src=MAC_A, dst=MAC_B, type=0x0806) / (b"\0" * 28)))


def test_offload_attributes(make_netns: Callable[[], Netns]) -> None:
    require_root()
    ns = make_netns()
    with open_plug(f"tap://{ifname()}[netns={ns.name}/offload]") as plug:
        assert (plug.gso_max_size, plug.tx_csum_offload, plug.rx_csum_trusted) == (
            65535, True, True)
    with open_plug(f"tap://{ifname()}[netns={ns.name}]") as plug:
        assert (plug.gso_max_size, plug.tx_csum_offload, plug.rx_csum_trusted) == (
            0, False, False)


def test_offload_receive_checks_frames_the_kernel_did_not(make_netns: Callable[[], Netns],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames without NEEDS_CSUM or DATA_VALID are checked by the plug (a bad one is dropped
    and counted); DATA_VALID frames are taken as the kernel validated them."""
    require_root()
    ns = make_netns()
    good = tcp4(500)
    bad = bytearray(good)
    bad[-3] ^= 0x10
    valid = struct.pack("=BBHHHHH", tapmod.VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0, 0)
    script = [bytes(12) + good, bytes(12) + bytes(bad), valid + bytes(bad)]

    def fake_readv(fd: int, bufs: list[memoryview]) -> int:
        if not script:
            raise BlockingIOError()
        item = script.pop(0)
        bufs[0][: len(item)] = item
        return len(item)

    with open_plug(f"tap://{ifname()}[netns={ns.name}/offload]") as plug:
        assert isinstance(plug, TapPlug)
        monkeypatch.setattr(os, "readv", fake_readv)
        assert plug.recv_frames() == [good, bytes(bad)]
        assert plug.rx_bad_csum == 1 and plug.counters.rx_errors == 1
        assert plug.csum_verified == 2

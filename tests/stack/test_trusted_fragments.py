"""A plug that vouches for its frames' checksums (``rx_csum_trusted``) cannot vouch for a
datagram reassembled from fragments: the stack verifies reassembled UDP/ICMP/TCP checksums on
every interface, trusted or not."""

from __future__ import annotations

import random
import struct

import pytest

from ioth.stack.core import StackCore
from ioth.wire.checksum import checksum, pseudo_v4, pseudo_v6

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A4, B4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")


def _core(v6: bool, trusted: bool) -> tuple[StackCore, int]:
    core = StackCore(random.Random(1))
    iface = core.add_interface("vde0", MAC_A, 1500)
    iface.rx_csum_trusted = trusted
    core.set_up(iface.index, True, 0.0)
    if v6:
        core.ip6.add_addr(iface.index, A6, 64, 0.0)
        for k in range(6):
            core.poll(float(k + 1))  # DAD
    else:
        core.add_addr4(iface.index, A4, 24, 0.0)
    return core, iface.index


def _udp(src: bytes, dst: bytes, payload: bytes) -> bytes:
    seg = bytearray(struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload)
    pseudo = pseudo_v4 if len(src) == 4 else pseudo_v6
    csum = checksum(seg, pseudo(src, dst, 17, len(seg))) or 0xFFFF
    struct.pack_into("!H", seg, 6, csum)
    return bytes(seg)


def _frames4(seg: bytes, corrupt: bool) -> list[bytes]:
    pieces = [seg[:1480], seg[1480:]]
    if corrupt:
        pieces[1] = pieces[1][:10] + bytes([pieces[1][10] ^ 0xFF]) + pieces[1][11:]
    out = []
    off = 0
    for i, p in enumerate(pieces):
        frag = (off >> 3) | (0x2000 if i == 0 else 0)
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(p), 7, frag, 64, 17, 0,
                                    B4, A4))
        struct.pack_into("!H", hdr, 10, checksum(hdr))
        out.append(MAC_A + MAC_B + b"\x08\x00" + bytes(hdr) + p)
        off += len(p)
    return out


def _frames6(seg: bytes, corrupt: bool) -> list[bytes]:
    pieces = [seg[:1448], seg[1448:]]
    if corrupt:
        pieces[1] = pieces[1][:10] + bytes([pieces[1][10] ^ 0xFF]) + pieces[1][11:]
    out = []
    off = 0
    for i, p in enumerate(pieces):
        fh = struct.pack("!BBHI", 17, 0, off | (1 if i == 0 else 0), 7)
        ip6 = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(p), 44, 64, B6, A6)
        out.append(MAC_A + MAC_B + b"\x86\xdd" + ip6 + fh + p)
        off += len(p)
    return out


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("corrupt", [False, True])
def test_reassembled_udp_is_verified_on_every_interface(v6: bool, trusted: bool,
                                                        corrupt: bool) -> None:
    core, index = _core(v6, trusted)
    src, dst = (B6, A6) if v6 else (B4, A4)
    seg = _udp(src, dst, bytes(range(256)) * 12)
    frames = _frames6(seg, corrupt) if v6 else _frames4(seg, corrupt)
    for f in frames:
        core.input_frame(index, f, 10.0)
    counters = core.counters
    assert counters["ipv6.rx_reassembled" if v6 else "ipv4.rx_reassembled"] == 1
    if corrupt:
        assert counters["udp.rx_bad_checksum"] == 1
        assert counters["udp.rx_no_port"] == 0
    else:
        assert counters["udp.rx_bad_checksum"] == 0
        assert counters["udp.rx_no_port"] == 1  # delivered to UDP, nobody listens on port 9


@pytest.mark.parametrize("v6", [False, True])
def test_unfragmented_corrupt_udp_is_skipped_only_when_trusted(v6: bool) -> None:
    for trusted in (False, True):
        core, index = _core(v6, trusted)
        src, dst = (B6, A6) if v6 else (B4, A4)
        seg = bytearray(_udp(src, dst, b"x" * 100))
        seg[20] ^= 0xFF
        if v6:
            frame = MAC_A + MAC_B + b"\x86\xdd" + struct.pack(
                "!IHBB16s16s", 6 << 28, len(seg), 17, 64, src, dst) + bytes(seg)
        else:
            hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64,
                                        17, 0, src, dst))
            struct.pack_into("!H", hdr, 10, checksum(hdr))
            frame = MAC_A + MAC_B + b"\x08\x00" + bytes(hdr) + bytes(seg)
        core.input_frame(index, frame, 10.0)
        assert core.counters["udp.rx_bad_checksum"] == (0 if trusted else 1)

"""``ioth ping``: ICMP echo from a temporary ioth stack, with ping-like output.

Example::

    ioth ping --vnl vde:///tmp/sw --config eth,ip=192.0.2.10/24 -c 3 192.0.2.1
    ioth ping --vnl tap://t0 --config eth,ip=2001:db8::10/64 -6 -s 8000 2001:db8::1
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import socket
import struct
import sys
import time
from typing import Any

from ioth.errors import IothUserError


def register(subparsers: Any) -> None:
    """Add the ``ping`` sub-command."""
    p = subparsers.add_parser("ping", help="send ICMP echo requests from an ioth stack",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vnl", action="append", default=[], metavar="VNL",
                   help="network of the stack's interface (repeatable: vde0, vde1, ...)")
    p.add_argument("--config", default="", metavar="CFG",
                   help="iothconf string, e.g. eth,ip=192.0.2.10/24,gw=192.0.2.1")
    p.add_argument("-6", dest="ipv6", action="store_true", help="IPv6 (ICMPv6 echo)")
    p.add_argument("-4", dest="ipv4", action="store_true", help="IPv4 (the default)")
    p.add_argument("-c", dest="count", type=int, default=4, help="number of requests (4)")
    p.add_argument("-s", dest="size", type=int, default=56, help="payload bytes (56)")
    p.add_argument("-i", dest="interval", type=float, default=1.0,
                   help="seconds between requests (1)")
    p.add_argument("-W", dest="timeout", type=float, default=2.0,
                   help="seconds to wait for the last reply (2)")
    p.add_argument("-q", dest="quiet", action="store_true", help="only the summary")
    p.add_argument("dest", help="numeric IPv4 or IPv6 address")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> tuple[int, str]:
    text = args.dest
    zone = ""
    if "%" in text:
        text, _, zone = text.partition("%")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise IothUserError(f"DEST {args.dest!r} is not a numeric IPv4/IPv6 address") from None
    if args.ipv6 and addr.version != 6:
        raise IothUserError(f"-6 given but DEST {args.dest!r} is an IPv4 address")
    if args.ipv4 and addr.version != 4:
        raise IothUserError(f"-4 given but DEST {args.dest!r} is an IPv6 address")
    if args.count < 1:
        raise IothUserError(f"-c {args.count}: count must be at least 1")
    limit = 65507 if addr.version == 4 else 65527
    if not 0 <= args.size <= limit:
        raise IothUserError(f"-s {args.size}: size must be between 0 and {limit}")
    if args.interval < 0 or not math.isfinite(args.interval):
        raise IothUserError(f"-i {args.interval}: interval must be >= 0")
    if args.timeout <= 0:
        raise IothUserError(f"-W {args.timeout}: timeout must be > 0")
    if not args.vnl:
        raise IothUserError("--vnl is required (the network to ping on)")
    return addr.version, (f"{addr}%{zone}" if zone else str(addr))


def run(args: argparse.Namespace) -> int:
    """Run the ping; exit status 0 when at least one reply came back, 1 otherwise."""
    from ioth.stack.stack import Stack

    version, dest = _check(args)
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with Stack(args.vnl, args.config) as stack:
        if version == 6:
            stack.wait_dad(3.0)
        proto = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
        sock = stack.socket(family, socket.SOCK_DGRAM, proto)
        echo = 8 if version == 4 else 128
        header_len = 20 if version == 4 else 40
        print(f"PING {args.dest} ({dest.split('%')[0]}) {args.size}({args.size + 8 + header_len})"
              " bytes of data.", flush=True)
        npad = max(0, args.size - 8)
        pad = (bytes(range(256)) * (npad // 256 + 1))[:npad]
        sent = received = errors = 0
        rtts: list[float] = []
        start = time.monotonic()
        pending: dict[int, float] = {}
        addr = (dest, 0)
        try:
            for seq in range(1, args.count + 1):
                t_send = time.monotonic()
                body = struct.pack("!d", t_send)[: args.size] + pad
                try:
                    sock.sendto(struct.pack("!BBHHH", echo, 0, 0, 0, seq) + body, addr)
                    sent += 1
                    pending[seq] = t_send
                except OSError as exc:
                    sent += 1
                    errors += 1
                    print(f"From {dest}: icmp_seq={seq} {exc.strerror or exc}", flush=True)
                last = seq == args.count
                until = t_send + (args.timeout if last else args.interval)
                while pending or not last:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    sock.settimeout(left)
                    try:
                        data, src = sock.recvfrom(65535)
                    except TimeoutError:
                        break
                    except OSError as exc:
                        errors += 1
                        print(f"From {dest}: {exc.strerror or exc}", flush=True)
                        continue
                    if len(data) < 8 or data[0] != echo + (-8 if version == 4 else 1):
                        continue
                    rseq = struct.unpack_from("!H", data, 6)[0]
                    t0 = pending.pop(rseq, None)
                    if t0 is None:
                        continue
                    rtt = (time.monotonic() - t0) * 1000.0
                    rtts.append(rtt)
                    received += 1
                    if not args.quiet:
                        print(f"{len(data)} bytes from {src[0]}: icmp_seq={rseq} "
                              f"time={rtt:.3f} ms", flush=True)
        except KeyboardInterrupt:
            pass
        elapsed = (time.monotonic() - start) * 1000.0
        sock.close()
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    print(f"\n--- {args.dest} ping statistics ---")
    extra = f", +{errors} errors" if errors else ""
    print(f"{sent} packets transmitted, {received} received{extra}, {loss:.0f}% packet loss, "
          f"time {elapsed:.0f}ms")
    if rtts:
        avg = sum(rtts) / len(rtts)
        mdev = math.sqrt(sum((r - avg) ** 2 for r in rtts) / len(rtts))
        print(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{avg:.3f}/{max(rtts):.3f}/{mdev:.3f} ms")
    sys.stdout.flush()
    return 0 if received else 1

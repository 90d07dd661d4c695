"""``ioth capture VNL FILE.pcap``: join a network and record every frame seen to a pcap file.

The file is in libpcap format (LINKTYPE_ETHERNET) and readable by tshark, tcpdump and
wireshark.  Stops on Ctrl-C/SIGTERM, after ``--count`` frames or ``--duration`` seconds, and
prints how many frames it captured.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ioth.errors import PlugClosedError
from ioth.net.pcap import DEFAULT_SNAPLEN, PcapWriter
from ioth.net.registry import open_plug
from ioth.runtime.engine import Engine


def register(subparsers: Any) -> None:
    """Add the ``capture`` sub-command."""
    p = subparsers.add_parser("capture", help="record the frames of a network to a pcap file",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vnl", metavar="VNL")
    p.add_argument("file", metavar="FILE.pcap")
    p.add_argument("-c", "--count", type=int, default=None, help="stop after N frames")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("-s", "--snaplen", type=int, default=DEFAULT_SNAPLEN,
                   help="bytes kept of each frame")
    p.add_argument("--flush", type=int, default=0,
                   help="bytes buffered before writing (default 0: write every frame)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Capture until stopped."""
    writer = PcapWriter(args.file, args.snaplen, args.flush)
    try:
        plug = open_plug(args.vnl)
    except BaseException:
        writer.close()
        raise
    engine = Engine(name="ioth-capture")
    error: list[str] = []

    def readable() -> None:
        try:
            frames = plug.recv_frames(256)
        except PlugClosedError as exc:
            error.append(str(exc))
            engine.stop(timeout=None)
            return
        for frame in frames:
            writer.write(frame)
            if args.count is not None and writer.count >= args.count:
                engine.stop(timeout=None)
                break

    for fd in plug.filenos():
        engine.add_reader(fd, readable)

    def stop(signum: int, frame: object) -> None:
        engine.stop(timeout=None)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    if args.duration is not None:
        engine.call_later(args.duration, lambda: engine.stop(timeout=None))
    print(f"ioth capture: {plug.describe()} -> {args.file}", file=sys.stderr, flush=True)
    try:
        engine.run()
    finally:
        engine.close()
        writer.close()
        plug.close()
        print(f"{writer.count} frames captured", flush=True)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if error:
        print(f"ioth capture: {error[0]}", file=sys.stderr)
        return 1
    return 0

"""``ioth plug VNL [VNL]``: a cable, like ``vde_plug``.

With two VNLs the plugs are joined directly.  With one, frames are carried on stdin/stdout with
stream framing (2-byte big-endian length + frame), so ``dpipe vde_plug vde:///tmp/sw1 = ioth plug
vde:///tmp/sw2`` and ``dpipe ioth plug /tmp/sw = ssh host vde_plug /tmp/sw`` work.  The command
ends when either side closes.  ``--daemon`` detaches (after the VNLs are checked), ``--pidfile``
records the pid; ``-v`` prints the counters on exit.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any

from ioth.cli.common import daemonize, pidfile
from ioth.errors import IothUserError
from ioth.net.bridge import Bridge
from ioth.net.plug import Plug
from ioth.net.plugs.stream_plug import STREAM_MAX_MTU, STREAM_MTU, StreamPlug
from ioth.net.registry import open_plug, parse_vnl
from ioth.runtime.engine import Engine

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``plug`` sub-command."""
    p = subparsers.add_parser(
        "plug", help="join two VNLs, or one VNL and stdin/stdout (like vde_plug)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vnl", nargs="?", default="",
                   help="first VNL (e.g. vde:///tmp/sw, tap://t0, ptp:///tmp/cable); omitted or "
                        "'': the default switch (~/.vdeplug/default, ~/.vde2/default.switch)")
    p.add_argument("vnl2", nargs="?", help="second VNL; without it: stdin/stdout")
    p.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    p.add_argument("-p", "--pidfile", help="write the process id to this file")
    p.add_argument("--stream-mtu", type=int, default=None,
                   help=f"MTU of the stdin/stdout stream (default {STREAM_MTU}, frames up to "
                        "9234 bytes like vde_plug)")
    p.add_argument("-v", "--verbose", dest="plug_verbose", action="count", default=0,
                   help="print the counters on exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the cable until one side closes (or SIGTERM/SIGINT/SIGHUP)."""
    verbose = args.plug_verbose + getattr(args, "verbose", 0)
    # check the VNLs before detaching, so mistakes are reported here (exit 2)
    parse_vnl(args.vnl)
    if args.vnl2 is not None:
        parse_vnl(args.vnl2)
    if args.stream_mtu is not None and not 68 <= args.stream_mtu <= STREAM_MAX_MTU:
        raise IothUserError(f"--stream-mtu out of range 68..{STREAM_MAX_MTU}")
    if args.daemon:
        daemonize()
    plugs: list[Plug] = []
    engine = Engine("ioth-plug")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Installed before any plug exists, so a signal during set-up still cleans up.
        log.info("signal %d: stopping", signum)
        engine.stop(timeout=None)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    with pidfile(args.pidfile):
        try:
            plugs.append(open_plug(args.vnl))
            if args.vnl2 is not None:
                plugs.append(open_plug(args.vnl2))
            else:
                mtu = args.stream_mtu or max(STREAM_MTU, min(plugs[0].mtu, STREAM_MAX_MTU))
                plugs.append(StreamPlug(sys.stdin.fileno(), sys.stdout.fileno(), mtu=mtu,
                                        vnl="stdio://"))
            bridge = Bridge(engine, plugs[0], plugs[1], on_close=lambda _b: engine.stop())
            bridge.start()
            engine.run()  # returns at once if a signal already asked the engine to stop
            bridge.stop()
            if isinstance(plugs[1], StreamPlug):
                plugs[1].flush(0.5)
            if bridge.error is not None:
                log.info("%s", bridge.error)
            if verbose:
                print(f"ioth plug: {bridge.summary()}", file=sys.stderr)
                if bridge.closed_by is not None:
                    print(f"ioth plug: closed by {bridge.closed_by.vnl}: {bridge.error}",
                          file=sys.stderr)
        finally:
            for plug in plugs:
                plug.close()
            engine.close()
    return 0

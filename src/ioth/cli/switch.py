"""``ioth switch DIR``: a VDE-compatible switch (or hub) that vde_plug, QEMU and ioth can join.

All ports live in this one process: VDE clients joining ``DIR`` (``vde_plug vde://DIR``,
``qemu -nic vde,sock=DIR``, ioth's ``vde://DIR``) and any VNL given with ``--port`` (for example
``tap://t0``), served by one engine thread.  ``--mgmt SOCK`` opens a management console that
Debian's ``unixterm SOCK`` talks to (vde_switch's commands: port/print, vlan/create, ...).
``--mtu`` is the MTU assumed for clients that do not announce one (vde_plug, QEMU): 1500 by
default, i.e. frames up to 1518 bytes as vde_switch; ioth clients announce theirs (up to 65535).
``--rcfile FILE`` runs console commands at start (``vlan/create 10``, ``port/create 5``,
``port/setvlan 5 10``: port 5 is then an access port of VLAN 10 for whoever plugs into
``vde://DIR[5]``); ``--portgroup NAME:VLAN`` makes ``vde://DIR[NAME]`` hand out ports of VLAN.
Ports without VLAN configuration are trunks: tagged frames cross them unchanged.
Ctrl-C, SIGTERM or the console's ``shutdown`` stop the switch and remove its sockets.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any, NoReturn

from ioth.cli.common import daemonize, pidfile
from ioth.errors import IothUserError
from ioth.net.plug import Plug
from ioth.net.registry import open_plug, parse_vnl
from ioth.net.switch.core import DEFAULT_AGEING, DEFAULT_TABLE_SIZE, MAX_MTU
from ioth.net.switch.server import DEFAULT_MTU, DEFAULT_NUMPORTS, SwitchServer
from ioth.runtime.engine import Engine

log = logging.getLogger(__name__)


def default_dir() -> str:
    """vde_switch's default control directory."""
    return "/var/run/vde.ctl" if os.geteuid() == 0 else "/tmp/vde.ctl"


def register(subparsers: Any) -> None:
    """Add the ``switch`` sub-command."""
    p = subparsers.add_parser(
        "switch", help="run a VDE-compatible switch (or hub) on a control directory",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", default=None,
                   help=f"control directory (default {default_dir()})")
    p.add_argument("--hub", action="store_true", help="be a hub: every frame to every port")
    p.add_argument("-n", "--numports", default=str(DEFAULT_NUMPORTS),
                   help=f"number of ports (default {DEFAULT_NUMPORTS}; 1..N-1 are allocatable)")
    p.add_argument("-M", "--mgmt", metavar="SOCK", help="management console socket")
    p.add_argument("--mgmtmode", default="600", help="octal mode of SOCK (default 600)")
    p.add_argument("-f", "--rcfile", metavar="FILE",
                   help="console commands to run at start, one per line (e.g. vlan/create 10, "
                        "port/create 5, port/setvlan 5 10); a failing line is an error")
    p.add_argument("--port", metavar="VNL", action="append", default=[],
                   help="also make VNL a port (repeatable), e.g. tap://t0")
    p.add_argument("--portgroup", metavar="NAME[:VLAN]", action="append", default=[],
                   help="also listen on DIR/NAME (vde://DIR[NAME]); its ports get untagged "
                        "VLAN (repeatable)")
    p.add_argument("--mtu", default=str(DEFAULT_MTU),
                   help=f"MTU of clients that do not state one (default {DEFAULT_MTU})")
    p.add_argument("-m", "--mode", help="octal mode of the sockets (default 600)")
    p.add_argument("--dirmode", help="octal mode of DIR (default 2700)")
    p.add_argument("-g", "--group", help="group owning DIR and its sockets")
    p.add_argument("--hashsize", default=str(DEFAULT_TABLE_SIZE),
                   help=f"MAC table entries (default {DEFAULT_TABLE_SIZE})")
    p.add_argument("--expire", default=str(int(DEFAULT_AGEING)),
                   help=f"MAC ageing time in seconds (default {int(DEFAULT_AGEING)})")
    p.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    p.add_argument("-p", "--pidfile", help="write the process id to this file")

    def one_line_error(message: str) -> NoReturn:
        print(f"ioth switch: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    p.error = one_line_error
    p.set_defaults(func=run)


def _number(name: str, text: str, low: int, high: int, base: int = 10) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise IothUserError(f"{name} {text!r} is not a{'n octal' if base == 8 else ''} "
                            "number") from None
    if not low <= value <= high:
        raise IothUserError(f"{name} {value} out of range {low}..{high}")
    return value


def run_rcfile(server: SwitchServer, path: str) -> None:
    """Run the console commands of ``path``; the first failing line is an IothUserError."""
    from ioth.net.switch.console import CommandSet

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise IothUserError(f"--rcfile {path}: {exc.strerror}") from None
    commands = CommandSet(server)
    for number, line in enumerate(lines, 1):
        text, rv = commands.execute(line)
        if rv != 0:
            reason = text.strip().splitlines()[-1][5:] if text.strip() else "not allowed here"
            raise IothUserError(f"{path}:{number}: {line.strip()!r}: {reason}")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM/SIGHUP or the console's ``shutdown``."""
    numports = _number("--numports", args.numports, 2, 4096)
    mtu = _number("--mtu", args.mtu, 68, MAX_MTU)
    hashsize = _number("--hashsize", args.hashsize, 1, 1 << 24)
    expire = _number("--expire", args.expire, 1, 1 << 30)
    mode = _number("--mode", args.mode, 0, 0o777, 8) if args.mode else None
    dirmode = _number("--dirmode", args.dirmode, 0, 0o7777, 8) if args.dirmode else None
    mgmtmode = _number("--mgmtmode", args.mgmtmode, 0, 0o777, 8)
    for vnl in args.port:
        parse_vnl(vnl)
    groups: list[tuple[str, int | None]] = []
    for spec in args.portgroup:
        name, sep, vlan_text = spec.partition(":")
        vlan = _number(f"--portgroup {spec}: VLAN", vlan_text, 1, 4094) if sep else None
        if not name or "/" in name or name in (".", "..", "ctl") or name[0].isdigit():
            raise IothUserError(f"--portgroup {spec}: bad port group name {name!r}")
        groups.append((name, vlan))
    pidfile_path = os.path.abspath(args.pidfile) if args.pidfile else None
    directory = args.dir or default_dir()
    engine = Engine("ioth-switch")
    plugs: list[Plug] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Installed before the control socket exists, so a signal during set-up still cleans
        # up; engine.run() returns at once if the stop came first.
        log.info("signal %d: stopping", signum)
        engine.stop(timeout=None)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        server = SwitchServer(directory, engine=engine, hub=args.hub, numports=numports,
                              mode=mode, dirmode=dirmode, group=args.group, table_size=hashsize,
                              ageing=float(expire), default_mtu=mtu, mgmt=args.mgmt,
                              mgmt_mode=mgmtmode)
    except BaseException:
        engine.close()
        raise
    try:
        for name, vlan in groups:
            server.add_port_group(name, vlan)
        if args.rcfile:
            run_rcfile(server, args.rcfile)
        for vnl in args.port:
            plug = open_plug(vnl)
            plugs.append(plug)
            server.add_plug(plug)
        server.on_shutdown = engine.stop
        kind = "hub" if args.hub else "switch"
        extra = f", mgmt {os.path.abspath(args.mgmt)}" if args.mgmt else ""
        extra += "".join(f", port {p.describe()}" for p in plugs)
        print(f"ioth switch: {kind} on {server.directory} ({numports} ports{extra})",
              flush=True)
        if args.daemon:
            daemonize()
            server.adopt()  # (the parent exited: the server and its directory are ours)
        with pidfile(pidfile_path):
            engine.run()
    finally:
        server.close()
        for plug in plugs:
            plug.close()
        engine.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    from ioth.cli.main import main
    sys.exit(main(["switch", *sys.argv[1:]]))

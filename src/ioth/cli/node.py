"""``ioth node``: run an ioth stack until interrupted (answers ping; handy for labs and tests).

Example::

    ioth node --vnl vde:///tmp/sw --config eth,ip=192.0.2.2/24,ip=2001:db8::2/64
    ioth node --vnl vde:///tmp/a --vnl vde:///tmp/b --config "eth,ip=192.0.2.1/24" \\
              --config "iface=vde1,eth,ip=198.51.100.1/24" --forward
    ioth node --vnl vde:///tmp/sw --config "eth,ip=192.0.2.2/24,tcp_cc=newreno,tcp_iw=4"

``kill -USR1 PID`` prints an ``ss``-like table of the node's TCP listeners and connections;
``--stats`` prints the counters and that table at exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any

from ioth.errors import IothUserError


def register(subparsers: Any) -> None:
    """Add the ``node`` sub-command."""
    p = subparsers.add_parser("node", help="run an ioth stack until interrupted",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vnl", action="append", default=[], metavar="VNL",
                   help="network of an interface (repeatable: vde0, vde1, ...; NAME:VNL names it)")
    p.add_argument("--config", action="append", default=[], metavar="CFG",
                   help="iothconf string (repeatable, applied in order)")
    p.add_argument("--forward", action="store_true", help="route between interfaces")
    p.add_argument("--json", action="store_true", help="print the interfaces as JSON")
    p.add_argument("--tcp-echo", type=int, metavar="PORT", default=None,
                   help="serve TCP echo on PORT (every address; for labs and tests)")
    p.add_argument("--stats", action="store_true",
                   help="print the counters and the TCP listing on exit")
    p.set_defaults(func=run)


def _echo(conn: Any) -> None:
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def _start_echo(stack: Any, port: int, stop: threading.Event) -> None:
    """Listen on ``port`` (IPv6 socket accepting IPv4 too) and echo every connection."""
    import socket

    if not 0 < port < 65536:
        raise IothUserError(f"--tcp-echo {port}: port must be in 1..65535")
    ls = stack.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", port))
    ls.listen(16)
    ls.settimeout(0.2)

    def serve() -> None:
        with ls:
            while not stop.is_set():
                try:
                    conn, _ = ls.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                conn.settimeout(None)
                threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, name="ioth-node-echo", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    """Start the stack, print its interfaces, serve until SIGINT/SIGTERM."""
    from ioth.cli.tcpstat import format_tcp_listing
    from ioth.stack.stack import Stack

    if not args.vnl:
        raise IothUserError("--vnl is required (at least one network)")
    stop = threading.Event()
    dump = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if signum == signal.SIGTERM:
            # first of all: more SIGTERMs (a supervisor's repeated ones) are ignored from
            # now on, so they cannot nest this handler until a RecursionError on a loaded
            # machine (each one interrupting the previous one's stop.set())
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop.set()

    def usr1(signum: int, frame: object) -> None:
        dump.set()

    old_usr1 = signal.signal(signal.SIGUSR1, usr1)
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        with Stack(args.vnl) as stack:
            for cfg in args.config:
                stack.config(cfg)
            if args.forward:
                stack.forwarding = True
            stack.wait_dad(3.0)
            if args.tcp_echo is not None:
                _start_echo(stack, args.tcp_echo, stop)
            if args.json:
                print(json.dumps({"interfaces": stack.interfaces(),
                                  "addresses": stack.addresses()}), flush=True)
            else:
                for iface in stack.interfaces():
                    state = "UP" if iface["up"] else "DOWN"
                    print(f"{iface['index']}: {iface['name']}: {state} mtu {iface['mtu']} "
                          f"mac {iface['mac']} {iface['vnl']}".rstrip())
                    for a in stack.addresses():
                        if a["ifindex"] == iface["index"]:
                            extra = "" if a["state"] == "preferred" else f" {a['state']}"
                            inet = "inet" if a["family"] == 4 else "inet6"
                            print(f"    {inet} {a['address']}/{a['prefixlen']}{extra}")
                for event in stack.events():
                    print(f"ioth node: {event}", flush=True)
                print(f"ioth node ready (forwarding {'on' if stack.forwarding else 'off'})",
                      flush=True)
            while not stop.wait(0.1):
                if dump.is_set():
                    dump.clear()
                    print(format_tcp_listing(stack.tcp_connections()), flush=True)
            if args.stats:
                print(json.dumps(stack.counters()), flush=True)
                print(format_tcp_listing(stack.tcp_connections()), flush=True)
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        if not stop.is_set():
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
        # after a signal our handler stays: a second SIGTERM (as process supervisors send)
        # must not kill the node while it exits cleanly
    return 0

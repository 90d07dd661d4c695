"""``ioth run``: run an unmodified Python program with a fresh ioth stack as its default stack.

Every socket the program creates through the stdlib (``socket``, ``http``, ``urllib``,
``asyncio``, ``requests``...) lives on the stack, in every thread.  Examples::

    ioth run --vnl vde:///tmp/sw --config eth,ip=192.0.2.2/24 -m http.server 8000
    ioth run --vnl tap://tap0 --config eth,ip=192.0.2.2/24,gw=192.0.2.1 client.py --verbose
"""

from __future__ import annotations

import argparse
import runpy
import sys
from typing import Any

from ioth.errors import IothUserError


def register(subparsers: Any) -> None:
    """Add the ``run`` sub-command."""
    p = subparsers.add_parser("run", help="run a Python program on an ioth stack",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vnl", action="append", default=[], metavar="VNL",
                   help="network of an interface (repeatable: vde0, vde1, ...; NAME:VNL names it)")
    p.add_argument("--config", action="append", default=[], metavar="CFG",
                   help="iothconf string (repeatable, applied in order)")
    p.add_argument("--hosts", action="append", default=[], metavar="FILE",
                   help="hosts-file style static names for the stack's resolver (repeatable)")
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE [ARGS...]",
                   help="run a library module as a script (the rest are its arguments)")
    p.add_argument("target", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]",
                   help="the script and its arguments (or the module's arguments with -m)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the stack, make it the process default, run the program; its exit status."""
    from ioth.sockets import resolver_for
    from ioth.sockets.default import set_default_stack
    from ioth.stack.stack import Stack

    target = list(args.target)
    module = None
    if args.module is not None:
        if not args.module:
            raise IothUserError("-m needs a MODULE name")
        if target:
            raise IothUserError(f"give -m MODULE or a SCRIPT, not both ({target[0]!r})")
        module, target = args.module[0], list(args.module[1:])
    if target and target[0] == "--":
        target = target[1:]
    if module is None and not target:
        raise IothUserError("give -m MODULE or a SCRIPT to run")
    stack = Stack(list(args.vnl))
    try:
        for conf in args.config:
            stack.config(conf)
        for path in args.hosts:
            try:
                resolver_for(stack).load_hosts(path)
            except OSError as exc:
                raise IothUserError(f"--hosts {path}: {exc.strerror or exc}") from None
        if any(a["family"] == 6 for a in stack.addresses() if a["ifname"] != "lo"):
            stack.wait_dad(3.0)
        set_default_stack(stack)
        saved = sys.argv[:]
        try:
            if module is not None:
                sys.argv = [module, *target]
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                sys.argv = target
                runpy.run_path(target[0], run_name="__main__")
        except SystemExit as exc:
            code = exc.code
            if code is None:
                return 0
            if isinstance(code, int):
                return code
            print(code, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            sys.argv = saved
            set_default_stack(None)
        return 0
    finally:
        stack.close()

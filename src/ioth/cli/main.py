"""Entry point of the ``ioth`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module list is
below.  User mistakes (:class:`~ioth.errors.IothUserError`) print one line and exit 2; failures of
the environment (OSError: no permission, a switch that is not there) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from ioth.errors import IothUserError

#: sub-command modules, in the order `ioth --help` lists them
COMMANDS = (
    "ioth.cli.demo",
    "ioth.cli.switch",
    "ioth.cli.plug",
    "ioth.cli.capture",
    "ioth.cli.wire",
    "ioth.cli.ping",
    "ioth.cli.node",
    "ioth.cli.run",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="ioth", description="ioth: the Internet of Threads for Python"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # sub-command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ioth`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="ioth: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except IothUserError as exc:
        print(f"ioth {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ioth {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


def entry() -> None:
    """The ``ioth`` console script: :func:`main`, then exit with its status.  The command has
    cleaned up by then; a SIGTERM arriving now (a supervisor's second one: ``kill`` of the
    process group and of the process) is ignored, since CPython puts back the default
    disposition of Python-handled signals while it finalises and the exit status would
    become -15."""
    status = main()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":
    entry()

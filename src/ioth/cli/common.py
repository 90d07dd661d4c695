"""Helpers shared by the long-running sub-commands (``ioth switch``, ``ioth plug``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def daemonize() -> None:
    """Detach like daemon(3) (keeping the working directory, so relative paths still work)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


@contextlib.contextmanager
def pidfile(path: str | None) -> Iterator[None]:
    """Write our pid to ``path`` (if given) for the duration of the block."""
    if path is None:
        yield
        return
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)  # readers never see an empty or partial file
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)

"""Run a function inside a named Linux network namespace, from a process that lives elsewhere.

``setns(2)`` with ``CLONE_NEWNET`` changes the network namespace of the *calling thread* only, so
:func:`call_in_netns` runs the function in a short-lived helper thread: the thread enters the
namespace, runs the function and exits; the rest of the process never leaves its own namespace.
File descriptors opened in the thread (a ``/dev/net/tun`` handle, a socket) stay bound to that
namespace after the thread is gone, which is how ``tap://IF[netns=NS]`` creates a TAP interface
inside ``NS`` while the plug is used from the root namespace.

Python 3.11 has no ``os.setns``; the libc function is called through :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from ioth.errors import IothUserError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"


def netns_path(name: str) -> str:
    """The namespace file for ``name``: a path is kept, a bare name is looked up in /run/netns."""
    if "/" in name:
        return name
    if name in ("", ".", ".."):
        raise IothUserError(f"bad network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


def _setns(fd: int, nstype: int) -> None:
    """``setns(fd, nstype)`` for the calling thread; OSError on failure."""
    native = getattr(os, "setns", None)
    if native is not None:  # Python >= 3.12
        native(fd, nstype)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def call_in_netns(name: str, func: Callable[[], T]) -> T:
    """Run ``func()`` in network namespace ``name`` (a name in /run/netns or a path) and return
    its result (or raise its exception) in the calling thread.

    A missing namespace raises :class:`~ioth.errors.IothUserError` naming it; a namespace that
    cannot be entered (no CAP_SYS_ADMIN) raises :class:`PermissionError`.
    """
    path = netns_path(name)
    try:
        nsfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise IothUserError(f"network namespace {name!r} not found ({path} is missing)") from None
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            try:
                _setns(nsfd, CLONE_NEWNET)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    raise IothUserError(
                        f"{path} is not a network namespace") from None
                if exc.errno == errno.EPERM:
                    raise PermissionError(
                        exc.errno, f"cannot enter network namespace {name!r}: "
                        "needs CAP_SYS_ADMIN") from None
                raise
            result.append(func())
        except BaseException as exc:  # handed to the calling thread
            failure.append(exc)

    try:
        thread = threading.Thread(target=body, name=f"ioth-netns-{name}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(nsfd)
    if failure:
        raise failure[0]
    return result[0]

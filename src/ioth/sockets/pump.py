"""The pump: moves bytes between the engine end of a socket's AF_UNIX pair and the protocol.

One :class:`Pump` per :class:`~ioth.runtime.engine.Engine`: an epoll set of engine-side
descriptors, itself registered as a reader of the engine (epoll nests), so the engine thread
serves both read and write interest of every ioth socket without another thread.  Handlers run on
the engine thread and take their stack's lock themselves; registration calls may come from any
thread and never take a stack lock.
"""

from __future__ import annotations

import select
import threading
import weakref
from collections.abc import Callable

from ioth.runtime.engine import Engine

IN = select.EPOLLIN
OUT = select.EPOLLOUT
HUP = select.EPOLLHUP
ERR = select.EPOLLERR

Handler = Callable[[int], None]


class Pump:
    """A nested epoll set served by an engine thread."""

    def __init__(self, engine: Engine) -> None:
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._handlers: dict[int, Handler] = {}
        self._events: dict[int, int] = {}
        self.handler_errors = 0
        engine.add_reader(self._epoll.fileno(), self._ready)

    def watch(self, fd: int, events: int, handler: Handler) -> None:
        """Watch ``fd`` for ``events`` (0: stop watching; HUP/ERR then are not reported)."""
        with self._lock:
            old = self._events.get(fd)
            if events == 0:
                if old is not None:
                    del self._events[fd]
                    self._handlers.pop(fd, None)
                    try:
                        self._epoll.unregister(fd)
                    except (OSError, ValueError):
                        pass
                return
            self._handlers[fd] = handler
            if old == events:
                return
            self._events[fd] = events
            if old is None:
                self._epoll.register(fd, events)
            else:
                self._epoll.modify(fd, events)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` (call before closing it)."""
        self.watch(fd, 0, _noop)

    def _ready(self) -> None:
        for fd, events in self._epoll.poll(0, 256):
            handler = self._handlers.get(fd)
            if handler is None:
                continue
            try:
                handler(events)
            except Exception:  # a broken socket must not stop the engine
                self.handler_errors += 1
                import logging

                logging.getLogger(__name__).exception("ioth socket pump handler failed")


def _noop(events: int) -> None:
    """Placeholder handler."""


class _Pumps:
    """Holder of the pump of each engine (created on first use)."""

    lock = threading.Lock()
    by_engine: weakref.WeakKeyDictionary[Engine, Pump] = weakref.WeakKeyDictionary()


def pump_for(engine: Engine) -> Pump:
    """The pump of ``engine``.  Call without holding a stack lock (may wait for the engine)."""
    with _Pumps.lock:
        pump = _Pumps.by_engine.get(engine)
        if pump is None:
            pump = Pump(engine)
            _Pumps.by_engine[engine] = pump
        return pump

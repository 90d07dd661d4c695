"""What every ioth socket shares: a ``socket.socket`` subclass around the application end of an
AF_UNIX socket, and the per-stack socket layer (pump, handles, port bindings)."""

from __future__ import annotations

import errno
import os
import socket as _socket
import threading
from typing import TYPE_CHECKING, Any

from ioth.sockets.pump import Pump, pump_for

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

TYPE_MASK = ~(_socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
SO_BINDTODEVICE = getattr(_socket, "SO_BINDTODEVICE", 25)
SO_REUSEPORT = getattr(_socket, "SO_REUSEPORT", 15)


class _Pid:
    """This process's id, cached (``os.getpid`` is a syscall); refreshed in forked children."""

    value = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.value = os.getpid()


os.register_at_fork(after_in_child=_Pid.refresh)


def current_pid() -> int:
    """The calling process's id (cached; correct after ``fork``)."""
    return _Pid.value


def oserror(code: int, detail: str = "") -> OSError:
    """An OSError with the kernel's message for ``code`` (the subclass Python would pick)."""
    msg = os.strerror(code)
    return OSError(code, f"{msg} ({detail})" if detail else msg)


class SocketLayer:
    """Socket-side state of one stack: its pump and the sockets' shared tables."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pump: Pump = pump_for(stack.runtime.engine)
        self.lock = threading.Lock()
        self.tcp: Any = None  # ioth.sockets.stream_engine.TcpSockets, created on first TCP socket


class _Layers:
    lock = threading.Lock()


def layer_for(stack: Stack) -> SocketLayer:
    """The socket layer of ``stack`` (kept on the stack: it lives and dies with it).  Call
    without holding the stack's lock."""
    layer: SocketLayer | None = getattr(stack, "_ioth_socket_layer", None)
    if layer is not None:
        return layer
    with _Layers.lock:
        layer = getattr(stack, "_ioth_socket_layer", None)
        if layer is None:
            layer = SocketLayer(stack)
            stack._ioth_socket_layer = layer  # type: ignore[attr-defined]
        return layer


class IothSocket(_socket.socket):
    """Base of ioth sockets: a real ``socket.socket`` whose descriptor is one end of an AF_UNIX
    socket; the methods that talk about IP addresses and options go to the stack."""

    __slots__ = ("__dict__", "_stack")

    _stack: Stack

    def __repr__(self) -> str:
        closed = getattr(self, "_closed", False)
        fd = _socket.socket.fileno(self)  # (not self.fileno(): a repr must not pair a socket)
        if fd < 0 and not closed:
            # a TCP socket without its descriptor yet (LAZY_FD): make it (unpaired), a repr
            # shows the number a kernel socket would have
            ensure = getattr(self, "_ensure_fd", None)
            if ensure is not None:
                fd = ensure()
        # (socket.socket's layout: family and type as numbers, "[closed]" once closed)
        s = (f"<ioth.{type(self).__name__}{' [closed]' if closed else ''} fd={fd}, "
             f"family={int(self.family)}, type={int(self.type)}, proto={self.proto}")
        if not closed:
            try:
                s += f", laddr={self.getsockname()}"
            except OSError:
                pass
            try:
                s += f", raddr={self.getpeername()}"
            except OSError:
                pass
        return s + ">"

    @property
    def stack(self) -> Stack:
        """The stack this socket lives on."""
        return self._stack

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def dup(self) -> IothSocket:
        """Not supported on ioth sockets (the stack state is not duplicated)."""
        raise OSError(errno.EOPNOTSUPP, "dup() of an ioth socket is not supported")

    def _raw_setblocking_off(self) -> bool:
        """Make the descriptor non-blocking; return the previous blocking flag."""
        fd = self.fileno()
        was = os.get_blocking(fd)
        os.set_blocking(fd, False)
        return was

"""Berkeley sockets on ioth stacks, with real file descriptors.

``ioth.sockets.socket(stack, family, type, proto)`` (also ``stack.socket(...)`` and
``ioth.msocket(stack, ...)``) returns an instance of :class:`socket.socket`: a
:class:`~ioth.sockets.stream.StreamSocket` for TCP or a
:class:`~ioth.sockets.dgram.DatagramSocket` for UDP and ICMP echo.  Their ``fileno()`` works with
select, poll, epoll, selectors, asyncio and ssl, and a TCP socket's descriptor can be handed to
a child process.  :func:`use` and :func:`set_default_stack` make the stdlib ``socket`` module
(and everything built on it) use a stack; ``getaddrinfo(stack, ...)`` and friends resolve names
over a stack (literal addresses, :class:`Resolver` static entries, DNS servers from the stack's
``dns=`` configuration).

Examples::

    import socket, urllib.request, ioth

    stack = ioth.Stack("vde:///tmp/sw", "eth,ip=192.0.2.2/24,gw=192.0.2.1,dns=192.0.2.53")
    with ioth.use(stack):                      # this thread / task only
        urllib.request.urlopen("http://192.0.2.1/").read()
    srv = ioth.sockets.socket(stack, socket.AF_INET6, socket.SOCK_STREAM)   # dual-stack
    srv.bind(("", 8080)); srv.listen()
    ioth.sockets.resolver_for(stack).add("www.example.test", "192.0.2.1")

Design: the application holds one end of an AF_UNIX socket (SOCK_STREAM for TCP,
SOCK_SEQPACKET with a small address header for UDP); the engine end is served by a
:class:`~ioth.sockets.pump.Pump` (an epoll set nested in the stack's engine).  Sends from Python
run the protocol directly on the calling thread under the stack's lock; readiness the data path
cannot express (pending accepts, finished non-blocking connects) is made real on the descriptor.
"""

from __future__ import annotations

import errno
import socket as _socket
from typing import TYPE_CHECKING

from ioth.sockets.base import IothSocket, oserror
from ioth.sockets.default import current_stack, get_default_stack, set_default_stack, use
from ioth.sockets.dgram import DatagramSocket
from ioth.sockets.resolver import (
    Resolver,
    getaddrinfo,
    gethostbyaddr,
    gethostbyname,
    gethostbyname_ex,
    getnameinfo,
    resolver_for,
)
from ioth.sockets.stream import StreamSocket

if TYPE_CHECKING:
    from ioth.stack.stack import Stack


def socket(stack: Stack, family: int = _socket.AF_INET, type: int = _socket.SOCK_STREAM,
           proto: int = 0) -> IothSocket:
    """A socket on ``stack``: TCP (SOCK_STREAM), UDP or ICMP echo (SOCK_DGRAM)."""
    base = type & ~(_socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
    if family not in (_socket.AF_INET, _socket.AF_INET6):
        raise oserror(errno.EAFNOSUPPORT)
    if base == _socket.SOCK_STREAM:
        return StreamSocket(stack, family, type, proto)
    if base == _socket.SOCK_DGRAM:
        return DatagramSocket(stack, family, type, proto)
    raise oserror(errno.EPROTONOSUPPORT if base == _socket.SOCK_RAW else errno.ESOCKTNOSUPPORT)


__all__ = ["DatagramSocket", "IothSocket", "Resolver", "StreamSocket", "current_stack",
           "get_default_stack", "getaddrinfo", "gethostbyaddr", "gethostbyname",
           "gethostbyname_ex", "getnameinfo", "resolver_for", "set_default_stack", "socket",
           "use"]

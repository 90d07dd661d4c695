"""Default stacks: make the stdlib ``socket`` module use an ioth stack.

``with ioth.use(stack):`` sets the stack of the current thread / asyncio task (a context
variable); ``ioth.set_default_stack(stack)`` sets the one of every context that did not choose;
``ioth.use(None)`` means the kernel.  The first call installs thin wrappers in the ``socket``
module (``socket.socket``, ``getaddrinfo``, ``gethostbyname``... and so ``create_connection``,
``create_server`` and every library built on them) and in asyncio's resolver; with no stack
chosen they call the original functions, so kernel sockets keep working unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import socket as _socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

_KERNEL: Any = object()


class _State:
    """Process-wide switches (the socket module is process-wide too)."""

    lock = threading.Lock()
    installed = False
    default: Stack | None = None
    current: contextvars.ContextVar[Any] = contextvars.ContextVar("ioth_stack", default=None)
    originals: dict[str, Any] = {}


def current_stack() -> Stack | None:
    """The stack the stdlib socket module uses here (None: the kernel)."""
    value = _State.current.get()
    if value is None:
        return _State.default
    if value is _KERNEL:
        return None
    return value  # type: ignore[no-any-return]


@contextlib.contextmanager
def use(stack: Stack | None) -> Iterator[Stack | None]:
    """Within the block, this thread/task's stdlib sockets live on ``stack`` (None: kernel)."""
    install()
    token = _State.current.set(_KERNEL if stack is None else stack)
    try:
        yield stack
    finally:
        _State.current.reset(token)


def set_default_stack(stack: Stack | None) -> None:
    """The stack of every thread and task that did not choose one with :func:`use`."""
    install()
    _State.default = stack


def get_default_stack() -> Stack | None:
    """The process-wide default stack (None: the kernel)."""
    return _State.default


class _SocketMeta(type):
    """Metaclass of the replacement ``socket.socket``: calling the replacement itself picks the
    current stack's socket (a kernel socket when there is none) and every real socket passes
    its isinstance checks; classes derived from it later are ordinary socket subclasses."""

    _real: type[_socket.socket]
    _factory: type | None = None

    def __call__(cls, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> Any:
        if cls is not _SocketMeta._factory:
            return super().__call__(family, type, proto, fileno)
        stack = current_stack()
        fam = _socket.AF_INET if family == -1 else family
        if stack is None or fileno is not None or fam not in (_socket.AF_INET,
                                                              _socket.AF_INET6):
            return cls._real(family, type, proto, fileno)
        from ioth.sockets import socket as make

        return make(stack, fam, _socket.SOCK_STREAM if type == -1 else type,
                    0 if proto == -1 else proto)

    def __instancecheck__(cls, obj: object) -> bool:
        if cls is _SocketMeta._factory:
            return isinstance(obj, cls._real)
        return super().__instancecheck__(obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if cls is _SocketMeta._factory:
            return issubclass(sub, cls._real)
        return super().__subclasscheck__(sub)


def _wrap(name: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    original = getattr(_socket, name)
    _State.originals[name] = original

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = current_stack()
        if stack is None:
            return original(*args, **kwargs)
        return impl(stack, *args, **kwargs)

    return wrapper


def _gethostname(stack: Stack) -> str:
    return stack.fqdn or _State.originals["gethostname"]()


def _getfqdn(stack: Stack, name: str = "") -> str:
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        return stack.fqdn or _State.originals["gethostname"]()
    from ioth.sockets.resolver import gethostbyaddr

    try:
        return gethostbyaddr(stack, name)[0]
    except OSError:
        return name


def install() -> None:
    """Install the wrappers in the ``socket`` module and asyncio (idempotent)."""
    with _State.lock:
        if _State.installed:
            return
        import ssl  # noqa: F401  (ssl.SSLSocket must derive from the real class)

        from ioth.sockets import resolver

        real = _socket.socket
        factory = _SocketMeta("socket", (real,), {"__doc__": real.__doc__, "__slots__": (),
                                                  "__module__": "socket"})
        factory._real = real
        _SocketMeta._factory = factory
        _State.originals["socket"] = real
        _socket.socket = factory  # type: ignore[misc, assignment]
        for name, impl in (("getaddrinfo", resolver.getaddrinfo),
                           ("gethostbyname", resolver.gethostbyname),
                           ("gethostbyname_ex", resolver.gethostbyname_ex),
                           ("gethostbyaddr", resolver.gethostbyaddr),
                           ("getnameinfo", resolver.getnameinfo),
                           ("gethostname", _gethostname),
                           ("getfqdn", _getfqdn)):
            setattr(_socket, name, _wrap(name, impl))
        _install_asyncio()
        _State.installed = True


def _install_asyncio() -> None:
    """asyncio resolves names in executor threads: carry the caller's stack there."""
    import asyncio.base_events as be

    cls = be.BaseEventLoop
    orig_gai = cls.getaddrinfo
    orig_gni = cls.getnameinfo

    async def getaddrinfo(self: Any, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> Any:
        stack = current_stack()
        if stack is None:
            return await orig_gai(self, host, port, family=family, type=type, proto=proto,
                                  flags=flags)
        from ioth.sockets.resolver import getaddrinfo as gai

        call = functools.partial(gai, stack, host, port, family, type, proto, flags)
        if not stack.dns:
            return call()
        return await self.run_in_executor(None, call)

    async def getnameinfo(self: Any, sockaddr: Any, flags: int = 0) -> Any:
        stack = current_stack()
        if stack is None:
            return await orig_gni(self, sockaddr, flags)
        from ioth.sockets.resolver import getnameinfo as gni

        return gni(stack, sockaddr, flags)

    cls.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    cls.getnameinfo = getnameinfo  # type: ignore[method-assign]

"""asyncio on ioth stacks.

Under ``with ioth.use(stack):`` the unmodified asyncio APIs (``asyncio.open_connection``,
``asyncio.start_server``, ``loop.create_connection``, ``loop.create_server``,
``loop.create_datagram_endpoint``, ``loop.sock_connect``...) work on the stack: ioth sockets have
real descriptors, so the selector event loop watches them like kernel sockets.  The helpers here
do the same for one call without changing the caller's default stack.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ioth.sockets.default import use

if TYPE_CHECKING:
    from ioth.stack.stack import Stack


async def open_connection(stack: Stack, host: str | None = None, port: int | str | None = None,
                          **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over ``stack``."""
    with use(stack):
        return await asyncio.open_connection(host, port, **kwargs)


async def start_server(stack: Stack, client_connected_cb: Any, host: Any = None,
                       port: int | str | None = None, **kwargs: Any) -> asyncio.Server:
    """``asyncio.start_server`` over ``stack``."""
    with use(stack):
        return await asyncio.start_server(client_connected_cb, host, port, **kwargs)


async def create_connection(stack: Stack, protocol_factory: Any, host: str | None = None,
                            port: int | str | None = None, **kwargs: Any) -> Any:
    """``loop.create_connection`` over ``stack``."""
    with use(stack):
        loop: Any = asyncio.get_running_loop()
        return await loop.create_connection(protocol_factory, host, port, **kwargs)


async def create_server(stack: Stack, protocol_factory: Any, host: Any = None,
                        port: int | str | None = None, **kwargs: Any) -> asyncio.Server:
    """``loop.create_server`` over ``stack``."""
    with use(stack):
        loop: Any = asyncio.get_running_loop()
        return await loop.create_server(protocol_factory, host, port, **kwargs)  # type: ignore[no-any-return]


async def create_datagram_endpoint(stack: Stack, protocol_factory: Any, **kwargs: Any) -> Any:
    """``loop.create_datagram_endpoint`` over ``stack``."""
    with use(stack):
        return await asyncio.get_running_loop().create_datagram_endpoint(protocol_factory,
                                                                         **kwargs)


async def getaddrinfo(stack: Stack, host: Any, port: Any, **kwargs: Any) -> Any:
    """``loop.getaddrinfo`` over ``stack``."""
    with use(stack):
        return await asyncio.get_running_loop().getaddrinfo(host, port, **kwargs)


__all__ = ["create_connection", "create_datagram_endpoint", "create_server", "getaddrinfo",
           "open_connection", "start_server"]

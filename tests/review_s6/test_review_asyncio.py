"""Adversarial review (session 6): unmodified asyncio code on the DUT, the kernel as oracle.

asyncio makes its sockets through the socket module, so under ``ioth.use(stack)`` an
unmodified coroutine's open_connection / start_server / sock_* calls run on the stack:
a refused and a timed-out connect, an echo exchange with EOF, a server accepting several
clients, a reset seen by a reader and a writer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from tests.review_s6.oracle import Envs, Scenario, close_all, params, run

pytestmark = pytest.mark.interop
PEER4, DUT4 = "192.0.2.1", "192.0.2.2"
LINGER0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"


def _peer_listener(peer: Any, backlog: int = 8) -> Any:
    lst = peer(socket.AF_INET)
    lst.bind((PEER4, 0))
    lst.listen(backlog)
    lst.settimeout(5)
    return lst


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def open_connection_outcomes(peer: Any, dut: Any) -> list[Any]:
    """open_connection: refused (ConnectionRefusedError), a peer dropping the SYN
    (wait_for's TimeoutError), then a working echo with EOF at the end."""
    probe = peer(socket.AF_INET)
    probe.bind((PEER4, 0))
    refused = probe.getsockname()
    probe.close()
    full = _peer_listener(peer, 0)
    fill = []
    for _ in range(2):
        f = peer(socket.AF_INET)
        f.setblocking(False)
        f.connect_ex(full.getsockname())
        fill.append(f)
        time.sleep(0.05)
    lst = _peer_listener(peer)

    async def main() -> list[Any]:
        res: list[Any] = []
        try:
            await asyncio.wait_for(asyncio.open_connection(*refused), 3)
            res.append("connected?")
        except OSError as exc:
            res.append(_name(exc))
        try:
            await asyncio.wait_for(asyncio.open_connection(*full.getsockname()), 0.5)
            res.append("connected?")
        except (TimeoutError, OSError) as exc:
            res.append(_name(exc))
        reader, writer = await asyncio.open_connection(*lst.getsockname())
        loop = asyncio.get_running_loop()
        a, _ = await loop.run_in_executor(None, lst.accept)
        writer.write(b"question\n")
        await writer.drain()
        res.append(await loop.run_in_executor(None, a.recv, 100))
        a.sendall(b"answer\n")
        a.shutdown(socket.SHUT_WR)
        res += [await reader.readline(), await reader.read(), reader.at_eof(),
                writer.get_extra_info("peername") == lst.getsockname()]
        writer.close()
        await writer.wait_closed()
        res.append(await loop.run_in_executor(None, a.recv, 10))
        a.close()
        return res

    with dut.ambient():
        out = asyncio.run(main())
    close_all(lst, full, *fill)
    return out


def start_server_many_clients(peer: Any, dut: Any) -> list[Any]:
    """start_server on the DUT: 5 peers connect at once, each gets its echo; closing the
    server refuses new connections."""
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.readline()
        w.write(data.upper())
        await w.drain()
        w.close()

    async def main() -> list[Any]:
        srv = await asyncio.start_server(handle, DUT4, 0)
        port = srv.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()

        def client(i: int) -> bytes:
            k = peer(socket.AF_INET)
            k.settimeout(5)
            k.connect((DUT4, port))
            k.sendall(b"client %d\n" % i)
            got = b""
            while True:
                chunk = k.recv(100)
                if not chunk:
                    break
                got += chunk
            k.close()
            return got
        res: list[Any] = list(await asyncio.gather(
            *(loop.run_in_executor(None, client, i) for i in range(5))))
        srv.close()
        await srv.wait_closed()

        def late() -> Any:
            k = peer(socket.AF_INET)
            k.settimeout(3)
            try:
                k.connect((DUT4, port))
                return "connected"
            except OSError as exc:
                return _name(exc)
            finally:
                k.close()
        res.append(await loop.run_in_executor(None, late))
        return res

    with dut.ambient():
        return asyncio.run(main())


def reset_seen_by_streams(peer: Any, dut: Any) -> list[Any]:
    """The peer resets: a pending read raises ConnectionResetError; a later write+drain
    raises too (ConnectionResetError or BrokenPipeError)."""
    lst = _peer_listener(peer)

    async def main() -> list[Any]:
        reader, writer = await asyncio.open_connection(*lst.getsockname())
        loop = asyncio.get_running_loop()
        a, _ = await loop.run_in_executor(None, lst.accept)
        pending = asyncio.ensure_future(reader.read(100))
        await asyncio.sleep(0.2)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        a.close()
        res: list[Any] = []
        try:
            res.append(await asyncio.wait_for(pending, 3))
        except (OSError, TimeoutError) as exc:
            res.append(_name(exc))
        try:
            for _ in range(3):
                writer.write(b"x" * 1000)
                await writer.drain()
                await asyncio.sleep(0.05)
            res.append("wrote")
        except OSError as exc:
            res.append(_name(exc) in ("ConnectionResetError", "BrokenPipeError"))
        writer.close()
        return res

    with dut.ambient():
        out = asyncio.run(main())
    close_all(lst)
    return out


def sock_methods(peer: Any, dut: Any) -> list[Any]:
    """loop.sock_connect / sock_sendall / sock_recv / sock_recv_into on a non-blocking DUT
    socket, and sock_connect to a refused port."""
    lst = _peer_listener(peer)
    probe = peer(socket.AF_INET)
    probe.bind((PEER4, 0))
    refused = probe.getsockname()
    probe.close()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        res: list[Any] = []
        try:
            await loop.sock_connect(s, refused)
            res.append("connected?")
        except OSError as exc:
            res.append(_name(exc))
        s.close()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        await loop.sock_connect(s, lst.getsockname())
        a, _ = await loop.run_in_executor(None, lst.accept)
        await loop.sock_sendall(s, b"z" * 300_000)
        got = 0
        while got < 300_000:
            got += len(await loop.run_in_executor(None, a.recv, 1 << 16))
        res.append(got)
        a.sendall(b"back")
        res.append(await loop.sock_recv(s, 10))
        a.sendall(b"into")
        buf = bytearray(10)
        n = await loop.sock_recv_into(s, buf)
        res.append(bytes(buf[:n]))
        a.close()
        res.append(await loop.sock_recv(s, 10))
        s.close()
        return res

    with dut.ambient():
        out = asyncio.run(main())
    close_all(lst)
    return out


SCENARIOS: list[Scenario] = [open_connection_outcomes, start_server_many_clients,
                             reset_seen_by_streams, sock_methods]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_asyncio_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs, v6=True)

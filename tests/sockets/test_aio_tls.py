"""asyncio (unmodified APIs under ioth.use, and the ioth.aio helpers) and TLS with ssl+trustme."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import ioth
import ioth.aio
from ioth.sockets import socket as isocket
from tests.sockets.helpers import network, require_module


def test_asyncio_streams_both_sides_and_datagrams(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        async def main() -> None:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                while line := await r.readline():
                    w.write(line.upper())
                    await w.drain()
                w.close()

            with ioth.use(b):
                server = await asyncio.start_server(handle, "192.0.2.2", 8888, limit=1 << 20)
            with ioth.use(a):
                r, w = await asyncio.open_connection("192.0.2.2", 8888, limit=1 << 20)
            big = b"x" * 200_000 + b"\n"
            w.write(b"hello\n" + big)
            await w.drain()
            assert await r.readline() == b"HELLO\n"
            assert await r.readline() == big.upper()
            assert w.get_extra_info("peername") == ("192.0.2.2", 8888)
            w.close()
            await w.wait_closed()
            r2, w2 = await ioth.aio.open_connection(a, "192.0.2.2", 8888)
            w2.write(b"again\n")
            assert await r2.readline() == b"AGAIN\n"
            w2.write_eof()
            assert await r2.read() == b""
            w2.close()
            server.close()
            await server.wait_closed()

            loop = asyncio.get_running_loop()
            got: asyncio.Future[tuple[bytes, tuple[str, int]]] = loop.create_future()

            class Rx(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    got.set_result((data, addr))

            rx, _ = await ioth.aio.create_datagram_endpoint(b, Rx,
                                                            local_addr=("192.0.2.2", 5353))
            with ioth.use(a):
                tx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                            remote_addr=("192.0.2.2", 5353))
            tx.sendto(b"dgram")
            data, addr = await asyncio.wait_for(got, 5)
            assert data == b"dgram" and addr[0] == "192.0.2.1"
            tx.close()
            rx.close()

        asyncio.run(asyncio.wait_for(main(), 30))


def test_tls_server_and_client(tmp_path: Path) -> None:
    trustme = require_module("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("secure.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with network(tmp_path, 2) as (a, b):
        ioth.sockets.resolver_for(a).add("secure.test", "192.0.2.2")
        lst = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("192.0.2.2", 443))
        lst.listen()

        def serve() -> None:
            conn, _ = lst.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(100)[::-1])

        t = threading.Thread(target=serve)
        t.start()
        with ioth.use(a), socket.create_connection(("secure.test", 443), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="secure.test") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"secret")
            assert tls.recv(100) == b"terces"
        t.join(10)
        lst.close()

        async def aio_tls() -> None:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                w.write(await r.readline())
                await w.drain()
                w.close()

            server = await ioth.aio.start_server(b, handle, "192.0.2.2", 8443, ssl=server_ctx)
            r, w = await ioth.aio.open_connection(a, "secure.test", 8443, ssl=client_ctx)
            w.write(b"over tls\n")
            assert await r.readline() == b"over tls\n"
            w.close()
            server.close()
            await server.wait_closed()

        asyncio.run(asyncio.wait_for(aio_tls(), 30))


def test_asyncio_server_on_every_address_both_families(tmp_path: Path) -> None:
    with network(tmp_path, 2, v6=True) as (a, b):
        async def main() -> None:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                w.write(str(w.get_extra_info("peername")[0]).encode() + b"\n")
                await w.drain()
                w.close()

            server = await ioth.aio.start_server(b, handle, None, 8889)
            assert len(server.sockets) == 2
            seen = []
            for host in ("192.0.2.2", "2001:db8::2"):
                r, w = await ioth.aio.open_connection(a, host, 8889)
                seen.append(await r.readline())
                w.close()
            assert seen == [b"192.0.2.1\n", b"2001:db8::1\n"]
            server.close()
            await server.wait_closed()

        asyncio.run(asyncio.wait_for(main(), 30))


def test_many_concurrent_connections(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        async def main() -> None:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                data = await r.read()
                w.write(data[::-1])
                await w.drain()
                w.close()

            server = await ioth.aio.start_server(b, handle, "192.0.2.2", 7070, backlog=512)

            async def client(i: int) -> bool:
                r, w = await ioth.aio.open_connection(a, "192.0.2.2", 7070)
                payload = i.to_bytes(4, "big") * 2500
                w.write(payload)
                w.write_eof()
                back = await r.read()
                w.close()
                return back == payload[::-1]

            results = await asyncio.gather(*(client(i) for i in range(150)))
            assert all(results)
            server.close()
            await server.wait_closed()

        asyncio.run(asyncio.wait_for(main(), 60))


def test_loop_create_connection_and_sock_calls(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        async def main() -> None:
            loop = asyncio.get_running_loop()
            got: asyncio.Future[bytes] = loop.create_future()

            class Echo(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    self.t = transport

                def data_received(self, data: bytes) -> None:
                    assert isinstance(self.t, asyncio.Transport)
                    self.t.write(data[::-1])

            class Client(asyncio.Protocol):
                def data_received(self, data: bytes) -> None:
                    got.set_result(data)

            with ioth.use(b):
                server = await loop.create_server(Echo, "192.0.2.2", 9999)
            with ioth.use(a):
                transport, _ = await loop.create_connection(Client, "192.0.2.2", 9999)
                transport.write(b"stressed")
                assert await asyncio.wait_for(got, 5) == b"desserts"
                transport.close()
                raw = socket.socket()
                raw.setblocking(False)
                await loop.sock_connect(raw, ("192.0.2.2", 9999))
                await loop.sock_sendall(raw, b"live")
                assert await asyncio.wait_for(loop.sock_recv(raw, 10), 5) == b"evil"
                raw.close()
                bad = socket.socket()
                bad.setblocking(False)
                try:
                    await loop.sock_connect(bad, ("192.0.2.2", 1))
                    raise AssertionError("connected to a closed port")
                except ConnectionRefusedError:
                    pass
                bad.close()
            server.close()
            await server.wait_closed()

        asyncio.run(asyncio.wait_for(main(), 30))

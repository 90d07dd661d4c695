"""``await stack.open_connection(...)`` / ``await stack.start_server(...)``."""

from __future__ import annotations

import asyncio
import tempfile

import ioth
from ioth.net.switch.server import SwitchServer


def test_stack_open_connection_and_start_server() -> None:
    with tempfile.TemporaryDirectory() as d:
        switch = SwitchServer(f"{d}/sw").start()
        try:
            with ioth.Stack(f"vde://{switch.directory}", "eth,ip=192.0.2.1/24") as a, \
                    ioth.Stack(f"vde://{switch.directory}", "eth,ip=192.0.2.2/24") as b:

                async def main() -> bytes:
                    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                        w.write((await r.readline()).upper())
                        await w.drain()
                        w.close()

                    server = await a.start_server(handle, "192.0.2.1", 8080)
                    async with server:
                        reader, writer = await b.open_connection("192.0.2.1", 8080)
                        writer.write(b"hello ioth\n")
                        await writer.drain()
                        line = await asyncio.wait_for(reader.readline(), 10)
                        writer.close()
                        return line

                assert asyncio.run(main()) == b"HELLO IOTH\n"
        finally:
            switch.close()

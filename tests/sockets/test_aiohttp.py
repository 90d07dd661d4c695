"""An unmodified aiohttp server and client on two ioth stacks (asyncio over real descriptors)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import ioth
from tests.sockets.helpers import network, require_module


def test_aiohttp_server_and_client(tmp_path: Path) -> None:
    aiohttp = require_module("aiohttp")
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"peer": request.remote, "len": len(body)})

    async def main(a: ioth.Stack, b: ioth.Stack) -> None:
        app = web.Application()
        app.router.add_post("/echo", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        with ioth.use(b):
            site = web.TCPSite(runner, "192.0.2.2", 8080)
            await site.start()
        try:
            with ioth.use(a):
                async with aiohttp.ClientSession() as session:
                    for size in (0, 1000, 500_000):
                        async with session.post("http://192.0.2.2:8080/echo",
                                                data=b"z" * size) as resp:
                            assert resp.status == 200
                            assert await resp.json() == {"peer": "192.0.2.1", "len": size}
        finally:
            await runner.cleanup()

    with network(tmp_path, 2) as (a, b):
        asyncio.run(asyncio.wait_for(main(a, b), 30))

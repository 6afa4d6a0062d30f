# bench/servers/python_websockets.py -- Python websockets echo server (Debian
# python3-websockets), for the benchmark.
#
#   /usr/bin/python3 bench/servers/python_websockets.py PORT [TLS_PORT CERT KEY]
#
# asyncio, one process; binds 127.0.0.1; no compression, no size limit
# beyond 64 MiB, keepalive pings off (they would wake idle connections).
import asyncio
import ssl
import sys

import websockets


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(argv):
    opts = dict(compression=None, max_size=64 * 1024 * 1024, ping_interval=None,
                max_queue=None, backlog=4096)
    servers = [await websockets.serve(echo, "127.0.0.1", int(argv[1]), **opts)]
    if len(argv) > 2:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(argv[3], argv[4])
        servers.append(await websockets.serve(echo, "127.0.0.1", int(argv[2]), ssl=ctx, **opts))
    await asyncio.Future()


asyncio.run(main(sys.argv))

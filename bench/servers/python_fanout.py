# bench/servers/python_fanout.py PORT [compress] -- the fan-out row in
# Python's websockets: what the socket on /pub sends goes to every socket
# on /sub through websockets.broadcast().
import asyncio, sys
import websockets

port = int(sys.argv[1])
compress = len(sys.argv) > 2 and sys.argv[2] == "compress"
subs = set()

async def handler(ws, path):
    if path == "/sub":
        subs.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subs.discard(ws)
    else:
        async for message in ws:
            websockets.broadcast(subs, message)

async def main():
    async with websockets.serve(handler, "127.0.0.1", port, max_size=None, backlog=4096,
                                compression="deflate" if compress else None,
                                ping_interval=None):
        print("listening", flush=True)
        await asyncio.Future()

asyncio.run(main())

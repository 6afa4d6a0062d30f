#!/usr/bin/python3
"""slow_reader.py -- a WebSocket client (Python's websockets) that reads
slowly, for moonws's ondrain spec.

Usage: slow_reader.py URL COUNT DELAY
Connects, reads COUNT messages (0: until the text message "done"),
sleeping DELAY seconds after each, with
websockets' own queue at one message (max_queue=1), so it stops reading
from TCP while it sleeps and the server's output backs up.  Prints
{"received": n, "bytes": b} and closes with 1000.
"""
import asyncio
import json
import sys

import websockets


async def main(url, count, delay):
    received = size = 0
    async with websockets.connect(url, max_queue=1, max_size=None,
                                  read_limit=2 ** 14, open_timeout=10) as ws:
        while count == 0 or received < count:
            data = await asyncio.wait_for(ws.recv(), 30)
            if count == 0 and data == "done":
                break
            received += 1
            size += len(data)
            await asyncio.sleep(delay)
    print(json.dumps({"received": received, "bytes": size}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))

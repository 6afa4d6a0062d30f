#!/usr/bin/python3
"""spec/peers/python_peer.py -- Python `websockets` 10.4 as moonws's interop peer.

  python_peer.py server               bind 127.0.0.1:0, print "PORT n", serve until killed
  python_peer.py client URL STEP...   run the steps against a moonws server

Both modes speak the command protocol of spec/support/interop.lua (the one
source of truth; spec/peers/node_peer.js mirrors this file).  Every
observation is one JSON line on stdout; a client ends with {"ev": "done"}
(exit 0) or {"ev": "fail", "reason": ...} (exit 1).
Run with /usr/bin/python3: only the standard library and websockets.
"""

import asyncio
import collections
import json
import os
import sys

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.legacy.client import WebSocketClientProtocol
from websockets.legacy.server import WebSocketServerProtocol

MAX_SIZE = 64 * 1024 * 1024  # room for the 16 MiB cases
WAIT = 30  # seconds any single wait may take
TEXT_UNIT = "a\u00e9\u20ac\U0001F600".encode()  # 1+2+3+4 bytes of UTF-8
BINARY_UNIT = bytes(range(256))


def emit(**observation):
    print(json.dumps(observation), flush=True)


def gen(kind, n):
    """The payload both sides build: n bytes (text: valid UTF-8)."""
    if kind == "text":
        return (TEXT_UNIT * (n // 10) + b"x" * (n % 10)).decode()
    return (BINARY_UNIT * (n // 256 + 1))[:n]


def describe(msg, frames):
    kind = "text" if isinstance(msg, str) else "binary"
    raw = msg.encode() if kind == "text" else msg
    obs = {"type": kind, "len": len(raw), "frames": frames, "gen": msg == gen(kind, len(raw))}
    if kind == "text" and len(raw) <= 1024:
        obs["text"] = msg
    return obs


class FrameCounting:
    """Records how many data frames each received message had, so a spec
    can tell a fragmented message from a whole one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frame_counts = collections.deque()
        self._frames = 0

    async def read_message(self):
        self._frames = 0
        msg = await super().read_message()
        if msg is not None:
            self.frame_counts.append(self._frames)
        return msg

    async def read_data_frame(self, max_size):
        frame = await super().read_data_frame(max_size)
        if frame is not None:
            self._frames += 1
        return frame

    async def recv_counted(self, timeout=WAIT):
        msg = await asyncio.wait_for(self.recv(), timeout)
        return msg, self.frame_counts.popleft()


class ServerProtocol(FrameCounting, WebSocketServerProtocol):
    pass


class ClientProtocol(FrameCounting, WebSocketClientProtocol):
    pass


def drop(ws, masked):
    """Write a frame header announcing 1000 bytes, 10 of them, then abort."""
    header = bytes([0x82, (0x80 if masked else 0) | 126, 0x03, 0xE8])
    ws.transport.write(header + (b"\0\0\0\0" if masked else b"") + b"0123456789")
    ws.transport.abort()


def fragments(kind, count, size):
    whole = gen(kind, count * size)
    return [whole[i * size:(i + 1) * size] for i in range(count)]


# ------------------------------------------------------------------ server

async def command(ws, text, last_frames):
    name, _, rest = text[len("cmd:"):].partition(":")
    if name == "close":  # cmd:close:CODE:REASON
        code, _, reason = rest.partition(":")
        await ws.close(int(code), reason)
    elif name == "ping":  # cmd:ping:PAYLOAD -> ping, await the pong, "pong:PAYLOAD"
        waiter = await ws.ping(rest)
        await asyncio.wait_for(waiter, WAIT)
        await ws.send("pong:" + rest)
    elif name == "fragments":  # cmd:fragments:COUNT:SIZE:TYPE
        count, size, kind = rest.split(":")
        await ws.send(fragments(kind, int(count), int(size)))
    elif name == "frames":  # frames of the last echoed message
        await ws.send("frames:%d" % last_frames)
    elif name == "drop":
        drop(ws, masked=False)
    else:
        await ws.send("error:unknown command " + text)


async def handle(ws, path):
    last_frames = 0
    try:
        while True:
            msg, frames = await ws.recv_counted(timeout=None)  # a server waits as long as needed
            if path == "/seed":
                emit(ev="hello", path=path, **describe(msg, frames))
                await ws.close(4000, "bye")
            elif isinstance(msg, str) and msg.startswith("cmd:"):
                await command(ws, msg, last_frames)
            else:
                last_frames = frames
                await ws.send(msg)
    except ConnectionClosed:
        pass
    except Exception as e:  # noqa: BLE001 -- a broken command: report it, end the connection
        emit(ev="error", path=path, reason="%s: %s" % (type(e).__name__, e))
        await ws.close(1011, "peer error")
    await ws.wait_closed()
    emit(ev="closed", path=path, code=ws.close_code, reason=ws.close_reason)


async def server():
    async with websockets.serve(handle, "127.0.0.1", 0, create_protocol=ServerProtocol,
                                max_size=MAX_SIZE, ping_interval=None, close_timeout=5) as srv:
        port = srv.sockets[0].getsockname()[1]
        print("PORT %d" % port, flush=True)
        await asyncio.Future()


# ------------------------------------------------------------------ client

async def step(ws, s):
    name, _, rest = s.partition(":")
    if name == "echo":  # echo:TYPE:N
        kind, n = rest.split(":")
        msg = gen(kind, int(n))
        await ws.send(msg)
        got, frames = await ws.recv_counted()
        emit(ev="echo", equal=got == msg, **describe(got, frames))
    elif name == "fragecho":  # fragecho:TYPE:COUNT:SIZE
        kind, count, size = rest.split(":")
        pieces = fragments(kind, int(count), int(size))
        await ws.send(pieces)
        got, frames = await ws.recv_counted()
        emit(ev="echo", equal=got == pieces[0][:0].join(pieces), **describe(got, frames))
    elif name == "send":  # send:TEXT
        await ws.send(rest)
    elif name == "recv":
        got, frames = await ws.recv_counted()
        emit(ev="recv", **describe(got, frames))
    elif name == "ping":  # ping:PAYLOAD
        waiter = await ws.ping(rest)
        await asyncio.wait_for(waiter, WAIT)
        emit(ev="pong", data=rest)
    elif name == "close":  # close:CODE:REASON
        code, _, reason = rest.partition(":")
        await asyncio.wait_for(ws.close(int(code), reason), WAIT)
        emit(ev="closed", code=ws.close_code, reason=ws.close_reason)
    elif name == "waitclose":
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        emit(ev="closed", code=ws.close_code, reason=ws.close_reason)
    elif name == "drop":
        drop(ws, masked=True)
        emit(ev="dropped")
        return "stop"
    else:
        raise ValueError("unknown step")


async def client(url, steps):
    ws = await asyncio.wait_for(websockets.connect(
        url, create_protocol=ClientProtocol, max_size=MAX_SIZE, ping_interval=None,
        close_timeout=5), WAIT)
    emit(ev="open")
    dropped = False
    for s in steps:
        try:
            dropped = await step(ws, s) == "stop"
        except Exception as e:  # noqa: BLE001 -- any failure ends the scenario
            emit(ev="fail", step=s, reason="%s: %s" % (type(e).__name__, e))
            return 1
        if dropped:
            break
    emit(ev="done")
    if ws.open and not dropped:
        await asyncio.wait_for(ws.close(1000), WAIT)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "server":
        asyncio.run(server())
        return 0
    if len(argv) >= 3 and argv[1] == "client":
        try:
            return asyncio.run(client(argv[2], argv[3:]))
        except Exception as e:  # noqa: BLE001
            emit(ev="fail", step="connect", reason="%s: %s" % (type(e).__name__, e))
            return 1
    sys.stderr.write("usage: %s server | client URL STEP...\n" % os.path.basename(argv[0]))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

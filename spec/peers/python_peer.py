#!/usr/bin/python3
"""spec/peers/python_peer.py -- Python `websockets` 10.4 as moonws's interop peer.

  python_peer.py server [--tls=CERT,KEY]             bind 127.0.0.1:0, print "PORT n",
                                                     serve until killed (TLS: wss://)
  python_peer.py client URL [--ca=FILE] [--pmd=SPEC] STEP...
                                                     run the steps against a moonws server
                                                     (--ca: trust FILE for wss://;
                                                     --pmd: permessage-deflate offer)

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
import random
import ssl
import sys
import urllib.parse

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory)
from websockets.legacy.client import WebSocketClientProtocol
from websockets.legacy.server import WebSocketServerProtocol

MAX_SIZE = 64 * 1024 * 1024  # room for the 16 MiB cases
WAIT = 30  # seconds any single wait may take
TEXT_UNIT = "a\u00e9\u20ac\U0001F600".encode()  # 1+2+3+4 bytes of UTF-8
BINARY_UNIT = bytes(range(256))


def emit(**observation):
    print(json.dumps(observation), flush=True)


def gen(kind, n):
    """The payload both sides build: n bytes (text: valid UTF-8).  Kinds
    text and binary repeat a short unit (highly compressible); random is
    binary noise, randtext random code points of 1-4 bytes (both barely
    compressible); repeat is binary: a random block of n/2 bytes twice, so
    deflate can only shrink it with a window larger than n/2.  Random ones
    are seeded by n: the same kind and n give the same bytes."""
    if kind == "text":
        return (TEXT_UNIT * (n // 10) + b"x" * (n % 10)).decode()
    if kind == "binary":
        return (BINARY_UNIT * (n // 256 + 1))[:n]
    rng = random.Random(n)
    if kind == "random":
        return rng.randbytes(n)
    if kind == "repeat":
        block = rng.randbytes(n // 2)
        return block + block + b"x" * (n % 2)
    if kind == "randtext":
        chars, left = [], n
        ranges = [(0x20, 0x7E), (0x80, 0x7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
        while left:
            width = rng.randint(1, min(4, left))
            lo, hi = ranges[width - 1]
            chars.append(chr(rng.randint(lo, hi)))
            left -= width
        return "".join(chars)
    raise ValueError("unknown kind " + kind)


def describe(msg, wire):
    """A received message and how it came: wire = {frames, compressed (RSV1
    on its first frame), wire (payload bytes as received)}."""
    kind = "text" if isinstance(msg, str) else "binary"
    raw = msg.encode() if kind == "text" else msg
    obs = {"type": kind, "len": len(raw), "gen": msg == gen(kind, len(raw)), **wire}
    if kind == "text" and len(raw) <= 1024:
        obs["text"] = msg
    return obs


DATA_OPCODES = (0, 1, 2)


class Watched:
    """Wraps a negotiated extension to see the frames as they are on the
    wire: RSV1 and payload size before decoding and after encoding."""

    def __init__(self, inner, owner):
        self.inner, self.owner, self.name = inner, owner, inner.name

    def decode(self, frame, *, max_size=None):
        if frame.opcode in DATA_OPCODES:
            self.owner.rx_frame = (frame.rsv1, len(frame.data))
        return self.inner.decode(frame, max_size=max_size)

    def encode(self, frame):
        out = self.inner.encode(frame)
        if out.opcode in DATA_OPCODES:
            self.owner.tx_frame = (out.rsv1, len(out.data))
        return out


class Watching:
    """Records, per message, how it crossed the wire: received ones (type,
    len, frame count, RSV1, payload bytes; queued for recv_counted) and sent ones
    (self.sent: {compressed, wire} in order), so a spec can tell a
    fragmented or compressed message from a whole or plain one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire_records = collections.deque()
        self.received = []
        self.sent = []
        self.rx_frame = self.tx_frame = None
        self._rx = None

    def connection_open(self):
        self.extensions = [Watched(e, self) for e in self.extensions]
        super().connection_open()

    def negotiated(self):
        return self.response_headers.get("Sec-WebSocket-Extensions", "")

    async def read_message(self):
        self._rx = {"frames": 0, "compressed": False, "wire": 0}
        msg = await super().read_message()
        if msg is not None:
            text = isinstance(msg, str)
            self._rx["type"] = "text" if text else "binary"
            self._rx["len"] = len(msg.encode() if text else msg)
            self.wire_records.append(self._rx)
            self.received.append(self._rx)
        return msg

    async def read_data_frame(self, max_size):
        self.rx_frame = None
        frame = await super().read_data_frame(max_size)
        if frame is not None:
            rsv1, size = self.rx_frame or (False, len(frame.data))
            if self._rx["frames"] == 0:
                self._rx["compressed"] = rsv1
            self._rx["frames"] += 1
            self._rx["wire"] += size
        return frame

    def write_frame_sync(self, fin, opcode, data):
        self.tx_frame = None
        super().write_frame_sync(fin, opcode, data)
        if opcode in DATA_OPCODES:
            rsv1, size = self.tx_frame or (False, len(data))
            if opcode != 0:
                self.sent.append({"compressed": rsv1, "wire": 0})
            self.sent[-1]["wire"] += size

    async def recv_counted(self, timeout=WAIT):
        msg = await asyncio.wait_for(self.recv(), timeout)
        return msg, self.wire_records.popleft()


def deflate_params(spec):
    """SPEC: comma-separated RFC 7692 parameters, "name" or "name:value"
    (e.g. "server_no_context_takeover,client_max_window_bits:10")."""
    params = {}
    for item in filter(None, spec.split(",")):
        name, _, value = item.partition(":")
        params[name] = int(value) if value else True
    return params


class ServerProtocol(Watching, WebSocketServerProtocol):
    def process_extensions(self, headers, available_extensions):
        """A path with ?pmd=SPEC configures permessage-deflate for this
        connection: "off", "on" (no parameters) or parameters as for
        deflate_params; without it websockets' defaults apply."""
        query = urllib.parse.urlsplit(self.path).query
        spec = urllib.parse.parse_qs(query).get("pmd")
        if spec:
            spec = spec[0]
            available_extensions = [] if spec == "off" else [
                ServerPerMessageDeflateFactory(**deflate_params("" if spec == "on" else spec))]
        return WebSocketServerProtocol.process_extensions(headers, available_extensions)


class ClientProtocol(Watching, WebSocketClientProtocol):
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
            msg, wire = await ws.recv_counted(timeout=None)  # a server waits as long as needed
            if path == "/seed":
                emit(ev="hello", path=path, **describe(msg, wire))
                await ws.close(4000, "bye")
            elif isinstance(msg, str) and msg.startswith("cmd:"):
                await command(ws, msg, last_frames)
            else:
                last_frames = wire["frames"]
                await ws.send(msg)
    except ConnectionClosed:
        pass
    except Exception as e:  # noqa: BLE001 -- a broken command: report it, end the connection
        emit(ev="error", path=path, reason="%s: %s" % (type(e).__name__, e))
        await ws.close(1011, "peer error")
    await ws.wait_closed()
    emit(ev="closed", path=path, code=ws.close_code, reason=ws.close_reason,
         ext=ws.negotiated(), received=ws.received, sent=ws.sent)


async def server(options):
    context = None
    if "tls" in options:
        cert, key = options["tls"].split(",")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    async with websockets.serve(handle, "127.0.0.1", 0, create_protocol=ServerProtocol,
                                max_size=MAX_SIZE, ping_interval=None, close_timeout=5,
                                ssl=context) as srv:
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
        got, wire = await ws.recv_counted()
        emit(ev="echo", equal=got == msg, **describe(got, wire), **sent_as(ws))
    elif name == "fragecho":  # fragecho:TYPE:COUNT:SIZE
        kind, count, size = rest.split(":")
        pieces = fragments(kind, int(count), int(size))
        await ws.send(pieces)
        got, wire = await ws.recv_counted()
        emit(ev="echo", equal=got == pieces[0][:0].join(pieces), **describe(got, wire),
             **sent_as(ws))
    elif name == "send":  # send:TEXT
        await ws.send(rest)
    elif name == "recv":
        got, wire = await ws.recv_counted()
        emit(ev="recv", **describe(got, wire))
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


def sent_as(ws):
    """How the message this step sent went out."""
    return {"sent_compressed": ws.sent[-1]["compressed"], "sent_wire": ws.sent[-1]["wire"]}


async def client(url, steps, options):
    extra = {}
    if "ca" in options:
        extra["ssl"] = ssl.create_default_context(cafile=options["ca"])
    if "pmd" in options:
        spec = options["pmd"]
        extra["compression"] = None
        if spec != "off":
            extra["extensions"] = [ClientPerMessageDeflateFactory(
                **deflate_params("" if spec == "on" else spec))]
    ws = await asyncio.wait_for(websockets.connect(
        url, create_protocol=ClientProtocol, max_size=MAX_SIZE, ping_interval=None,
        close_timeout=5, **extra), WAIT)
    emit(ev="open", ext=ws.negotiated())
    dropped = False
    for s in steps:
        try:
            dropped = await step(ws, s) == "stop"
        except Exception as e:  # noqa: BLE001 -- any failure ends the scenario
            emit(ev="fail", step=s, reason="%s: %s" % (type(e).__name__, e))
            return 1
        if dropped:
            break
    emit(ev="done", sent=ws.sent)
    if ws.open and not dropped:
        await asyncio.wait_for(ws.close(1000), WAIT)
    return 0


def options_of(args):
    """Leading --name=value arguments as a dict, and the rest."""
    options = {}
    while args and args[0].startswith("--"):
        name, _, value = args[0][2:].partition("=")
        options[name] = value
        args = args[1:]
    return options, args


def main(argv):
    if len(argv) >= 2 and argv[1] == "server":
        asyncio.run(server(options_of(argv[2:])[0]))
        return 0
    if len(argv) >= 3 and argv[1] == "client":
        options, steps = options_of(argv[3:])
        try:
            return asyncio.run(client(argv[2], steps, options))
        except Exception as e:  # noqa: BLE001
            emit(ev="fail", step="connect", reason="%s: %s" % (type(e).__name__, e))
            return 1
    sys.stderr.write("usage: %s server [--tls=CERT,KEY] | client URL [--ca=FILE] [--pmd=SPEC] "
                     "STEP...\n" % os.path.basename(argv[0]))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""ws_client.py -- one WebSocket connection made by Python's websockets
(Debian's python3-websockets), for the specs of what a server learns about
its client and what a client learns about a refusal.

Usage: ws_client.py URL [--source ADDR] [--connect HOST:PORT] [--cafile F]
                    [--header NAME:VALUE]... [--send TEXT]

Connects from ADDR (the socket is bound to it first: 127.0.0.2 is another
loopback address), to HOST:PORT when given (else the URL's), over TLS when
the URL is wss:// (verified against --cafile).  Prints one JSON line:
  {"event": "open", "local": [addr, port], "reply": text,
   "headers": [[name, value]...]}  -- the 101's headers; after
      sending TEXT (default "who") and reading one message, or
  {"event": "refused", "status": n, "headers": [[name, value]...],
   "local": [addr, port]}                                    -- an HTTP
      refusal of the handshake, or
  {"event": "error", "error": "..."}.
"""
import asyncio
import json
import socket
import ssl
import sys
from urllib.parse import urlparse

import websockets
import websockets.exceptions


def parse(argv):
    opts = {"url": argv[1], "headers": [], "send": "who"}
    i = 2
    while i < len(argv):
        name, value = argv[i], argv[i + 1]
        if name == "--header":
            opts["headers"].append(tuple(value.split(":", 1)))
        else:
            opts[name[2:]] = value
        i += 2
    return opts


async def run(opts):
    url = urlparse(opts["url"])
    host, port = url.hostname, url.port
    if "connect" in opts:
        host, _, p = opts["connect"].rpartition(":")
        host, port = host.strip("[]"), int(p)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if "source" in opts:
        sock.bind((opts["source"], 0))
    sock.settimeout(10)
    sock.connect((host, port))
    sock.setblocking(False)
    local = list(sock.getsockname()[:2])
    kwargs = {"sock": sock, "extra_headers": opts["headers"], "open_timeout": 10}
    if url.scheme == "wss":
        ctx = ssl.create_default_context(cafile=opts.get("cafile"))
        kwargs["ssl"] = ctx
        kwargs["server_hostname"] = "localhost"
    try:
        async with websockets.connect(opts["url"], **kwargs) as ws:
            await ws.send(opts["send"])
            reply = await asyncio.wait_for(ws.recv(), 10)
            return {"event": "open", "local": local, "reply": reply,
                    "headers": [[k, v] for k, v in ws.response_headers.raw_items()]}
    except websockets.exceptions.InvalidStatusCode as e:
        headers = [[k, v] for k, v in e.headers.raw_items()] if e.headers else []
        return {"event": "refused", "status": e.status_code, "headers": headers,
                "local": local}
    except Exception as e:  # the spec reads what happened
        return {"event": "error", "error": "%s: %s" % (type(e).__name__, e)}


def main():
    print(json.dumps(asyncio.run(run(parse(sys.argv)))), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""redirect_server.py -- a small HTTP + WebSocket server (Python's
websockets, its process_request hook) for the client's redirect specs.

Usage: redirect_server.py [CERT KEY]   (with them: TLS, wss://)
Binds 127.0.0.1:0, prints "PORT n", serves until killed.

A request whose query has status=N is answered with that HTTP status
(after delay=S seconds when given), with Location: <location> when given
(taken verbatim: relative references too; self=1: its own path, a loop)
and body=<text> as its body.
Any other request under /ws/ is upgraded; the server then sends one JSON
message {"path": ..., "authorization": ..., "cookie": ...} (what the
request carried) and waits for the client to close.
"""
import asyncio
import http
import json
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

import websockets


async def process_request(path, headers):
    query = parse_qs(urlsplit(path).query)
    if "status" not in query:
        return None  # upgrade
    if "delay" in query:
        await asyncio.sleep(float(query["delay"][0]))
    answer = [("Content-Type", "text/plain")]
    if "location" in query:
        answer.append(("Location", query["location"][0]))
    elif "self" in query:  # a redirect loop
        answer.append(("Location", path))
    body = query.get("body", [""])[0].encode()
    return http.HTTPStatus(int(query["status"][0])), answer, body


async def handler(ws, path):
    await ws.send(json.dumps({
        "path": path,
        "authorization": ws.request_headers.get("Authorization"),
        "cookie": ws.request_headers.get("Cookie"),
    }))
    try:
        await ws.recv()
    except websockets.exceptions.ConnectionClosed:
        pass


async def main():
    ctx = None
    if len(sys.argv) >= 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await websockets.serve(handler, "127.0.0.1", 0, ssl=ctx,
                                    process_request=process_request)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

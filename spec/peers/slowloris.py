#!/usr/bin/python3
"""slowloris.py -- many connections that each trickle the start of an
opening handshake and never finish it, for moonws's hostile-peer specs.
Standard library only; shares no code with moonws.

Usage: slowloris.py PORT COUNT MODE INTERVAL LIMIT
  MODE   http: an upgrade request, one byte per INTERVAL seconds per
               connection, then header lines that never end;
         tls:  a real TLS ClientHello (ssl module on memory BIOs), one byte
               per INTERVAL seconds per connection.
  LIMIT  seconds after which the peer gives up and reports.

Output, one JSON line at the end: {"opened": n, "closed_by_server": n,
"bytes_sent": n, "seconds": s, "last_close": s} -- last_close is when the
server dropped the last of them (seconds after they opened), null when it
did not drop them all before LIMIT.
"""

import json
import socket
import sys
import time


def http_bytes():
    head = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
    # Header lines that never end the head: a slow, endless request.
    return head + b"X-Slow: " + b"a" * (1 << 20)


def tls_bytes():
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def main(argv):
    if len(argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    port, count, mode = int(argv[1]), int(argv[2]), argv[3]
    interval, limit = float(argv[4]), float(argv[5])
    data = http_bytes() if mode == "http" else tls_bytes()
    socks, pos = [], []
    start = time.monotonic()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
        pos.append(0)
    open_at = time.monotonic()
    alive = set(range(count))
    sent, last_close = 0, None
    while alive and time.monotonic() - start < limit:
        for i in list(alive):
            s = socks[i]
            dropped = False
            try:
                if s.recv(4096) == b"":
                    dropped = True
            except BlockingIOError:
                pass
            except OSError:
                dropped = True
            if not dropped and pos[i] < len(data):
                try:
                    s.send(data[pos[i]:pos[i] + 1])
                    pos[i] += 1
                    sent += 1
                except BlockingIOError:
                    pass
                except OSError:
                    dropped = True
            if dropped:
                alive.discard(i)
                s.close()
                last_close = time.monotonic() - open_at
        time.sleep(interval)
    for i in alive:
        socks[i].close()
    print(json.dumps({"opened": count, "closed_by_server": count - len(alive),
                      "bytes_sent": sent, "seconds": time.monotonic() - start,
                      "last_close": last_close if not alive else None}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

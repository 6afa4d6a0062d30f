#!/usr/bin/python3
"""bench/hostile.py -- a good client's echo latency while hostile peers
attack the same server, for moonws and Node's ws side by side (make bench;
the bounds themselves are asserted by spec/hostile_spec.lua).

Usage: hostile.py SECONDS [ATTACK,...]  prints a Markdown section; exits 1
when moonws under deflate bombs misses p99 <= 50 ms.  HOSTILE_SERVERS
(moonws,node) picks the servers.

Each server runs the README's echo sample with permessage-deflate on (so
deflate bombs reach the inflater): bench/servers/hostile_moonws.lua and
bench/servers/hostile_node.js (ws, maxPayload 64 MiB as moonws's
default).  For each attack a fresh server is started on 127.0.0.1, the
attackers (spec/peers/raw_peer.py and spec/peers/slowloris.py, restarted
whenever one finishes) run for SECONDS, and a good client sends a 17-byte
text message every 50 ms and times its echo.  An echo that does not come
back within 5 s counts as 5000 ms and as lost.  The server's CPU time and
peak RSS are read from /proc.  Standard library only.
"""

import base64
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
RAW = os.path.join(ROOT, "spec/peers/raw_peer.py")
LORIS = os.path.join(ROOT, "spec/peers/slowloris.py")
MiB = 1 << 20

SERVERS = [
    ("moonws", "moonws, event handlers", ["lua5.4", "bench/servers/hostile_moonws.lua"]),
    ("node", "Node ws", ["node", "bench/servers/hostile_node.js"]),
]

DEFLATE = [["Sec-WebSocket-Extensions", "permessage-deflate"]]


def raw(port, steps):
    return [PY, RAW, "client", "127.0.0.1", str(port), json.dumps(steps)]


def stream(frames, times, **more):
    spec = {"frames": frames, "times": times}
    spec.update(more)
    return {"stream": spec}


def fragments(n, ping=False):
    pattern = [{"opcode": 0, "fin": False, "payload_text": "a"}]
    if ping:
        pattern.insert(0, {"opcode": 9, "payload_text": "ping"})
    return {"stream": {"first": [{"opcode": 1, "fin": False, "payload_text": "a"}],
                       "frames": pattern, "times": n,
                       "last": [{"opcode": 0, "fin": True, "payload_text": "a"}]}}


def deflated_zeros(port, zeros, until):
    """One connection sending one compressed message of zeros, then reading
    until `until` ("close" for a bomb's 1009, else the echo)."""
    read = ({"until": "close", "timeout": 30} if until == "close"
            else {"until": "count", "count": 1, "timeout": 30})
    return raw(port, [{"handshake": {"headers": DEFLATE}},
                      {"send_deflated_zeros": {"zeros": zeros, "opcode": 2}},
                      {"read_frames": read}])


# name -> (title, [attacker factories]); a factory gives the argv of one
# attacker run for the port, started again whenever it ends.
ATTACKS = [
    ("none", "no attack (baseline)", []),
    ("ping_flood", "125-byte pings, never reading", [
        lambda p: raw(p, [{"handshake": {}},
                          stream([{"opcode": 9, "payload_size": 125}], 8 << 20, timeout=30)])]),
    ("pong_flood", "125-byte pongs", [
        lambda p: raw(p, [{"handshake": {}},
                          stream([{"opcode": 10, "payload_size": 125}], 8 << 20, timeout=30)])]),
    ("bombs", "2 clients, deflate bombs (1 MiB inflating to 1 GiB) back to back", [
        lambda p: deflated_zeros(p, 1024 * MiB, "close"),
        lambda p: deflated_zeros(p, 1024 * MiB, "close")]),
    ("big_messages", "2 clients, valid 16 MiB compressed messages back to back (echoed)", [
        lambda p: deflated_zeros(p, 16 * MiB, "echo"),
        lambda p: deflated_zeros(p, 16 * MiB, "echo")]),
    ("fragments", "messages of a million 1-byte fragments", [
        lambda p: raw(p, [{"handshake": {}}, fragments(1000000),
                          {"read_frames": {"until": "opcode", "opcode": 1, "timeout": 30}}])]),
    ("fragments_pings", "fragments with a ping between each two", [
        lambda p: raw(p, [{"handshake": {}}, fragments(300000, ping=True),
                          {"read_frames": {"until": "opcode", "opcode": 1, "timeout": 30}}])]),
    ("nonreader", "64 KiB messages from a client that never reads", [
        lambda p: raw(p, [{"handshake": {}},
                          stream([{"opcode": 2, "payload_size": 65536}], 1 << 16, timeout=60)])]),
    ("slowloris", "200 handshakes sent a byte every 50 ms", [
        lambda p: [PY, LORIS, str(p), "200", "http", "0.05", "60"]]),
    ("headers", "1 MiB request heads, one after another", [
        lambda p: raw(p, [{"handshake": {"pad": MiB, "timeout": 10}}])]),
    ("lengths", "frames claiming 2^63 bytes, one connection after another", [
        lambda p: raw(p, [{"handshake": {}}, {"send_raw_hex": "82ff800000000000000037fa213d"},
                          {"read_frames": {"until": "close", "timeout": 10}}])]),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_stat(pid):
    """(cpu seconds, peak RSS kB) of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, hwm


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class GoodClient:
    """A raw WebSocket client: one 17-byte text message every 50 ms."""
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /good HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("the server closed the good client's handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("good client refused: %r" % head[:80])

    def echo(self, n, limit=5.0):
        payload = ("good client %05d" % n).encode()  # 17 bytes
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        start = time.monotonic()
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + body)
        want = bytes([0x81, len(payload)]) + payload
        while True:
            while len(self.buf) >= 2:
                length = self.buf[1] & 0x7F
                if len(self.buf) < 2 + length:
                    break
                frame, self.buf = self.buf[:2 + length], self.buf[2 + length:]
                if frame == want:
                    return time.monotonic() - start
            left = limit - (time.monotonic() - start)
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def run_attack(server_argv, factories, seconds):
    port = free_port()
    server = subprocess.Popen(server_argv + [str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    attackers = []
    try:
        if not wait_port(port):
            raise RuntimeError("the server did not start")
        cpu0, _ = proc_stat(server.pid)
        good = GoodClient(port)
        attackers = [None] * len(factories)
        lat, lost, n = [], 0, 0
        end = time.monotonic() + seconds
        next_send = time.monotonic() + 0.3  # let the attack start
        while time.monotonic() < end:
            for i, make in enumerate(factories):
                if attackers[i] is None or attackers[i].poll() is not None:
                    attackers[i] = subprocess.Popen(make(port), cwd=ROOT,
                                                    stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_send += 0.05
            t = good.echo(n)
            n += 1
            if t is None:
                lost += 1
                lat.append(5.0)
                break  # the connection is stuck: the rest would be lost too
            lat.append(t)
        cpu1, hwm = proc_stat(server.pid)
        alive = server.poll() is None
        ms = [x * 1000 for x in lat]
        return {"echoes": len(ms), "lost": lost, "p50": percentile(ms, 0.5),
                "p99": percentile(ms, 0.99), "max": max(ms) if ms else None,
                "cpu": cpu1 - cpu0, "hwm_mib": hwm / 1024, "alive": alive}
    finally:
        for a in attackers:
            if a is not None and a.poll() is None:
                a.kill()
                a.wait()
        server.kill()
        server.wait()


def main(argv):
    seconds = float(argv[1]) if len(argv) > 1 else 10
    only = set(argv[2].split(",")) if len(argv) > 2 and argv[2] else None
    out = ["## Under attack: a good client's echo latency", "",
           "Generated by `make bench` (bench/hostile.py): for each attack, a fresh server "
           "(the README echo, permessage-deflate on) is attacked for %g s while a good client "
           "sends a 17-byte message every 50 ms and times the echo.  Unpinned.  *lost*: no echo "
           "within 5 s (counted as 5000 ms, and the client stops).  CPU: the server's over the "
           "window; RSS: its peak.  The bounds themselves are asserted by "
           "spec/hostile_spec.lua." % seconds, "",
           "| attack | server | echoes | lost | p50 ms | p99 ms | max ms | server CPU s | peak RSS MiB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    summary = {}
    servers = os.environ.get("HOSTILE_SERVERS")
    servers = set(servers.split(",")) if servers else None
    for key, title, factories in ATTACKS:
        if only and key not in only:
            continue
        for skey, sname, sargv in SERVERS:
            if servers and skey not in servers:
                continue
            try:
                r = run_attack(sargv, factories, seconds)
            except Exception as e:  # a failed run is reported, not hidden
                out.append("| %s | %s | failed: %s | | | | | | |" % (title, sname, e))
                continue
            summary[(key, skey)] = r
            f = lambda v: "—" if v is None else "%.1f" % v
            out.append("| %s | %s%s | %d | %d | %s | %s | %s | %.2f | %.0f |" % (
                title, sname, "" if r["alive"] else " (died)", r["echoes"], r["lost"],
                f(r["p50"]), f(r["p99"]), f(r["max"]), r["cpu"], r["hwm_mib"]))
            sys.stderr.write("hostile %-16s %-7s p99 %s ms lost %d\n" % (key, skey, f(r["p99"]),
                                                                        r["lost"]))
    out.append("")
    print("\n".join(out))
    bombs = summary.get(("bombs", "moonws"))
    if bombs and not (bombs["p99"] is not None and bombs["p99"] <= 50 and bombs["lost"] == 0):
        sys.stderr.write("hostile: moonws under deflate bombs missed p99 <= 50 ms\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

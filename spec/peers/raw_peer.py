#!/usr/bin/python3
"""raw_peer.py -- a scriptable raw-TCP WebSocket peer for moonws's RFC 6455
conformance specs.  It shares no code with moonws (nor with any WebSocket
library): its own frame builder/parser and its own HTTP, standard library
only, so it can send what a correct library never would.

Usage:
  raw_peer.py server SCRIPT          bind 127.0.0.1:0, print "PORT n", accept
                                     ONE connection, run SCRIPT
  raw_peer.py client HOST PORT SCRIPT
                                     connect, run SCRIPT
SCRIPT is JSON text (starting with '[' or '{') or the name of a file holding
it: a list of steps, or {"steps": [...]}.  Each step is a one-key object:

  {"handshake": {...}}   client: send an upgrade request and read the
      response head.  Keys: method, path, http ("HTTP/1.1"), host, key,
      version ("13"), protocol (Sec-WebSocket-Protocol), origin,
      headers ([[name, value], ...] added; a dict replaces same-named
      defaults), omit ([names] left out), pad (bytes of an X-Pad header),
      raw (the whole request text instead), split (1 = one byte per write),
      split_sleep (s), timeout (s), pad_to (n: an X-Pad header sized so
      the whole head, blank line included, is exactly n bytes), frames
      ([send_frame specs] written in the SAME write as the request).
    server: read the request head, then answer.  Keys: status (101),
      reason, accept ("wrong", a string, or null to omit; default the
      right value), protocol, extensions, headers, omit, raw (whole
      response text), body, frames ([send_frame specs] written in the SAME
      write as the head), answer (false: read the request, answer nothing),
      timeout (s), pad (bytes of an X-Pad header), pad_to (as for the
      client: the response head is exactly n bytes), http ("HTTP/1.1").
  {"send_frame": {...}}  opcode (1), fin (true), rsv (3-bit: 4=RSV1,
      2=RSV2, 1=RSV3), mask (default: true as client, false as server),
      mask_key_hex, payload_hex | payload_text | payload_size (n bytes
      "a"), close_code + close_reason / close_reason_hex (close payload),
      length_form ("7"|"16"|"64": force that encoding), len_override
      (announced length, whatever the payload), split (1 = one byte per
      write), split_at ([offsets]: write the frame in pieces cut at these
      byte offsets), split_sleep (s).
  {"send_frames": [send_frame specs]}  all of them in ONE write
  {"send_raw_hex": "..."}
  {"read_frames": {"until": "close"|"eof"|"opcode"|"count", "opcode": n,
      "count": n, "timeout": s, "messages": false}}  print every frame
      until the condition; {"event":"timeout"} when it did not happen in
      time.  With "messages": true, also print {"event": "message",
      "opcode", "payload_hex", "frames", "compressed"} after the last frame
      of each data message: the payload reassembled and, when its first
      frame had RSV1, inflated (RFC 7692 7.2.2, one context kept across
      messages; an inflate failure prints {"event": "inflate_error"}).
      "inflate_bits": n inflates with a 2^n window (default 15), and
      "inflate_reset": true with a fresh context for every message: a
      sender that breaks its agreed window or no_context_takeover makes
      the inflate fail.
  {"sleep": s}  {"shutdown_write": true}  {"close": true}  {"reset": true}
  {"mark": "name"}
  {"send_client_hello": {"fraction": f, "server_name": name}}  the first
      fraction f (default 1) of a real TLS ClientHello (made with the ssl
      module on memory BIOs, nothing else of TLS is spoken): a stalled or
      slow TLS client.
  {"send_deflated_zeros": {"zeros": n, "chunk": c, "opcode": 2, "level": 9}}
      one frame, RSV1 set, whose payload is the raw deflate stream
      (RFC 7692: zlib wbits=-15, final 00 00 ff ff removed) of n zero bytes,
      made in chunks of c bytes (default 1 MiB) so n can be far larger than
      memory: a compression bomb.  Use it after a handshake that negotiated
      permessage-deflate (headers: [["Sec-WebSocket-Extensions", ...]]).
  {"send_deflated": {"opcode": 1, payload_hex | payload_text |
      payload_size, "fragments": 1, "rsv": "first"|"all"|"none",
      "reset": false, "mask": ...}}  one message compressed with this
      peer's own deflate context (kept across messages unless reset: a
      fresh one for this message), the 00 00 ff ff tail removed, cut into
      `fragments` frames (RSV1 on the first only, unless "rsv" says
      otherwise), all in ONE write.

  {"stream": {"first": [send_frame specs], "frames": [send_frame specs],
      "times": n, "last": [send_frame specs], "timeout": s}}  a flood:
      the first frames, then the "frames" pattern n times, then the last
      ones, written in writes of about 1 MiB and never reading (a peer
      that does not read its replies).  A write that makes no progress for
      timeout seconds (default 30) ends it: {"event": "sent", "what":
      "stream", "bytes": n, "stalled": true}.  E.g. 512 MiB of pings, or a
      message in a million fragments with pings between them.

Steps that send a generated payload print {"event": "sent", "what": ...,
"bytes": n} with the bytes written.

Output: one JSON line per observation ("event": "request", "response",
"frame", "eof", "reset", "timeout", "send_error", "mark", "done").  Frames
are unmasked; "masked" tells whether they came masked and "mask_ok" whether
that is right for the direction (RFC 6455 5.1: client frames masked, server
frames not).  Close frames also carry close_code, close_reason and
close_reason_hex.  Exit status 0 unless the script itself is malformed.
"""

import base64
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def mask_bytes(data, key):
    """XOR data with the 4-byte key repeated (one big-integer XOR: fast)."""
    n = len(data)
    if n == 0:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def accept_for(key):
    digest = hashlib.sha1((key + GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


class Peer:
    def __init__(self, sock, role):
        self.sock = sock
        self.role = role          # "client" or "server": what THIS peer is
        self.buf = b""
        self.eof = False
        self.closed = False
        self.msg = None           # a data message being reassembled
        self.inflater = None      # RFC 7692 context for received messages
        self.inflate_bits = 15
        self.inflate_reset = False
        self.deflater = None      # ... and for the ones this peer sends
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---------------------------------------------------------- I/O

    def write(self, data, split=0, split_sleep=0.005, split_at=None):
        try:
            if split_at:
                cuts = [0] + sorted(c for c in split_at if 0 < c < len(data)) + [len(data)]
                for a, b in zip(cuts, cuts[1:]):
                    self.sock.sendall(data[a:b])
                    time.sleep(split_sleep)
            elif split:
                for i in range(0, len(data), split):
                    self.sock.sendall(data[i:i + split])
                    time.sleep(split_sleep)
            else:
                self.sock.sendall(data)
        except OSError as e:
            emit({"event": "send_error", "error": e.__class__.__name__})

    def fill(self, deadline):
        """Read more bytes; False on timeout, EOF or reset (reported)."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = True
            emit({"event": "reset"})
            return False
        except OSError as e:
            self.eof = True
            emit({"event": "reset", "error": e.__class__.__name__})
            return False
        if not chunk:
            self.eof = True
            emit({"event": "eof"})
            return False
        self.buf += chunk
        return True

    def read_head(self, timeout, limit=1 << 20):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit or not self.fill(deadline):
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head.decode("latin-1")

    # ---------------------------------------------------------- HTTP

    @staticmethod
    def parse_head(head):
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append([name.strip(), value.strip()])
        return lines[0], headers

    @staticmethod
    def header_list(defaults, spec):
        """defaults: [[name, value]]; spec's headers/omit adjust it."""
        omit = {n.lower() for n in spec.get("omit", [])}
        extra = spec.get("headers", [])
        if isinstance(extra, dict):
            replace = {k.lower(): v for k, v in extra.items()}
            out = []
            for n, v in defaults:
                if n.lower() in replace:
                    v = replace.pop(n.lower())
                out.append([n, v])
            extra = [[k, v] for k, v in extra.items() if k.lower() in replace]
            defaults = out
        out = [[n, v] for n, v in defaults if n.lower() not in omit]
        return out + [list(p) for p in extra]

    @staticmethod
    def pad_head(head, size):
        """head (ending in the blank line) with an X-Pad header making it
        exactly size bytes."""
        fill = size - len(head) - len("X-Pad: \r\n")
        if fill < 0:
            raise ValueError("pad_to %d: the head is already %d bytes" % (size, len(head)))
        return head[:-2] + b"X-Pad: " + b"p" * fill + b"\r\n\r\n"

    def client_handshake(self, spec, host, port):
        key = spec.get("key") or base64.b64encode(os.urandom(16)).decode("ascii")
        if "raw" in spec:
            request = spec["raw"].encode("latin-1")
        else:
            defaults = [
                ["Host", spec.get("host", "%s:%d" % (host, port))],
                ["Upgrade", "websocket"],
                ["Connection", "Upgrade"],
                ["Sec-WebSocket-Key", key],
                ["Sec-WebSocket-Version", spec.get("version", "13")],
            ]
            if "protocol" in spec:
                defaults.append(["Sec-WebSocket-Protocol", spec["protocol"]])
            if "origin" in spec:
                defaults.append(["Origin", spec["origin"]])
            headers = self.header_list(defaults, spec)
            if spec.get("pad"):
                headers.append(["X-Pad", "p" * spec["pad"]])
            line = "%s %s %s\r\n" % (spec.get("method", "GET"), spec.get("path", "/"),
                                     spec.get("http", "HTTP/1.1"))
            request = (line + "".join("%s: %s\r\n" % (n, v) for n, v in headers)
                       + "\r\n").encode("latin-1")
            if spec.get("pad_to"):
                request = self.pad_head(request, spec["pad_to"])
        for f in spec.get("frames", []):
            request += self.build_frame(f)
        self.write(request, spec.get("split", 0), spec.get("split_sleep", 0.002))
        head = self.read_head(spec.get("timeout", 5))
        if head is None:
            emit({"event": "response", "status": None})
            return
        status_line, headers = self.parse_head(head)
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        got = {n.lower(): v for n, v in headers}
        body = None
        if status != 101 and "content-length" in got:
            deadline = time.monotonic() + 2
            want = int(got["content-length"])
            while len(self.buf) < want and self.fill(deadline):
                pass
            body, self.buf = self.buf[:want].decode("latin-1"), self.buf[want:]
        emit({"event": "response", "status": status, "status_line": status_line,
              "headers": headers, "key": key, "body": body,
              "accept_ok": got.get("sec-websocket-accept") == accept_for(key)})

    def server_handshake(self, spec):
        head = self.read_head(spec.get("timeout", 5))
        if head is None:
            emit({"event": "request", "method": None})
            return
        request_line, headers = self.parse_head(head)
        parts = request_line.split(" ")
        emit({"event": "request", "request_line": request_line,
              "method": parts[0], "target": parts[1] if len(parts) > 1 else None,
              "version": parts[2] if len(parts) > 2 else None, "headers": headers})
        if spec.get("answer") is False:
            return
        if "raw" in spec:
            response = spec["raw"].encode("latin-1")
        else:
            key = next((v for n, v in headers if n.lower() == "sec-websocket-key"), "")
            status = spec.get("status", 101)
            reason = spec.get("reason", "Switching Protocols" if status == 101 else "Nope")
            defaults = []
            if status == 101:
                defaults = [["Upgrade", "websocket"], ["Connection", "Upgrade"]]
            accept = spec.get("accept", "right")
            if accept == "wrong":
                defaults.append(["Sec-WebSocket-Accept", accept_for(key + "x")])
            elif accept == "right":
                if status == 101:
                    defaults.append(["Sec-WebSocket-Accept", accept_for(key)])
            elif accept is not None:
                defaults.append(["Sec-WebSocket-Accept", accept])
            if "protocol" in spec:
                defaults.append(["Sec-WebSocket-Protocol", spec["protocol"]])
            if "extensions" in spec:
                defaults.append(["Sec-WebSocket-Extensions", spec["extensions"]])
            body = spec.get("body")
            if body is not None:
                defaults.append(["Content-Length", str(len(body))])
            headers = self.header_list(defaults, spec)
            if spec.get("pad"):
                headers.append(["X-Pad", "p" * spec["pad"]])
            head = ("%s %d %s\r\n" % (spec.get("http", "HTTP/1.1"), status, reason)
                    + "".join("%s: %s\r\n" % (n, v) for n, v in headers)
                    + "\r\n").encode("latin-1")
            if spec.get("pad_to"):
                head = self.pad_head(head, spec["pad_to"])
            response = head + (body or "").encode("latin-1")
        for f in spec.get("frames", []):
            response += self.build_frame(f)
        self.write(response)

    # ---------------------------------------------------------- frames

    def build_frame(self, spec, payload=None):
        """The bytes of one frame; payload (bytes) overrides the spec's."""
        if payload is not None:
            pass  # generated by the caller (send_deflated_zeros)
        elif "payload_hex" in spec:
            payload = bytes.fromhex(spec["payload_hex"])
        elif "payload_text" in spec:
            payload = spec["payload_text"].encode("utf-8")
        elif "payload_size" in spec:
            payload = b"a" * spec["payload_size"]
        else:
            payload = b""
        if "close_code" in spec:
            reason = (bytes.fromhex(spec["close_reason_hex"]) if "close_reason_hex" in spec
                      else spec.get("close_reason", "").encode("utf-8"))
            payload = struct.pack("!H", spec["close_code"]) + reason
        opcode = spec.get("opcode", 1)
        b0 = (0x80 if spec.get("fin", True) else 0) | ((spec.get("rsv", 0) & 7) << 4) | (opcode & 0xF)
        mask = spec.get("mask", self.role == "client")
        length = spec.get("len_override", len(payload))
        form = str(spec.get("length_form", ""))
        if not form:
            form = "7" if length < 126 else ("16" if length < 65536 else "64")
        mbit = 0x80 if mask else 0
        if form == "7":
            head = bytes([b0, mbit | length])
        elif form == "16":
            head = bytes([b0, mbit | 126]) + struct.pack("!H", length)
        else:
            head = bytes([b0, mbit | 127]) + struct.pack("!Q", length)
        if mask:
            key = bytes.fromhex(spec["mask_key_hex"]) if "mask_key_hex" in spec else os.urandom(4)
            payload = mask_bytes(payload, key)
            head += key
        return head + payload

    def parse_frame(self):
        """One complete frame from buf as a dict, or None (need more)."""
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if len(b) < 4:
                return None
            length = struct.unpack("!H", b[2:4])[0]
            pos = 4
        elif length == 127:
            if len(b) < 10:
                return None
            length = struct.unpack("!Q", b[2:10])[0]
            pos = 10
        key = b""
        if masked:
            if len(b) < pos + 4:
                return None
            key = b[pos:pos + 4]
            pos += 4
        if len(b) < pos + length:
            return None
        payload = b[pos:pos + length]
        if masked:
            payload = bytes(c ^ key[i & 3] for i, c in enumerate(payload))
        self.buf = b[pos + length:]
        opcode = b0 & 0xF
        frame = {"event": "frame", "opcode": opcode, "fin": bool(b0 & 0x80),
                 "rsv": (b0 >> 4) & 7, "masked": masked,
                 "mask_ok": masked == (self.role == "server"),
                 "mask_key_hex": key.hex(), "length": length,
                 "payload_hex": payload.hex()}
        if opcode == 8:
            if len(payload) >= 2:
                frame["close_code"] = struct.unpack("!H", payload[:2])[0]
                frame["close_reason_hex"] = payload[2:].hex()
                frame["close_reason"] = payload[2:].decode("utf-8", "replace")
            else:
                frame["close_code"] = None
                frame["close_reason"] = ""
                frame["close_reason_hex"] = ""
        return frame

    def inflate(self, data, step=256):
        """Inflate in small output steps: zlib only notices a reference
        past its window (a sender breaking the agreed window bits) when
        the referenced bytes are no longer in the current output."""
        parts, tail = [], data
        while True:
            chunk = self.inflater.decompress(tail, step)
            parts.append(chunk)
            tail = self.inflater.unconsumed_tail
            if not chunk and not tail:
                return b"".join(parts)

    def track_message(self, frame):
        """Reassemble data messages; print each one whole (inflated when
        its first frame had RSV1)."""
        opcode = frame["opcode"]
        if opcode >= 8:
            return
        payload = bytes.fromhex(frame["payload_hex"])
        if opcode != 0 or self.msg is None:
            self.msg = {"opcode": opcode, "parts": [], "frames": 0,
                        "compressed": bool(frame["rsv"] & 4)}
        self.msg["parts"].append(payload)
        self.msg["frames"] += 1
        if not frame["fin"]:
            return
        msg, self.msg = self.msg, None
        data = b"".join(msg["parts"])
        if msg["compressed"]:
            if self.inflater is None or self.inflate_reset:
                self.inflater = zlib.decompressobj(-self.inflate_bits)
            try:
                data = self.inflate(data + b"\x00\x00\xff\xff")
            except zlib.error as e:
                emit({"event": "inflate_error", "error": str(e)})
                return
        emit({"event": "message", "opcode": msg["opcode"], "payload_hex": data.hex(),
              "frames": msg["frames"], "compressed": msg["compressed"]})

    def read_frames(self, spec):
        until = spec.get("until", "close")
        deadline = time.monotonic() + spec.get("timeout", 5)
        count = 0
        messages = spec.get("messages", False)
        self.inflate_bits = spec.get("inflate_bits", 15)
        self.inflate_reset = spec.get("inflate_reset", False)
        while True:
            frame = self.parse_frame()
            if frame is not None:
                emit(frame)
                if messages:
                    self.track_message(frame)
                count += 1
                if until == "close" and frame["opcode"] == 8:
                    return
                if until == "opcode" and frame["opcode"] == spec.get("opcode"):
                    return
                if until == "count" and count >= spec.get("count", 1):
                    return
                continue
            if self.eof:
                if self.buf:
                    emit({"event": "partial", "hex": self.buf.hex()})
                    self.buf = b""
                return
            if not self.fill(deadline):
                if not self.eof:
                    emit({"event": "timeout", "during": "read_frames", "until": until})
                    return

    # ---------------------------------------------------------- generated

    def send_client_hello(self, spec):
        import ssl  # only here: it costs a third of the start-up time
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname=spec.get("server_name", "localhost"))
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        n = int(len(hello) * spec.get("fraction", 1.0))
        self.write(hello[:n])
        emit({"event": "sent", "what": "client_hello", "bytes": n, "of": len(hello)})

    def send_deflated_zeros(self, spec):
        total = spec.get("zeros", 1 << 30)
        chunk = spec.get("chunk", 1 << 20)
        c = zlib.compressobj(spec.get("level", 9), zlib.DEFLATED, -15)
        # A full flush ends the chunk byte-aligned and forgets the history,
        # so every whole chunk of zeros compresses to the same bytes: make
        # one, prove the next is identical, and repeat it (1 GiB of zeros
        # is ~1 MiB compressed; deflating all of it would take seconds).
        segment = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
        if c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH) != segment:
            raise RuntimeError("deflate of a zero chunk is not history-free")
        whole, rest = divmod(total, chunk)
        parts = [segment] * whole
        if rest:
            parts.append(c.compress(bytes(rest)) + c.flush(zlib.Z_FULL_FLUSH))
        payload = b"".join(parts)[:-4]  # RFC 7692 7.2.1: drop 00 00 ff ff
        frame = self.build_frame({"opcode": spec.get("opcode", 2), "rsv": 4}, payload)
        self.write(frame)
        emit({"event": "sent", "what": "deflated_zeros", "bytes": len(payload),
              "inflated": total})

    def stream(self, spec):
        def frames(key):
            return b"".join(self.build_frame(f) for f in spec.get(key, []))
        pattern = frames("frames")
        repeat = spec.get("times", 0) if pattern else 0
        per_write = max(1, (1 << 20) // max(1, len(pattern)))
        self.sock.settimeout(spec.get("timeout", 30))
        sent, stalled = 0, False
        chunk = pattern * min(per_write, repeat)
        pieces = [frames("first")]
        left = repeat
        while left > 0:
            k = min(per_write, left)
            pieces.append(chunk if k == per_write else pattern * k)
            left -= k
        pieces.append(frames("last"))
        try:
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    n = self.sock.send(view)
                    sent += n
                    view = view[n:]
        except socket.timeout:
            stalled = True
        except OSError as e:
            emit({"event": "send_error", "error": e.__class__.__name__})
        self.sock.settimeout(None)
        emit({"event": "sent", "what": "stream", "bytes": sent, "stalled": stalled})

    def send_deflated(self, spec):
        if "payload_hex" in spec:
            data = bytes.fromhex(spec["payload_hex"])
        elif "payload_text" in spec:
            data = spec["payload_text"].encode("utf-8")
        else:
            data = b"a" * spec.get("payload_size", 0)
        if self.deflater is None or spec.get("reset"):
            self.deflater = zlib.compressobj(spec.get("level", 6), zlib.DEFLATED, -15)
        payload = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4]  # RFC 7692 7.2.1: drop 00 00 ff ff
        n = max(1, spec.get("fragments", 1))
        size = -(-len(payload) // n)  # ceiling; the last pieces may be empty
        rsv = spec.get("rsv", "first")
        out = b""
        for i in range(n):
            piece = payload[i * size:(i + 1) * size]
            on = rsv == "all" or (rsv == "first" and i == 0)
            out += self.build_frame({"opcode": spec.get("opcode", 1) if i == 0 else 0,
                                     "fin": i == n - 1, "rsv": 4 if on else 0,
                                     "mask": spec.get("mask", self.role == "client")}, piece)
        self.write(out)
        emit({"event": "sent", "what": "deflated", "bytes": len(payload),
              "inflated": len(data), "frames": n})

    # ---------------------------------------------------------- endings

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        if not self.closed:
            self.closed = True
            self.sock.close()

    def reset(self):
        if not self.closed:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()


def run(peer, steps, host=None, port=None):
    for step in steps:
        if len(step) != 1:
            raise ValueError("a step has exactly one key: %r" % (step,))
        (name, arg), = step.items()
        if name == "handshake":
            arg = arg or {}
            if peer.role == "client":
                peer.client_handshake(arg, host, port)
            else:
                peer.server_handshake(arg)
        elif name == "send_frame":
            peer.write(peer.build_frame(arg), arg.get("split", 0), arg.get("split_sleep", 0.005),
                       arg.get("split_at"))
        elif name == "send_frames":
            peer.write(b"".join(peer.build_frame(f) for f in arg))
        elif name == "send_raw_hex":
            peer.write(bytes.fromhex(arg))
        elif name == "read_frames":
            peer.read_frames(arg or {})
        elif name == "sleep":
            time.sleep(arg)
        elif name == "shutdown_write":
            peer.shutdown_write()
        elif name == "close":
            peer.close()
        elif name == "reset":
            peer.reset()
        elif name == "mark":
            emit({"event": "mark", "name": arg})
        elif name == "send_client_hello":
            peer.send_client_hello(arg or {})
        elif name == "send_deflated":
            peer.send_deflated(arg or {})
        elif name == "send_deflated_zeros":
            peer.send_deflated_zeros(arg or {})
        elif name == "stream":
            peer.stream(arg)
        else:
            raise ValueError("unknown step %r" % name)


def load_script(text):
    if not text.lstrip().startswith(("[", "{")):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    else:
        text = os.fsencode(text).decode("utf-8")  # the raw bytes, whatever the locale
    script = json.loads(text)
    if isinstance(script, dict):
        script = script["steps"]
    return script


def main(argv):
    if len(argv) >= 3 and argv[1] == "server":
        steps = load_script(argv[2])
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        print("PORT %d" % listener.getsockname()[1], flush=True)
        sock, _ = listener.accept()
        listener.close()
        peer = Peer(sock, "server")
        run(peer, steps)
        peer.close()
        emit({"event": "done"})
    elif len(argv) >= 5 and argv[1] == "client":
        host, port = argv[2], int(argv[3])
        steps = load_script(argv[4])
        sock = socket.create_connection((host, port), timeout=5)
        sock.settimeout(None)
        peer = Peer(sock, "client")
        run(peer, steps, host, port)
        peer.close()
        emit({"event": "done"})
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

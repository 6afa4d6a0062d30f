#!/usr/bin/env node
// spec/peers/node_peer.js -- Node's `ws` 8.18.0 as moonws's interop peer.
//
//   node node_peer.js server [--tls=CERT,KEY]   bind 127.0.0.1:0, print "PORT n",
//                                               serve until killed (TLS: wss://)
//   node node_peer.js client URL [--ca=FILE] [--pmd=SPEC] STEP...
//                                               run the steps against a moonws server
//                                               (--ca: trust FILE for wss://;
//                                               --pmd: permessage-deflate offer)
//
// The same command protocol as spec/peers/python_peer.py, defined in
// spec/support/interop.lua.  Every observation is one JSON line on stdout;
// a client ends with {"ev":"done"} (exit 0) or {"ev":"fail","reason":...}
// (exit 1).  ws comes from spec/peers/node/node_modules (npm ci).
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');
const { WebSocket, WebSocketServer, Receiver, Sender } = require(
  path.join(__dirname, 'node', 'node_modules', 'ws'));

const MAX_SIZE = 64 * 1024 * 1024; // room for the 16 MiB cases
const WAIT = 30000; // ms any single wait may take
const TEXT_UNIT = Buffer.from('a\u00e9\u20ac\u{1F600}'); // 1+2+3+4 bytes of UTF-8
const BINARY_UNIT = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

// xorshift32 seeded by n: the same kind and n give the same random bytes.
function rng(seed) {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

function randomBytes(n, seed) {
  const next = rng(seed);
  const buf = Buffer.alloc(n);
  for (let i = 0; i < n; i++) buf[i] = next() & 0xff;
  return buf;
}

// Random code points of 1-4 bytes of UTF-8, exactly n bytes.
function randomText(n) {
  const next = rng(n);
  const ranges = [[0x20, 0x7e], [0x80, 0x7ff], [0xe000, 0xffff], [0x10000, 0x10ffff]];
  const parts = [];
  for (let left = n; left > 0;) {
    const width = 1 + (next() % Math.min(4, left));
    const [lo, hi] = ranges[width - 1];
    parts.push(String.fromCodePoint(lo + (next() % (hi - lo + 1))));
    left -= width;
  }
  return Buffer.from(parts.join(''));
}

// The payload both sides build: n bytes (text: valid UTF-8), as a Buffer.
// Kinds as in python_peer.py's gen: text and binary repeat a short unit
// (highly compressible), random / randtext are noise, repeat is a random
// block of n/2 bytes twice.
function gen(kind, n) {
  if (kind === 'random') return randomBytes(n, n);
  if (kind === 'randtext') return randomText(n);
  if (kind === 'repeat') {
    const block = randomBytes(n >> 1, n);
    return Buffer.concat([block, block, Buffer.alloc(n % 2, 'x')]);
  }
  const unit = kind === 'text' ? TEXT_UNIT : BINARY_UNIT;
  const buf = Buffer.alloc(n, 'x');
  const whole = kind === 'text' ? n - (n % 10) : n;
  for (let i = 0; i < whole; i += unit.length) unit.copy(buf, i, 0, Math.min(unit.length, whole - i));
  return buf;
}

function isText(kind) {
  return kind === 'text' || kind === 'randtext';
}

function fragments(kind, count, size) {
  const whole = gen(kind, count * size);
  return Array.from({ length: count }, (_, i) => whole.subarray(i * size, (i + 1) * size));
}

// ws has no per-frame event: record how each message crossed the wire
// ({frames, compressed: RSV1 on its first frame, wire: payload bytes as
// received}) by wrapping the receiver's per-frame step, which runs once per
// data frame, after inflating it (ws is pinned at 8.18.0).
const dataMessage = Receiver.prototype.dataMessage;
Receiver.prototype.dataMessage = function (cb) {
  if (!this.peerRecord) this.peerRecord = { frames: 0, compressed: this._compressed, wire: 0 };
  const rec = this.peerRecord;
  rec.frames += 1;
  rec.wire += this._payloadLength;
  if (this._fin) {
    (this.peerRecords = this.peerRecords || []).push(rec);
    this.peerRecord = null;
  }
  return dataMessage.call(this, cb);
};

// And how each sent message went out ({compressed, wire}, in sender.peerSent):
// every frame passes sendFrame with its header first.
const sendFrame = Sender.prototype.sendFrame;
Sender.prototype.sendFrame = function (list, cb) {
  const head = list[0];
  const opcode = head[0] & 0x0f;
  const len7 = head[1] & 0x7f;
  const len = len7 < 126 ? len7 : len7 === 126 ? head.readUInt16BE(2) : head.readUIntBE(4, 6);
  const sent = this.peerSent || (this.peerSent = []);
  if (opcode === 1 || opcode === 2) sent.push({ compressed: (head[0] & 0x40) !== 0, wire: len });
  else if (opcode === 0) sent[sent.length - 1].wire += len;
  return sendFrame.call(this, list, cb);
};

function sentOf(ws) {
  return ws._sender.peerSent || [];
}

// SPEC: comma-separated RFC 7692 parameters, "name" or "name:value", as
// ws's perMessageDeflate options; threshold 0 so that ws compresses every
// message (it applies the threshold only without context takeover).
function deflateOptions(spec) {
  if (spec === 'off') return false;
  const names = {
    server_no_context_takeover: 'serverNoContextTakeover',
    client_no_context_takeover: 'clientNoContextTakeover',
    server_max_window_bits: 'serverMaxWindowBits',
    client_max_window_bits: 'clientMaxWindowBits',
  };
  const opts = { threshold: 0 };
  for (const item of (spec === 'on' ? '' : spec).split(',').filter(Boolean)) {
    const [name, value] = afterColon(item);
    if (!names[name]) throw new Error('unknown deflate parameter ' + name);
    opts[names[name]] = value ? Number(value) : true;
  }
  return opts;
}

// Messages of one socket as a queue: next() resolves to {data, binary, frames}.
function inbox(ws) {
  const queue = [];
  const waiters = [];
  let closed = null;
  const received = [];
  ws.on('message', (data, binary) => {
    const wire = ws._receiver.peerRecords.shift();
    received.push({ type: binary ? 'binary' : 'text', len: data.length, ...wire });
    const msg = { data, binary, wire };
    if (waiters.length) waiters.shift().resolve(msg);
    else queue.push(msg);
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    for (const w of waiters.splice(0)) w.reject(new Error('closed ' + code));
  });
  return {
    received,
    next(untimed) {
      if (queue.length) return Promise.resolve(queue.shift());
      if (closed) return Promise.reject(new Error('closed ' + closed.code));
      const wait = new Promise((resolve, reject) => waiters.push({ resolve, reject }));
      return untimed ? wait : timed(wait, 'message');
    },
    closed() {
      if (closed) return Promise.resolve(closed);
      return timed(new Promise((resolve) => ws.once('close', (code, reason) =>
        resolve({ code, reason: reason.toString() }))), 'close');
    },
  };
}

function timed(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out waiting for ' + what)), WAIT);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function describe(msg) {
  const kind = msg.binary ? 'binary' : 'text';
  const obs = { type: kind, len: msg.data.length, ...msg.wire,
    gen: msg.data.equals(gen(kind, msg.data.length)) };
  if (kind === 'text' && msg.data.length <= 1024) obs.text = msg.data.toString();
  return obs;
}

function sendFragments(ws, kind, pieces) {
  pieces.forEach((piece, i) =>
    ws.send(piece, { binary: !isText(kind), fin: i === pieces.length - 1 }));
}

function pong(ws, payload) {
  return timed(new Promise((resolve) => {
    const onPong = (data) => {
      if (data.toString() === payload) { ws.off('pong', onPong); resolve(); }
    };
    ws.on('pong', onPong);
    ws.ping(payload);
  }), 'pong');
}

// Write a frame header announcing 1000 bytes, 10 of them, then abort.
function drop(ws, masked) {
  const header = Buffer.from([0x82, (masked ? 0x80 : 0) | 126, 0x03, 0xe8]);
  const socket = ws._socket;
  const frame = Buffer.concat([header, Buffer.alloc(masked ? 4 : 0), Buffer.from('0123456789')]);
  return new Promise((resolve) => socket.write(frame, () => { socket.destroy(); resolve(); }));
}

function afterColon(s) {
  const i = s.indexOf(':');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

// ------------------------------------------------------------------ server

async function command(ws, text, lastFrames) {
  const [name, rest] = afterColon(text.slice('cmd:'.length));
  if (name === 'close') { // cmd:close:CODE:REASON
    const [code, reason] = afterColon(rest);
    ws.close(Number(code), reason);
  } else if (name === 'ping') { // cmd:ping:PAYLOAD -> ping, await the pong, "pong:PAYLOAD"
    await pong(ws, rest);
    ws.send('pong:' + rest);
  } else if (name === 'fragments') { // cmd:fragments:COUNT:SIZE:TYPE
    const [count, size, kind] = rest.split(':');
    sendFragments(ws, kind, fragments(kind, Number(count), Number(size)));
  } else if (name === 'frames') { // frames of the last echoed message
    ws.send('frames:' + lastFrames);
  } else if (name === 'drop') {
    drop(ws, false);
  } else {
    ws.send('error:unknown command ' + text);
  }
}

function handle(ws, req) {
  const urlPath = req.url;
  const box = inbox(ws);
  let lastFrames = 0;
  ws.on('close', (code, reason) =>
    emit({ ev: 'closed', path: urlPath, code, reason: reason.toString(), ext: req.peerExt || '',
      received: box.received, sent: sentOf(ws) }));
  ws.on('error', () => {}); // the close event reports the outcome
  (async () => {
    for (;;) {
      const msg = await box.next(true); // a server waits as long as needed
      if (urlPath === '/seed') {
        emit({ ev: 'hello', path: urlPath, ...describe(msg) });
        ws.close(4000, 'bye');
      } else if (!msg.binary && msg.data.toString().startsWith('cmd:')) {
        await command(ws, msg.data.toString(), lastFrames);
      } else {
        lastFrames = msg.wire.frames;
        ws.send(msg.data, { binary: msg.binary });
      }
    }
  })().catch((e) => {
    if (ws.readyState !== WebSocket.OPEN) return; // it ended: 'close' reports that
    emit({ ev: 'error', path: urlPath, reason: String((e && e.message) || e) });
    ws.close(1011, 'peer error');
  });
}

// One WebSocketServer per permessage-deflate configuration: a path with
// ?pmd=SPEC ("off", "on" or parameters as for deflateOptions) picks it;
// without it, ws's default (no compression) applies.
const servers = new Map();
function wssFor(url) {
  const spec = new URL(url, 'http://x').searchParams.get('pmd');
  const key = spec || '';
  if (!servers.has(key)) {
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_SIZE,
      perMessageDeflate: spec ? deflateOptions(spec) : false });
    wss.on('headers', (headers, req) => {
      const ext = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
      req.peerExt = ext ? ext.replace(/^[^:]*:\s*/, '') : '';
    });
    servers.set(key, wss);
  }
  return servers.get(key);
}

function server(options) {
  let srv;
  if (options.tls) {
    const [cert, key] = options.tls.split(',');
    srv = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  } else {
    srv = http.createServer();
  }
  srv.on('upgrade', (req, socket, head) => {
    const wss = wssFor(req.url);
    wss.handleUpgrade(req, socket, head, (ws) => handle(ws, req));
  });
  srv.listen(0, '127.0.0.1', () => process.stdout.write('PORT ' + srv.address().port + '\n'));
}

// ------------------------------------------------------------------ client

async function step(ws, box, s) {
  const [name, rest] = afterColon(s);
  if (name === 'echo') { // echo:TYPE:N
    const [kind, n] = rest.split(':');
    const msg = gen(kind, Number(n));
    ws.send(msg, { binary: !isText(kind) });
    const got = await box.next();
    emit({ ev: 'echo', equal: got.data.equals(msg), ...describe(got), ...sentAs(ws) });
  } else if (name === 'fragecho') { // fragecho:TYPE:COUNT:SIZE
    const [kind, count, size] = rest.split(':');
    const pieces = fragments(kind, Number(count), Number(size));
    sendFragments(ws, kind, pieces);
    const got = await box.next();
    emit({ ev: 'echo', equal: got.data.equals(Buffer.concat(pieces)), ...describe(got),
      ...sentAs(ws) });
  } else if (name === 'send') { // send:TEXT
    ws.send(rest);
  } else if (name === 'recv') {
    emit({ ev: 'recv', ...describe(await box.next()) });
  } else if (name === 'ping') { // ping:PAYLOAD
    await pong(ws, rest);
    emit({ ev: 'pong', data: rest });
  } else if (name === 'close') { // close:CODE:REASON
    const [code, reason] = afterColon(rest);
    const done = box.closed();
    ws.close(Number(code), reason);
    emit({ ev: 'closed', ...(await done) });
  } else if (name === 'waitclose') {
    emit({ ev: 'closed', ...(await box.closed()) });
  } else if (name === 'drop') {
    await drop(ws, true);
    emit({ ev: 'dropped' });
    return 'stop';
  } else {
    throw new Error('unknown step');
  }
}

// How the message this step sent went out.
function sentAs(ws) {
  const last = sentOf(ws)[sentOf(ws).length - 1];
  return { sent_compressed: last.compressed, sent_wire: last.wire };
}

async function client(url, steps, options) {
  const opts = { maxPayload: MAX_SIZE };
  if (options.ca) opts.ca = fs.readFileSync(options.ca);
  if (options.pmd) opts.perMessageDeflate = deflateOptions(options.pmd);
  const ws = new WebSocket(url, opts);
  const box = inbox(ws);
  let ext = '';
  ws.on('upgrade', (res) => { ext = res.headers['sec-websocket-extensions'] || ''; });
  ws.on('error', () => {}); // failures surface as rejected waits
  await timed(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), 'open');
  emit({ ev: 'open', ext });
  let dropped = false;
  for (const s of steps) {
    try {
      if (await step(ws, box, s) === 'stop') { dropped = true; break; }
    } catch (e) {
      emit({ ev: 'fail', step: s, reason: String((e && e.message) || e) });
      return 1;
    }
  }
  emit({ ev: 'done', sent: sentOf(ws) });
  if (ws.readyState === WebSocket.OPEN && !dropped) {
    const done = box.closed();
    ws.close(1000);
    await done;
  }
  return 0;
}

// Leading --name=value arguments as an object, and the rest.
function optionsOf(args) {
  const options = {};
  while (args.length && args[0].startsWith('--')) {
    const [name, value] = args[0].slice(2).split(/=(.*)/s);
    options[name] = value;
    args = args.slice(1);
  }
  return [options, args];
}

function main(argv) {
  if (argv[0] === 'server') return server(optionsOf(argv.slice(1))[0]);
  if (argv[0] === 'client' && argv.length >= 2) {
    const [options, steps] = optionsOf(argv.slice(2));
    client(argv[1], steps, options).then((rc) => process.exit(rc), (e) => {
      emit({ ev: 'fail', step: 'connect', reason: String((e && e.message) || e) });
      process.exit(1);
    });
    return undefined;
  }
  process.stderr.write('usage: node_peer.js server [--tls=CERT,KEY] | ' +
    'client URL [--ca=FILE] [--pmd=SPEC] STEP...\n');
  process.exit(2);
}

main(process.argv.slice(2));

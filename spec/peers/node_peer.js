#!/usr/bin/env node
// spec/peers/node_peer.js -- Node's `ws` 8.18.0 as moonws's interop peer.
//
//   node node_peer.js server               bind 127.0.0.1:0, print "PORT n", serve until killed
//   node node_peer.js client URL STEP...   run the steps against a moonws server
//
// The same command protocol as spec/peers/python_peer.py, defined in
// spec/support/interop.lua.  Every observation is one JSON line on stdout;
// a client ends with {"ev":"done"} (exit 0) or {"ev":"fail","reason":...}
// (exit 1).  ws comes from spec/peers/node/node_modules (npm ci).
'use strict';

const path = require('path');
const { WebSocket, WebSocketServer, Receiver } = require(
  path.join(__dirname, 'node', 'node_modules', 'ws'));

const MAX_SIZE = 64 * 1024 * 1024; // room for the 16 MiB cases
const WAIT = 30000; // ms any single wait may take
const TEXT_UNIT = Buffer.from('a\u00e9\u20ac\u{1F600}'); // 1+2+3+4 bytes of UTF-8
const BINARY_UNIT = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

// The payload both sides build: n bytes (text: valid UTF-8), as a Buffer.
function gen(kind, n) {
  const unit = kind === 'text' ? TEXT_UNIT : BINARY_UNIT;
  const buf = Buffer.alloc(n, 'x');
  const whole = kind === 'text' ? n - (n % 10) : n;
  for (let i = 0; i < whole; i += unit.length) unit.copy(buf, i, 0, Math.min(unit.length, whole - i));
  return buf;
}

function fragments(kind, count, size) {
  const whole = gen(kind, count * size);
  return Array.from({ length: count }, (_, i) => whole.subarray(i * size, (i + 1) * size));
}

// ws has no per-frame event: count the data frames of each message by
// wrapping the receiver's per-frame step (ws is pinned at 8.18.0).
const dataMessage = Receiver.prototype.dataMessage;
Receiver.prototype.dataMessage = function (cb) {
  this.peerFrames = (this.peerFrames || 0) + 1;
  if (this._fin) {
    (this.peerFrameCounts = this.peerFrameCounts || []).push(this.peerFrames);
    this.peerFrames = 0;
  }
  return dataMessage.call(this, cb);
};

// Messages of one socket as a queue: next() resolves to {data, binary, frames}.
function inbox(ws) {
  const queue = [];
  const waiters = [];
  let closed = null;
  ws.on('message', (data, binary) => {
    const msg = { data, binary, frames: ws._receiver.peerFrameCounts.shift() };
    if (waiters.length) waiters.shift().resolve(msg);
    else queue.push(msg);
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    for (const w of waiters.splice(0)) w.reject(new Error('closed ' + code));
  });
  return {
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
  const obs = { type: kind, len: msg.data.length, frames: msg.frames,
    gen: msg.data.equals(gen(kind, msg.data.length)) };
  if (kind === 'text' && msg.data.length <= 1024) obs.text = msg.data.toString();
  return obs;
}

function sendFragments(ws, kind, pieces) {
  pieces.forEach((piece, i) =>
    ws.send(piece, { binary: kind === 'binary', fin: i === pieces.length - 1 }));
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
    emit({ ev: 'closed', path: urlPath, code, reason: reason.toString() }));
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
        lastFrames = msg.frames;
        ws.send(msg.data, { binary: msg.binary });
      }
    }
  })().catch((e) => {
    if (ws.readyState !== WebSocket.OPEN) return; // it ended: 'close' reports that
    emit({ ev: 'error', path: urlPath, reason: String((e && e.message) || e) });
    ws.close(1011, 'peer error');
  });
}

function server() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_SIZE });
  wss.on('connection', handle);
  wss.on('listening', () => process.stdout.write('PORT ' + wss.address().port + '\n'));
}

// ------------------------------------------------------------------ client

async function step(ws, box, s) {
  const [name, rest] = afterColon(s);
  if (name === 'echo') { // echo:TYPE:N
    const [kind, n] = rest.split(':');
    const msg = gen(kind, Number(n));
    ws.send(msg, { binary: kind === 'binary' });
    const got = await box.next();
    emit({ ev: 'echo', equal: got.data.equals(msg), ...describe(got) });
  } else if (name === 'fragecho') { // fragecho:TYPE:COUNT:SIZE
    const [kind, count, size] = rest.split(':');
    const pieces = fragments(kind, Number(count), Number(size));
    sendFragments(ws, kind, pieces);
    const got = await box.next();
    emit({ ev: 'echo', equal: got.data.equals(Buffer.concat(pieces)), ...describe(got) });
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

async function client(url, steps) {
  const ws = new WebSocket(url, { maxPayload: MAX_SIZE });
  const box = inbox(ws);
  ws.on('error', () => {}); // failures surface as rejected waits
  await timed(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), 'open');
  emit({ ev: 'open' });
  let dropped = false;
  for (const s of steps) {
    try {
      if (await step(ws, box, s) === 'stop') { dropped = true; break; }
    } catch (e) {
      emit({ ev: 'fail', step: s, reason: String((e && e.message) || e) });
      return 1;
    }
  }
  emit({ ev: 'done' });
  if (ws.readyState === WebSocket.OPEN && !dropped) {
    const done = box.closed();
    ws.close(1000);
    await done;
  }
  return 0;
}

function main(argv) {
  if (argv[0] === 'server') return server();
  if (argv[0] === 'client' && argv.length >= 2) {
    client(argv[1], argv.slice(2)).then((rc) => process.exit(rc), (e) => {
      emit({ ev: 'fail', step: 'connect', reason: String((e && e.message) || e) });
      process.exit(1);
    });
    return undefined;
  }
  process.stderr.write('usage: node_peer.js server | client URL STEP...\n');
  process.exit(2);
}

main(process.argv.slice(2));

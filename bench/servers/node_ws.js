// bench/servers/node_ws.js -- Node ws echo server for the benchmark.
//
//   node bench/servers/node_ws.js PORT [TLS_PORT CERT KEY]
//
// Uses ws, bufferutil and utf-8-validate from bench/node/node_modules (pinned
// by bench/node/package-lock.json).  Binds 127.0.0.1; permessage-deflate off
// (ws's default for servers); prints which native add-ons ws picked up.
'use strict';
const path = require('path');
const fs = require('fs');
const http = require('http');
const https = require('https');
const mods = path.join(__dirname, '..', 'node', 'node_modules');
const { WebSocketServer } = require(path.join(mods, 'ws'));

const maxPayload = 64 * 1024 * 1024;
function echo(server) {
  const wss = new WebSocketServer({ server, maxPayload, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
  });
}

const [port, tlsPort, cert, key] = process.argv.slice(2);
const plain = http.createServer();
echo(plain);
plain.listen({ host: '127.0.0.1', port: Number(port), backlog: 4096 });
if (tlsPort) {
  const secure = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  echo(secure);
  secure.listen({ host: '127.0.0.1', port: Number(tlsPort), backlog: 4096 });
}

// What ws runs on: the native add-ons (node-gyp-build's choice), and Node's
// own buffer.isUtf8, which ws prefers to utf-8-validate when present.
const ngb = require(path.join(mods, 'node-gyp-build'));
const where = (name) => {
  try { return path.relative(mods, ngb.resolve(path.join(mods, name))); } catch (e) { return 'none'; }
};
process.stderr.write(`node ${process.version}: bufferutil=${where('bufferutil')} ` +
  `utf-8-validate=${where('utf-8-validate')} buffer.isUtf8=${typeof require('buffer').isUtf8}\n`);

// bench/servers/hostile_node.js -- Node ws echo with permessage-deflate on
// and maxPayload 64 MiB (moonws's default), for bench/hostile.py.
//
//   node bench/servers/hostile_node.js PORT
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '..', 'node', 'node_modules', 'ws'));

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2]),
  maxPayload: 64 * 1024 * 1024, perMessageDeflate: true });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

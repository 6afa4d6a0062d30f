// bench/servers/node_fanout.js PORT [compress] -- the fan-out row in Node's
// ws: what the socket on /pub sends goes to every socket on /sub, one
// send per client (the loop-over-clients idiom of ws's README).
const { WebSocketServer } = require('../node/node_modules/ws');
const port = Number(process.argv[2]);
const compress = process.argv[3] === 'compress';
const subs = new Set();
const wss = new WebSocketServer({
  host: '127.0.0.1', port, backlog: 4096,
  perMessageDeflate: compress ? { threshold: 0 } : false,
});
wss.on('connection', (ws, req) => {
  if (req.url === '/sub') {
    subs.add(ws);
    ws.on('close', () => subs.delete(ws));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const c of subs) c.send(data, { binary: isBinary });
    });
  }
});
wss.on('listening', () => console.log('listening'));

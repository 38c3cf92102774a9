'use strict';
// Peer server for `bench run --server node`: Node + the `ws` package.
// Usage: node node-ws-server.js [PORT]   (or PORT=...; 0 = any free port)
// Prints `listening on ws://127.0.0.1:PORT/ws` as its first stdout line;
// exits on SIGTERM. Protocol subset and the NO PERSISTENCE caveat: see
// chat-state.js (all state is in memory and lost on exit).

const http = require('http');
const { WebSocketServer } = require('ws');
const { ChatState, identity, port } = require('./chat-state.js');

const state = new ChatState();
/** channel -> Set of sockets */
const subs = new Map();

const io = {
  send(ws, s) {
    ws.send(s);
  },
  subscribe(ws, channel) {
    let set = subs.get(channel);
    if (set === undefined) {
      set = new Set();
      subs.set(channel, set);
    }
    set.add(ws);
    ws.channels.add(channel);
  },
  unsubscribe(ws, channel) {
    const set = subs.get(channel);
    if (set !== undefined) set.delete(ws);
    ws.channels.delete(channel);
  },
  publish(channel, s) {
    const set = subs.get(channel);
    if (set === undefined) return;
    // Encoded once: one Buffer for every subscriber (ws frames it per socket).
    const buf = Buffer.from(s);
    for (const ws of set) ws.send(buf, { binary: false });
  },
};

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 2097152 });

wss.on('connection', (ws, req) => {
  const { user, device } = identity(req.url);
  ws.channels = new Set();
  ws.send(state.hello(user, device));
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    state.handle(ws, user, device, data.toString(), io);
  });
  ws.on('close', () => {
    for (const ch of ws.channels) {
      const set = subs.get(ch);
      if (set !== undefined) set.delete(ws);
    }
  });
  ws.on('error', () => {});
});

server.listen(port(), '127.0.0.1', () => {
  console.log(`listening on ws://127.0.0.1:${server.address().port}/ws`);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

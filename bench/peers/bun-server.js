'use strict';
// Peer server for `bench run --server bun`: Bun.serve's websocket
// (uWebSockets inside), with ws.subscribe / server.publish for fan-out.
// Usage: bun bun-server.js [PORT]   (or PORT=...; 0 = any free port)
// Prints `listening on ws://127.0.0.1:PORT/ws` as its first stdout line;
// exits on SIGTERM. Protocol subset and the NO PERSISTENCE caveat: see
// chat-state.js (all state is in memory and lost on exit).

const { ChatState, identity, port } = require('./chat-state.js');

const state = new ChatState();
let server;

const io = {
  send(ws, s) {
    ws.send(s);
  },
  subscribe(ws, channel) {
    ws.subscribe(channel);
  },
  unsubscribe(ws, channel) {
    ws.unsubscribe(channel);
  },
  publish(channel, s) {
    // server.publish (not ws.publish) so the sender gets its own msg too;
    // uWebSockets encodes the frame once for every subscriber.
    server.publish(channel, s);
  },
};

server = Bun.serve({
  hostname: '127.0.0.1',
  port: port(),
  fetch(req, srv) {
    if (srv.upgrade(req, { data: identity(req.url) })) return undefined;
    return new Response('not found', { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 2097152,
    open(ws) {
      ws.send(state.hello(ws.data.user, ws.data.device));
    },
    message(ws, message) {
      if (typeof message !== 'string') return;
      state.handle(ws, ws.data.user, ws.data.device, message, io);
    },
    // Bun unsubscribes a closed socket from its topics itself.
    close() {},
  },
});

console.log(`listening on ws://127.0.0.1:${server.port}/ws`);

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

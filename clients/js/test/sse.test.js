// The Server-Sent Events fallback: the same guarantees as WebSocket (every
// seq once, in order, across drops), sends over the HTTP API, and the
// automatic fallback when a network blocks WebSocket.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ChatClient, readEventStream } from '../src/index.js';
import { Proxy, nextEvent, recorder, sleep, startGateway, waitFor } from './helpers.js';

let gw;
const clients = [];
const fast = { backoffInitialMs: 50, backoffMaxMs: 300 };
function client(url, user, device, extra = {}) {
  const c = new ChatClient({ url, user, device, ...fast, ...extra });
  clients.push(c);
  return c;
}

before(async () => {
  gw = await startGateway();
});
after(async () => {
  for (const c of clients) c.close();
  await gw.stop();
  gw.cleanup();
});

test('a network that blocks WebSocket: auto falls back to SSE and chats', async () => {
  const proxy = await new Proxy(gw.port).listen();
  proxy.blockWebSocket = true;
  const c = client(proxy.url, 'sse-user', 'tab');
  const fell = nextEvent(c, 'fallback');
  await c.connect();
  await fell;
  assert.equal(c.transport, 'sse');
  const rec = recorder(c);
  await c.join('room:sse');
  const peer = client(gw.url, 'ws-user', 'd');
  await peer.connect();
  await peer.join('room:sse');
  const peerRec = recorder(peer);
  await peer.send('room:sse', 'from websocket');
  const ack = await c.send('room:sse', 'from sse');
  assert.equal(ack.seq, 2);
  await waitFor(() => rec.seqs('room:sse').length === 2, 5000, 'sse sees both');
  await waitFor(() => peerRec.seqs('room:sse').length === 2, 5000, 'ws sees both');
  assert.deepEqual(rec.texts('room:sse'), ['from websocket', 'from sse']);
  // History, presence, read and edits work over HTTP.
  const page = await c.history('room:sse');
  assert.equal(page.messages.length, 2);
  const p = await c.presence('room:sse');
  assert.ok(p.online.includes('sse-user') && p.online.includes('ws-user'), JSON.stringify(p));
  await c.edit('room:sse', 2, 'from sse (edited)');
  await waitFor(() => rec.seqs('room:sse').length === 3, 5000, 'edit event');
  assert.equal(rec.of('room:sse')[2].kind, 'edit');
  await proxy.close();
});

test('SSE streams resume every channel exactly across drops', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const reader = client(proxy.url, 'sse-reader', 'r', { transport: 'sse' });
  const writer = client(gw.url, 'sse-writer', 'w');
  await Promise.all([reader.connect(), writer.connect()]);
  const rec = recorder(reader);
  const channels = ['room:s1', 'room:s2'];
  for (const ch of channels) await reader.join(ch);
  const N = 120;
  const sending = (async () => {
    for (let i = 0; i < N; i++) {
      await Promise.all(channels.map((ch) => writer.send(ch, `${ch}/${i}`)));
    }
  })();
  for (let k = 0; k < 5; k++) {
    await sleep(80);
    proxy.dropAll();
  }
  await sending;
  for (const ch of channels) await waitFor(() => rec.seqs(ch).length >= N, 15_000, ch);
  await sleep(200);
  for (const ch of channels) {
    assert.deepEqual(rec.seqs(ch), [...Array(N).keys()].map((i) => i + 1), ch);
  }
  await proxy.close();
});

test('the outbox drains over HTTP in order after the SSE transport comes back', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const c = client(proxy.url, 'sse-sender', 's', { transport: 'sse' });
  await c.connect();
  proxy.refuse = true;
  proxy.dropAll();
  await waitFor(() => c.state === 'reconnecting', 5000, 'down');
  const sends = [0, 1, 2, 3].map((i) => c.send('room:sse-outbox', `q${i}`));
  await Promise.all(sends.map((s) => s.stored));
  proxy.refuse = false;
  const acks = await Promise.all(sends);
  assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3, 4]);
  const page = await c.history('room:sse-outbox');
  assert.deepEqual(page.messages.map((m) => m.text), ['q0', 'q1', 'q2', 'q3']);
  await proxy.close();
});

test('raw stream: Last-Event-ID resumes as the ids say (as an EventSource would)', async () => {
  const writer = client(gw.url, 'raw-writer', 'w');
  await writer.connect();
  for (let i = 0; i < 3; i++) await writer.send('room:raw', `x${i}`);
  const url = `${gw.http}/v1/events?user=raw&device=r&channels=${encodeURIComponent('room:raw=1')}`;
  const ctrl = new AbortController();
  const events = [];
  const reading = readEventStream(url, {
    signal: ctrl.signal,
    onEvent: (e) => events.push(e),
  }).catch(() => {});
  await waitFor(() => events.filter((e) => e.event === 'msg').length === 2, 5000, 'replay');
  const msgs = events.filter((e) => e.event === 'msg');
  assert.deepEqual(msgs.map((e) => JSON.parse(e.data).seq), [2, 3]);
  assert.equal(msgs[0].id, 'room:raw=2');
  ctrl.abort();
  await reading;
  await writer.send('room:raw', 'x3');
  const again = [];
  const ctrl2 = new AbortController();
  const reading2 = readEventStream(url, {
    headers: { 'last-event-id': msgs[0].id },
    signal: ctrl2.signal,
    onEvent: (e) => again.push(e),
  }).catch(() => {});
  await waitFor(() => again.filter((e) => e.event === 'msg').length === 2, 5000, 'resumed');
  assert.deepEqual(
    again.filter((e) => e.event === 'msg').map((e) => JSON.parse(e.data).text),
    ['x2', 'x3'],
  );
  ctrl2.abort();
  await reading2;
});

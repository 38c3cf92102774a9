// Reconnect and resume: whatever happens to the network or the server, the
// app sees each channel as one gap-free, duplicate-free stream.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ChatClient } from '../src/index.js';
import { Proxy, nextEvent, recorder, sleep, startGateway, waitFor } from './helpers.js';

let gw;
const clients = [];
const fast = { backoffInitialMs: 50, backoffMaxMs: 400, goingAwayDelayMs: [100, 300] };
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

test('dropped connections resume every channel with since: no gap, no duplicate', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const reader = client(proxy.url, 'reader', 'r');
  const writer = client(gw.url, 'writer', 'w');
  await Promise.all([reader.connect(), writer.connect()]);
  const rec = recorder(reader);
  let reconnects = 0;
  reader.on('state', (s) => {
    if (s.state === 'reconnecting') reconnects++;
  });
  const channels = ['room:r1', 'room:r2', 'room:r3'];
  for (const ch of channels) await reader.join(ch);
  const N = 150;
  const sending = (async () => {
    for (let i = 0; i < N; i++) {
      await Promise.all(channels.map((ch) => writer.send(ch, `${ch}/${i}`)));
      if (i % 10 === 5) await sleep(5);
    }
  })();
  // Cut the reader off again and again while messages flow.
  for (let k = 0; k < 6; k++) {
    await sleep(60 + k * 20);
    proxy.dropAll();
  }
  await sending;
  for (const ch of channels) {
    await waitFor(() => rec.seqs(ch).length >= N, 15_000, `${ch} complete`);
  }
  await sleep(200);
  for (const ch of channels) {
    assert.deepEqual(rec.seqs(ch), [...Array(N).keys()].map((i) => i + 1), `${ch} dense, once, in order`);
    assert.equal(rec.texts(ch)[N - 1], `${ch}/${N - 1}`);
  }
  assert.ok(reconnects >= 3, `reconnected ${reconnects} times`);
  await proxy.close();
});

test('a list of URLs: a dead one is skipped', async () => {
  const dead = 'ws://127.0.0.1:9/ws';
  const c = client(null, 'multi', 'm', { urls: [dead, gw.url] });
  const hello = await c.connect();
  assert.equal(hello.user, 'multi');
});

test('a server restart (1001) reconnects after a random delay and resumes', async () => {
  const g = await startGateway();
  const reader = client(g.url, 'rs-reader', 'r');
  const writer = client(g.url, 'rs-writer', 'w');
  await Promise.all([reader.connect(), writer.connect()]);
  const rec = recorder(reader);
  await reader.join('room:restart');
  for (let i = 0; i < 5; i++) await writer.send('room:restart', `before ${i}`);
  await waitFor(() => rec.seqs('room:restart').length === 5);
  const gone = nextEvent(reader, 'disconnected');
  await g.stop(); // graceful: 1001
  const d = await gone;
  assert.equal(d.code, 1001);
  assert.equal(d.reconnect, 'random_delay');
  assert.ok(d.delayMs >= 100 && d.delayMs <= 300, `delay ${d.delayMs}`);
  // Meanwhile the writer queues sends in its outbox.
  const queued = [0, 1, 2].map((i) => writer.send('room:restart', `during ${i}`));
  const g2 = await startGateway({ listen: g.addr, dataDir: g.dataDir });
  await Promise.all(queued);
  await waitFor(() => rec.seqs('room:restart').length === 8, 15_000, 'resumed');
  assert.deepEqual(rec.seqs('room:restart'), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(rec.texts('room:restart').slice(5), ['during 0', 'during 1', 'during 2']);
  reader.close();
  writer.close();
  await g2.stop();
  g2.cleanup();
});

test('4009: a newer connection of the same device stops the older client for good', async () => {
  const first = client(gw.url, 'twin', 'same');
  await first.connect();
  const gone = nextEvent(first, 'disconnected');
  const second = client(gw.url, 'twin', 'same');
  await second.connect();
  const d = await gone;
  assert.equal(d.code, 4009);
  assert.equal(d.willReconnect, false);
  assert.equal(first.state, 'closed');
  await sleep(500);
  assert.equal(second.state, 'open', 'the newer one is left alone');
});

test('a silent network (no frames at all) is detected by the heartbeat', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const c = client(proxy.url, 'silent', 's');
  await c.connect();
  const gone = nextEvent(c, 'disconnected', () => true, 10_000);
  proxy.freezeDown = true; // pongs never come back
  const d = await gone;
  assert.match(d.reason, /heartbeat/);
  proxy.freezeDown = false;
  await waitFor(() => c.state === 'open', 10_000, 'back');
  await proxy.close();
});

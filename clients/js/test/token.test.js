// Tokens: a callback's token is refreshed before `exp` (the client moves to
// a new connection and resumes exactly); a fixed token that expires stops
// the client with 4001.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ChatClient } from '../src/index.js';
import { nextEvent, recorder, signToken, sleep, startGateway, waitFor } from './helpers.js';

const SECRET = 'js-test-secret-of-at-least-32-bytes';
let gw;
const clients = [];

before(async () => {
  gw = await startGateway({ env: { GATEWAY_AUTH_SECRET: SECRET } });
});
after(async () => {
  for (const c of clients) c.close();
  await gw.stop();
  gw.cleanup();
});

const token = (sub, device, ttlS) =>
  signToken(SECRET, { sub, device, exp: Math.floor(Date.now() / 1000) + ttlS });

test('a token callback is called again before exp; the stream goes on without a gap', async () => {
  let calls = 0;
  const c = new ChatClient({
    url: gw.url,
    getToken: async () => {
      calls++;
      return token('tok-user', 'tab', 3);
    },
  });
  clients.push(c);
  const hello = await c.connect();
  assert.equal(hello.user, 'tok-user');
  assert.equal(hello.device, 'tab');
  const rec = recorder(c);
  await c.join('room:tokens');
  const w = new ChatClient({ url: gw.url, token: token('tok-writer', 'w', 60) });
  clients.push(w);
  await w.connect();
  let closedBy4001 = false;
  c.on('disconnected', (d) => {
    if (d.code === 4001) closedBy4001 = true;
  });
  for (let i = 0; i < 40; i++) {
    await w.send('room:tokens', `t${i}`);
    await sleep(100);
  }
  await waitFor(() => rec.seqs('room:tokens').length === 40, 5000, 'all');
  assert.deepEqual(rec.seqs('room:tokens'), [...Array(40).keys()].map((i) => i + 1));
  assert.ok(calls >= 2, `token fetched ${calls} times`);
  assert.equal(closedBy4001, false, 'refreshed before the server had to close');
  // HTTP calls carry the bearer token too.
  const page = await c.history('room:tokens', { limit: 5 });
  assert.equal(page.messages.length, 5);
});

test('a fixed token that expires closes with 4001 and stops', async () => {
  const c = new ChatClient({ url: gw.url, token: token('short', 'd', 2) });
  clients.push(c);
  await c.connect();
  const d = await nextEvent(c, 'disconnected', () => true, 10_000);
  assert.equal(d.code, 4001);
  assert.equal(d.willReconnect, false);
  assert.equal(c.state, 'closed');
});

// The durable outbox: a send is stored before it is written and resent
// with the same client_msg_id until acked — exactly the unacked tail, in
// order — across reconnects and across a restart of the client ("reload").
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ChatClient, MemoryOutboxStore } from '../src/index.js';
import { Proxy, api, nextEvent, recorder, sleep, startGateway, waitFor } from './helpers.js';

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

/** Every message of a channel, from the server's history. */
async function serverHistory(channel) {
  const r = await api(gw.http, 'GET', `/v1/channels/${channel}/messages?limit=200&user=auditor`);
  return r.body.messages;
}

/** A store that records what was written to it (to prove store-before-write). */
class RecordingStore extends MemoryOutboxStore {
  log = [];
  async add(entry) {
    const key = await super.add(entry);
    this.log.push(['add', entry.client_msg_id]);
    return key;
  }
  async remove(key) {
    this.log.push(['remove', key]);
    return super.remove(key);
  }
}

test('sends made while offline are stored, then written in order once connected', async () => {
  const proxy = await new Proxy(gw.port).listen();
  proxy.refuse = true;
  const store = new RecordingStore();
  const c = client(proxy.url, 'offline', 'o', { store });
  c.connect();
  const acks = [0, 1, 2, 3, 4].map((i) => c.send('room:offline', `o${i}`));
  await Promise.all(acks.map((a) => a.stored));
  assert.equal((await c.pendingSends()).length, 5);
  assert.deepEqual(store.log.map((l) => l[0]), ['add', 'add', 'add', 'add', 'add']);
  proxy.refuse = false;
  const done = await Promise.all(acks);
  assert.deepEqual(done.map((a) => a.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual((await serverHistory('room:offline')).map((m) => m.text), ['o0', 'o1', 'o2', 'o3', 'o4']);
  await waitFor(async () => (await c.pendingSends()).length === 0, 5000, 'outbox empty');
  await proxy.close();
});

test('lost acks and lost sends: a reconnect resends exactly the unacked tail, stored once', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const c = client(proxy.url, 'lossy', 'l');
  await c.connect();
  const watcher = client(gw.url, 'watch', 'w');
  await watcher.connect();
  const seen = recorder(watcher);
  await watcher.join('room:lossy');
  await c.send('room:lossy', 'acked');
  // Acks are lost: the server stores these, the client never hears back.
  proxy.freezeDown = true;
  const p1 = [1, 2, 3].map((i) => c.send('room:lossy', `no-ack ${i}`));
  await waitFor(() => seen.seqs('room:lossy').length === 4, 5000, 'stored without acks');
  // Sends are lost too: these never reach the server.
  proxy.freezeUp = true;
  const p2 = [4, 5].map((i) => c.send('room:lossy', `unsent ${i}`));
  await Promise.all(p2.map((p) => p.stored));
  await sleep(100);
  assert.equal((await c.pendingSends()).length, 5);
  proxy.freezeDown = false;
  proxy.freezeUp = false;
  proxy.dropAll();
  const acks = await Promise.all([...p1, ...p2]);
  assert.deepEqual(acks.map((a) => a.seq), [2, 3, 4, 5, 6]);
  await waitFor(() => seen.seqs('room:lossy').length === 6, 5000, 'all six');
  await sleep(200);
  const texts = (await serverHistory('room:lossy')).map((m) => m.text);
  assert.deepEqual(texts, ['acked', 'no-ack 1', 'no-ack 2', 'no-ack 3', 'unsent 4', 'unsent 5']);
  assert.deepEqual(seen.seqs('room:lossy'), [1, 2, 3, 4, 5, 6]);
  assert.equal((await c.pendingSends()).length, 0);
  await proxy.close();
});

test('a "reload": a new client of the same device resends what the old one left', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const store = new MemoryOutboxStore(); // stands for IndexedDB, which outlives the page
  const before = client(proxy.url, 'reloader', 'tab1', { store });
  await before.connect();
  await before.send('room:reload', 'r0');
  proxy.freezeUp = true;
  const lost = [1, 2, 3].map((i) => before.send('room:reload', `r${i}`));
  await Promise.all(lost.map((p) => p.stored));
  before.close(); // the page goes away with three sends unacked
  proxy.freezeUp = false;
  proxy.dropAll();

  const afterReload = client(gw.url, 'reloader', 'tab1', { store });
  const pending = await afterReload.pendingSends();
  assert.deepEqual(pending.map((e) => e.text), ['r1', 'r2', 'r3']);
  const resent = nextEvent(afterReload, 'outbox', (e) => e.resending === 3);
  const rec = recorder(afterReload);
  await afterReload.connect();
  await resent;
  await afterReload.join('room:reload', { since: 0 });
  await waitFor(() => rec.seqs('room:reload').length === 4, 5000, 'all four');
  await waitFor(async () => (await afterReload.pendingSends()).length === 0, 5000, 'outbox empty');
  assert.deepEqual(rec.texts('room:reload'), ['r0', 'r1', 'r2', 'r3']);
  assert.deepEqual((await serverHistory('room:reload')).map((m) => m.text), ['r0', 'r1', 'r2', 'r3']);
  await proxy.close();
});

test('the ack of a send whose ack was lost is a duplicate, not a second message', async () => {
  const proxy = await new Proxy(gw.port).listen();
  const store = new MemoryOutboxStore();
  const a = client(proxy.url, 'dup', 'tab', { store });
  await a.connect();
  proxy.freezeDown = true;
  const p = a.send('room:dup', 'only once');
  await p.stored;
  await waitFor(async () => (await serverHistory('room:dup')).length === 1, 5000, 'stored');
  a.close();
  proxy.freezeDown = false;
  const b = client(gw.url, 'dup', 'tab', { store });
  const ack = nextEvent(b, 'ack');
  await b.connect();
  const got = await ack;
  assert.equal(got.duplicate, true);
  assert.equal(got.seq, 1);
  assert.equal((await serverHistory('room:dup')).length, 1);
  await proxy.close();
});

test('a send refused for good leaves the outbox and is reported', async () => {
  const c = client(gw.url, 'outsider', 'o');
  await c.connect();
  const failed = nextEvent(c, 'send_failed');
  await assert.rejects(c.send('dm:x:y', 'not mine'), (e) => e.code === 'not_member');
  const f = await failed;
  assert.equal(f.entry.text, 'not mine');
  assert.equal((await c.pendingSends()).length, 0);
  // The next send is not held up by it.
  assert.equal((await c.send('room:after-fail', 'fine')).seq, 1);
});

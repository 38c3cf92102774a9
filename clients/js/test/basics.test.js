// The client against a real gateway: hello, joins, sends, typed events,
// history paging, edits and deletes, presence, typing, receipts, groups,
// unread and channel discovery.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ChatClient, ChatError, describeClose, dmChannel } from '../src/index.js';
import { nextEvent, recorder, startGateway, waitFor } from './helpers.js';

let gw;
const clients = [];
function client(user, device = 'd1', extra = {}) {
  const c = new ChatClient({ url: gw.url, user, device, ...extra });
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

describe('connecting', () => {
  test('connect resolves with hello and the state goes to open', async () => {
    const c = client('alice');
    const states = [];
    c.on('state', (s) => states.push(s.state));
    const hello = await c.connect();
    assert.equal(hello.user, 'alice');
    assert.equal(hello.device, 'd1');
    assert.equal(hello.heartbeat_ms, 1000);
    assert.equal(c.state, 'open');
    assert.equal(c.transport, 'websocket');
    assert.deepEqual(states, ['connecting', 'open']);
  });

  test('app-level heartbeat keeps an idle connection past 2 x heartbeat_ms', async () => {
    const c = client('idle');
    await c.connect();
    let closed = false;
    c.on('disconnected', () => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 3_000)); // the gateway closes silent ones after 2 s
    assert.equal(closed, false);
    assert.equal(c.state, 'open');
  });

  test('close codes map to documented reasons', () => {
    assert.equal(describeClose(4009).reconnect, 'never');
    assert.equal(describeClose(1001).reconnect, 'random_delay');
    assert.equal(describeClose(4001).reconnect, 'refresh_token');
    assert.equal(describeClose(4029).reconnect, 'slow_backoff');
    assert.equal(describeClose(4008).name, 'idle');
    assert.equal(describeClose(4999).reconnect, 'backoff');
  });
});

describe('messages', () => {
  test('two clients chat in a room; each sees every message once, in order', async () => {
    const a = client('ann');
    const b = client('ben');
    await Promise.all([a.connect(), b.connect()]);
    const ra = recorder(a);
    const rb = recorder(b);
    await a.join('room:basics');
    await b.join('room:basics');
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push(a.send('room:basics', `m${i}`));
    const done = await Promise.all(acks);
    assert.deepEqual(done.map((x) => x.seq), [...Array(20).keys()].map((i) => i + 1));
    assert.ok(done.every((x) => x.duplicate === false));
    await waitFor(() => rb.seqs('room:basics').length === 20, 5000, 'ben has 20');
    await waitFor(() => ra.seqs('room:basics').length === 20, 5000, 'ann has her own 20');
    assert.deepEqual(rb.texts('room:basics'), [...Array(20).keys()].map((i) => `m${i}`));
    assert.equal(rb.of('room:basics')[0].from, 'ann');
    assert.equal(a.position('room:basics'), 20);
  });

  test('join with since replays exactly what came after', async () => {
    const w = client('writer');
    await w.connect();
    for (let i = 0; i < 5; i++) await w.send('room:since', `s${i}`);
    const r = client('reader');
    await r.connect();
    const rec = recorder(r);
    const j = await r.join('room:since', { since: 2 });
    assert.equal(j.head, 5);
    await waitFor(() => rec.seqs('room:since').length === 3);
    assert.deepEqual(rec.seqs('room:since'), [3, 4, 5]);
  });

  test('history pages backwards and forwards', async () => {
    const c = client('hist');
    await c.connect();
    for (let i = 1; i <= 30; i++) await c.send('room:hist', `h${i}`);
    const latest = await c.history('room:hist', { limit: 10 });
    assert.deepEqual(latest.messages.map((m) => m.seq), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    assert.equal(latest.has_more, true);
    const older = await c.history('room:hist', { before: 21, limit: 25 });
    assert.equal(older.messages.length, 20);
    assert.equal(older.has_more, false);
    const newer = await c.history('room:hist', { after: 28 });
    assert.deepEqual(newer.messages.map((m) => m.text), ['h29', 'h30']);
    await assert.rejects(c.history('room:hist', { limit: 500 }), (e) => e instanceof ChatError && e.code === 'bad_request');
  });

  test('edits and deletes are messages in the sequence and show in history', async () => {
    const c = client('editor');
    await c.connect();
    const rec = recorder(c);
    await c.join('room:edits');
    const { seq } = await c.send('room:edits', 'tpyo');
    await c.edit('room:edits', seq, 'typo');
    const gone = await c.send('room:edits', 'oops');
    await c.delete('room:edits', gone.seq);
    await waitFor(() => rec.of('room:edits').length === 4);
    assert.deepEqual(rec.of('room:edits').map((m) => m.kind), ['text', 'edit', 'text', 'delete']);
    const page = await c.history('room:edits');
    assert.equal(page.messages[0].text, 'typo');
    assert.equal(page.messages[0].edited, true);
    assert.equal(page.messages[2].deleted, true);
    const other = client('someone');
    await other.connect();
    await assert.rejects(other.edit('room:edits', seq, 'mine now'), (e) => e.code === 'forbidden');
    assert.equal((await other.pendingSends()).length, 0, 'a refused edit leaves the outbox');
  });
});

describe('audience tiers', () => {
  test('a counts member gets head events and no messages; switching to live replays the gap', async () => {
    const sender = client('tier-sender');
    const badge = client('tier-badge');
    await Promise.all([sender.connect(), badge.connect()]);
    const rec = recorder(badge);
    const heads = [];
    badge.on('head', (h) => heads.push(h));
    const joined = await badge.join('room:tiers', { mode: 'counts' });
    assert.equal(joined.head, 0);
    for (let i = 0; i < 3; i++) await sender.send('room:tiers', `m${i}`);
    // The first head at once, the last within counts_interval_ms (2 s).
    await waitFor(() => heads.some((h) => h.head === 3), 10_000, 'a head event reaching 3');
    assert.ok(heads.every((h) => h.channel === 'room:tiers'));
    assert.deepEqual(rec.seqs('room:tiers'), [], 'no messages in counts');
    await badge.join('room:tiers', { mode: 'live' });
    await waitFor(() => rec.seqs('room:tiers').length === 3, 10_000, 'the gap replayed');
    assert.deepEqual(rec.seqs('room:tiers'), [1, 2, 3]);
    await sender.send('room:tiers', 'live now');
    await waitFor(() => rec.seqs('room:tiers').length === 4, 10_000, 'a live message');
    assert.deepEqual(rec.seqs('room:tiers'), [1, 2, 3, 4]);
  });

  test('a digest member gets every message once, in order', async () => {
    const sender = client('digest-sender');
    const reader = client('digest-reader');
    await Promise.all([sender.connect(), reader.connect()]);
    const rec = recorder(reader);
    await reader.join('room:digest', { mode: 'digest' });
    await Promise.all(Array.from({ length: 20 }, (_, i) => sender.send('room:digest', `d${i}`)));
    await waitFor(() => rec.seqs('room:digest').length === 20, 10_000, 'every message');
    assert.deepEqual(rec.seqs('room:digest'), Array.from({ length: 20 }, (_, i) => i + 1));
  });
});

describe('presence, typing, receipts', () => {
  test('typing is throttled and reaches the other members', async () => {
    const a = client('typer');
    const b = client('watcher');
    await Promise.all([a.connect(), b.connect()]);
    await a.join('room:typing');
    await b.join('room:typing');
    const seen = nextEvent(b, 'typing');
    assert.equal(a.typing('room:typing'), true);
    assert.equal(a.typing('room:typing'), false, 'throttled');
    assert.deepEqual(await seen, { channel: 'room:typing', user: 'typer' });
  });

  test('presence updates, presence queries and read receipts in a DM', async () => {
    const a = client('pam');
    const b = client('pat');
    await b.connect();
    const dm = dmChannel('pam', 'pat');
    await a.connect();
    await a.send(dm, 'hello pat');
    const online = await b.presence(dm);
    assert.deepEqual(online.online, ['pam', 'pat']);
    const read = nextEvent(a, 'read');
    await b.markRead(dm, 1);
    assert.deepEqual(await read, { channel: dm, user: 'pat', seq: 1 });
    const offline = nextEvent(b, 'presence', (p) => p.user === 'pam' && p.status === 'offline');
    a.close();
    assert.equal((await offline).channel, dm);
  });
});

describe('groups, unread and channel discovery', () => {
  test('a first DM and a new group are announced; channels() lists them with unread', async () => {
    const bob = client('bob');
    const alice = client('alice2');
    await Promise.all([bob.connect(), alice.connect()]);
    const dm = dmChannel('alice2', 'bob');
    const addedDm = nextEvent(bob, 'channel_added', (e) => e.channel === dm);
    await alice.send(dm, 'first!');
    assert.deepEqual(await addedDm, { channel: dm, kind: 'dm' });

    const addedGroup = nextEvent(bob, 'channel_added', (e) => e.kind === 'group');
    const group = await alice.createGroup(['bob']);
    assert.match(group, /^group:[A-Za-z0-9_-]{1,64}$/);
    assert.equal((await addedGroup).channel, group);
    await alice.send(group, 'welcome');
    await alice.send(group, 'to the group');

    const list = await bob.channels();
    const byName = Object.fromEntries(list.map((c) => [c.channel, c]));
    assert.equal(byName[dm].unread, 1);
    assert.deepEqual(byName[dm].members, ['alice2', 'bob']);
    assert.equal(byName[group].unread, 2);
    assert.equal(byName[group].kind, 'group');
    assert.deepEqual(await bob.unread(), { [dm]: 1, [group]: 2 });

    const carol = client('carol');
    await carol.connect();
    const addedCarol = nextEvent(carol, 'channel_added');
    await bob.addMember(group, 'carol');
    assert.equal((await addedCarol).channel, group);
    const rec = recorder(carol);
    await carol.join(group, { since: 0 });
    await waitFor(() => rec.seqs(group).length === 2);

    const left = nextEvent(carol, 'left');
    await carol.removeMember(group, 'carol');
    assert.deepEqual(await left, { channel: group });
    await assert.rejects(carol.join(group), (e) => e.code === 'not_member');
  });
});

// The demo page in a real browser (Debian's Chromium, driven by
// puppeteer-core; nothing downloads a browser): two people chat, one of
// them reloads in the middle of sending and nothing is lost or shown twice.
//
//   npm run test:browser            (CHROMIUM_BIN overrides /usr/bin/chromium;
//                                    SCREENSHOT=path writes a picture of the page)
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';

import puppeteer from 'puppeteer-core';

import { Proxy, api, sleep, startGateway } from '../test/helpers.js';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const T = 15_000;

let gw;
let proxy;
let browser;
let profile;

before(async () => {
  gw = await startGateway();
  proxy = await new Proxy(gw.port).listen();
  profile = mkdtempSync(join(tmpdir(), 'chatgw-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await gw?.stop();
  gw?.cleanup();
  rmSync(profile, { recursive: true, force: true });
});

/** A page of its own (own cookies, storage, IndexedDB) for `user`. */
async function open(user, { via = gw.http, query = '' } = {}) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1200, height: 760 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.errors = errors;
  await page.goto(`${via}/demo/?user=${user}${query}`);
  await connected(page);
  return page;
}

function connected(page, transport = null) {
  return page.waitForFunction(
    (t) => {
      const s = document.querySelector('#conn-status')?.textContent ?? '';
      return s.startsWith('connected') && (!t || s.includes(t));
    },
    { timeout: T },
    transport,
  );
}

/** Committed message texts shown in the open channel (pending ones apart). */
function shown(page) {
  return page.$$eval('#message-list li.msg:not(.pending) .bubble', (els) => els.map((e) => e.textContent));
}

function pending(page) {
  return page.$$eval('#message-list li.msg.pending .bubble', (els) => els.map((e) => e.textContent));
}

async function say(page, text) {
  await page.type('#text', text);
  await page.keyboard.press('Enter');
}

function waitText(page, text) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll('#message-list li.msg:not(.pending) .bubble')].some((e) => e.textContent === t),
    { timeout: T },
    text,
  );
}

async function openChannel(page, channel) {
  await page.waitForSelector(`li[data-channel="${channel}"]`, { timeout: T });
  await page.click(`li[data-channel="${channel}"]`);
  await page.waitForFunction((c) => window.demo.current?.name === c && window.demo.current.loaded, { timeout: T }, channel);
}

async function start(page, kind, value) {
  await page.type('#start-input', value);
  await page.click(`#start button[data-kind="${kind}"]`);
}

/** Each of `texts` exactly once, in this order, among `all`. */
function assertOnceInOrder(all, texts, who) {
  const picked = all.filter((t) => texts.includes(t));
  assert.deepEqual(picked, texts, `${who}: each once, in order`);
}

test('two people chat in the demo page; a reload mid-send loses nothing and shows nothing twice', async (t) => {
  // Alice reaches the gateway through a proxy that can lose her packets.
  const alice = await open('alice', { via: proxy.http });
  const bob = await open('bob');

  await t.test('a room: both see both messages', async () => {
    await say(alice, 'hello from alice');
    await waitText(bob, 'hello from alice');
    await say(bob, 'hi alice!');
    await waitText(alice, 'hi alice!');
  });

  await t.test('a first DM appears with an unread badge, presence dot and read receipt', async () => {
    await start(bob, 'dm', 'alice');
    await bob.waitForFunction(() => window.demo.current?.name === 'dm:alice:bob', { timeout: T });
    await say(bob, 'psst, alice');
    await alice.waitForFunction(
      () => document.querySelector('li[data-channel="dm:alice:bob"] .badge')?.textContent === '1',
      { timeout: T },
    );
    // Bob sees alice online in the DM (a green dot).
    await bob.waitForSelector('li[data-channel="dm:alice:bob"] .dot.online', { timeout: T });
    await openChannel(alice, 'dm:alice:bob');
    await waitText(alice, 'psst, alice');
    await bob.waitForFunction(
      () => [...document.querySelectorAll('.receipt')].some((e) => e.textContent === 'Seen by alice'),
      { timeout: T },
    );
    // Typing reaches the other side.
    await alice.type('#text', 'yes? what is it?');
    await bob.waitForFunction(() => document.querySelector('#typing').textContent.includes('alice is typing'), {
      timeout: T,
    });
    await alice.keyboard.press('Enter');
    await waitText(bob, 'yes? what is it?');
  });

  await t.test('a group created by alice shows up for bob', async () => {
    await start(alice, 'group', 'bob');
    const group = await alice.waitForFunction(
      () => (window.demo.current?.name?.startsWith('group:') ? window.demo.current.name : null),
      { timeout: T },
    );
    const name = await group.jsonValue();
    await say(alice, 'welcome to the group');
    await bob.waitForSelector(`li[data-channel="${name}"]`, { timeout: T });
    await openChannel(bob, name);
    await waitText(bob, 'welcome to the group');
  });

  await openChannel(alice, 'room:lobby');
  await openChannel(bob, 'room:lobby');

  await t.test('alice reloads while six sends are unacked: after it, each shows once, in order', async () => {
    // Acks of the next three are lost: the gateway stores them, alice never hears.
    proxy.freezeOpen({ down: true });
    const lostAcks = ['ack lost 1', 'ack lost 2', 'ack lost 3'];
    for (const m of lostAcks) await say(alice, m);
    for (const m of lostAcks) await waitText(bob, m);
    // The next three never reach the gateway.
    proxy.freezeOpen({ up: true });
    const lostSends = ['never sent 4', 'never sent 5', 'never sent 6'];
    for (const m of lostSends) await say(alice, m);
    await alice.waitForFunction(async () => (await window.chat.pendingSends()).length === 6, { timeout: T });
    assert.deepEqual(await pending(alice), [...lostAcks, ...lostSends], 'shown as sending');

    await alice.reload();
    await connected(alice);
    const all = [...lostAcks, ...lostSends];
    await alice.waitForFunction(
      (texts) => {
        const shownNow = [...document.querySelectorAll('#message-list li.msg:not(.pending) .bubble')].map((e) => e.textContent);
        return texts.every((x) => shownNow.includes(x)) && document.querySelectorAll('li.msg.pending').length === 0;
      },
      { timeout: T },
      all,
    );
    for (const m of lostSends) await waitText(bob, m);
    await sleep(500); // anything extra would have arrived by now
    assertOnceInOrder(await shown(alice), all, 'alice');
    assertOnceInOrder(await shown(bob), all, 'bob');
    const history = await api(gw.http, 'GET', '/v1/channels/room:lobby/messages?limit=200&user=auditor');
    assertOnceInOrder(history.body.messages.map((m) => m.text), all, 'the gateway');
    assert.equal(await alice.evaluate(async () => (await window.chat.pendingSends()).length), 0);
  });

  await t.test('a reload at an arbitrary moment of a burst keeps every stored send, once', async () => {
    const burst = Array.from({ length: 15 }, (_, i) => `burst ${i}`);
    await alice.evaluate((texts) => {
      for (const x of texts) window.chat.send('room:lobby', x);
      setTimeout(() => location.reload(), 5);
    }, burst);
    await alice.waitForNavigation({ timeout: T }).catch(() => {});
    await connected(alice);
    await alice.waitForFunction(async () => (await window.chat.pendingSends()).length === 0, { timeout: T });
    await sleep(500);
    const history = await api(gw.http, 'GET', '/v1/channels/room:lobby/messages?limit=200&user=auditor');
    const stored = history.body.messages.map((m) => m.text).filter((x) => x.startsWith('burst '));
    // The outbox is written in order: what made it is a prefix, each once.
    assert.deepEqual(stored, burst.slice(0, stored.length), 'a prefix of the burst, no duplicates');
    await alice.waitForFunction(
      (n) => [...document.querySelectorAll('#message-list li.msg:not(.pending) .bubble')].filter((e) => e.textContent.startsWith('burst ')).length === n,
      { timeout: T },
      stored.length,
    );
    await bob.waitForFunction(
      (n) => [...document.querySelectorAll('#message-list li.msg:not(.pending) .bubble')].filter((e) => e.textContent.startsWith('burst ')).length === n,
      { timeout: T },
      stored.length,
    );
    assertOnceInOrder(await shown(alice), stored, 'alice');
    assertOnceInOrder(await shown(bob), stored, 'bob');
  });

  await t.test('the reconnecting indicator shows while the network is down', async () => {
    proxy.refuse = true;
    proxy.dropAll();
    await alice.waitForFunction(
      () => !document.querySelector('#banner').hidden && document.querySelector('#banner').textContent.includes('Reconnecting'),
      { timeout: T },
    );
    await say(alice, 'written while offline');
    proxy.refuse = false;
    await connected(alice);
    await alice.waitForFunction(() => document.querySelector('#banner').hidden, { timeout: T });
    await waitText(bob, 'written while offline');
  });

  await t.test('a page on Server-Sent Events chats with the others', async () => {
    const carol = await open('carol', { query: '&transport=sse' });
    await connected(carol, 'SSE');
    await say(carol, 'carol over SSE');
    await waitText(bob, 'carol over SSE');
    await say(bob, 'welcome carol');
    await waitText(carol, 'welcome carol');
    assert.deepEqual(carol.errors, []);
  });

  await t.test('history scrolls back page by page', async () => {
    for (let i = 0; i < 120; i++) {
      await api(gw.http, 'POST', '/v1/channels/room:long/messages?user=seeder', {
        client_msg_id: `s${i}`,
        text: `old ${i}`,
      });
    }
    await start(bob, 'room', 'long');
    await bob.waitForFunction(() => window.demo.current?.name === 'room:long' && window.demo.current.loaded, {
      timeout: T,
    });
    assert.equal((await shown(bob)).length, 50);
    for (const want of [100, 120]) {
      await bob.evaluate(() => {
        document.querySelector('#messages').scrollTop = 0;
        document.querySelector('#messages').dispatchEvent(new Event('scroll'));
      });
      await bob.waitForFunction((n) => document.querySelectorAll('#message-list li.msg').length === n, { timeout: T }, want);
    }
    const texts = await shown(bob);
    assert.deepEqual(texts, Array.from({ length: 120 }, (_, i) => `old ${i}`));
  });

  // The picture for the README: bob's DM with alice while she types.
  await openChannel(alice, 'dm:alice:bob');
  await say(alice, 'the reload test passed: nothing lost, nothing twice');
  await openChannel(bob, 'dm:alice:bob');
  await waitText(bob, 'the reload test passed: nothing lost, nothing twice');
  await sleep(3_100); // typing is throttled per channel (the last was while writing above)
  await alice.type('#text', 'one more thing');
  await bob.waitForFunction(() => document.querySelector('#typing').textContent.includes('alice is typing'), {
    timeout: T,
  });
  if (process.env.SCREENSHOT) {
    mkdirSync(dirname(process.env.SCREENSHOT), { recursive: true });
    await bob.screenshot({ path: process.env.SCREENSHOT });
  }
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});

test('the browser negotiates permessage-deflate and both directions are compressed', async () => {
  // Chromium always offers permessage-deflate: its messages to the gateway
  // are compressed (the gateway inflates them) and the gateway's `msg`
  // frames to it are the batches' shared compressed copies.
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.goto(`${gw.http}/demo/?user=zoe`);
  const text = 'a paragraph long enough to be worth compressing: '.repeat(6);
  const got = await page.evaluate(async (text) => {
    const url = (user) => `ws://${location.host}/ws?user=${user}&device=raw`;
    const open = (user) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url(user));
        const frames = [];
        ws.onmessage = (e) => frames.push(JSON.parse(e.data));
        ws.onopen = () => resolve({ ws, frames });
        ws.onerror = () => reject(new Error('websocket error'));
      });
    const until = async (frames, pred) => {
      for (let i = 0; i < 300; i++) {
        const f = frames.find(pred);
        if (f) return f;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('timed out');
    };
    const reader = await open('yan');
    const writer = await open('xia');
    for (const [c, id] of [[reader, 1], [writer, 2]]) {
      c.ws.send(JSON.stringify({ id, type: 'join', channel: 'room:zipped' }));
      await until(c.frames, (f) => f.id === id && f.type === 'joined');
    }
    writer.ws.send(JSON.stringify({ id: 3, type: 'send', channel: 'room:zipped', client_msg_id: 'z1', text }));
    const msg = await until(reader.frames, (f) => f.type === 'msg' && f.channel === 'room:zipped');
    return { extensions: [reader.ws.extensions, writer.ws.extensions], text: msg.text };
  }, text);
  for (const ext of got.extensions) {
    assert.match(ext, /^permessage-deflate; server_no_context_takeover; client_no_context_takeover/);
  }
  assert.equal(got.text, text);
  await ctx.close();
});
